"""Exact, incremental n-gram overlap between examples (the seed's "< 30% between examples").

Sets arrive a batch at a time and every step is a numpy operation over the whole batch (no Python-level
work per n-gram): document frequencies give the pooled overlap without comparing pairs, and an inverted
index gives each new example's nearest-neighbour share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

NN_THRESHOLD = 0.3
_ID_BITS = 21  # three token ids packed in one int64: exact up to 2,097,152 distinct words
_ID_MASK = (1 << _ID_BITS) - 1
_COMMON_DF = 16  # n-grams held by this many examples are candidates for the avoid list
_EMPTY = -1  # a free slot of a KeyTable: never a key
_CHUNK = 1 << 20  # keys per slice when a table or arena is rebuilt
_NEVER = np.iinfo(np.int64).max  # a threshold no count passes
_PAIR_WORDS = 1 << 20  # bitmap words ANDed at once when counting the frequent keys pairs share
_WHOLE_ROW = 0.5  # a batch set unsure against more than this share of the earlier sets is compared with all
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of key * 2^64/phi spread keys evenly


def _ratio(threshold: float) -> tuple[int, int]:
    frac = Fraction(threshold).limit_denominator(10_000)  # integer comparisons: 3 of 10 is not > 30%
    return frac.numerator, frac.denominator


def _spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices of the ranges [start, start + length), concatenated: a running sum of steps of 1, with a
    jump where each range begins (two passes over the output, where repeat + arange + add took four)."""
    lengths = lengths.astype(np.int64, copy=False)
    keep = lengths > 0
    starts, lengths = starts[keep].astype(np.int64, copy=False), lengths[keep]
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out = np.ones(total, dtype=np.int64)
    out[0] = starts[0]
    out[np.cumsum(lengths[:-1])] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return np.cumsum(out, out=out)


