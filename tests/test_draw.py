import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.draw import allocate, draw, violations


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=8), st.integers(0, 120))
def test_allocate_is_exact_and_capped(counts, n):
    available = {f"c{i}": k for i, k in enumerate(counts)}
    seats = allocate(available, n)
    assert sum(seats.values()) == min(n, sum(counts))
    assert all(0 <= seats[c] <= available[c] for c in available)


def test_allocate_is_proportional():
    assert allocate({"a": 60, "b": 30, "c": 10}, 50) == {"a": 30, "b": 15, "c": 5}
    assert allocate({"a": 1, "b": 0, "c": 99}, 10) == {"a": 0, "b": 0, "c": 10}


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 100))
def test_draw_keeps_every_dimension_exact_and_avoids_exclusions(seed, n):
    available = {
        "behaviour": {"standard": 72, "ambiguous": 8, "adversarial": 8, "negative": 12},
        "length": {"short": 30, "medium": 50, "long": 20},
        "turns": {"single": 90, "multi": 10},
    }
    exclusions = [("behaviour=negative", "length=long"), ("behaviour=ambiguous", "length=long")]
    specs = draw(available, n, random.Random(seed), exclusions)
    assert len(specs) == n
    for dim, cats in available.items():
        got = {c: sum(1 for s in specs if s[dim] == c) for c in cats}
        assert got == allocate(cats, n)
    # 20% long vs 20% negative+ambiguous: a batch always has room to keep them apart
    assert not any(violations(s, exclusions) for s in specs)


def test_draw_never_exceeds_what_is_available():
    available = {"a": {"x": 1, "y": 2}, "b": {"p": 3, "q": 0}}
    specs = draw(available, 10, random.Random(0))
    assert len(specs) == 3
    assert sum(s["a"] == "x" for s in specs) == 1 and sum(s["b"] == "q" for s in specs) == 0
