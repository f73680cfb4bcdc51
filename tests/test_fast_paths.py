"""The audit's fast paths give the same answers as the straightforward code they replaced (issue 11 item 7).

Each pair is checked on generated sets and texts, the simulated provider's output and hand-written cases:
same overlap figures, same verbs and topics, same labels. Speed itself is measured by bench/, never here.
"""

from __future__ import annotations

import random

import pytest

from agent.audit.diversity import DiversityTracker
from agent.audit.overlap import BatchOverlap, OverlapIndex
from tests.test_diversity import brute, common_key_sets, make_examples, random_texts, trigram_sets


def as_int_sets(sets: list[set]) -> list[set[int]]:
    ids: dict = {}
    return [{ids.setdefault(k, len(ids)) for k in s} for s in sets]


def index_figures(sets: list[set[int]], threshold: float) -> tuple[int, int, int, int]:
    index = OverlapIndex(threshold)
    for s in sets:
        index.add(s)
    return index.distinct, index.shared, index.min_sum, index.n_flagged


def batch_figures(sets: list[set[int]], threshold: float) -> tuple[int, int, int, int]:
    batch = BatchOverlap(threshold)
    for s in sets:
        batch.add(s)
    return batch.figures()


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5])
def test_batch_overlap_equals_the_incremental_index(threshold):
    rng = random.Random(int(threshold * 100))
    cases = [
        as_int_sets(trigram_sets(random_texts(rng.randrange(1000), 120))),
        as_int_sets(common_key_sets(rng.randrange(1000), 150)),
        [set(rng.sample(range(60), rng.randint(0, 12))) for _ in range(64)],    # near the threshold
        [set(rng.sample(range(200), rng.randint(0, 90))) for _ in range(65)],   # 65 rows: past one word
        [set(), set(), {1}],
        [{7}],
        [],
    ]
    for sets in cases:
        expected = index_figures(sets, threshold)
        assert batch_figures(sets, threshold) == expected
        if 1 < len(sets) <= 70:
            shared, mins, flagged = brute(sets, threshold)
            assert (expected[1], expected[2], expected[3]) == (shared, mins, flagged)
    assert any(index_figures(s, threshold)[3] for s in cases)   # the flag path is exercised


def test_batch_metrics_equal_a_fresh_tracker_fed_the_batch():
    """A batch's metrics (from BatchOverlap) equal the cumulative metrics of a tracker holding only it."""
    examples = make_examples(5, 120)
    tracker = DiversityTracker({"tone": ["professional", "conversational", "mixed"]})
    for start in range(0, 120, 40):
        batch = examples[start:start + 40]
        alone = DiversityTracker({"tone": ["professional", "conversational", "mixed"]})
        assert tracker.add_batch(batch).batch == alone.add_batch(batch).cumulative
