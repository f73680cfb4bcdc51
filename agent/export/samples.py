"""What report.html shows of the examples themselves: samples per category, rejected examples with their
reasons, the closest rejected near-duplicate pairs, and word counts per category against its target range.

Samples are ordered by a fixed multiplicative hash of the id (Knuth's 2654435761), so the same export shows
the same examples and a category's samples are spread over the whole run. What needs every accepted example
(the samples per category and the word counts) is gathered by Tally during the export's one pass over them
(pipeline._scan); the rejected rows are read with SQL. Memory: the word counts (a few bytes per example)
and PER_CATEGORY ids per category.
"""

from __future__ import annotations

import json
import re
from collections import Counter
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


def order_key(example_id: int) -> int:
    """_ORDER in Python. An odd multiplier is one-to-one modulo 2**32: no two ids below it share a key."""
    return (example_id * 2654435761) % 4294967296


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
    top = found[:n]
    kept: dict[str, tuple] = {}   # spec id -> its accepted row (the first, should a spec have two)
    others = sorted({f[3] for f in top})
    if others:   # one scan for all of them (spec_id has no index: a lookup each would scan the table each)
        for row in ledger.db.execute(f"SELECT id, spec_id, topic, record FROM examples WHERE status = 'accepted' "
                                     f"AND spec_id IN ({', '.join('?' * len(others))}) ORDER BY id", others):
            kept.setdefault(row[1], row)
    out = []
    for ratio, i, s, other, r, text in top:
        row = kept.get(other)
        rec = json.loads(r) if r else None
        rejected = Sample(i, s, "", [Turn("user", user_text(rec) if rec else text or "")])
        shown = Sample(row[0], row[1], row[2] or "", [Turn("user", user_text(json.loads(row[3])))]) if row else \
            Sample(0, other, "", [Turn("user", "(not in the ledger)")])
        out.append((ratio, rejected, shown))
    return out


class Tally:
    """The samples per category and the word counts per category, from the accepted rows as they stream by
    (Ledger.iter_accepted's rows, each once): what examples_by_category and lengths read from the ledger."""

    def __init__(self, plan: Plan, per: int = PER_CATEGORY):
        self.plan, self.per = plan, per
        self.measured = {d: dim.measure for d, dim in plan.dimensions.items()
                         if dim.measure in ("response_words", "input_words")}
        self.rows = {(d, c.name): LengthRow(d, c.name, c.min_words, c.max_words)
                     for d in self.measured for c in plan.dimensions[d].categories}
        # dimension -> category -> the `per` smallest (order key, id) so far, ascending (the plan's categories)
        self.picks: dict[str, dict[str, list[tuple[int, int]]]] = {
            d: {c.name: [] for c in dim.categories} for d, dim in plan.dimensions.items()}
        # No row whose order key is at or above `bound` can enter any category's picks: once every category has
        # `per` picks, the largest key they hold (None until then). Most rows then skip the per-label test.
        self.bound: int | None = None
        self.accepted = 0                                         # Ledger.accepted_count()
        self.pairs: Counter[tuple[str, str]] = Counter()           # (dimension, category) -> accepted rows

    @property
    def label_counts(self) -> dict[str, dict[str, int]]:
        """Ledger.label_counts(): the same rows counted (the labels table holds an accepted row's audited
        labels; Ledger.record_call), each dimension and category in the order the rows first showed it."""
        out: dict[str, dict[str, int]] = {}
        for (d, c), n in self.pairs.items():
            out.setdefault(d, {})[c] = n
        return out

    def add(self, row: dict[str, Any]) -> None:
        record = row["record"]
        if self.rows:
            labels = row["audited"] or row["requested"]
            for d, measure in self.measured.items():
                length = self.rows.get((d, labels.get(d, "")))
                if length is not None:
                    length.words.append(word_count(response_text(record) if measure == "response_words"
                                                   else user_text(record)))
        self.accepted += 1
        audited = row["audited"] or {}
        self.pairs.update(audited.items())
        key = order_key(row["id"])
        if self.bound is not None and key >= self.bound:
            return
        changed = False
        for d, c in audited.items():
            picked = self.picks.get(d, {}).get(c)   # None: a label outside the plan's categories
            if picked is not None and (len(picked) < self.per or key < picked[-1][0]):
                picked.append((key, row["id"]))
                picked.sort()
                del picked[self.per:]
                changed = True
        if changed:
            lists = [picked for cats in self.picks.values() for picked in cats.values()]
            if all(len(picked) >= self.per for picked in lists):
                self.bound = max(picked[-1][0] for picked in lists)

    def examples(self, ledger: Ledger) -> dict[str, dict[str, list[Sample]]]:
        """examples_by_category's answer: the picked rows, read by id."""
        wanted = sorted({i for cats in self.picks.values() for picked in cats.values() for _, i in picked})
        found = {}
        for start in range(0, len(wanted), 500):   # SQLite's bound-parameter limit
            chunk = wanted[start:start + 500]
            found.update({r[0]: r for r in ledger.db.execute(
                f"SELECT id, spec_id, topic, record FROM examples WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk)})
        out: dict[str, dict[str, list[Sample]]] = {}
        for d, cats in self.picks.items():
            for c, picked in cats.items():
                rows = [found[i] for _, i in picked]
                out.setdefault(d, {})[c] = [Sample(i, s, t or "", turns_of(json.loads(r))) for i, s, t, r in rows]
        return out

    def lengths(self) -> list[LengthRow]:
        return list(self.rows.values())


def collect(plan: Plan, ledger: Ledger, tally: Tally | None = None) -> dict[str, Any]:
    """report.html's samples; `tally`: the export's, already fed every accepted row (else read here)."""
    if tally is None:
        tally = Tally(plan)
        for r in ledger.iter_accepted():
            tally.add(r)
    return {"examples": tally.examples(ledger), "rejected": rejected_examples(ledger),
            "near_pairs": near_duplicate_pairs(ledger), "lengths": tally.lengths()}
