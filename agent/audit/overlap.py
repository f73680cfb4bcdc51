"""Exact, incremental n-gram overlap between examples (the seed's "< 30% between examples").

Linear in the n-grams added: document frequencies give the pooled overlap without comparing pairs, and
an inverted index gives each new example's nearest neighbour share."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

NN_THRESHOLD = 0.3
_ID_BITS = 21  # three token ids packed in one int64: exact up to 2,097,152 distinct words
_ID_MASK = (1 << _ID_BITS) - 1
_COMMON_DF = 16  # n-grams held by this many examples are candidates for the avoid list


# ---- sharded hash tables ---------------------------------------------------------------------------
# A Python dict or set of ~10M keys stops the world for ~2 s when it grows (measured: 2.4 s for one
# 35k-key batch at 11M keys). Keys are spread over 64 shards whose expected sizes differ by up to 2x
# (log-spaced shares of the residues mod a prime), so their resizes fall at different moments and
# each costs at most ~1/45 of the whole table.
_SHARDS = 64
_SLOTS = 4093  # a prime: residues of the packed n-gram keys spread evenly


def _routing() -> list[int]:
    weights = [2 ** (i / _SHARDS) for i in range(_SHARDS)]
    bounds = [sum(weights[: i + 1]) / sum(weights) * _SLOTS for i in range(_SHARDS)]
    return [next(i for i, b in enumerate(bounds) if r < b) for r in range(_SLOTS)]


_ROUTE = _routing()


def _sharded(kind: type) -> tuple[list[Any], list[Any]]:
    """(the shards, a table residue -> shard): look up key k in table[hash(k) % _SLOTS]."""
    shards = [kind() for _ in range(_SHARDS)]
    return shards, [shards[i] for i in _ROUTE]


# ---- n-gram overlap, exact and incremental -----------------------------------------------------------

class _Grow:
    """A growable numpy vector: numpy has no amortised O(1) append, and the index needs vector ops."""

    def __init__(self, dtype: Any):
        self.buf = np.zeros(1024, dtype=dtype)
        self.n = 0

    def append(self, value: Any) -> None:
        if self.n == len(self.buf):
            self.buf = np.concatenate([self.buf, np.zeros_like(self.buf)])
        self.buf[self.n] = value
        self.n += 1

    @property
    def view(self) -> np.ndarray:
        return self.buf[: self.n]


class OverlapIndex:
    """Inverted index n-gram -> ids of the examples holding it; exact overlap figures as sets arrive.

    Adding set B: the postings of B's n-grams name every earlier A once per shared n-gram, so their
    total length is sum_A |A∩B| (the growth of sum_g C(df_g, 2)) and their bincount gives |A∩B| for
    every A at once, without enumerating pairs. "Nearest neighbour > threshold" flags only switch on.

    Frequent n-grams (df >= frequent_df: stock phrases held by a large share of examples) would make
    that gather grow with the dataset, so they are skipped unless they can change a flag: each example
    A keeps hot[A] = how many frequent n-grams it holds, and |A∩B| <= c_rare(A) + min(h_B, hot[A]).
    Only the A whose bound crosses the threshold get their frequent-n-gram count computed exactly
    (binary search in the sorted postings, or a full gather when cheaper). The answer stays exact.
    Hand-rolled because the gate needs exact figures: datasketch's MinHash LSH only estimates them.
    """

    def __init__(self, threshold: float = NN_THRESHOLD, frequent_df: int = 256):
        frac = Fraction(threshold).limit_denominator(10_000)  # integer comparisons: 3 of 10 is not > 30%
        self._num, self._den = frac.numerator, frac.denominator
        self.frequent_df = frequent_df
        # key -> the id of its only holder, or an int32 array [df, id_1 .. id_df, spare capacity]. No
        # Python containers inside, so the garbage collector never walks these dicts (it did: a 2-3 s
        # pause per full collection at 50k examples when postings were lists).
        _, self._route = _sharded(dict)
        self.distinct = 0  # distinct keys seen
        self.sizes = _Grow(np.int64)
        self.flagged = _Grow(np.bool_)
        self.hot = _Grow(np.int64)  # per example: how many of its n-grams are frequent
        self.n_flagged = 0
        self.shared = 0  # sum over pairs |A∩B| = sum over n-grams C(df, 2)
        self.min_sum = 0  # sum over pairs min(|A|, |B|)
        self._size_count = np.zeros(1024, dtype=np.int64)  # examples per set size, for min_sum
        self._common: dict[Any, None] = {}  # keys held by _COMMON_DF+ sets: candidates for the avoid list

    def __len__(self) -> int:
        return self.sizes.n

    def add(self, keys: Iterable[Any]) -> None:
        keys = set(keys)
        i, s = len(self), len(keys)
        small: list[int] = []
        rare: list[np.ndarray] = []
        hot: list[np.ndarray] = []
        crossed: list[np.ndarray] = []  # postings of n-grams that become frequent with this set
        route, limit = self._route, self.frequent_df
        for k in keys:
            postings = route[hash(k) % _SLOTS]
            p = postings.setdefault(k, i)
            if p is i:  # a new n-gram, the common case: one dict operation
                self.distinct += 1
                if limit == 1:
                    crossed.append(_view(p))
                continue
            if type(p) is int:
                if limit > 1:
                    small.append(p)
                else:
                    hot.append(np.array([p]))
                postings[k] = p = np.array([2, p, i, 0], dtype=np.int32)
                df = 1
            else:
                df = int(p[0])
                if df + 1 == len(p):
                    postings[k] = p = np.concatenate([p, np.empty_like(p)])
                p[df + 1] = i
                p[0] = df + 1
                ids = p[1 : df + 1]
                if df >= limit:
                    hot.append(ids)
                else:
                    rare.append(ids)
                if df + 1 == _COMMON_DF:
                    self._common[k] = None
            if df + 1 == limit:
                crossed.append(_view(p))
        flag_b = self._compare(i, s, small, rare, hot)
        self._add_min_sum(s)
        self.sizes.append(s)
        self.flagged.append(flag_b)
        self.n_flagged += flag_b
        self.hot.append(len(hot))
        for ids in crossed:
            self.hot.view[ids] += 1

    def _compare(self, i: int, s: int, small: list[int], rare: list[np.ndarray], hot: list[np.ndarray]) -> bool:
        """Update the earlier sets' flags against the new set B (id i, size s); return B's flag."""
        if not (small or rare or hot):
            return False
        num, den = self._num, self._den
        gathered = np.concatenate([np.asarray(small, dtype=np.int64), *rare])
        self.shared += len(gathered) + sum(len(h) for h in hot)
        shared = np.bincount(gathered, minlength=i)  # exact |A∩B| over the rare n-grams
        sizes, flagged = self.sizes.view, self.flagged.view
        over_a = shared * den > num * sizes
        flag_b = bool(shared.max() * den > num * s)
        if hot:
            bound = shared + np.minimum(len(hot), self.hot.view)
            unsure = (bound * den > num * sizes) & ~over_a & ~flagged
            if not flag_b:
                unsure |= bound * den > num * s
            cands = np.flatnonzero(unsure)
            if len(cands):
                exact = shared[cands] + _count_in(hot, cands, i)
                over_a[cands] |= exact * den > num * sizes[cands]
                flag_b = flag_b or bool((exact * den > num * s).any())
        fresh = over_a & ~flagged
        self.n_flagged += int(fresh.sum())
        flagged[fresh] = True
        return flag_b

    def _add_min_sum(self, s: int) -> None:
        if s >= len(self._size_count):
            grown = np.zeros(2 * s + 1, dtype=np.int64)
            grown[: len(self._size_count)] = self._size_count
            self._size_count = grown
        below = self._size_count[:s]
        self.min_sum += int(np.dot(np.arange(s), below)) + s * (len(self) - int(below.sum()))
        self._size_count[s] += 1

    @property
    def pooled_overlap(self) -> float:
        return self.shared / self.min_sum if self.min_sum else 0.0

    @property
    def share_flagged(self) -> float:
        return self.n_flagged / len(self) if len(self) else 0.0

    def df(self, key: Any) -> int:
        p = self._route[hash(key) % _SLOTS].get(key)
        return 0 if p is None else len(_view(p))

    def most_common(self, k: int) -> list[tuple[Any, int]]:
        """The k keys held by the most sets (among those held by _COMMON_DF or more), with their df."""
        return heapq.nlargest(k, ((key, self.df(key)) for key in self._common), key=lambda kv: kv[1])


class BatchOverlap:
    """OverlapIndex's figures (distinct, shared, min_sum, n_flagged) for one small batch of sets, computed
    at once: a batch x n-gram 0/1 matrix times its transpose gives every |A∩B| in one BLAS call, instead
    of a Python-level insert per n-gram. Same numbers as OverlapIndex (tested); for batches, not datasets:
    the matrix is len(sets) x distinct n-grams."""

    def __init__(self, threshold: float = NN_THRESHOLD):
        frac = Fraction(threshold).limit_denominator(10_000)
        self._num, self._den = frac.numerator, frac.denominator
        self._sets: list[np.ndarray] = []
        self._figures: tuple[int, int, int, int] | None = None

    def __len__(self) -> int:
        return len(self._sets)

    def add(self, keys: Iterable[Any]) -> None:
        self._sets.append(np.unique(np.fromiter(keys, dtype=np.int64)))
        self._figures = None

    def figures(self) -> tuple[int, int, int, int]:
        """(distinct, shared, min_sum, n_flagged), as OverlapIndex would hold them after the same adds."""
        if self._figures is None:
            self._figures = self._compute()
        return self._figures

    def _compute(self) -> tuple[int, int, int, int]:
        m = len(self._sets)
        sizes = np.array([len(x) for x in self._sets], dtype=np.int64)
        if m == 0 or not sizes.any():
            return 0, 0, 0, 0
        keys = np.concatenate(self._sets)
        owner = np.repeat(np.arange(m), sizes)
        distinct, column, df = np.unique(keys, return_inverse=True, return_counts=True)
        shared = int((df * (df - 1) // 2).sum())
        ordered = np.sort(sizes)
        min_sum = int((ordered * np.arange(m - 1, -1, -1)).sum())  # pairs (k, j > k): min is ordered[k]
        # |A∩B| for every pair, over the n-grams held by 2+ sets: each set's row as a bitmap of those
        # columns, AND-ed with every other row and popcounted (BLAS would do it as a matrix product, but
        # OpenBLAS's spinning threads cost more CPU than the product on a busy machine)
        keep = df[column] > 1
        width = int(np.count_nonzero(df > 1))
        rank = np.cumsum(df > 1) - 1
        bits = np.zeros((m, (width + 63) // 64 * 64), dtype=np.bool_)
        bits[owner[keep], rank[column[keep]]] = True
        rows = np.packbits(bits, axis=1).view(np.uint64)
        best = np.zeros(m, dtype=np.int64)
        for a in range(m):
            inter = _popcount(rows & rows[a]).sum(axis=1)
            inter[a] = 0
            best[a] = inter.max()
        n_flagged = int((best * self._den > self._num * sizes).sum())
        return len(distinct), shared, min_sum, n_flagged

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


_BYTE_BITS = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per element of a uint64 array (numpy >= 2 has it built in)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _BYTE_BITS[words.view(np.uint8)].reshape(*words.shape, 8).sum(axis=-1, dtype=np.int64)


def _view(p: int | np.ndarray) -> np.ndarray:
    """The ids of a posting."""
    # type(p) is int: cheaper than isinstance on this hot path, but mypy does not narrow on it
    return np.array([p]) if type(p) is int else p[1 : int(p[0]) + 1]  # type: ignore[index]


def _count_in(postings: list[np.ndarray], cands: np.ndarray, n: int) -> np.ndarray:
    """For each candidate id, in how many of the (sorted) postings it appears."""
    total = sum(len(p) for p in postings)
    if total < 8 * len(postings) * len(cands):  # a full gather is cheaper than the binary searches
        return np.bincount(np.concatenate(postings), minlength=n)[cands]
    counts = np.zeros(len(cands), dtype=np.int64)
    for p in postings:
        at = np.minimum(np.searchsorted(p, cands), len(p) - 1)
        counts += p[at] == cands
    return counts


def pooled_overlap(sets: Sequence[Iterable[Any]]) -> float:
    """sum over pairs |A∩B| / sum over pairs min(|A|,|B|), in time linear in the total set sizes."""
    index = OverlapIndex()
    for s in sets:
        index.add(s)
    return index.pooled_overlap


def share_nn_over(sets: Sequence[Iterable[Any]], threshold: float = NN_THRESHOLD) -> float:
    """Share of sets A whose nearest other set B has |A∩B| / |A| > threshold (empty sets: never)."""
    index = OverlapIndex(threshold)
    for s in sets:
        index.add(s)
    return index.share_flagged


