"""Clean an existing dataset: the auditor's checks, seed 002's length bounds and near-duplicate removal.

A row is dropped, with every reason it has, when
  - it is not a record at all: bad JSON, not UTF-8, a line over the length cap, the wrong keys or types
    (codes bad_json, not_utf8, line_too_long, bad_structure);
  - it breaks a rule the auditor applies to generated data (agent.audit.checks.check_record): roles and
    turns, empty turns, "As an AI", refusals without help, PII, chosen = rejected, a preference pair whose
    lengths differ by more than the plan's ratio (length_bias), a kto label that is not a boolean;
  - a text is outside seed 002's bounds (instruction_too_short/long, output_too_short/long): instructions
    (user turns, alpaca's instruction, prompts) 10-1000 characters, outputs (assistant turns, alpaca's output,
    chosen, rejected, completions) 20-4000, after stripping. These replace check_record's looser 10-10,000;
  - it is a near-duplicate of a row kept before it (near_duplicate): SequenceMatcher ratio above the threshold
    (seed 003: 0.85), autojunk off, on the first user message (chat) or the prompt (dpo; kto within the same
    label, since one prompt with a good and a bad completion is what KTO wants).
Kept rows are written unchanged. KTO balance (seed 002: ~50/50) is reported; with balance on, a seeded random
sample of the larger label's kept rows is left out (kto_balance) so the labels are exactly 50/50.

Memory: rows stream through twice (check, then write); what grows is the near-duplicate part: the first user
message / prompt of every row that passed the checks, and agent.audit.dedup's index of them (exact mode up to
20,000 rows, then MinHash LSH at about 10 KB per row); near_dups="off" skips it for constant memory.
"""

from __future__ import annotations

import logging
import multiprocessing
import random
import resource
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agent.audit.checks import Issue, check_record
from agent.audit.dedup import MODES, dedupe
from agent.dataset.io import Line
from agent.errors import InputError
from agent.export import formats
from agent.export.formats import SHAPE_OF
from agent.plan import Quality
from agent.records import user_text

log = logging.getLogger(__name__)
NEAR_DUP_MODES = (*MODES, "off")
BALANCE_LOW, BALANCE_HIGH = 0.4, 0.6   # seed 002's "~50% desirable / ~50% undesirable", with some slack


@dataclass(frozen=True)
class Bounds:
    """Character bounds per kind of text (seed 002's quality guidelines), inclusive, after stripping."""

    instruction: tuple[int, int] = (10, 1000)
    output: tuple[int, int] = (20, 4000)


@dataclass(frozen=True)
class Rules:
    """Everything clean checks against; the defaults are the seeds' numbers."""

    bounds: Bounds = Bounds()
    threshold: float = 0.85                 # near-duplicates: seed 003
    preference_length_ratio: float = 1.5    # the plan's default bound for chosen vs rejected
    allow_pii: bool = False
    near_dups: str = "auto"                 # auto | exact | fast | off (see agent.audit.dedup)

    def __post_init__(self) -> None:
        if self.near_dups not in NEAR_DUP_MODES:
            raise InputError(f"near-duplicate mode {self.near_dups!r}: choose one of {', '.join(NEAR_DUP_MODES)}")
        if not 0 < self.threshold <= 1:
            raise InputError(f"near-duplicate threshold {self.threshold:g} must be above 0 and at most 1")
        for name, (lo, hi) in (("instruction", self.bounds.instruction), ("output", self.bounds.output)):
            if not 0 <= lo <= hi:
                raise InputError(f"{name} bounds {lo}-{hi}: need 0 <= MIN <= MAX")

    @property
    def quality(self) -> Quality:
        # lengths are checked here with seed 002's bounds, so check_record's own length rule is switched off
        return Quality(dedup_threshold=self.threshold, allow_pii=self.allow_pii,
                       preference_length_ratio=self.preference_length_ratio, min_chars=0, max_chars=10**9)


@dataclass
class Drop:
    """A dropped row: its line and every reason."""

    line: int
    reasons: list[Issue]

    def __str__(self) -> str:
        return f"line {self.line}: " + "; ".join(f"{r.code}: {r.message}" for r in self.reasons)


