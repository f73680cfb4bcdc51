"""Draw a batch's specs from what remains: every dimension's remaining counts shrink in proportion.

Each dimension's n categories are allocated exactly (largest remainder over the available counts), then
shuffled into n specs; excluded pairs are repaired by swapping a category between two specs of the batch,
which keeps every dimension's counts unchanged.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from agent.plan import quotas

Counts = dict[str, dict[str, int]]
MAX_REPAIR_PASSES = 20


def allocate(available: dict[str, int], n: int) -> dict[str, int]:
    """n seats among categories in proportion to their available counts, never above them."""
    names = list(available)
    total = sum(available.values())
    if n <= 0 or total <= 0:
        return dict.fromkeys(names, 0)
    n = min(n, total)
    seats = quotas([available[c] / total for c in names], n)
    out = dict(zip(names, seats, strict=True))
    # rounding can put a seat on a category with fewer available than seats: move it to one with room
    for c in names:
        while out[c] > available[c]:
            out[c] -= 1
            spare = max((k for k in names if out[k] < available[k]), key=lambda k: available[k] - out[k])
            out[spare] += 1
    return out


def violations(spec: dict[str, str], exclusions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    items = {f"{d}={c}" for d, c in spec.items()}
    return [pair for pair in exclusions if pair[0] in items and pair[1] in items]


def draw(available: Counts, n: int, rng: random.Random,
         exclusions: Sequence[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """n label sets whose per-dimension counts are the exact proportional share of `available`."""
    n = min([n] + [sum(cats.values()) for cats in available.values()])
    if n <= 0:
        return []
    columns: dict[str, list[str]] = {}
    for dim, cats in available.items():
        seats = allocate(cats, n)
        column = [c for c, k in seats.items() for _ in range(k)]
        rng.shuffle(column)
        columns[dim] = column
    specs = [{dim: columns[dim][i] for dim in columns} for i in range(n)]
    if exclusions:
        repair(specs, list(exclusions), rng)
    return specs


def repair(specs: list[dict[str, str]], exclusions: list[tuple[str, str]], rng: random.Random) -> None:
    """Swap one dimension's category with another spec where that clears a violation and adds none.

    Bounded: exclusions are avoided where the batch allows it, never at the cost of exact counts.
    """
    for _ in range(MAX_REPAIR_PASSES):
        bad = [i for i, s in enumerate(specs) if violations(s, exclusions)]
        if not bad:
            return
        for i in bad:
            pair = violations(specs[i], exclusions)
            if not pair:
                continue
            dim = pair[0][rng.randrange(2)].partition("=")[0]
            order = list(range(len(specs)))
            rng.shuffle(order)
            for j in order:
                if j == i or specs[j][dim] == specs[i][dim]:
                    continue
                a, b = dict(specs[i]), dict(specs[j])
                a[dim], b[dim] = b[dim], a[dim]
                if not violations(a, exclusions) and not violations(b, exclusions):
                    specs[i], specs[j] = a, b
                    break
