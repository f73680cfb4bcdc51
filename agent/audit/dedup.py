"""Near-duplicate detection: the seed's rule, fast enough for 100k examples.

The rule (seed 003): an example is a near-duplicate of a kept one when
    difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() > threshold
on their first user messages, IN EITHER ORDER: SequenceMatcher's ratio is not symmetric (0.854 one way,
0.817 the other on a pair from the demo's export), and a one-way rule let a pair through that the same
rule applied to the exported file in another order found. similarity() is the larger of the two orders,
so no ordering of the output can reveal a pair the run kept. autojunk must be off (with it, texts of 200+
characters lose their common characters and a one-word edit scores ~0.02).
Keep-first: walk the examples in order and keep one unless it is a near-duplicate of one already kept.

How one check avoids comparing against every kept text. Steps 1-3 are exact prunings (they never drop a
real match); step 4 is the rule itself, so a reported duplicate is always a real one.
  1. length window: ratio <= 2*min(a, b)/(a + b), so only kept texts with length in
     [n*t/(2-t), n*(2-t)/t] can match (0.74x to 1.35x at t = 0.85).
  2. class projections ("exact" mode): split the alphabet into 7 classes (5 of letters, the space, the
     rest); a common subsequence splits into one per class, so LCS(a, b) <= sum over classes of
     LCS(a|class, b|class). Six LCS runs (the space's LCS is its smaller count) on strings ~6x shorter cost
     a fraction of one full run and prune nearly as well (unrelated texts: ~0.7 < 0.85).
  3. rapidfuzz fuzz.ratio = 2*LCS/(a + b) >= SequenceMatcher's ratio in both orders (its matching blocks
     form a common subsequence either way, and LCS is symmetric): a C++ check before the slow one.
  Steps 1-3 are symmetric bounds, so they prune the two-order rule exactly as they pruned the one-order one.
  Before step 2, a cheaper exact bound in numpy: LCS(a, b) <= sum over characters of min(count in a, count
  in b); step 2 then runs one class at a time on the rows still in (_LengthTable explains).
  4. SequenceMatcher's ratio, computed by cydifflib (a compiled port of difflib; same numbers, checked
     against difflib in the tests) because difflib takes 5-35 ms per long pair.

Modes. "exact" scans the length window (steps 1-4). "fast" takes candidates from MinHash LSH (rensa) over
character 5-grams of the lowercased, punctuation-stripped text and runs steps 1, 3 and 4 on them; texts of
<= 64 characters (few 5-grams, so LSH would miss one-word edits) get the exact scan, which is cheap there.
Fast mode can miss a pair whose 5-gram sets barely overlap (see LSH_BANDS), never reports a false one.
"auto" is exact while at most AUTO_SWITCH texts are kept (a check then takes ~4 ms, p99 ~11 ms) and rebuilds
itself as fast when the next one is added (one bulk pass, ~1.5 s at 20k). Fast mode's LSH holds ~9 KB per
kept text (~0.9 GB at 100k; 60 bands of 4 rows would halve that for ~1.6x the time).
dedupe() gathers candidates for all pairs at once (rapidfuzz then runs many rows per call, with SIMD for
short rows and threads), then walks keep-first. Figures: bench/notes/dedup.md.
"""

from __future__ import annotations

import difflib
import re
from array import array
from collections.abc import Hashable, Iterable, Sequence

import cydifflib
import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import LCSseq
from rensa import RMinHash, RMinHashLSH

AUTO_SWITCH = 20_000
SHINGLE = 5
# A pair whose 5-gram sets have Jaccard J becomes a candidate with probability 1 - (1 - J**5)**120:
# 0.98 at J = 0.5, 0.9995 at 0.6, 0.05 at 0.2. Near-duplicates (ratio > 0.85) longer than _DIRECT characters
# share 0.39-1.0 of their 5-grams in the benchmark corpus (0.1th percentile 0.49): expected recall 0.9998.
# Five rows per band keep unrelated texts with common phrasing (J ~ 0.1-0.2) out of the candidates.
LSH_BANDS, LSH_ROWS = 120, 5
MODES = ("auto", "exact", "fast")