@dataclass
class CleanReport:
    """What clean did. `drops` holds every dropped row unless a callback took them instead."""

    format: str
    rules: Rules
    rows: int = 0
    kept: int = 0
    dropped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)   # code -> rows dropped with it
    drops: list[Drop] = field(default_factory=list)
    labels: Counter[bool] = field(default_factory=Counter)   # kto: kept rows per label

    @property
    def balance(self) -> float | None:
        """Share of kept kto rows labelled desirable; None for other formats or no rows."""
        total = self.labels[True] + self.labels[False]
        return self.labels[True] / total if SHAPE_OF.get(self.format) == "kto" and total else None

    def summary(self) -> list[str]:
        r = self.rules
        out = [f"rows: {self.rows:,} read ({self.format}), {self.kept:,} kept, {self.dropped:,} dropped"]
        if self.reasons:
            out.append("dropped by reason (a row may have several): "
                       + ", ".join(f"{c} {n:,}" for c, n in self.reasons.most_common()))
        out.append(f"rules: instructions {r.bounds.instruction[0]}-{r.bounds.instruction[1]} chars, outputs "
                   f"{r.bounds.output[0]}-{r.bounds.output[1]} chars (seed 002); preference length ratio <= "
                   f"{r.preference_length_ratio:g}; PII {'allowed' if r.allow_pii else 'dropped'}; near-duplicates "
                   + (f"ratio > {r.threshold:g} ({r.near_dups})" if r.near_dups != "off" else "not checked"))
        share = self.balance
        if share is not None:
            verdict = "balanced" if BALANCE_LOW <= share <= BALANCE_HIGH else \
                "IMBALANCED: seed 002 wants ~50/50; --balance downsamples the larger side"
            out.append(f"kto labels kept: {self.labels[True]:,} desirable ({share:.0%}), "
                       f"{self.labels[False]:,} undesirable: {verdict}")
        return out