class _Grow:
    """A growable numpy vector: numpy has no amortised O(1) append, and the index needs vector ops."""

    def __init__(self, dtype: Any):
        self.buf = np.zeros(1024, dtype=dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self.buf):
            grown = np.zeros(max(need, len(self.buf) * 3 // 2), dtype=self.buf.dtype)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n : need] = values
        self.n = need

    @property
    def view(self) -> np.ndarray:
        return self.buf[: self.n]


class KeyTable:
    """int64 keys -> numbers 0, 1, 2... in order of arrival: a hash table (open addressing, linear probing)
    whose lookups and inserts are vectorised over a batch of keys. Hand-rolled: numpy has no hash map, and
    a Python dict of millions of int keys costs ~100 bytes and a bytecode loop per key (here 18-24 bytes:
    between 1/2 and 2/3 full, and a few numpy passes per batch). Any int64 but -1 may be a key."""

    def __init__(self) -> None:
        self.keys = np.full(1024, _EMPTY, dtype=np.int64)
        self.nums = np.zeros(1024, dtype=np.int32)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def _start(self, keys: np.ndarray) -> np.ndarray:
        # the hash's top 32 bits scaled to the table size (any size, not only powers of two)
        top = (keys.view(np.uint64) * _GOLDEN) >> np.uint64(32)
        return ((top * np.uint64(len(self.keys))) >> np.uint64(32)).astype(np.int64)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The number of each key, -1 where absent."""
        return self._place(np.ascontiguousarray(keys, dtype=np.int64), None, insert=False)

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Numbers for distinct keys, inserting those not held yet (numbered from len(self) on)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if 3 * (self.n + len(keys)) > 2 * len(self.keys):  # at most 2/3 full: probes stay short
            self._resize(2 * (self.n + len(keys)))
        return self._place(keys, None)

    def _place(self, keys: np.ndarray, nums: np.ndarray | None, insert: bool = True) -> np.ndarray:
        """Probe for every key at once; free slots are claimed by one key each (numpy keeps one of several
        writes to a slot) and the others probe on. nums given: the keys are known to be absent (a resize).
        insert=False: only look up (a free slot ends a key's probe: absent, -1)."""
        out = np.full(len(keys), -1, dtype=np.int64)
        slot, todo, size = self._start(keys), np.arange(len(keys)), len(self.keys)
        while len(todo):
            s = slot[todo]
            held = self.keys[s]
            hit = held == keys[todo]
            out[todo[hit]] = self.nums[s[hit]]
            free = held == _EMPTY
            if not insert:
                on = ~hit & ~free
                slot[todo[on]] = (s[on] + 1) % size
                todo = todo[on]
                continue
            fs, fi = s[free], todo[free]
            self.keys[fs] = keys[fi]
            won = self.keys[fs] == keys[fi]
            ws, wi = fs[won], fi[won]
            given = np.arange(self.n, self.n + len(wi)) if nums is None else nums[wi]
            self.nums[ws] = given
            out[wi] = given
            self.n += len(wi)
            on = ~hit & ~free
            slot[todo[on]] = (s[on] + 1) % size
            todo = np.concatenate([todo[on], fi[~won]])
        return out

    def _resize(self, need: int) -> None:
        old_keys, old_nums = self.keys, self.nums
        size = max(1024, need)
        self.keys = np.full(size, _EMPTY, dtype=np.int64)
        self.nums = np.zeros(size, dtype=np.int32)
        self.n = 0
        for at in range(0, len(old_keys), _CHUNK):  # in slices: the probes' temporaries stay small
            keys = old_keys[at:at + _CHUNK]
            held = keys != _EMPTY
            self._place(keys[held], old_nums[at:at + _CHUNK][held].astype(np.int64))


class _Postings:
    """Each key's set ids (ascending) in one int32 arena, contiguous per key: start, length and room per key
    number. A batch appends to all its keys at once; a key out of room moves to the arena's end with twice
    the room it needs (amortised O(1) per id, like a list); a new key gets exactly the room it needs (most
    keys are held once). Holes left by moves are reclaimed by a compaction once they pass a third of the arena.
    Gathering a key's ids is a slice: no search."""

    def __init__(self) -> None:
        self.ids = np.zeros(1024, dtype=np.int32)
        self.used = 0    # the arena's end
        self.holes = 0   # room no key uses any more
        self.start = _Grow(np.int64)
        self.length = _Grow(np.int32)
        self.room = _Grow(np.int32)

    def add(self, nums: np.ndarray, counts: np.ndarray, ids: np.ndarray) -> None:
        """Append ids (grouped by key in the order of nums, counts[k] for nums[k]; each above every id held)."""
        more = int(nums.max(initial=-1)) + 1 - self.start.n
        if more > 0:
            for column in (self.start, self.length, self.room):
                column.extend(np.zeros(more, dtype=column.buf.dtype))
        length = self.length.view[nums].astype(np.int64)
        need = length + counts
        moving = need > self.room.view[nums]
        if moving.any():
            mv, had = nums[moving], length[moving]
            room = np.where(had > 0, 2 * need[moving], need[moving])
            at = self._reserve(int(room.sum())) + np.cumsum(room) - room
            self.ids[_spans(at, had)] = self.ids[_spans(self.start.view[mv], had)]
            self.holes += int(self.room.view[mv].sum())
            self.start.view[mv] = at
            self.room.view[mv] = room
        first = np.cumsum(counts) - counts
        rank = np.arange(len(ids)) - np.repeat(first, counts)
        self.ids[np.repeat(self.start.view[nums] + length, counts) + rank] = ids
        self.length.view[nums] = need
        if 3 * self.holes > self.used:
            self._compact()

    def _reserve(self, extra: int) -> int:
        """Room for `extra` ids at the arena's end; returns where it begins."""
        if self.used + extra > len(self.ids):
            grown = np.zeros(max(len(self.ids) * 3 // 2, self.used + extra), dtype=np.int32)
            grown[: self.used] = self.ids[: self.used]
            self.ids = grown
        at = self.used
        self.used += extra
        return at

    def _compact(self) -> None:
        room = self.room.view.astype(np.int64)
        at = np.cumsum(room) - room
        ids = np.zeros(max(1024, int(room.sum()) * 3 // 2), dtype=np.int32)
        for k in range(0, len(room), _CHUNK):  # in slices of keys: the index temporaries stay small
            length = self.length.view[k:k + _CHUNK]
            ids[_spans(at[k:k + _CHUNK], length)] = self.ids[_spans(self.start.view[k:k + _CHUNK], length)]
        self.ids, self.used, self.holes = ids, int(room.sum()), 0
        self.start.view[:] = at

    def span(self, nums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.start.view[nums], self.length.view[nums].astype(np.int64)


class _BitRows:
    """Per set, a bitmap over the frequent keys (one column per key, numbered in the order keys became
    frequent), so the number of frequent keys two sets share is a popcount of their rows' AND: W = F/64 words
    per pair, where gathering a set's frequent postings cost the sum of their document frequencies (which
    grows with the dataset). Rows and words grow by doubling; a row is written when its set arrives and a
    column when its key becomes frequent (then for all its holders)."""

    def __init__(self) -> None:
        self.words = np.zeros((1024, 1), dtype=np.uint64)
        self.rows = 0
        self.columns = 0

    @property
    def width(self) -> int:
        """Words per row in use."""
        return (self.columns + 63) // 64

    def add_rows(self, rows: np.ndarray) -> None:
        need = self.rows + len(rows)
        if need > len(self.words):
            grown = np.zeros((max(need, len(self.words) * 3 // 2), self.words.shape[1]), dtype=np.uint64)
            grown[: self.rows] = self.words[: self.rows]
            self.words = grown
        self.words[self.rows:need, : rows.shape[1]] = rows
        self.rows = need

    def add_columns(self, holders: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """New columns for len(counts) keys, key j held by the next counts[j] ids of holders; returns them."""
        cols = np.arange(self.columns, self.columns + len(counts))
        self.columns += len(counts)
        if self.width > self.words.shape[1]:
            grown = np.zeros((len(self.words), max(self.width, 2 * self.words.shape[1])), dtype=np.uint64)
            grown[: self.rows, : self.words.shape[1]] = self.words[: self.rows]
            self.words = grown
        col = np.repeat(cols, counts)
        np.bitwise_or.at(self.words, (holders, col >> 6), np.left_shift(np.uint64(1), (col & 63).astype(np.uint64)))
        return cols

    def pack(self, owner: np.ndarray, cols: np.ndarray, m: int) -> np.ndarray:
        """m rows (width words each) with bit cols[i] set in row owner[i]."""
        bits = np.zeros((m, self.width * 64), dtype=np.bool_)
        bits[owner, cols] = True
        return np.packbits(bits, axis=1, bitorder="little").view(np.uint64).reshape(m, self.width)

    def shared_all(self, rows: np.ndarray) -> np.ndarray:
        """len(rows) x self.rows: how many set bits each of `rows` has in common with each stored row (a
        contiguous pass over the stored rows: no gather)."""
        w = rows.shape[1]
        out = np.zeros((len(rows), self.rows), dtype=np.int64)
        held = self.words[: self.rows, :w]
        for r, row in enumerate(rows):
            out[r] = np.bitwise_count(held & row).sum(axis=1, dtype=np.int64)
        return out

    def shared(self, rows: np.ndarray, pr: np.ndarray, pa: np.ndarray) -> np.ndarray:
        """Per pair: how many set bits rows[pr[i]] and the stored row pa[i] have in common."""
        w = rows.shape[1]
        out = np.zeros(len(pr), dtype=np.int64)
        step = max(1, _PAIR_WORDS // max(1, w))
        for at in range(0, len(pr), step):  # in slices: the AND's temporary stays ~8 MB
            both = self.words[pa[at:at + step], :w] & rows[pr[at:at + step]]
            out[at:at + step] = np.bitwise_count(both).sum(axis=1, dtype=np.int64)
        return out


class SetBatch:
    """A batch of key sets as arrays: the entries (distinct (key, set) pairs, sorted by key then set), the
    union of the keys, how many sets hold each, and every pair's intersection inside the batch."""

    def __init__(self, keys: np.ndarray, owner: np.ndarray, m: int):
        """keys[i] belongs to set owner[i] (owner ascending; repeats allowed, in each set's own order)."""
        self._flat = keys, owner  # kept for raw(): ties in most_common follow each set's own order
        self.m = m
        order = np.lexsort((owner, keys))
        keys, owner = keys[order], owner[order]
        keep = np.ones(len(keys), dtype=np.bool_)
        keep[1:] = (keys[1:] != keys[:-1]) | (owner[1:] != owner[:-1])
        keys, self.owner = keys[keep], owner[keep]
        first = np.ones(len(keys), dtype=np.bool_)
        first[1:] = keys[1:] != keys[:-1]
        self.keys = keys[first]                       # the union, sorted
        self.key = np.cumsum(first) - 1               # per entry: its key's index in self.keys
        self.count = np.bincount(self.key, minlength=len(self.keys))  # sets of the batch holding each key
        self.sizes = np.bincount(self.owner, minlength=m)
        self._within: np.ndarray | None = None

    @classmethod
    def of(cls, sets: Sequence[np.ndarray]) -> SetBatch:
        lengths = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
        keys = np.concatenate(sets) if len(sets) else np.zeros(0, dtype=np.int64)
        return cls(keys.astype(np.int64, copy=False), np.repeat(np.arange(len(sets)), lengths), len(sets))

    def raw(self, s: int) -> np.ndarray:
        """Set s's keys as given (a slice: owners ascend)."""
        keys, owner = self._flat
        lo, hi = np.searchsorted(owner, [s, s + 1])
        return keys[lo:hi]

    def within(self) -> np.ndarray:
        """m x m: |A∩B| for every pair of the batch's sets (0 on the diagonal). Each set's row is a bitmap of
        the keys 2+ sets hold, AND-ed with every other row and popcounted (BLAS would do it as a matrix
        product, but OpenBLAS's spinning threads cost more CPU than the product on a busy machine)."""
        if self._within is None:
            m = self.m
            multi = self.count > 1
            keep = multi[self.key]
            column = (np.cumsum(multi) - 1)[self.key[keep]]
            width = int(np.count_nonzero(multi))
            bits = np.zeros((m, (width + 63) // 64 * 64), dtype=np.bool_)
            bits[self.owner[keep], column] = True
            rows = np.packbits(bits, axis=1).view(np.uint64)
            out = np.zeros((m, m), dtype=np.int64)
            for a in range(m):
                out[a] = _popcount(rows & rows[a]).sum(axis=1)
            np.fill_diagonal(out, 0)
            self._within = out
        return self._within

    def flags(self, num: int, den: int) -> np.ndarray:
        """Per set: does another set of the batch hold more than num/den of its keys."""
        if self.m < 2:
            return np.zeros(self.m, dtype=np.bool_)
        return self.within().max(axis=1) * den > num * self.sizes

    def min_sum(self) -> int:
        ordered = np.sort(self.sizes)  # pairs (k, j > k): the min is ordered[k]
        return int((ordered * np.arange(self.m - 1, -1, -1)).sum())

    def shared(self) -> int:
        return int((self.count * (self.count - 1) // 2).sum())


def _codes(keys: Iterable[Any], foreign: dict[Any, int]) -> np.ndarray:
    """Keys as int64 codes: int64 arrays as they are; ints in [0, 2**63) as themselves; any other key gets
    a code of its own below -1 (kept in `foreign`)."""
    if isinstance(keys, np.ndarray) and keys.dtype == np.int64:
        return keys
    items = list(keys)
    if all(type(k) is int and 0 <= k < 1 << 63 for k in items):
        return np.array(items, dtype=np.int64)
    return np.array([k if type(k) is int and 0 <= k < 1 << 63 else foreign.setdefault(k, -2 - len(foreign))
                     for k in items], dtype=np.int64)


class OverlapIndex:
    """Exact overlap figures of every set added so far; a batch of sets costs numpy passes over the batch.

    Keys are numbered by a KeyTable and counted per number (document frequency, df); the inverted index
    (key number -> set ids) is a _Postings arena. Adding a batch: the pooled overlap grows by
    sum over its keys of C(df + c, 2) - C(df, 2) (c = holders in the batch); |A∩B| for an earlier A and a
    new B is the number of B's keys whose postings hold A, bincounted from the gathered postings at once;
    pairs inside the batch come from SetBatch.within(). "Nearest neighbour > threshold" flags only switch on.

    Frequent n-grams (stock phrases: a key turns frequent once frequent_df sets and 1/frequent_share of all
    sets hold it) would make that gather grow with the dataset, so they are skipped unless they can change a
    flag: each example A keeps
    hot[A] = how many frequent n-grams it holds, and |A∩B| <= c_rare(A) + min(h_B, hot[A]). Only the pairs
    whose bound crosses the threshold get their frequent-n-gram count computed exactly, as a popcount of
    the two sets' rows in a bitmap over the frequent n-grams (_BitRows). The answer stays exact.
    Hand-rolled because the gate needs exact figures: datasketch's MinHash LSH only estimates them.
    """

    def __init__(self, threshold: float = NN_THRESHOLD, frequent_df: int = 256, frequent_share: int = 8):
        self._num, self._den = _ratio(threshold)
        self.frequent_df = frequent_df
        self.frequent_share = frequent_share
        self._table = KeyTable()
        self._df = _Grow(np.int32)           # by key number
        self._postings = _Postings()         # by key number: the ids of the sets holding it
        self.sizes = _Grow(np.int64)
        self.flagged = _Grow(np.bool_)
        self.hot = _Grow(np.int64)           # per set: how many of its keys are frequent
        self._bits = _BitRows()              # per set: which frequent keys it holds
        self._frequent = _Grow(np.int64)     # key numbers of the frequent keys, by bitmap column
        self.n_flagged = 0
        self.shared = 0                      # sum over pairs |A∩B| = sum over keys C(df, 2)
        self.min_sum = 0                     # sum over pairs min(|A|, |B|)
        self._size_count = np.zeros(1024, dtype=np.int64)  # sets per size, for min_sum
        self._common = _Grow(np.int64)       # keys that reached _COMMON_DF holders, in the order they did
        self._common_nums = _Grow(np.int64)
        self._foreign: dict[Any, int] = {}   # codes of keys that are not int64 (see _codes)

    def __len__(self) -> int:
        return self.sizes.n

    @property
    def distinct(self) -> int:
        return len(self._table)

    def add(self, keys: Iterable[Any]) -> None:
        self.add_batch(SetBatch.of([_codes(keys, self._foreign)]))

    def add_sets(self, sets: Iterable[Iterable[Any]]) -> None:
        self.add_batch(SetBatch.of([_codes(s, self._foreign) for s in sets]))

    def add_batch(self, b: SetBatch) -> None:
        i0, m = len(self), b.m
        nums = self._table.add(b.keys)
        self._df.extend(np.zeros(len(self._table) - self._df.n, dtype=np.int32))
        old = self._df.view[nums].astype(np.int64)
        cnt = b.count
        self.shared += int((old * cnt + cnt * (cnt - 1) // 2).sum())
        for j, s in enumerate(b.sizes.tolist()):
            self._add_min_sum(s, i0 + j)
        column = self._columns(nums)                  # per key of the batch: its bitmap column, -1 if rare
        frequent = column[b.key] >= 0                 # per entry: a key that was frequent before this batch
        rows = self._bits.pack(b.owner[frequent], column[b.key[frequent]], m)
        flags = self._flags(b, nums, old, frequent, rows)
        self.sizes.extend(b.sizes)
        self.flagged.extend(flags)
        self.n_flagged += int(flags.sum())
        self._postings.add(nums, cnt, i0 + b.owner)
        new = old + cnt
        self._df.view[nums] = new
        self.hot.extend(np.bincount(b.owner[frequent], minlength=m))
        self._bits.add_rows(rows)
        # a key turns frequent at frequent_df holders, or a 1/frequent_share of the sets if more: the
        # postings gathered grow with that bar, the pairs left unsure by the hot bound shrink
        crossed = nums[(column < 0) & (new >= max(self.frequent_df, len(self) // self.frequent_share))]
        if len(crossed):  # their holders, this batch's included, now hold one more frequent key
            holders = self._gather(crossed)
            self.hot.view[:] += np.bincount(holders, minlength=len(self))
            self._bits.add_columns(holders, self._postings.span(crossed)[1])
            self._frequent.extend(crossed)
        self._note_common(b, nums, old, new)

    def _columns(self, nums: np.ndarray) -> np.ndarray:
        """The bitmap column of each key number, -1 for a key that is not frequent."""
        frequent = self._frequent.view
        if not len(frequent):
            return np.full(len(nums), -1, dtype=np.int64)
        order = np.argsort(frequent)
        at = np.minimum(np.searchsorted(frequent, nums, sorter=order), len(frequent) - 1)
        return np.where(frequent[order[at]] == nums, order[at], -1)

    def _gather(self, nums: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """The ids of the sets holding keys `nums` (int64); with labels: label[q] + id for each id of query q."""
        start, length = self._postings.span(nums)
        found = self._postings.ids[_spans(start, length)]
        if labels is None:
            return found.astype(np.int64)
        out = np.repeat(labels, length)
        out += found
        return out

    def _flags(self, b: SetBatch, nums: np.ndarray, old: np.ndarray, frequent: np.ndarray,
               rows: np.ndarray) -> np.ndarray:
        """Set the earlier sets' flags against the batch; return the batch's own flags. frequent: per entry of
        b, a key frequent before the batch; rows: the batch's sets as bitmap rows over those keys."""
        num, den, i0 = self._num, self._den, len(self)
        flag_b = b.flags(num, den)
        if i0 == 0 or not len(b.key):
            return flag_b
        # integer thresholds: shared * den > num * size  <=>  shared > (num * size) // den
        over_a = num * self.sizes.view // den
        over_b = num * b.sizes // den
        flagged, hot = self.flagged.view.copy(), self.hot.view
        rare = (old[b.key] >= 1) & ~frequent
        h_b = np.bincount(b.owner[frequent], minlength=b.m)
        pair = self._gather(nums[b.key[rare]], b.owner[rare] * i0)  # batch set * i0 + earlier set, per shared key
        span = max(1, (1 << 21) // i0)  # R (span x i0) and its temporaries stay ~16 MB each
        for r0 in range(0, b.m, span):
            r1 = min(b.m, r0 + span)
            part = pair if span >= b.m else pair[(pair >= r0 * i0) & (pair < r1 * i0)] - r0 * i0
            shared = np.bincount(part, minlength=(r1 - r0) * i0).reshape(r1 - r0, i0)  # |A∩B| over rare keys
            h, over = h_b[r0:r1], over_b[r0:r1]
            # |A∩B| <= shared + min(h_B, hot[A]): a pair can pass A's threshold only if shared > over_a - hot[A]
            # and B's only if shared > over_b - h_B, and matters only while that flag is off (two passes over
            # R; the pairs left are few); their bound is then checked, and what passes it counted exactly
            maybe = shared > np.where(flagged, _NEVER, over_a - hot)
            maybe |= shared > np.where(flag_b[r0:r1], _NEVER, over - h)[:, None]
            pr, pa = np.nonzero(maybe)
            bound = shared[pr, pa] + np.minimum(h[pr], hot[pa])
            unsure = ((bound > over_a[pa]) & ~flagged[pa]) | ((bound > over[pr]) & ~flag_b[r0 + pr])
            pr, pa = pr[unsure], pa[unsure]
            whole = np.bincount(pr, minlength=r1 - r0) > _WHOLE_ROW * i0  # unsure against most: count all at once
            if whole.any():
                exact = shared[whole] + self._bits.shared_all(rows[r0:r1][whole])
                flagged |= (exact > over_a).any(axis=0)
                flag_b[r0:r1][whole] |= (exact > over[whole, None]).any(axis=1)
                pr, pa = pr[~whole[pr]], pa[~whole[pr]]
            if len(pr):
                exact = shared[pr, pa] + self._bits.shared(rows, r0 + pr, pa)
                flagged[pa[exact > over_a[pa]]] = True
                flag_b[(r0 + pr)[exact > over[pr]]] = True
        fresh = flagged & ~self.flagged.view
        self.n_flagged += int(fresh.sum())
        self.flagged.view[fresh] = True
        return flag_b

    def _note_common(self, b: SetBatch, nums: np.ndarray, old: np.ndarray, new: np.ndarray) -> None:
        """Keys reaching _COMMON_DF holders, in the order the set-at-a-time index met them: by the set that
        made the count, then by that set's iteration order as a Python set (ties in most_common keep it)."""
        reached = np.flatnonzero((old < _COMMON_DF) & (new >= _COMMON_DF))
        if not len(reached):
            return
        first_entry = np.cumsum(b.count) - b.count
        by = b.owner[first_entry[reached] + (_COMMON_DF - 1 - old[reached])]
        rank = np.zeros(len(reached), dtype=np.int64)
        sets, counts = np.unique(by, return_counts=True)
        for s in sets[counts > 1].tolist():
            at = np.flatnonzero(by == s)
            met = np.fromiter(set(b.raw(s).tolist()), dtype=np.int64)  # the order a Python set iterates in
            by_key = np.argsort(met)
            rank[at] = by_key[np.searchsorted(met, b.keys[reached[at]], sorter=by_key)]
        order = np.lexsort((rank, by))
        self._common.extend(b.keys[reached[order]])
        self._common_nums.extend(nums[reached[order]])

    def _add_min_sum(self, s: int, held: int) -> None:
        if s >= len(self._size_count):
            grown = np.zeros(2 * s + 1, dtype=np.int64)
            grown[: len(self._size_count)] = self._size_count
            self._size_count = grown
        below = self._size_count[:s]
        self.min_sum += int(np.dot(np.arange(s), below)) + s * (held - int(below.sum()))
        self._size_count[s] += 1

    @property
    def pooled_overlap(self) -> float:
        return self.shared / self.min_sum if self.min_sum else 0.0

    @property
    def share_flagged(self) -> float:
        return self.n_flagged / len(self) if len(self) else 0.0

    def df(self, key: Any) -> int:
        code = _codes([key], dict(self._foreign))
        at = int(self._table.find(code)[0])
        return 0 if at < 0 else int(self._df.view[at])

    def most_common(self, k: int) -> list[tuple[Any, int]]:
        """The k keys held by the most sets (among those held by _COMMON_DF or more), with their df; ties in
        the order the keys reached _COMMON_DF (as heapq.nlargest over that order would give)."""
        dfs = self._df.view[self._common_nums.view]
        top = np.argsort(-dfs, kind="stable")[:k]
        names = {code: key for key, code in self._foreign.items()}
        return [(names.get(key, key), int(df)) for key, df in
                zip(self._common.view[top].tolist(), dfs[top].tolist(), strict=True)]


class BatchOverlap:
    """OverlapIndex's figures (distinct, shared, min_sum, n_flagged) for one batch of sets, from SetBatch
    alone (no index). Same numbers as OverlapIndex (tested); for batches, not datasets: within() is m x m."""

    def __init__(self, threshold: float = NN_THRESHOLD):
        self._num, self._den = _ratio(threshold)
        self._sets: list[np.ndarray] = []
        self._batch: SetBatch | None = None

    def __len__(self) -> int:
        return len(self._sets) if self._batch is None else self._batch.m

    def add(self, keys: Iterable[Any]) -> None:
        self._sets.append(np.fromiter(keys, dtype=np.int64))
        self._batch = None

    def use(self, batch: SetBatch) -> None:
        self._batch = batch

    def figures(self) -> tuple[int, int, int, int]:
        """(distinct, shared, min_sum, n_flagged), as OverlapIndex would hold them after the same adds."""
        if self._batch is None:
            self._batch = SetBatch.of(self._sets)
        b = self._batch
        return len(b.keys), b.shared(), b.min_sum(), int(b.flags(self._num, self._den).sum())

    @property
    def distinct(self) -> int:
        return self.figures()[0]

    @property
    def pooled_overlap(self) -> float:
        _, shared, min_sum, _ = self.figures()
        return shared / min_sum if min_sum else 0.0

    @property
    def share_flagged(self) -> float:
        return self.figures()[3] / len(self) if len(self) else 0.0


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per element of a uint64 array."""
    return np.bitwise_count(words)


def pooled_overlap(sets: Sequence[Iterable[Any]]) -> float:
    """sum over pairs |A∩B| / sum over pairs min(|A|,|B|), in time linear in the total set sizes."""
    index = OverlapIndex()
    index.add_sets(sets)
    return index.pooled_overlap


def share_nn_over(sets: Sequence[Iterable[Any]], threshold: float = NN_THRESHOLD) -> float:
    """Share of sets A whose nearest other set B has |A∩B| / |A| > threshold (empty sets: never)."""
    index = OverlapIndex(threshold)
    index.add_sets(sets)
    return index.share_flagged
