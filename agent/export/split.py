"""Train/validation split: stratified, seeded, and with no near-duplicate pair across the two sides.

Memory: only (ledger id, stratum, first user message) per example is held, never whole records; the
records are streamed again from the ledger when the files are written.

1. Groups. Every example is checked, in ledger order, against all earlier ones with the plan's near-duplicate
   rule (NearDupIndex: SequenceMatcher ratio > threshold in either order, autojunk off); a match joins the
   two in one group (union-find). Groups are the unit of assignment, so a pair found here never straddles.
2. Strata. A group's stratum is its first member's categories on STRATA dimensions (question_type x
   behaviour by default; the plan's first two dimensions when it has neither). Validation places are shared
   out over strata in proportion to their size by the largest remainder method (plan.quotas), so tiny strata
   get 0 or 1 place instead of an impossible fraction; within a stratum, groups are taken in a seeded
   shuffle order.
3. Check. NearDupIndex.find returns one match per text, so a text close to two earlier texts in different
   groups could still leave a pair across. Every validation text is therefore checked against all training
   texts (the validation text first: the order the export's own check of the written files uses); a
   validation group with a match in training moves to training, and the check repeats until nothing crosses.
   Past dedup.AUTO_SWITCH texts NearDupIndex takes candidates from MinHash LSH, which can miss a pair with
   little 5-gram overlap (see agent/audit/dedup.py); below it every check is exact. When step 1 was exact
   and found no match at all (the usual case: the run rejected every near-duplicate with the same rule), no
   pair exists, so none can cross: the check is skipped and Split.unique says so.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.audit.dedup import NearDupIndex
from agent.plan import Plan, quotas

STRATA = ("question_type", "behaviour")
MAX_CHECK_ROUNDS = 50


@dataclass
class Item:
    id: int
    stratum: tuple[str, ...]
    text: str


@dataclass
class Split:
    validation: set[int]                      # ledger ids on the validation side; everything else is training
    n_train: int
    n_val: int
    target_val: int                           # round(n * share): what the proportions asked for
    by: tuple[str, ...]                       # the dimensions the strata were made of
    strata: dict[tuple[str, ...], tuple[int, int]] = field(default_factory=dict)  # stratum -> (train, val)
    groups: int = 0                           # groups of 2+ near-duplicates kept on one side
    grouped: int = 0                          # examples in those groups
    moved: int = 0                            # validation groups moved to training by the cross check
    # True when the split proved that no two examples are near-duplicates: every example was checked exactly
    # (the index never switched to LSH) against all earlier ones and none matched. The export then knows the
    # outcome of re-checking the written files for near-duplicates (none) without running it.
    unique: bool = False


def strata_dims(plan: Plan) -> tuple[str, ...]:
    dims = tuple(d for d in STRATA if d in plan.dimensions)
    return dims or tuple(list(plan.dimensions)[:2])


class _Groups:
    """Union-find over 0..n-1 (hand-rolled: a dozen lines, no library needed for path halving)."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        p = self.parent
        while p[i] != i:
            p[i] = p[p[i]]
            i = p[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)   # the earlier example stays the root


def split(items: Iterable[Item], share: float, threshold: float, seed: int = 0,
          by: tuple[str, ...] = STRATA, known_unique: bool = False) -> Split:
    """Assign every item to training or validation (see the module docstring). known_unique: the caller
    has proof that no two texts are near-duplicates at `threshold` (Ledger.proves_unique: the run's own exact
    finds), so the search here could find nothing and is skipped."""
    ids: list[int] = []
    strata: list[tuple[str, ...]] = []
    texts: list[str] = []
    groups = _Groups()
    index = None if known_unique else NearDupIndex(threshold)
    hits = 0
    for item in items:
        i = groups.add()
        ids.append(item.id)
        strata.append(item.stratum)
        texts.append(item.text)
        if index is None:
            continue
        hit = index.find(item.text)
        if hit is not None:
            hits += 1
            groups.union(i, hit[0])  # type: ignore[arg-type]  # the ids added above are ints
        index.add(i, item.text)
    # exact finds over ALL earlier texts that never matched: no pair of these texts is over the threshold
    unique = known_unique or (hits == 0 and index is not None and not index.fast)
    del index
    n = len(ids)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        members[groups.find(i)].append(i)
    target = round(n * share) if share > 0 else 0
    val = _assign(members, strata, target, random.Random(seed)) if target else set()
    # no pair at all (unique) means no pair across the sides: the cross check could only find nothing
    moved = _check(members, groups, texts, val, threshold) if val and not unique else 0
    per: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    for i in range(n):
        per[strata[i]][1 if i in val else 0] += 1
    big = [m for m in members.values() if len(m) > 1]
    return Split(validation={ids[i] for i in val}, n_train=n - len(val), n_val=len(val), target_val=target, by=by,
                 strata={k: (v[0], v[1]) for k, v in sorted(per.items())}, groups=len(big),
                 grouped=sum(len(m) for m in big), moved=moved, unique=unique)


def _assign(members: dict[int, list[int]], strata: list[tuple[str, ...]], target: int,
            rng: random.Random) -> set[int]:
    by_stratum: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for root in members:
        by_stratum[strata[root]].append(root)
    keys = sorted(by_stratum)
    sizes = [sum(len(members[r]) for r in by_stratum[k]) for k in keys]
    places = quotas([float(s) for s in sizes], target)
    val: set[int] = set()
    short = 0
    leftovers: list[int] = []
    for key, want in zip(keys, places, strict=True):
        roots = sorted(by_stratum[key])
        rng.shuffle(roots)
        got = 0
        for root in roots:
            size = len(members[root])
            if got + size <= want:
                val.update(members[root])
                got += size
            else:
                leftovers.append(root)
        short += want - got
    # places a stratum could not fill exactly (its groups were too big) go to the smallest groups elsewhere
    rng.shuffle(leftovers)
    for root in sorted(leftovers, key=lambda r: len(members[r])):
        if short <= 0:
            break
        if len(members[root]) <= short:
            val.update(members[root])
            short -= len(members[root])
    return val


def _check(members: dict[int, list[int]], groups: _Groups, texts: list[str], val: set[int],
           threshold: float) -> int:
    moved = 0
    for _ in range(MAX_CHECK_ROUNDS):
        crossing = _crossing(texts, val, threshold)
        if not crossing:
            return moved
        for v in crossing:
            root = groups.find(v)
            if root in members and members[root][0] in val:
                val.difference_update(members[root])
                moved += 1
    raise RuntimeError("near-duplicates still cross the split after repeated moves")  # unreachable in practice


def _crossing(texts: list[str], val: set[int], threshold: float) -> set[int]:
    """Validation examples with a near-duplicate among the training ones (the validation text first)."""
    train_index = NearDupIndex(threshold)
    train_index.extend((i, t) for i, t in enumerate(texts) if i not in val)
    return {i for i in sorted(val) if train_index.find(texts[i]) is not None}