def text_fields(obj: dict[str, Any], fmt: str, record: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """(where, kind, text) for each text seed 002's bounds apply to; kind is "instruction" or "output".

    Read from the canonical record (so every format agent.export.formats knows is covered), except alpaca's
    instruction, which the bound applies to without its "input" context."""
    if fmt == "alpaca":
        return [("instruction", "instruction", obj["instruction"]), ("output", "output", obj["output"])]
    record = record if record is not None else formats.to_canonical(obj, fmt)
    shape = SHAPE_OF[fmt]
    if shape == "chat":
        out: list[tuple[str, str, str]] = []
        seen: Counter[str] = Counter()
        for m in record["messages"]:
            if m["role"] in ("user", "assistant"):
                seen[m["role"]] += 1
                out.append((f"{m['role']} turn {seen[m['role']]}", "instruction" if m["role"] == "user" else "output",
                            m["content"]))
        return out
    if shape == "preference":
        return [("prompt", "instruction", record["prompt"]), ("chosen", "output", record["chosen"]),
                ("rejected", "output", record["rejected"])]
    return [("prompt", "instruction", record["prompt"]), ("completion", "output", record["completion"])]


def bound_issues(obj: dict[str, Any], fmt: str, bounds: Bounds, record: dict[str, Any] | None = None) -> list[Issue]:
    issues = []
    for where, kind, text in text_fields(obj, fmt, record):
        lo, hi = bounds.instruction if kind == "instruction" else bounds.output
        n = len(text.strip())
        if n == 0:
            continue    # check_record reports empty turns
        if n < lo:
            issues.append(Issue(f"{kind}_too_short", f"{where} is {n} chars, below seed 002's {lo}-char minimum for {kind}s"))
        elif n > hi:
            issues.append(Issue(f"{kind}_too_long", f"{where} is {n} chars, above seed 002's {hi}-char maximum for {kind}s"))
    return issues


def row_issues(line: Line, fmt: str, rules: Rules, quality: Quality | None = None) -> tuple[list[Issue], dict | None]:
    """Every rule the row breaks (near-duplicates aside), and its canonical record when it has one."""
    line = line.parsed()
    if line.error is not None:
        code, _, message = line.error.partition(": ")
        return [Issue(code, message)], None
    errors = formats.structure_errors(line.obj, fmt)
    if errors:
        return [Issue("bad_structure", f"not a valid {fmt} record: {'; '.join(errors)}")], None
    record = formats.to_canonical(line.obj, fmt)
    issues = check_record(record, SHAPE_OF[fmt], quality or rules.quality)
    return issues + bound_issues(line.obj, fmt, rules.bounds, record), record


@dataclass
class Verdict:
    """Pass 1's answer for one row: its issues, or (when it has none) its near-duplicate key and group."""

    number: int
    issues: list[Issue]
    key: str = ""               # first user message / prompt
    group: bool | None = None   # kto: the label (near-duplicates are looked for within one label)


def verdict(line: Line, fmt: str, rules: Rules, quality: Quality) -> Verdict:
    issues, record = row_issues(line, fmt, rules, quality)
    if issues or record is None:
        return Verdict(line.number, issues)
    return Verdict(line.number, [], user_text(record), record["label"] if SHAPE_OF[fmt] == "kto" else None)


def _check_chunk(fmt: str, rules: Rules, chunk: list[Line]) -> list[Verdict]:
    """Worker process entry: pass 1 for a chunk of rows (JSONL rows arrive unparsed)."""
    quality = rules.quality
    return [verdict(line, fmt, rules, quality) for line in chunk]


class Cleaner:
    """Two passes: select() checks every row (in worker processes when jobs > 1) and finds near-duplicates among
    the rows that pass; the caller then writes the rows whose line is in the returned set.

    Near-duplicates are found in one batch (agent.audit.dedup.dedupe: keep-first in file order) after the
    checks, which is several times faster than one query per row; memory is the passing rows' keys only.
    Drops from the checks reach on_drop in line order as they are found; near-duplicate drops are in
    `near_dup_drops` at the end, in line order (report.drops holds both, sorted, when no on_drop is given).
    """

    def __init__(self, fmt: str, rules: Rules | None = None, on_drop: Callable[[Drop], None] | None = None,
                 jobs: int = 1):
        if fmt not in formats.FORMATS:
            raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(formats.FORMATS)}")
        self.fmt = fmt
        self.rules = rules or Rules()
        self.report = CleanReport(fmt, self.rules)
        self.on_drop = on_drop
        self.jobs = max(1, jobs)
        self.near_dup_drops: list[Drop] = []

    def select(self, lines: Iterable[Line]) -> LineSet:
        """Pass 1 and the near-duplicate batch: the line numbers of the rows to keep."""
        report = self.report
        groups: dict[bool | None, tuple[list[int], list[str]]] = {}
        started, cpu = time.perf_counter(), _cpu()
        kept = LineSet()
        for v in self._verdicts(lines):
            report.rows += 1
            if v.issues:
                self._drop(Drop(v.number, v.issues))
            elif self.rules.near_dups == "off":
                self._keep(kept, v.number, v.group)
            else:
                numbers, keys = groups.setdefault(v.group, ([], []))
                numbers.append(v.number)
                keys.append(v.key)
        checked, checked_cpu = time.perf_counter(), _cpu()
        log.debug("checks: %d rows in %.1f s, %.1f CPU s (%d processes)", report.rows, checked - started,
                  checked_cpu - cpu, self.jobs)
        dups: list[Drop] = []
        for group, (numbers, keys) in groups.items():
            dropped = {i: (j, r) for i, j, r in dedupe(keys, self.rules.threshold, self.rules.near_dups)}
            for i, number in enumerate(numbers):
                if i in dropped:
                    j, r = dropped[i]
                    both = f", both labelled {str(group).lower()}" if group is not None else ""
                    dups.append(Drop(number, [Issue("near_duplicate",
                                                    f"near-duplicate of line {numbers[j]} (ratio {r:.3f}{both})")]))
                else:
                    self._keep(kept, number, group)
        log.debug("near-duplicates: %d rows in %.1f s, %.1f CPU s", sum(len(g[0]) for g in groups.values()),
                  time.perf_counter() - checked, _cpu() - checked_cpu)
        self.near_dup_drops = sorted(dups, key=lambda d: d.line)
        for drop in self.near_dup_drops:
            self._count(drop)
        if self.on_drop is None:
            report.drops = sorted(report.drops + self.near_dup_drops, key=lambda d: d.line)
        return kept

    def balancer(self, seed: int = 0) -> Balancer | None:
        """After select(), for kto: what downsamples the larger label's kept rows to 50/50; None if nothing to do."""
        t, f = self.report.labels[True], self.report.labels[False]
        if SHAPE_OF[self.fmt] != "kto" or not t or not f or t == f:
            return None
        return Balancer(t > f, max(t, f), abs(t - f), seed)

    def balanced_away(self, balancer: Balancer | None, number: int, label: Any) -> bool:
        """True (and the drop recorded) when the kept row at `number` is one the balancing leaves out."""
        if balancer is None or not balancer.drop(label):
            return False
        self.report.kept -= 1
        self.report.labels[label] -= 1
        self._drop(Drop(number, [Issue("kto_balance", f"left out to balance the labels 50/50 (--balance): "
                                                      f"{balancer.total:,} kept rows were labelled {str(label).lower()}, "
                                                      f"{balancer.total - balancer.extra_total:,} the other way")]))
        return True

    def _keep(self, kept: LineSet, number: int, group: bool | None) -> None:
        kept.add(number)
        self.report.kept += 1
        if group is not None:
            self.report.labels[group] += 1

    def _count(self, drop: Drop) -> None:
        self.report.dropped += 1
        for code in dict.fromkeys(i.code for i in drop.reasons):
            self.report.reasons[code] += 1

    def _drop(self, drop: Drop) -> None:
        report = self.report
        self._count(drop)
        if self.on_drop is not None:
            self.on_drop(drop)
        else:
            report.drops.append(drop)

    def _verdicts(self, lines: Iterable[Line]) -> Iterator[Verdict]:
        if self.jobs == 1:
            quality = self.rules.quality
            for line in lines:
                yield verdict(line, self.fmt, self.rules, quality)
            return
        # Worker processes for the checks (they are ~90% of pass 1's CPU); at most 2 chunks per worker in
        # flight, so memory stays bounded whatever the file size, and results come back in file order.
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with ProcessPoolExecutor(self.jobs, mp_context=context) as pool:
            pending: deque = deque()
            for chunk in _chunks(lines, CHUNK):
                pending.append(pool.submit(_check_chunk, self.fmt, self.rules, chunk))
                while len(pending) >= 2 * self.jobs:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()


CHUNK = 500


class Balancer:
    """Leaves out exactly `extra` of the `candidates` rows labelled `larger`, a seeded uniform sample, in one pass
    in file order without holding them (selection sampling, Knuth's Algorithm S)."""

    def __init__(self, larger: bool, candidates: int, extra: int, seed: int = 0):
        self.larger, self.total, self.extra_total = larger, candidates, extra
        self._left, self._extra = candidates, extra
        self._rng = random.Random(seed)

    def drop(self, label: Any) -> bool:
        if label is not self.larger or self._left <= 0:
            return False
        out = self._rng.random() * self._left < self._extra
        self._left -= 1
        self._extra -= out
        return out


class LineSet:
    """The kept line numbers as a bitmap: one bit per line of the file, so memory does not grow with the rows."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, number: int) -> None:
        byte = number >> 3
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
        self._bits[byte] |= 1 << (number & 7)

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int) or number < 0:
            return False
        byte = number >> 3
        return byte < len(self._bits) and bool(self._bits[byte] >> (number & 7) & 1)


def _cpu() -> float:
    """CPU seconds of this process and its finished workers."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def _chunks(lines: Iterable[Line], size: int) -> Iterator[list[Line]]:
    chunk: list[Line] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
