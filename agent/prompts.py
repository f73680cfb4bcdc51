"""One jinja2 Environment over prompts/, and the Requests the engine sends."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from agent.plan import Plan
from agent.providers.base import Request
from agent.records import Spec
from agent.reply import reply_schema

PROMPTS_DIR = Path(os.environ.get("DATAGEN_PROMPTS", Path(__file__).resolve().parent.parent / "prompts"))


@functools.cache
def environment() -> Environment:
    # StrictUndefined: a missing variable is a bug to see, not an empty string in a prompt
    return Environment(loader=FileSystemLoader(PROMPTS_DIR), undefined=StrictUndefined,
                       keep_trailing_newline=True, autoescape=False, trim_blocks=True)


@functools.cache
def template(name: str) -> Template:
    """A compiled template, loaded once per process (get_template checks the file's mtime on every call)."""
    return environment().get_template(name)


def render(name: str, **context: Any) -> str:
    return template(name).render(**context)


WORDS_TO_TOKENS = 1.4     # English words -> tokens, with a little room for markup
JSON_TOKENS_PER_EXAMPLE = 60   # the id, keys, quotes and escapes around one example
OUTPUT_MARGIN = 1.3       # models overrun the upper word bound; a reply cut short loses its last example
FAITHFUL_SCALE = (1, 5)     # the judge's faithfulness rating (agent.audit.grounding.FAITHFUL_MIN is on it)


def output_budget(plan: Plan, specs: list[Spec]) -> int:
    """max_tokens for a call, sized from its specs (examples x their word ranges, plus JSON framing), so a
    slow server is never asked for 8,000 tokens to write five short answers. generation.max_output_tokens,
    when set, is a cap."""
    return _budget(plan, sum(_spec_tokens(plan, s.labels) for s in specs))


def _label_sizes(plan: Plan, labels: dict[str, str]) -> list[tuple[int | None, float | None]]:
    """Per label, (max_words, the middle of its turn range), or Nones where it declares none."""
    sizes: list[tuple[int | None, float | None]] = []
    for d, c in labels.items():
        cat = plan.dimensions[d].category(c) if d in plan.dimensions else None
        if cat is None:
            sizes.append((None, None))
            continue
        # the middle of the declared range (2+ turns: 2.5): each user turn is answered
        mid = (cat.min_turns + (cat.max_turns or cat.min_turns + 1)) / 2 if cat.min_turns is not None else None
        sizes.append((cat.max_words, mid))
    return sizes


def _spec_tokens(plan: Plan, labels: dict[str, str],
                 sizes: list[tuple[int | None, float | None]] | None = None) -> float:
    """The output tokens one spec may take (before the margin). sizes: _label_sizes(plan, labels)."""
    words, turns = 0.0, 1.0
    for max_words, mid in _label_sizes(plan, labels) if sizes is None else sizes:
        if max_words:
            words += max_words
        if mid is not None:
            turns = max(turns, mid)
    words = (words or 400) * turns   # a plan without word ranges: a medium answer
    if plan.record_shape == "preference":
        words *= 2         # chosen and rejected
    return words * WORDS_TO_TOKENS + JSON_TOKENS_PER_EXAMPLE


def _budget(plan: Plan, total: float) -> int:
    budget = int(total * OUTPUT_MARGIN) + 50
    cap = plan.generation.max_output_tokens
    return max(256, min(budget, cap) if cap else budget)


def word_ranges(plan: Plan) -> dict[str, dict[str, str]]:
    """dimension -> category -> its declared range ('50-150 words', '2+ turns'), for the categories that have one."""
    out: dict[str, dict[str, str]] = {}
    for d, dim in plan.dimensions.items():
        for c in dim.categories:
            text = c.range_text("words") or c.range_text("turns")
            if text:
                out.setdefault(d, {})[c.name] = text
    return out


def spec_lines(plan: Plan, specs: list[Spec], words: dict[str, dict[str, str]] | None = None,
               parts: dict[tuple[str, str], str] | None = None) -> list[str]:
    """One line per spec: '[id] topic: ...; question_type=factual; response_length=short (50-150 words); ...'.
    words: word_ranges(plan), when the caller has it already; parts: label_parts(plan, words), each label's
    part made once per plan (PlanPrompts: a call's lines are then lookups; a label outside it is made afresh)."""
    words = word_ranges(plan) if words is None else words
    lines = []
    for s in specs:
        line = [f"topic: {s.topic}"] if s.topic else []
        if s.passage:
            line.append(f"doc: {s.passage}")
        for dim, cat in s.labels.items():
            part = parts.get((dim, cat)) if parts else None
            line.append(_label_part(words, dim, cat) if part is None else part)
        lines.append(f"[{s.id}] " + "; ".join(line))
    return lines


def _label_part(words: dict[str, dict[str, str]], dim: str, cat: str) -> str:
    rng = words.get(dim, {}).get(cat)
    return f"{dim}={cat}" + (f" ({rng})" if rng else "")


def label_parts(plan: Plan, words: dict[str, dict[str, str]]) -> dict[tuple[str, str], str]:
    """(dimension, category) -> its part of a spec line, "response_length=short (50-150 words)"."""
    return {(d, c.name): _label_part(words, d, c.name) for d, dim in plan.dimensions.items() for c in dim.categories}


SPEC_LINE = re.compile(r"^\[(?P<id>[^\]]+)\] (?P<body>.*)$", re.M)


def parse_spec_lines(user: str) -> list[Spec]:
    """The inverse of spec_lines: read the requested specs back from a rendered batch prompt."""
    specs = []
    for m in SPEC_LINE.finditer(user):
        labels: dict[str, str] = {}
        topic = passage = ""
        for part in m.group("body").split("; "):
            if part.startswith("topic: "):
                topic = part[len("topic: "):]
            elif part.startswith("doc: "):
                passage = part[len("doc: "):]
            elif "=" in part:
                dim, _, rest = part.partition("=")
                labels[dim] = rest.split(" (", 1)[0]
        specs.append(Spec(id=m.group("id"), labels=labels, topic=topic, passage=passage,
                          document=documents(user).get(passage, "")))
    return specs


DOC_BLOCK = re.compile(r'^<doc id="(?P<id>[^"]+)">\n(?P<text>.*?)\n</doc>$', re.M | re.S)


def documents(user: str) -> dict[str, str]:
    """The documentation passages a rendered batch prompt shows, by id."""
    return {m.group("id"): m.group("text") for m in DOC_BLOCK.finditer(user)}


@functools.lru_cache(maxsize=8)
def _system(plan_json: str, shape: str) -> str:
    plan = Plan.model_validate_json(plan_json)
    return render("system.j2", plan=plan, shape=shape, ranges=word_ranges(plan))


def system_prompt(plan: Plan) -> str:
    return _system(plan.model_dump_json(), plan.record_shape)


def build_request(plan: Plan, specs: list[Spec], **kwargs: Any) -> Request:
    """One batch request (PlanPrompts.request). An engine keeps its PlanPrompts: this builds one afresh."""
    return PlanPrompts(plan).request(specs, **kwargs)


class PlanPrompts:
    """What every batch request of one plan shares, worked out once: the system prompt, the word ranges of
    the spec lines, each label's output size. A run's plan does not change while it runs; a changed
    plan needs a new PlanPrompts."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.system = system_prompt(plan)
        self.words = word_ranges(plan)
        # (dimension, category) -> its _label_sizes entry: label sets rarely repeat, single labels always do
        self._sizes = {(d, c.name): _label_sizes(plan, {d: c.name})[0]
                       for d, dim in plan.dimensions.items() for c in dim.categories}
        self._parts = label_parts(plan, self.words)

    def output_budget(self, specs: Sequence[Spec]) -> int:
        """output_budget(plan, specs), each label's sizes looked up once per plan."""
        none = (None, None)
        return _budget(self.plan, sum(
            _spec_tokens(self.plan, s.labels, [self._sizes.get(item, none) for item in s.labels.items()])
            for s in specs))

    def request(self, specs: list[Spec], *, avoid: Sequence[str] = (), steering: dict | None = None,
                temperature: float | None = None, system: str | None = None,
                references: Sequence[tuple[str, str]] = (), avoid_cues: bool = False,
                seed: int | None = None) -> Request:
        """avoid_cues: the avoid list holds short topic cues, not whole questions (agent/avoid.py); seed: the
        call's own (the plan's when None)."""
        plan = self.plan
        steering = steering or {}
        # grounding: each passage once, however many specs use it; references: real examples, style only
        docs = {s.passage: s.document for s in specs if s.passage}
        user = render("batch.j2", specs=specs, spec_lines=spec_lines(plan, specs, self.words, self._parts), avoid=list(avoid),
                      avoid_cues=avoid_cues, steering={"instructions": steering.get("instructions", [])},
                      documents=docs, references=list(references))
        g = plan.generation
        return Request(
            system=system or self.system,
            user=user,
            schema=reply_schema(plan.record_shape, [s.id for s in specs]),
            model=g.model,
            temperature=g.temperature if temperature is None else temperature,
            max_tokens=self.output_budget(specs),
            timeout=g.timeout_seconds,
            seed=g.seed if seed is None else seed,
            specs=tuple(specs),
        )


def reask_request(original: Request, reply_text: str, errors: list[str]) -> Request:
    """A new request (the original is never mutated) that quotes what was wrong with the reply."""
    note = render("reask.j2", errors=errors[:10], specs=original.specs)
    quoted = reply_text[:2000]
    user = f"{original.user}\n\nYour previous reply was:\n{quoted}\n\n{note}"
    return Request(**{**original.__dict__, "user": user, "purpose": "reask"})


def sample_request(plan: Plan) -> Request:
    """A representative request (first categories of every dimension) for estimates and template tests."""
    labels = {d: next(c.name for c in dim.categories if (c.quota or 0) > 0 or c.share > 0)
              for d, dim in plan.dimensions.items()}
    from agent.sources import sample_grounding

    document, references = sample_grounding(plan)  # a grounded plan's prompts carry passages and references
    specs = [Spec(id=f"s{i}", labels=labels, topic="example topic", system_prompt=plan.system_prompts[0],
                  passage=f"doc-{i}" if document else "", document=document)
             for i in range(plan.generation.examples_per_call)]
    return build_request(plan, specs, avoid=["an earlier question"] * 20, references=references)


def judged_dimensions(plan: Plan) -> list[str]:
    """What an LLM judge classifies: the dimensions that cannot be measured cheaply."""
    return [d for d, dim in plan.dimensions.items() if dim.measure == "trusted" and d != "kto_label"]


def judge_request(plan: Plan, specs: list[Spec], texts: dict[str, tuple[str, str]]) -> Request:
    """One call that classifies many examples. texts: spec id -> (user message, assistant reply)."""
    dims = judged_dimensions(plan)
    examples = [{"id": s.id, "user": texts[s.id][0][:2000], "response": texts[s.id][1][:3000],
                 "documentation": s.document[:3000]} for s in specs if s.id in texts]
    item: dict[str, Any] = {"type": "object", "additionalProperties": False, "required": ["id", *dims],
            "properties": {"id": {"type": "string"},
                           **{d: {"type": "string", "enum": [c.name for c in plan.dimensions[d].categories]}
                              for d in dims}}}
    faithful = any(s.document for s in specs)   # grounded: the judge also rates faithfulness to the passage
    if faithful:
        item["properties"]["faithful"] = {"type": "integer", "minimum": FAITHFUL_SCALE[0], "maximum": FAITHFUL_SCALE[1]}
        item["required"].append("faithful")
    schema = {"type": "object", "additionalProperties": False, "required": ["labels"],
              "properties": {"labels": {"type": "array", "items": item}}}
    g = plan.generation
    return Request(system="You classify synthetic training examples exactly and consistently. Reply with JSON only.",
                   user=render("judge.j2", plan=plan, dims=dims, examples=examples, faithful=faithful,
                               scale=FAITHFUL_SCALE), schema=schema,
                   schema_name="labels", model=g.model, temperature=0.0, max_tokens=2000, timeout=g.timeout_seconds,
                   seed=g.seed, specs=tuple(s for s in specs if s.id in texts), purpose="judge")


TOPIC_WORDS = "3-8"   # a topic is a noun phrase, not a question: the brainstorm prompt asks for this length


def brainstorm_request(plan: Plan, category, count: int) -> Request:
    schema = {"type": "object", "additionalProperties": False, "required": ["topics"],
              "properties": {"topics": {"type": "array", "items": {"type": "string"}}}}
    g = plan.generation
    return Request(system="You help plan diverse synthetic datasets. Reply with JSON only.",
                   user=render("brainstorm.j2", plan=plan, category=category, count=count, topic_words=TOPIC_WORDS), schema=schema,
                   schema_name="topics", model=g.model, temperature=1.0, max_tokens=2000, timeout=g.timeout_seconds,
                   seed=g.seed, purpose="brainstorm")
