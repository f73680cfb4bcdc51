"""What a spec asks for, read the way a model reads it: from the prompt's category descriptions and ranges.

The simulated provider must not shape text by category names: a plan that calls its code categories
`practical`/`theory`, or its lengths `brief`/`extended` with ranges of its own, gets examples that fit what
those categories declare. The system prompt lists every dimension with its categories, their declared ranges
('50-150 words', '2-3 turns') and descriptions; this module turns a spec's labels into the canonical aspects
the text composer (simulated_text) writes to: behaviour, question_type, tone, code, format, typos, turns, and
the word ranges of the user message and of the reply. A dimension no rule recognises shapes nothing (domain,
difficulty). Without a category section in the prompt, the labels are taken as canonical names.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

DIM_HEAD = re.compile(r"^### (?P<name>\S+)(?: \((?P<desc>.*)\))?$")
CATEGORY = re.compile(r"^- (?P<name>\S+?)(?: \((?P<range>[^)]*(?:words?|turns?))\))?: (?P<desc>.*)$")
RANGE = re.compile(r"(?:(?P<lo>\d+)(?:-(?P<hi>\d+)|(?P<plus>\+))?|up to (?P<upto>\d+)) (?P<unit>words?|turns?)")
NEGATED = re.compile(r"\b(?:no|not|without|never)\b[^.;:)]*")   # 'no code block', '(no list, table or JSON)'

RESPONSE_WORDS = {"short": (50, 150), "medium": (151, 400), "long": (401, 800)}   # plans with no declared range
INPUT_WORDS = {"short": (5, 20), "medium": (21, 100), "long": (101, 200)}


@dataclass(frozen=True)
class Category:
    description: str
    words: tuple[int, int] | None = None
    turns: tuple[int, int] | None = None


@dataclass
class Dimension:
    description: str
    categories: dict[str, Category] = field(default_factory=dict)


@dataclass
class Intent:
    """What one example should be: canonical aspects for the composer, and its word and turn ranges."""
    aspects: dict[str, str]
    input_words: tuple[int, int] = (5, 20)
    response_words: tuple[int, int] = (151, 400)
    turns: tuple[int, int] = (1, 1)


def _range(text: str) -> tuple[str, tuple[int, int]] | None:
    m = RANGE.search(text)
    if not m:
        return None
    unit = "turns" if m.group("unit").startswith("turn") else "words"
    if m.group("upto"):
        return unit, (1, int(m.group("upto")))
    lo = int(m.group("lo"))
    hi = int(m.group("hi")) if m.group("hi") else lo + (lo if unit == "words" else 1) if m.group("plus") else lo
    return unit, (lo, hi)


@functools.lru_cache(maxsize=16)
def read_dimensions(system: str) -> dict[str, Dimension]:
    """The prompt's 'What the categories mean' section: dimension -> its description and categories."""
    section = system.split("## What the categories mean", 1)[-1].split("\n## ", 1)[0] if "## What the categories mean" in system else ""
    dims: dict[str, Dimension] = {}
    current: Dimension | None = None
    for line in section.splitlines():
        head = DIM_HEAD.match(line)
        if head:
            current = dims.setdefault(head.group("name"), Dimension(head.group("desc") or ""))
            continue
        cat = CATEGORY.match(line)
        if cat and current is not None:
            found = _range(cat.group("range") or "")
            current.categories[cat.group("name")] = Category(
                cat.group("desc"), words=found[1] if found and found[0] == "words" else None,
                turns=found[1] if found and found[0] == "turns" else None)
    return dims


def _plain(text: str) -> str:
    """A description with its negated clauses removed: 'Conceptual, no code block.' -> 'conceptual, .'"""
    return NEGATED.sub("", text.lower())


def _has(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


# (aspect, what marks a dimension as being about it, in any of its categories' descriptions)
ASPECTS = [
    ("typos", r"typo|misspell"),
    ("code", r"\bcode\b"),
    ("format", r"\blists?\b|\btables?\b|\bjson\b"),
    ("behaviour", r"clarif|declin|refus"),
    ("question_type", r"how-to|step-by-step|troubleshoot|compar"),
    ("tone", r"friendly|formal|conversational"),
]


def _value(aspect: str, desc: str) -> str:
    """The canonical value a category's description (negations removed) asks for, on an aspect."""
    if aspect == "typos":
        return "typos" if _has(r"typo|misspell", desc) else "clean"
    if aspect == "code":
        return "with_examples" if _has(r"\bcode\b|command|worked example", desc) else "conceptual"
    if aspect == "format":
        return next((f for f, p in (("table", r"\btables?\b"), ("json", r"\bjson\b"), ("list", r"\blists?\b"))
                     if _has(p, desc)), "plain")
    if aspect == "behaviour":
        return ("ambiguous" if _has(r"clarif|vague", desc) else "negative" if _has(r"declin|refus|out of scope", desc)
                else "adversarial" if _has(r"adversarial|trick|spots the problem|edge case", desc) else "standard")
    if aspect == "question_type":
        return ("multi_step" if _has(r"multi-step|workflow|pipeline|system design", desc)
                else "comparative" if _has(r"compar|trade-off|\bvs\b", desc)
                else "troubleshooting" if _has(r"troubleshoot|debug|error|failure", desc)
                else "instructional" if _has(r"how-to|step-by-step|instruct", desc) else "factual")
    if aspect == "tone":
        return ("mixed" if _has(r"approachable|mixed", desc) else "conversational" if _has(r"friendly|conversational", desc)
                else "professional")
    return ""


@functools.lru_cache(maxsize=16)
def _aspects_of(system: str) -> dict[str, str]:
    """dimension -> the aspect it is about ('' for none), decided from all its categories at once."""
    out: dict[str, str] = {}
    for name, dim in read_dimensions(system).items():
        if any(c.words for c in dim.categories.values()):
            about = (dim.description + " " + " ".join(c.description for c in dim.categories.values())).lower()
            out[name] = "input_words" if _has(r"\buser\b|\binput\b|question", about) else "response_words"
            continue
        if any(c.turns for c in dim.categories.values()):
            out[name] = "turns"
            continue
        descs = " ".join(_plain(c.description) for c in dim.categories.values())
        out[name] = next((a for a, p in ASPECTS if _has(p, descs)), "")
    return out


def intent(system: str, labels: dict[str, str]) -> Intent:
    """What the spec with these labels asks for, per the prompt's declared categories."""
    dims = read_dimensions(system)
    if not dims:   # no category section: the labels are the canonical names
        aspects = {**labels, "code": labels.get("examples", "")} if "examples" in labels else dict(labels)
        return Intent(aspects, input_words=INPUT_WORDS.get(labels.get("input_length", "short"), (5, 20)),
                      response_words=RESPONSE_WORDS.get(labels.get("response_length", "medium"), (151, 400)),
                      turns=(2, 3) if labels.get("turns") == "multi_turn" else (1, 1))
    about = _aspects_of(system)
    out = Intent({})
    for dim, cat in labels.items():
        declared = dims.get(dim, Dimension("")).categories.get(cat)
        aspect = about.get(dim, "")
        if declared is None or not aspect:
            continue
        if aspect == "input_words" and declared.words:
            out.input_words = declared.words
        elif aspect == "response_words" and declared.words:
            out.response_words = declared.words
        elif aspect == "turns" and declared.turns:
            out.turns = declared.turns
            out.aspects["turns"] = "multi_turn" if declared.turns[0] > 1 else "single_turn"
        else:
            out.aspects[aspect] = _value(aspect, _plain(declared.description))
    return out
