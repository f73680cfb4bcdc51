"""Production feedback logs -> KTO rows {"prompt", "completion", "label"} (seed 002: "production thumbs up/down
works great"; aim for ~50% desirable / ~50% undesirable; each label unambiguous).

A log row holds a prompt, a completion and a rating, under any of the usual names (FIELDS), or a one-turn
chat ({"messages": ...} / {"conversations": ...}) with the rating beside it. Ratings come in three kinds:
    bool     true / false
    thumbs   "up"/"down", "thumbs_up"/"thumbs_down", "👍"/"👎", "good"/"bad", "like"/"dislike", "positive"/
             "negative", "yes"/"no", and the numbers 1 / 0 or 1 / -1 when a file holds no other numbers
    stars    any other numbers (1-5 stars): at or above `threshold` (4) desirable, at or below `bad_max` (2)
             undesirable, in between ambiguous and left out (a label should be unambiguous)
Then: the same prompt and completion rated more than once count once, by majority (a tie is a conflict and
left out); and, with balance=True, the larger side is downsampled (seeded, file order kept) to the size of
the smaller, so the labels are exactly 50/50. With balance=False the imbalance is reported instead.
Logs are held in memory (the dedup and the balancing need all of them).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.dataset.io import Line
from agent.errors import InputError
from agent.export import formats

FIELDS = {
    "prompt": ("prompt", "input", "question", "query", "instruction", "user", "user_message", "request"),
    "completion": ("completion", "response", "output", "answer", "reply", "assistant", "assistant_message",
                   "model_response"),
    "rating": ("label", "rating", "thumbs", "feedback", "stars", "score", "vote", "liked", "thumbs_up",
               "is_good", "helpful", "desirable"),
}
THUMBS = {
    True: {"up", "thumbs_up", "thumbsup", "thumbs up", "👍", "+1", "good", "like", "liked", "positive", "yes",
           "true", "desirable", "helpful"},
    False: {"down", "thumbs_down", "thumbsdown", "thumbs down", "👎", "-1", "bad", "dislike", "disliked",
            "negative", "no", "false", "undesirable", "unhelpful"},
}
KINDS = ("auto", "bool", "thumbs", "stars")


@dataclass
class FeedbackReport:
    """What kto_from_feedback did, row counts by outcome."""

    rows: int = 0
    kind: str = ""                       # the rating kind used
    unreadable: list[tuple[int, str]] = field(default_factory=list)   # (line, why): first 1000
    skipped: Counter[str] = field(default_factory=Counter)          # reason -> rows
    duplicates: int = 0                  # repeated ratings of the same prompt + completion, merged
    conflicts: int = 0                   # prompt + completion pairs rated both ways equally: left out
    before: Counter[bool] = field(default_factory=Counter)          # labels after dedup, before balancing
    downsampled: int = 0                 # rows removed from the larger side
    labels: Counter[bool] = field(default_factory=Counter)          # labels written
    balanced: bool = True

    @property
    def share(self) -> float:
        total = self.labels[True] + self.labels[False]
        return self.labels[True] / total if total else 0.0

    def summary(self) -> list[str]:
        out = [f"feedback rows: {self.rows:,} read ({self.kind} ratings)"]
        if self.skipped:
            out.append("left out: " + ", ".join(f"{n:,} {why}" for why, n in self.skipped.most_common()))
        if self.duplicates or self.conflicts:
            out.append(f"dedup: {self.duplicates:,} repeated ratings merged by majority, {self.conflicts:,} "
                       f"prompt+completion pairs rated both ways equally left out")
        out.append(f"labels: {self.before[True]:,} desirable, {self.before[False]:,} undesirable after dedup")
        if self.downsampled:
            side = "desirable" if self.before[True] > self.before[False] else "undesirable"
            out.append(f"balanced to 50/50: {self.downsampled:,} {side} rows left out at random (seeded)")
        total = self.labels[True] + self.labels[False]
        note = ""
        if total and not 0.4 <= self.share <= 0.6:
            note = " IMBALANCED: seed 002 wants ~50/50 (" + (
                "only one label present: add rows of the other" if self.balanced
                else "drop --no-balance to downsample the larger side") + ")"
        out.append(f"written: {total:,} kto rows, {self.labels[True]:,} desirable ({self.share:.0%}), "
                   f"{self.labels[False]:,} undesirable{note}")
        return out


def _field(row: dict[str, Any], role: str, given: str | None) -> str | None:
    if given is not None:
        return given if given in row else None
    return next((name for name in FIELDS[role] if name in row), None)


def _pair(row: dict[str, Any], prompt_field: str | None, completion_field: str | None) -> tuple[str, str] | str:
    """(prompt, completion), or why the row has none."""
    for fmt in ("openai", "sharegpt"):
        if formats.detect(row) == fmt and prompt_field is None:
            if formats.structure_errors(row, fmt):
                return f"not a {fmt} conversation"
            turns = [m for m in formats.to_canonical(row, fmt)["messages"] if m["role"] != "system"]
            if [m["role"] for m in turns] != ["user", "assistant"]:
                return "not one user turn and one reply"
            return turns[0]["content"], turns[1]["content"]
    p, c = _field(row, "prompt", prompt_field), _field(row, "completion", completion_field)
    if p is None or c is None:
        return "no prompt or completion field"
    if not isinstance(row[p], str) or not isinstance(row[c], str):
        return "prompt or completion is not text"
    if not row[p].strip() or not row[c].strip():
        return "empty prompt or completion"
    return row[p], row[c]


def _kind(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "bool"
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(values) and not set(numbers) <= {-1, 0, 1}:
        return "stars"
    return "thumbs"


def _label(value: Any, kind: str, threshold: float, bad_max: float) -> bool | str:
    """True / False, or why the rating gives no clear label."""
    if kind == "bool":
        return value if isinstance(value, bool) else f"rating {value!r} is not true/false"
    if kind == "stars":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "rating is not a number of stars"
        if value >= threshold:
            return True
        if value <= bad_max:
            return False
        return f"ambiguous star ratings (between {bad_max:g} and {threshold:g})"
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return True if value == 1 else False if value in (0, -1) else f"thumbs rating {value!r} is not 1, 0 or -1"
    if isinstance(value, str):
        v = value.strip().lower()
        for label in (True, False):
            if v in THUMBS[label]:
                return label
    return "unrecognised thumbs rating"


def kto_from_feedback(lines: Iterable[Line], *, kind: str = "auto", threshold: float = 4, bad_max: float = 2,
                      balance: bool = True, seed: int = 0, prompt_field: str | None = None,
                      completion_field: str | None = None, rating_field: str | None = None
                      ) -> tuple[list[dict[str, Any]], FeedbackReport]:
    """KTO rows from feedback log rows, and what happened to each (see the module docstring)."""
    if kind not in KINDS:
        raise InputError(f"rating kind {kind!r}: choose one of {', '.join(KINDS)}")
    if bad_max >= threshold:
        raise InputError(f"stars: undesirable at most {bad_max:g} must be below the desirable threshold {threshold:g}")
    report = FeedbackReport()
    rated: list[tuple[int, str, str, Any]] = []
    for line in lines:
        report.rows += 1
        why = None
        if line.error is not None:
            why = "unreadable lines (bad JSON)"
        elif not isinstance(line.obj, dict):
            why = "rows that are not JSON objects"
        else:
            pair = _pair(line.obj, prompt_field, completion_field)
            name = _field(line.obj, "rating", rating_field)
            if isinstance(pair, str):
                why = f"rows with {pair}" if pair.startswith("no ") else f"rows: {pair}"
            elif name is None:
                why = "rows with no rating field"
            else:
                rated.append((line.number, pair[0], pair[1], line.obj[name]))
        if why:
            report.skipped[why] += 1
            if len(report.unreadable) < 1000:
                report.unreadable.append((line.number, why))
    report.kind = _kind([r[3] for r in rated]) if kind == "auto" else kind
    votes: dict[tuple[str, str], Counter[bool]] = {}
    first: dict[tuple[str, str], int] = {}
    for number, prompt, completion, value in rated:
        label = _label(value, report.kind, threshold, bad_max)
        if isinstance(label, str):
            report.skipped[label] += 1
            continue
        key = (" ".join(prompt.split()), " ".join(completion.split()))
        if key in votes:
            report.duplicates += 1
        else:
            votes[key], first[key] = Counter(), number
        votes[key][label] += 1
    rows: list[tuple[int, dict[str, Any]]] = []
    originals = {(" ".join(p.split()), " ".join(c.split())): (p, c) for _, p, c, _ in reversed(rated)}
    for key, count in votes.items():
        if count[True] == count[False]:
            report.conflicts += 1
            continue
        label = count[True] > count[False]
        prompt, completion = originals[key]
        rows.append((first[key], {"prompt": prompt, "completion": completion, "label": label}))
        report.before[label] += 1
    report.balanced = balance
    if balance and report.before[True] and report.before[False]:
        larger = report.before[True] > report.before[False]
        extra = abs(report.before[True] - report.before[False])
        side = [i for i, (_, r) in enumerate(rows) if r["label"] is larger]
        drop = set(random.Random(seed).sample(side, extra))
        rows = [r for i, r in enumerate(rows) if i not in drop]
        report.downsampled = extra
    out = [r for _, r in sorted(rows, key=lambda x: x[0])]
    report.labels = Counter(r["label"] for r in out)
    return out, report
