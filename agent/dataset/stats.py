"""The diversity report the generator keeps for its own runs (agent.audit.diversity, seed 000's "Quality Metrics
to Track"), for any dataset file: TTR, MATTR, distinct-n, 3-gram overlap, verbs, topics, lengths, against the
seed's thresholds, plus the counts a person looks at first (turns, system prompts, kto labels, seed 002's
length bounds).

Each readable row becomes the tracker's example {"user": first user message or prompt, "response": last reply,
chosen reply or completion}; rows that are not records of the format are counted and skipped. Rows stream
into DiversityTracker; lengths are kept as integers for the percentiles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.audit.diversity import THRESHOLDS, DiversityTracker, Metrics, required
from agent.dataset.clean import Bounds, text_fields
from agent.dataset.io import Line
from agent.export import formats
from agent.export.formats import SHAPE_OF
from agent.records import response_text, user_text, user_turns

TOP = 15


@dataclass
class DatasetStats:
    """Everything `datagen stats` shows; to_dict() is the --json output."""

    format: str
    rows: int = 0
    readable: int = 0
    metrics: Metrics = field(default_factory=Metrics)
    gates: list[dict[str, Any]] = field(default_factory=list)     # seed 000's thresholds, met or not
    top_topics: list[tuple[str, int]] = field(default_factory=list)
    common_phrases: list[str] = field(default_factory=list)
    lengths: dict[str, dict[str, float]] = field(default_factory=dict)   # instruction/output chars: min, p50, ...
    outside_bounds: dict[str, int] = field(default_factory=dict)         # seed 002's bounds: texts outside
    turns: dict[int, int] = field(default_factory=dict)                  # user turns per row -> rows
    system_prompts: int = 0
    distinct_system_prompts: int = 0
    labels: dict[str, int] = field(default_factory=dict)                 # kto

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "rows": self.rows, "readable": self.readable,
                "metrics": self.metrics.to_dict(), "gates": self.gates,
                "top_topics": [{"topic": t, "rows": n} for t, n in self.top_topics],
                "common_phrases": self.common_phrases, "lengths": self.lengths,
                "outside_bounds": self.outside_bounds, "turns": {str(k): v for k, v in sorted(self.turns.items())},
                "system_prompts": self.system_prompts, "distinct_system_prompts": self.distinct_system_prompts,
                "labels": self.labels}

    def lines(self) -> list[str]:
        m = self.metrics
        out = [f"rows: {self.rows:,} ({self.format}), {self.readable:,} readable"
               + (f", {self.rows - self.readable:,} skipped (not {self.format} records)" if self.rows > self.readable else "")]
        out.append("diversity (seed 000):")
        for g in self.gates:
            side = ">=" if g["kind"] == "at_least" else "<"
            out.append(f"  {g['metric']:<15} {_num(g['value']):>10}  need {side} {_num(g['bound'])}  "
                       f"{'PASS' if g['ok'] else 'FAIL'}  ({g['seed']})")
        out.append(f"  mattr_50 {m.mattr_50:.3f}, corpus TTR {m.corpus_ttr:.3f}, distinct-2 {m.distinct_2:.3f}, "
                   f"distinct-3 {m.distinct_3:.3f}, rows sharing > 30% of their 3-grams with another "
                   f"{m.share_nn_over_30:.1%}")
        out.append(f"  response words: mean {m.response_words_mean:.0f}, std {m.response_words_std:.0f} "
                   f"(cv {m.response_words_cv:.2f}); histogram "
                   + ", ".join(f"{k}: {v:,}" for k, v in m.response_length_histogram.items()))
        for kind, s in self.lengths.items():
            out.append(f"{kind} chars: min {s['min']:.0f}, median {s['p50']:.0f}, p95 {s['p95']:.0f}, "
                       f"max {s['max']:.0f}; outside seed 002's {s['lo']:.0f}-{s['hi']:.0f}: "
                       f"{self.outside_bounds.get(kind, 0):,}")
        if self.turns:
            out.append("user turns per row: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(self.turns.items())))
        if SHAPE_OF.get(self.format) == "chat":
            out.append(f"system prompts: {self.system_prompts:,} rows have one, {self.distinct_system_prompts:,} distinct")
        if self.labels:
            total = sum(self.labels.values())
            out.append(f"kto labels: {self.labels.get('true', 0):,} desirable "
                       f"({self.labels.get('true', 0) / total:.0%}), {self.labels.get('false', 0):,} undesirable "
                       f"(seed 002: ~50/50)")
        if self.top_topics:
            out.append("top topics: " + ", ".join(f"{t} ({n})" for t, n in self.top_topics))
        if self.common_phrases:
            out.append("most shared 3-grams: " + ", ".join(self.common_phrases))
        return out


def _num(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.3f}"


def dataset_stats(lines: Iterable[Line], fmt: str, bounds: Bounds | None = None) -> DatasetStats:
    """Stream the rows into the diversity tracker and the counters; see the module docstring."""
    bounds = bounds or Bounds()
    result = DatasetStats(fmt)
    chars: dict[str, list[int]] = {"instruction": [], "output": []}
    systems: Counter[str] = Counter()
    turns: Counter[int] = Counter()
    labels: Counter[str] = Counter()

    def examples() -> Iterator[dict[str, Any]]:
        for line in lines:
            result.rows += 1
            if line.error is not None or formats.structure_errors(line.obj, fmt):
                continue
            result.readable += 1
            record = formats.to_canonical(line.obj, fmt)
            for _, kind, text in text_fields(line.obj, fmt, record):
                chars[kind].append(len(text.strip()))
            turns[user_turns(record)] += 1
            if "messages" in record:
                system = next((m["content"] for m in record["messages"] if m["role"] == "system"), "")
                if system.strip():
                    systems[system] += 1
            if "label" in record:
                labels[str(record["label"]).lower()] += 1
            yield {"user": user_text(record), "response": response_text(record), "labels": {}}

    tracker = DiversityTracker.from_examples(examples())
    result.metrics = tracker.metrics()
    n = result.readable
    for name, t in THRESHOLDS.items():
        value = float(getattr(result.metrics, name))
        need = required(name, n, n)
        ok = value >= need if t.kind == "at_least" else value < need
        result.gates.append({"metric": name, "value": value, "bound": need, "kind": t.kind, "ok": ok, "seed": t.seed})
    result.top_topics = tracker.topic_counts().most_common(TOP)
    result.common_phrases = tracker.common_phrases(10) if n else []
    for kind, values in chars.items():
        if not values:
            continue
        lo, hi = bounds.instruction if kind == "instruction" else bounds.output
        a = np.asarray(values)
        result.lengths[kind] = {"min": float(a.min()), "p50": float(np.median(a)), "p95": float(np.percentile(a, 95)),
                                "max": float(a.max()), "mean": float(a.mean()), "lo": lo, "hi": hi}
        result.outside_bounds[kind] = int(((a < lo) | (a > hi)).sum())
    result.turns = dict(turns)
    result.system_prompts = sum(systems.values())
    result.distinct_system_prompts = len(systems)
    result.labels = dict(labels)
    return result