# Letters by English frequency, dealt round-robin into 5 classes; a sixth takes everything else but the space
# (digits, punctuation, non-Latin), and the space is a class of its own. Any partition keeps the bound exact; a
# balanced one keeps it tight. The space's projection is one character repeated, whose LCS is the smaller count:
# it needs no LCS run, and the letter classes' projections are shorter without it (an LCS run's time grows with
# the square of the length): on the simulated provider's questions ~30% less time than 7 letter classes with
# the space in one of them, for the same candidates (bench/notes/dedup.md).
_LETTERS = "etaoinsrhldcumfpgwybvkxjqz"
_N_LCS = 6   # classes whose projections get an LCS run: the 5 letter classes and the rest (not the space)
_GROUPS = ["".join(sorted(g + g.upper())) for g in (_LETTERS[k::5] for k in range(5))]
# The order the scan runs the classes' LCS in (0-4: the letter classes, 5: the rest). Any order gives the same
# candidates (a row is one iff its bound after all of them reaches its need; each step only lowers it), but
# not the same CPU: class 0 (e, n, d, p, v, z) has the longest projection (~27 % of the letters; an LCS run's
# time grows with the square of the length) and goes after the others; the rest (punctuation, digits: shared by
# template-built questions) prunes least and goes last. Against 0-5: a quarter less LCS work on questions over 600
# characters, ~4 % less CPU over a simulated run to 10,000 (bench/README.md "Round 5: admit").
_LCS_ORDER = (3, 2, 4, 0, 1, 5)
_DELETE_LETTERS = str.maketrans("", "", "".join(_GROUPS) + " ")             # leaves the rest
_KEEP_GROUP = [str.maketrans("", "", "".join(c for c in "".join(_GROUPS) + " " if c not in g)) for g in _GROUPS]
# the same deletions as byte sets, for ASCII texts: the letters and the space; all but them; all but one group
_LETTER_BYTES = ("".join(_GROUPS) + " ").encode("ascii")
_NOT_LETTER_BYTES = bytes(b for b in range(256) if b not in _LETTER_BYTES)
_KEEP_GROUP_BYTES = [bytes(b for b in _LETTER_BYTES if chr(b) not in g) for g in _GROUPS]
# Character-count bins, in class order (a bin's characters all belong to one class): each letter (both cases) its
# own bin, the rest shared out over 4 bins by code point, the space last. Merging characters into a bin only
# loosens the bound, never breaks it; merging the cases costs almost no pruning (capitals are rare).
_CLASS_START = np.cumsum([0, *(len(g) // 2 for g in _GROUPS), 4])    # first bin of each class (the space: the last)
_REST = int(_CLASS_START[-2])                                          # the rest's 4 bins start here
_N_BINS = _REST + 5
_CLASS_BINS = list(zip(_CLASS_START.tolist(), [*_CLASS_START[1:].tolist(), _N_BINS], strict=True))  # [first, last)
_BIN_OF = np.array([_REST + cp % 4 for cp in range(128)], dtype=np.uint8)
for _g, _chars in enumerate(_GROUPS):
    for _k, _ch in enumerate(sorted(set(_chars.lower()))):
        _BIN_OF[[ord(_ch), ord(_ch.upper())]] = _CLASS_START[_g] + _k
_BIN_OF[ord(" ")] = _N_BINS - 1
_COUNT = np.uint16   # stored character counts; larger ones are capped (_LengthTable.candidates keeps it exact)
_CAP = int(np.iinfo(_COUNT).max)
_MERGE = 256         # rows added since the last sort by length are found by a mask; this many, and they are sorted in
_NON_WORD = re.compile(r"[\W_]+")
_DIRECT = 64     # up to 64 characters the full LCS is one machine word per column: no projections needed
_BLOCK = 256     # rows per rapidfuzz call in the batch scan


def similarity(a: str, b: str) -> float:
    """The rule's number: stdlib difflib, autojunk off, the larger of the two argument orders."""
    return max(difflib.SequenceMatcher(None, a, b, autojunk=False).ratio(),
               difflib.SequenceMatcher(None, b, a, autojunk=False).ratio())


def _ratio(a: str, b: str) -> float:
    """similarity()'s result, 10-20x faster (cydifflib is a Cython port of difflib).

    Either order's ratio is 2 * matched / (len(a) + len(b)) with matched <= LCS(a, b): when the first order
    already matches the LCS, the second cannot be larger, and is not computed (near-copies mostly do)."""
    first = cydifflib.SequenceMatcher(None, a, b, autojunk=False)
    if sum(block[-1] for block in first.get_matching_blocks()) == LCSseq.similarity(a, b):
        return first.ratio()
    return max(first.ratio(), cydifflib.SequenceMatcher(None, b, a, autojunk=False).ratio())


def length_window(n: int, threshold: float) -> tuple[int, int]:
    """Lengths (inclusive) a text of length n can match; one character of slack each side for rounding."""
    return max(0, int(n * threshold / (2 - threshold)) - 1), int(n * (2 - threshold) / threshold) + 1


def _may_match(lcs_bound: np.ndarray, total: np.ndarray, threshold: float) -> np.ndarray:
    # ratio > t needs LCS > t*(a+b)/2; the 1e-9 keeps float rounding on the safe (keeping) side
    return 2 * lcs_bound >= threshold * total * (1 - 1e-9)


def _projections(text: str) -> tuple[str, ...]:
    """The text's characters of each class but the space, in order (str.translate: ~3x faster than a regex sub
    per class; an ASCII text's bytes.translate with a delete set: ~2x faster again on long texts)."""
    if text.isascii():
        raw = text.encode("ascii")
        only_letters = raw.translate(None, _NOT_LETTER_BYTES)
        return (*(only_letters.translate(None, d).decode("ascii") for d in _KEEP_GROUP_BYTES),
                raw.translate(None, _LETTER_BYTES).decode("ascii"))
    others = text.translate(_DELETE_LETTERS)
    letters = text.translate(dict.fromkeys(map(ord, set(others)))) if others else text
    return (*(letters.translate(t) for t in _KEEP_GROUP), others)


def _char_counts(texts: Sequence[str]) -> np.ndarray:
    """(len(texts) x _N_BINS) character counts, bins as _BIN_OF says (non-ASCII: code point mod 4 in the rest)."""
    if len(texts) == 1 and texts[0].isascii():   # one ASCII text (nearly every find): bytes, ~3x faster
        codes = _BIN_OF[np.frombuffer(texts[0].encode("ascii"), dtype=np.uint8)]
        return np.bincount(codes, minlength=_N_BINS).astype(np.int32)[None, :]
    codes32 = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    bins = np.where(codes32 < 128, _BIN_OF[np.minimum(codes32, 127)], _REST + codes32 % 4)
    bins = bins.astype(np.int64)
    if len(texts) == 1:
        return np.bincount(bins, minlength=_N_BINS).astype(np.int32)[None, :]
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    flat = np.repeat(np.arange(len(texts), dtype=np.int64) * _N_BINS, lens) + bins
    return np.bincount(flat, minlength=len(texts) * _N_BINS).reshape(len(texts), _N_BINS).astype(np.int32)


def _class_sums(counts: np.ndarray) -> np.ndarray:
    """Per-class totals of bin counts (the last axis: a class's bins are contiguous)."""
    return np.add.reduceat(counts, _CLASS_START, axis=-1, dtype=np.int64)


def _minhash(text: str) -> RMinHash:
    norm = _NON_WORD.sub(" ", text.lower()).strip()
    # zip of shifted copies: ~1.5x faster than slicing in a comprehension (shingling is most of the hashing time)
    grams = list(map("".join, zip(*(norm[k:] for k in range(SHINGLE)), strict=False))) or [norm]
    mh = RMinHash(num_perm=LSH_BANDS * LSH_ROWS, seed=17)
    mh.update(grams)
    return mh


class _LengthTable:
    """Kept texts with their lengths, character counts and class projections: the exact candidate scan.

    Rows are numbered in the order of adding (ids ascending), and candidates come out in that order. What a kept
    text needs (counts, projections) is computed once, when it is added; find() then add() of the same text (the
    usual sequence) computes it once for both. One scan, cheapest filter first, each an exact upper bound of
    the LCS (so of both ratios), narrowing the rows the next one looks at:
      a. length window (step 1). The rows are also held sorted by length, so the window is a slice of that
         copy; rows added since the last sort (fewer than _MERGE) are looked up by a mask;
      b. character counts: LCS(a, b) <= sum over characters of min(count in a, count in b) (a common
         subsequence uses each character of either text once); one numpy min and sum over the window's
         (31 x rows) slice. Unrelated questions pass ~15 % (simulated provider) to ~40 % (generated corpus);
      c. class projections (step 2), one class at a time: the bound starts as the sum of the counts' per-class
         parts, and each class's part is replaced by the LCS of that class's projections (never larger: the
         count bound holds for the projections too); rows drop out as soon as they cannot match, most after
         2-3 of the 6 classes that need a run.
    Short queries (<= _DIRECT characters) skip b-c: fuzz.ratio on the window is one machine word per column.

    short_only=True keeps just the texts a query of <= _DIRECT characters can match, without counts or
    projections: fast mode's exact path for short texts, whose few 5-grams make LSH unreliable.
    """

    def __init__(self, threshold: float, short_only: bool = False):
        self.threshold = threshold
        self.short_only = short_only
        self.max_len = length_window(_DIRECT, threshold)[1] if short_only else None
        self.ids: list[int] = []
        self.texts: list[str] = []
        self._n = 0
        cap = 0 if short_only else 64
        # by row (order of adding): lengths, counts (row x bin, capped at _CAP), projections (class x row)
        self._lens = np.zeros(64, dtype=np.int64)
        self._counts = np.zeros((cap, _N_BINS), dtype=_COUNT)
        self._proj = np.empty((_N_LCS, cap), dtype=object)    # object arrays gather in C
        # rows 0 .. _n_sorted - 1 again, sorted by (length, row): their lengths, row numbers and counts (bin x row:
        # the window's counts are 32 contiguous runs)
        self._n_sorted = 0
        self._sorted_lens = np.zeros(0, dtype=np.int64)
        self._sorted_rows = np.zeros(0, dtype=np.int64)
        self._sorted_counts = np.zeros((_N_BINS, 0), dtype=_COUNT)
        self._last: tuple[str, np.ndarray, tuple[str, ...]] | None = None   # the last query's counts, projections

    def _grow(self, need: int) -> None:
        if need > len(self._lens):
            cap = max(need, 2 * len(self._lens))
            self._lens = np.resize(self._lens, cap)
            if not self.short_only:
                more = cap - len(self._counts)
                self._counts = np.concatenate([self._counts, np.zeros((more, _N_BINS), dtype=_COUNT)])
                self._proj = np.concatenate([self._proj, np.empty((_N_LCS, more), dtype=object)], axis=1)

    def _features(self, text: str) -> tuple[np.ndarray, tuple[str, ...]]:
        if self._last is not None and self._last[0] is text:
            return self._last[1], self._last[2]
        return _char_counts([text])[0], _projections(text)

    def _sort(self) -> None:
        """Sort every row into the by-length copy (every _MERGE adds: ~3 ms at 20k rows, ~12 us an add)."""
        self._sorted_rows = np.argsort(self._lens[:self._n], kind="stable")   # stable: rows of one length stay in order
        self._sorted_lens = self._lens[self._sorted_rows]
        if not self.short_only:
            self._sorted_counts = np.ascontiguousarray(self._counts[self._sorted_rows].T)
        self._n_sorted = self._n

    def add(self, ident: int, text: str) -> None:
        if self.max_len is not None and len(text) > self.max_len:
            return
        self._grow(self._n + 1)
        self._lens[self._n] = len(text)
        if not self.short_only:
            counts, self._proj[:, self._n] = self._features(text)
            self._counts[self._n] = np.minimum(counts, _CAP)
        self._last = None
        self.ids.append(ident)
        self.texts.append(text)
        self._n += 1
        if self._n - self._n_sorted >= _MERGE:
            self._sort()

    def add_many(self, idents: Iterable[int], texts: Iterable[str]) -> None:
        """Add texts whose ids are all above those already held (rows stay in id order)."""
        rows = [(i, t) for i, t in zip(idents, texts, strict=True) if self.max_len is None or len(t) <= self.max_len]
        if not rows:
            return
        new = [t for _, t in rows]
        start, end = self._n, self._n + len(rows)
        self._grow(end)
        self._lens[start:end] = [len(t) for t in new]
        if not self.short_only:
            for k in range(0, len(new), 4096):   # in blocks: the per-character arrays stay small
                block = new[k:k + 4096]
                self._counts[start + k:start + k + len(block)] = np.minimum(_char_counts(block), _CAP)
            for k, parts in enumerate(map(_projections, new), start):
                self._proj[:, k] = parts
        self.ids.extend(i for i, _ in rows)
        self.texts.extend(new)
        self._n = end
        self._sort()

    def candidates(self, text: str) -> tuple[list[int], list[str]]:
        """Ids (ascending) and texts that pass steps 1-2."""
        n = len(text)
        lo, hi = length_window(n, self.threshold)
        a, b = np.searchsorted(self._sorted_lens, [lo, hi + 1]).tolist()   # the sorted rows in the window
        rows = self._sorted_rows[a:b]
        if self._n > self._n_sorted:                                        # and the rows added since
            tail = np.arange(self._n_sorted, self._n)
            tail = tail[(self._lens[tail] >= lo) & (self._lens[tail] <= hi)]
        else:
            tail = rows[:0]
        if n <= _DIRECT or not len(rows) and not len(tail):
            rows = np.sort(np.concatenate([rows, tail]))
        else:
            counts, proj = self._features(text)
            self._last = (text, counts, proj)
            # the LCS a row needs to match: ratio > t needs LCS > t * (n + m) / 2; the 1e-9 keeps float rounding
            # on the safe (keeping) side
            per_char = self.threshold * (1 - 1e-9) / 2
            if n <= _CAP:   # no count of the query reaches the cap, and the sum of the mins (<= n) fits in _COUNT
                q, excess = counts.astype(_COUNT), None
                window = np.add.reduce(np.minimum(self._sorted_counts[:, a:b], q[:, None]), axis=0, dtype=_COUNT)
            else:
                # A stored count above _CAP was capped: min(q, r) <= min(q, cap(r)) + max(0, q - _CAP) for every
                # count q of the query, so adding the query's excess over the cap keeps each bound an upper bound.
                q, excess = np.minimum(counts, _CAP).astype(_COUNT), _class_sums(np.maximum(counts - _CAP, 0))
                window = np.minimum(self._sorted_counts[:, a:b], q[:, None]).sum(axis=0) + int(excess.sum())
            ok = window >= (n + self._sorted_lens[a:b]) * per_char
            rows, bound = rows[ok], window[ok].astype(np.int64)
            if len(tail):   # the rows added since the last sort: their count bound from the by-row counts
                tail_bound = np.minimum(self._counts[tail], q).sum(axis=1, dtype=np.int64)
                if excess is not None:
                    tail_bound += int(excess.sum())
                rows, bound = np.concatenate([rows, tail]), np.concatenate([bound, tail_bound])
            need = (n + self._lens[rows]) * per_char
            # c = -1: the count bound alone (the recent rows' first check); then one LCS class at a time,
            # in _LCS_ORDER (the space's part is its LCS already): class c's part of the count bound, the sum of its
            # bins' mins (computed for the rows still in only), is replaced by its projections' LCS
            for c in (-1, *_LCS_ORDER):
                if not len(rows):
                    break
                if c >= 0:
                    first, last = _CLASS_BINS[c]
                    part = np.minimum(self._counts[rows, first:last], q[first:last]).sum(axis=1, dtype=np.int64)
                    if excess is not None:
                        part += int(excess[c])
                    bound += process.cdist([proj[c]], self._proj[c, rows], scorer=LCSseq.similarity,
                                           dtype=np.int64)[0] - part
                live = bound >= need
                if not live.all():
                    rows, need, bound = rows[live], need[live], bound[live]
            rows.sort()     # ids ascending (the window's rows come in length order)
        keep = rows.tolist()
        return [self.ids[r] for r in keep], [self.texts[r] for r in keep]


class _Bands:
    """MinHash LSH over character 5-grams (the fast candidate source), with the length window applied."""

    def __init__(self, threshold: float, texts: Sequence[str]):
        self.threshold = threshold
        self.texts = texts             # all texts by id (the index's list, which grows)
        self.lsh = RMinHashLSH(threshold=0.5, num_perm=LSH_BANDS * LSH_ROWS, num_bands=LSH_BANDS)
        self.lens = array("q")         # by id (ids are 0, 1, 2, ... in order of adding)
        self.min_len = length_window(_DIRECT + 1, threshold)[0]   # shorter ones only meet short queries
        self._last: tuple[str, RMinHash] | None = None

    def add(self, ident: int, text: str) -> None:
        if len(text) >= self.min_len:
            # find() then add() of the same text (the usual sequence) hashes it once
            mh = self._last[1] if self._last is not None and self._last[0] is text else _minhash(text)
            self.lsh.insert(ident, mh)
        self.lens.append(len(text))

    def candidates(self, text: str) -> tuple[list[int], list[str]]:
        """Ids and texts that share an LSH band and pass step 1."""
        mh = _minhash(text)
        self._last = (text, mh)
        ids = np.asarray(self.lsh.query(mh), dtype=np.int64)
        if not len(ids):
            return [], []
        lo, hi = length_window(len(text), self.threshold)
        lens = np.frombuffer(self.lens, dtype=np.int64)[ids]
        kept = ids[(lens >= lo) & (lens <= hi)].tolist()
        return kept, [self.texts[i] for i in kept]


class NearDupIndex:
    """The kept texts, answering "is this new text a near-duplicate of one of them?" under the rule."""

    def __init__(self, threshold: float = 0.85, mode: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], not {threshold}")
        self.threshold = threshold
        self.mode = mode
        self._keys: list[Hashable] = []
        self._texts: list[str] = []
        self._table: _LengthTable | None = None        # exact: every kept text
        self._bands: _Bands | None = None              # fast: LSH for texts longer than _DIRECT ...
        self._short: _LengthTable | None = None        # ... and an exact scan for shorter ones
        if mode == "fast":
            self._go_fast()
        else:
            self._table = _LengthTable(threshold)
        self._cutoff = threshold * 100 - 1e-6   # rapidfuzz scores 0-100; the slack absorbs rounding

    def __len__(self) -> int:
        return len(self._texts)

    @property
    def fast(self) -> bool:
        """True once candidates come from LSH (mode "fast", or "auto" past AUTO_SWITCH kept texts)."""
        return self._bands is not None

    def add(self, key: Hashable, text: str) -> None:
        """Keep a text (no check: call find first)."""
        ident = len(self._texts)
        self._keys.append(key)
        self._texts.append(text)
        for part in (self._table, self._short, self._bands):
            if part is not None:
                part.add(ident, text)
        if self._switch_due():
            self._go_fast()

    def extend(self, items: Iterable[tuple[Hashable, str]]) -> None:
        """Keep many texts at once (a resume: they were checked when first kept), in their order."""
        start = len(self._texts)
        for key, text in items:
            self._keys.append(key)
            self._texts.append(text)
        if self._switch_due():
            self._go_fast()    # rebuilds from all texts
            return
        idents = range(start, len(self._texts))
        for table in (self._table, self._short):
            if table is not None:
                table.add_many(idents, self._texts[start:])
        if self._bands is not None:
            for i in idents:
                self._bands.add(i, self._texts[i])

    def find(self, text: str) -> tuple[Hashable, float] | None:
        """The earliest-kept text the new one is a near-duplicate of, with the ratio; None if there is none.

        In fast mode "earliest" among the candidates LSH returned: a miss can make it a later one."""
        if self._table is not None:
            ids, texts = self._table.candidates(text)
        elif len(text) <= _DIRECT:
            ids, texts = self._short.candidates(text)  # type: ignore[union-attr]
        else:
            ids, texts = self._bands.candidates(text)  # type: ignore[union-attr]
        if not ids:
            return None
        scores = process.cdist([text], texts, scorer=fuzz.ratio, score_cutoff=self._cutoff, dtype=np.float32)[0]
        for i in sorted(ids[k] for k in np.flatnonzero(scores)):
            r = _ratio(text, self._texts[i])
            if r > self.threshold:
                return self._keys[i], r
        return None

    def _switch_due(self) -> bool:
        return self.mode == "auto" and self._bands is None and len(self._texts) > AUTO_SWITCH

    def _go_fast(self) -> None:
        self._table = None
        self._bands = _Bands(self.threshold, self._texts)
        self._short = _LengthTable(self.threshold, short_only=True)
        self._short.add_many(range(len(self._texts)), self._texts)
        for i, t in enumerate(self._texts):
            self._bands.add(i, t)


def dedupe(texts: Sequence[str], threshold: float = 0.85, mode: str = "auto") -> list[tuple[int, int, float]]:
    """Keep-first near-duplicate removal: (dropped index, index of the kept text it matched, ratio).

    "auto" is "exact" for up to AUTO_SWITCH texts and "fast" for more (the index switches on its kept count
    instead). Candidates are gathered for all pairs first (whether the earlier text ends up kept or not), then
    the keep-first walk checks them.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "fast" or (mode == "auto" and len(texts) > AUTO_SWITCH):
        return _resolve(texts, _fast_candidates(texts, threshold), threshold)
    return _resolve(texts, _pair_candidates(texts, threshold), threshold)


def _fast_candidates(texts: Sequence[str], threshold: float) -> list[list[int]]:
    """Fast mode in batch: texts of <= _DIRECT characters get the exact scan, longer ones LSH candidates."""
    short_cap = length_window(_DIRECT, threshold)[1]
    short = [i for i, t in enumerate(texts) if len(t) <= short_cap]
    found: list[list[int]] = [[] for _ in texts]
    for k, earlier in enumerate(_pair_candidates([texts[i] for i in short], threshold)):
        if len(texts[short[k]]) <= _DIRECT:
            found[short[k]] = [short[j] for j in earlier]
    bands = _Bands(threshold, texts)
    for i, text in enumerate(texts):
        if len(text) > _DIRECT:
            found[i] = bands.candidates(text)[0]
        bands.add(i, text)
    return found


def _pair_candidates(texts: Sequence[str], threshold: float) -> list[list[int]]:
    """For each text, the earlier texts that pass steps 1-2, each unordered pair computed once.

    Batch form of _LengthTable.candidates: with many rows per call rapidfuzz runs rows of <= 64 characters
    through SIMD and spreads rows over the cores, ~2-4x less time than one query at a time.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    lens = np.array([len(texts[i]) for i in order], dtype=np.int64)
    ordered = [texts[i] for i in order]
    columns: list[list[str]] | None = None
    cutoff = threshold * 100 - 1e-6
    found: list[list[int]] = [[] for _ in texts]
    for s in range(0, len(texts), _BLOCK):
        e = min(len(texts), s + _BLOCK)
        hi = int(np.searchsorted(lens, length_window(int(lens[e - 1]), threshold)[1], side="right"))
        if lens[e - 1] <= _DIRECT:   # step 3 straight away (rapidfuzz applies the cutoff: no float matrix)
            ok = process.cdist(ordered[s:e], ordered[s:hi], scorer=fuzz.ratio, score_cutoff=cutoff,
                               dtype=np.uint8, workers=-1) > 0
        else:
            if columns is None:   # projections only from the first block that needs them
                columns = [list(c) for c in zip(*map(_projections, ordered), strict=True)]
                spaces = np.array([t.count(" ") for t in ordered], dtype=np.int32)
            bound = np.minimum(spaces[s:e, None], spaces[None, s:hi])   # the space's LCS
            for column in columns:
                bound += process.cdist(column[s:e], column[s:hi], scorer=LCSseq.similarity, dtype=np.int32,
                                       workers=-1)
            ok = _may_match(bound, lens[s:e, None] + lens[None, s:hi], threshold)
        ok &= np.arange(hi - s)[None, :] > np.arange(e - s)[:, None]   # each pair once: the later column
        for r, c in zip(*np.nonzero(ok), strict=True):
            a, b = order[s + r], order[s + c]
            found[max(a, b)].append(min(a, b))
    return found


def _resolve(texts: Sequence[str], candidates: list[list[int]], threshold: float) -> list[tuple[int, int, float]]:
    """The seed's keep-first walk over precomputed candidates: steps 3-4 on the kept ones, in order."""
    cutoff = threshold * 100 - 1e-6
    kept = [False] * len(texts)
    dropped = []
    for i, new in enumerate(texts):
        for j in sorted(candidates[i]):
            if kept[j] and fuzz.ratio(new, texts[j], score_cutoff=cutoff):
                r = _ratio(new, texts[j])
                if r > threshold:
                    dropped.append((i, j, r))
                    break
        else:
            kept[i] = True
    return dropped


def reference_dedupe(texts: Sequence[str], threshold: float = 0.85, *,
                     prefilter: bool = False) -> list[tuple[int, int, float]]:
    """The seed's quadratic loop, for tests and benchmarks only: every kept text, in order, through difflib
    (in both argument orders: similarity()).

    prefilter=True skips a pair whose rapidfuzz ratio (an exact upper bound) is already <= threshold; the
    result is the same, and a few thousand texts take seconds instead of hours.
    """
    kept: list[int] = []
    dropped = []
    cutoff = threshold * 100 - 1e-6
    for i, new in enumerate(texts):
        if prefilter and kept:
            scores = process.cdist([new], [texts[j] for j in kept], scorer=fuzz.ratio, score_cutoff=cutoff,
                                   dtype=np.float32, workers=-1)[0]
            order = [kept[k] for k in np.flatnonzero(scores)]
        else:
            order = kept
        for j in order:
            r = similarity(new, texts[j])
            if r > threshold:
                dropped.append((i, j, r))
                break
        else:
            kept.append(i)
    return dropped
