"""What report.html shows of the examples themselves: samples per category, rejected examples with their
reasons, the closest rejected near-duplicate pairs, and word counts per category against its target range.

Reads the ledger's tables directly (read-only SQL) so the page can pick a few rows per category without
loading the dataset: samples are ordered by a fixed multiplicative hash of the id (Knuth's 2654435761),
so the same export shows the same examples and a category's samples are spread over the whole run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from agent.audit.labels import word_count
from agent.ledger import Ledger
from agent.plan import Plan
from agent.records import response_text, user_text

PER_CATEGORY = 2
PER_REASON = 3
MAX_REJECTED = 40
NEAR_PAIRS = 10
EXCERPT = 1500          # characters of one message shown on the page
RATIO = re.compile(r"ratio ([0-9.]+) with accepted example (\S+)")
_ORDER = "(e.id * 2654435761) % 4294967296"


@dataclass
class Turn:
    role: str
    text: str


@dataclass
class Sample:
    id: int
    spec_id: str
    topic: str
    turns: list[Turn]
    note: str = ""          # a rejection's reason and detail


@dataclass
class LengthRow:
    dimension: str
    category: str
    low: int | None
    high: int | None
    words: list[int] = field(default_factory=list)

    @property
    def inside(self) -> int:
        return sum(1 for w in self.words if (self.low is None or w >= self.low) and (self.high is None or w <= self.high))


def turns_of(record: dict[str, Any] | None) -> list[Turn]:
    """The record as role/text turns for display (long messages cut at EXCERPT characters)."""
    if not record:
        return []

    def cut(t: str) -> str:
        return t if len(t) <= EXCERPT else t[:EXCERPT] + f" … [{len(t) - EXCERPT:,} more characters]"

    if "messages" in record:
        return [Turn(m.get("role", "?"), cut(str(m.get("content", "")))) for m in record["messages"]]
    out = [Turn("system", cut(record["system"]))] if record.get("system") else []
    out.append(Turn("user", cut(record.get("prompt", ""))))
    if "chosen" in record:
        out += [Turn("chosen", cut(record["chosen"])), Turn("rejected", cut(record["rejected"]))]
    elif "completion" in record:
        out.append(Turn(f"completion ({'desirable' if record.get('label') else 'undesirable'})",
                        cut(record["completion"])))
    return out


def examples_by_category(plan: Plan, ledger: Ledger, per: int = PER_CATEGORY) -> dict[str, dict[str, list[Sample]]]:
    out: dict[str, dict[str, list[Sample]]] = {}
    for dim, d in plan.dimensions.items():
        for cat in d.categories:
            rows = ledger.db.execute(
                f"SELECT e.id, e.spec_id, e.topic, e.record FROM labels l JOIN examples e ON e.id = l.example_id "
                f"WHERE l.dimension = ? AND l.category = ? AND e.status = 'accepted' ORDER BY {_ORDER} LIMIT ?",
                (dim, cat.name, per)).fetchall()
            out.setdefault(dim, {})[cat.name] = [Sample(i, s, t or "", turns_of(json.loads(r))) for i, s, t, r in rows]
    return out


def rejected_examples(ledger: Ledger, per: int = PER_REASON, cap: int = MAX_REJECTED) -> list[Sample]:
    reasons = [r for (r,) in ledger.db.execute(
        "SELECT reason FROM examples WHERE status = 'rejected' GROUP BY reason ORDER BY COUNT(*) DESC")]
    out: list[Sample] = []
    for reason in reasons:
        rows = ledger.db.execute(
            f"SELECT e.id, e.spec_id, e.topic, e.record, e.detail, e.user_text FROM examples e "
            f"WHERE e.status = 'rejected' AND e.reason IS ? ORDER BY {_ORDER} LIMIT ?", (reason, per)).fetchall()
        for i, s, t, r, detail, text in rows:
            turns = turns_of(json.loads(r)) if r else [Turn("user", text or "")]
            out.append(Sample(i, s, t or "", turns, f"{reason or 'unknown'}: {detail or ''}".rstrip(": ")))
    return out[:cap]


def near_duplicate_pairs(ledger: Ledger, n: int = NEAR_PAIRS) -> list[tuple[float, Sample, Sample]]:
    """The rejected near-duplicates with the highest ratio, each beside the accepted example it matched."""
    found = []
    for i, s, detail, r, text in ledger.db.execute(
            "SELECT id, spec_id, detail, record, user_text FROM examples WHERE status = 'rejected' "
            "AND reason = 'near_duplicate'"):
        m = RATIO.search(detail or "")
        if m:
            found.append((float(m.group(1)), i, s, m.group(2), r, text))
    found.sort(key=lambda f: (-f[0], f[1]))
    out = []
    for ratio, i, s, other, r, text in found[:n]:
        row = ledger.db.execute("SELECT id, spec_id, topic, record FROM examples WHERE spec_id = ? "
                                "AND status = 'accepted' LIMIT 1", (other,)).fetchone()
        rec = json.loads(r) if r else None
        rejected = Sample(i, s, "", [Turn("user", user_text(rec) if rec else text or "")])
        kept = Sample(row[0], row[1], row[2] or "", [Turn("user", user_text(json.loads(row[3])))]) if row else \
            Sample(0, other, "", [Turn("user", "(not in the ledger)")])
        out.append((ratio, rejected, kept))
    return out


def lengths(plan: Plan, ledger: Ledger) -> list[LengthRow]:
    """Words per accepted example for each category of a measured-length dimension, with its target range."""
    measured = {d: dim for d, dim in plan.dimensions.items() if dim.measure in ("response_words", "input_words")}
    rows = {(d, c.name): LengthRow(d, c.name, c.min_words, c.max_words)
            for d, dim in measured.items() for c in dim.categories}
    if not rows:
        return []
    for r in ledger.iter_accepted():
        labels = r["audited"] or r["requested"]
        for d, dim in measured.items():
            row = rows.get((d, labels.get(d, "")))
            if row is not None:
                text = response_text(r["record"]) if dim.measure == "response_words" else user_text(r["record"])
                row.words.append(word_count(text))
    return list(rows.values())


def collect(plan: Plan, ledger: Ledger) -> dict[str, Any]:
    return {"examples": examples_by_category(plan, ledger), "rejected": rejected_examples(ledger),
            "near_pairs": near_duplicate_pairs(ledger), "lengths": lengths(plan, ledger)}
