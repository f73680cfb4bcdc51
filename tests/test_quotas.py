from hypothesis import given, settings
from hypothesis import strategies as st

from agent.plan import quotas


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1000)), min_size=1, max_size=12),
    total=st.integers(min_value=1, max_value=2_000_000),
)
def test_quotas_are_nonnegative_integers_summing_to_total(weights, total):
    if sum(weights) == 0:
        weights = weights[:-1] + [1.0]
    shares = [w / sum(weights) for w in weights]
    q = quotas(shares, total)
    assert all(isinstance(x, int) and x >= 0 for x in q)
    assert sum(q) == total
    for share, x in zip(shares, q, strict=True):
        if share == 0:
            assert x == 0
        # largest remainder never moves a quota more than one away from its exact value
        assert abs(x - share * total) < 1 + 1e-6


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=10), min_size=2, max_size=8), st.integers(1, 10_000))
def test_quotas_are_deterministic_and_order_stable_for_ties(weights, total):
    shares = [w / sum(weights) for w in weights]
    assert quotas(shares, total) == quotas(list(shares), total)


def test_seed_composition_table_for_5000_examples():
    # seed 000's "Example Composition for 5,000 Example Dataset": 1750/1400/600/900/350 and 1500/2500/1000
    assert quotas([0.35, 0.28, 0.12, 0.18, 0.07], 5000) == [1750, 1400, 600, 900, 350]
    assert quotas([0.30, 0.50, 0.20], 5000) == [1500, 2500, 1000]


def test_remainders_go_to_the_largest_fraction_then_the_earlier_category():
    assert quotas([0.5, 0.5], 3) == [2, 1]
    assert quotas([0.2, 0.3, 0.5], 7) == [1, 2, 4]  # exact 1.4, 2.1, 3.5: the .5 gets the extra seat
    assert quotas([0.0, 0.5, 0.5], 1) == [0, 1, 0]
