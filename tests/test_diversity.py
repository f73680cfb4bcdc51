"""Diversity metrics: hand-computed values, brute-force equivalence, incremental == from scratch."""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from agent.audit.diversity import THRESHOLDS, DiversityTracker, Metrics, shortfalls, steering
from agent.audit.overlap import OverlapIndex, pooled_overlap, share_nn_over
from agent.audit.text_stats import (
    distinct_n,
    mattr,
    ngrams,
    normalised_entropy,
    segment_measures,
    tokenize,
    topics,
    ttr,
    verbs,
)

WORDS = [
    "the", "a", "model", "deploy", "deploys", "configure", "configured", "gpu", "instance", "error",
    "cuda", "memory", "training", "run", "we", "you", "i", "to", "of", "and", "is", "how", "do", "my",
    "can", "debug", "volume", "snapshot", "billing", "invoice", "quickly", "fails", "node", "storage",
    "key", "api", "region", "spot", "price", "limit"
]
TONES = ("professional", "conversational", "mixed")
FORMATS = ("plain", "list", "code")


def brute(sets: list[set], threshold: float) -> tuple[int, int, int]:
    """All pairs: (sum |A∩B|, sum min(|A|,|B|), examples whose nearest neighbour holds > threshold of them)."""
    t = Fraction(str(threshold))
    shared = mins = 0
    flagged = [False] * len(sets)
    for i, j in itertools.combinations(range(len(sets)), 2):
        common = len(sets[i] & sets[j])
        shared += common
        mins += min(len(sets[i]), len(sets[j]))
        for a in (i, j):
            if sets[a] and common > t * len(sets[a]):
                flagged[a] = True
    return shared, mins, sum(flagged)


def random_texts(seed: int, n: int) -> list[str]:
    """Short texts from a small vocabulary; one in four is a lightly edited copy of an earlier one."""
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.25:
            words = rng.choice(texts).split()
            for _ in range(rng.randint(0, 4)):
                words[rng.randrange(len(words))] = rng.choice(WORDS)
        else:
            words = rng.choices(WORDS[:25], k=rng.randint(2, 40))
        texts.append(" ".join(words))
    return texts


def trigram_sets(texts: list[str]) -> list[set]:
    return [set(ngrams(tokenize(t), 3)) for t in texts]


def make_examples(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    users = random_texts(seed, n)
    responses = random_texts(seed + 1, n)
    out = []
    for u, r in zip(users, responses, strict=True):
        response = " ".join([r] * rng.randint(1, 6))  # response lengths spread over the buckets
        labels = {"tone": rng.choice(TONES), "format": rng.choice(FORMATS[:2])}
        out.append({"user": f"How do I {u}?", "response": response, "labels": labels})
    return out


# ---- pure functions ----------------------------------------------------------------------------------

def test_tokenize_lowercases_and_keeps_inner_apostrophes():
    assert tokenize("Don't panic: the GPU's memory, the GPU!") == [
        "don't", "panic", "the", "gpu's", "memory", "the", "gpu"]


def test_ttr_of_a_known_sentence():
    assert ttr(tokenize("The cat sat on the mat")) == pytest.approx(5 / 6)
    assert ttr([]) == 0.0


def test_mattr_hand_computed():
    # windows of 2 over a a b b: {a} 1/2, {a b} 1, {b} 1/2 -> 2/3
    assert mattr(list("aabb"), window=2) == pytest.approx(2 / 3)
    # a text shorter than the window gets its plain TTR
    assert mattr(list("aab"), window=50) == pytest.approx(2 / 3)


def test_mattr_implementations_equal_the_definition():
    rng = random.Random(3)
    for _ in range(150):
        ids = [rng.randrange(rng.randint(1, 30)) for _ in range(rng.randint(0, 120))]
        window = rng.randint(1, 40)
        tokens = [str(i) for i in ids]
        if len(tokens) > window:
            windows = [tokens[s:s + window] for s in range(len(tokens) - window + 1)]
            expected = statistics.fmean(len(set(w)) / window for w in windows)
        else:
            expected = ttr(tokens)
        assert mattr(tokens, window) == pytest.approx(expected)
        one_segment = segment_measures(np.asarray(ids, dtype=np.int64), np.array([len(ids)]), window)[0][0]
        assert one_segment == pytest.approx(expected)


def test_distinct_n_hand_computed():
    texts = ["a b c a b", "a b d"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 8)   # a b c d over 8 words
    assert distinct_n(texts, 2) == pytest.approx(4 / 6)   # ab bc ca ab | ab bd
    assert distinct_n(texts, 3) == pytest.approx(4 / 4)   # abc bca cab | abd
    assert distinct_n([], 2) == 0.0


def test_pooled_overlap_hand_computed():
    # pairs: AB share 2 of min 3; AC 0 of 1; BC 0 of 1 -> 2/5
    assert pooled_overlap([{1, 2, 3, 4}, {3, 4, 5}, {9}]) == pytest.approx(2 / 5)


def test_pooled_overlap_equals_brute_force_on_200_texts():
    sets = trigram_sets(random_texts(11, 200))
    shared, mins, _ = brute(sets, 0.3)
    index = OverlapIndex()
    for s in sets:
        index.add(s)
    assert shared > 0
    assert (index.shared, index.min_sum) == (shared, mins)
    assert pooled_overlap(sets) == pytest.approx(shared / mins)


@pytest.mark.parametrize("threshold", [0.3, 0.1, 0.5])
def test_share_nn_over_equals_brute_force(threshold):
    rng = random.Random(int(threshold * 10))
    sets = trigram_sets(random_texts(rng.randrange(1000), 160))
    sets += [set(rng.sample(range(60), rng.randint(0, 12))) for _ in range(40)]  # near the threshold
    _, _, flagged = brute(sets, threshold)
    assert 0 < flagged < len(sets)
    assert share_nn_over(sets, threshold) == pytest.approx(flagged / len(sets))
    # frequent-n-gram skipping on for (nearly) every n-gram, and off: the answer must not move
    for frequent_df in (1, 3, 10**9):
        index = OverlapIndex(threshold, frequent_df=frequent_df)
        for s in sets:
            index.add(s)
        assert index.n_flagged == flagged, frequent_df


def common_key_sets(seed: int, n: int = 300) -> list[set]:
    """Every set holds the same 5 stock keys plus its own; one in ten copies part of an earlier set."""
    rng = random.Random(seed)
    sets: list[set] = []
    for i in range(n):
        own = {("own", i, j) for j in range(rng.randint(5, 40))}
        if sets and rng.random() < 0.1:
            donor = sorted(rng.choice(sets) - set(range(5)))
            own |= set(rng.sample(donor, k=min(len(donor), rng.randint(1, 12))))
        sets.append(set(range(5)) | own)
    return sets


@pytest.mark.parametrize(("pair_words", "whole_row"), [(1, 2.0), (1 << 20, 2.0), (1 << 20, 0.5), (1 << 20, 0.0)])
def test_overlap_with_stock_keys_in_every_set_equals_brute_force(pair_words, whole_row, monkeypatch):
    # stock keys are frequent from the 3rd set on: the pairs whose bound crosses the threshold get their
    # shared frequent keys counted from the frequent-key bitmap, pair by pair (one at a time or all at
    # once) or a batch set against every earlier set (never, past half of them unsure, always); each must
    # give the brute-force answer, one set at a time and in batches
    from agent.audit import overlap

    monkeypatch.setattr(overlap, "_PAIR_WORDS", pair_words)
    monkeypatch.setattr(overlap, "_WHOLE_ROW", whole_row)
    sets = common_key_sets(0)
    expected = brute(sets, 0.3)
    assert expected[2] > 0
    for frequent_df in (3, 50, 10**9):
        index = OverlapIndex(0.3, frequent_df=frequent_df)
        for s in sets:
            index.add(s)
        assert (index.shared, index.min_sum, index.n_flagged) == expected, frequent_df
        batched = OverlapIndex(0.3, frequent_df=frequent_df)
        for start in range(0, len(sets), 37):
            batched.add_sets(sets[start:start + 37])
        assert (batched.shared, batched.min_sum, batched.n_flagged) == expected, frequent_df


def test_nn_share_needs_strictly_more_than_30_percent():
    a = set(range(10))
    assert share_nn_over([a, {0, 1, 2, *range(100, 117)}]) == 0.0          # 3 of 10: not more
    assert share_nn_over([a, {0, 1, 2, 3, *range(100, 116)}]) == 0.5       # 4 of 10, but 4 of 20
    assert share_nn_over([set(), set()]) == 0.0


def test_verbs_of_crafted_sentences():
    assert verbs("She deploys the model to RunPod.") == {"deploy"}
    assert verbs("I configured gradient accumulation.") == {"configure"}
    assert verbs("He is debugging the server.") == {"debug"}


def test_verbs_the_tagger_calls_nouns_are_repaired():
    # PatternTagger tags "use"/"need" NN and "monitors" NNS here; "logs" must stay a noun
    assert verbs("Should I use DPO or SFT?") == {"use"}
    assert verbs("We need a bigger GPU.") == {"need"}
    assert verbs("She monitors the logs and deploys the model.") == {"monitor", "deploy"}


# Hand-labelled verb lemmas (be/have/do left out, as the metric does). The second half was written
# after the tagger repairs were tuned on the first: precision on it alone was 0.93, recall 0.82.
VERB_GOLD = {
    "How do I deploy a model to RunPod?": {"deploy"},
    "How do I configure gradient accumulation?": {"configure"},
    "What's the process for dataset validation?": set(),
    "Getting CUDA out of memory error, what can I do?": {"get"},
    "Why are my training metrics not updating?": {"update"},
    "Should I use DPO or SFT for my use case?": {"use"},
    "She deploys the model every Friday and monitors the logs.": {"deploy", "monitor"},
    "I configured the instance but it keeps crashing after boot.": {"configure", "keep", "crash"},
    "He is debugging the server while the job restarts.": {"debug", "restart"},
    "Can I resize a running instance without losing data?": {"resize", "run", "lose"},
    "Our team migrated the volumes and then encrypted every snapshot.": {"migrate", "encrypt"},
    "Please explain how billing works when an instance is stopped.": {"explain", "work", "stop"},
    "Compare the A100 and the H100 for fine-tuning a 7B model.": {"compare", "fine-tune"},
    "I uploaded a 500GB dataset yesterday, but the transfer failed halfway.": {"upload", "fail"},
    "The invoice lists storage charges that I did not expect.": {"list", "expect"},
    "We need to rotate the API keys and revoke the old ones.": {"need", "rotate", "revoke"},
    "Which GPU should I choose for serving an LLM?": {"choose", "serve"},
    "My notebook froze and I lost the unsaved cells.": {"freeze", "lose"},
    "The scheduler cancels jobs that exceed their quota.": {"cancel", "exceed"},
    "Can you estimate what a week of H100 time costs?": {"estimate", "cost"},
    "I keep getting a permission error when I mount the volume.": {"keep", "get", "mount"},
    "After the upgrade, the driver refuses to load and the container exits.": {"refuse", "load", "exit"},
    "Who approves refunds for instances that never started?": {"approve", "start"},
    "Tell me which regions offer spot capacity right now.": {"tell", "offer"},
    "Our engineers benchmarked three GPUs and picked the cheapest one.": {"benchmark", "pick"},
    "Does the API throttle requests from a single key?": {"throttle"},
    "I want to export my invoices as CSV files.": {"want", "export"},
    "The node reboots whenever the training script allocates more memory.": {"reboot", "allocate"},
    "You should verify the checksum before you delete the original archive.": {"verify", "delete"},
    "How long does it take to provision a multi-GPU node?": {"take", "provision"},
    "My colleague shared a snapshot, but I cannot see it in the console.": {"share", "see"},
    "What happens to my data when the account closes?": {"happen", "close"},
    "Install the CUDA toolkit, then rebuild the image and push it to the registry.": {"install", "rebuild", "push"},
    "The dashboard shows zero utilisation although the job runs.": {"show", "run"},
}


def test_verb_extraction_precision_and_recall_on_hand_labelled_sentences():
    tp = fp = fn = 0
    for sentence, gold in VERB_GOLD.items():
        found = verbs(sentence)
        tp, fp, fn = tp + len(found & gold), fp + len(found - gold), fn + len(gold - found)
    assert tp / (tp + fp) >= 0.9
    assert tp / (tp + fn) >= 0.8


def test_topics_are_noun_compounds_with_singular_heads():
    found = topics("I keep getting CUDA errors on Lambda Labs with gradient accumulation.")
    assert {"cuda error", "lambda labs", "gradient accumulation"} <= found
    assert "keep" not in found and "get" not in found


def test_normalised_entropy():
    assert normalised_entropy({"a": 1, "b": 1}) == pytest.approx(1.0)
    assert normalised_entropy({"a": 1, "b": 1}, k=4) == pytest.approx(math.log(2) / math.log(4))
    assert normalised_entropy({"a": 3}, k=3) == 0.0
    assert normalised_entropy({}) == 0.0


# ---- the tracker -------------------------------------------------------------------------------------

CATEGORIES = {"tone": list(TONES), "format": list(FORMATS)}
BATCH_SIZES = (1, 7, 50, 2, 100, 80)


def test_incremental_equals_from_scratch():
    examples = make_examples(5, sum(BATCH_SIZES))
    tracker = DiversityTracker(CATEGORIES)
    batches, results, start = [], [], 0
    for size in BATCH_SIZES:
        batches.append(examples[start:start + size])
        results.append(tracker.add_batch(batches[-1]))
        start += size
    scratch = DiversityTracker.from_examples(examples, CATEGORIES).metrics().to_dict()
    assert results[-1].cumulative.to_dict() == scratch
    assert tracker.metrics().to_dict() == scratch
    assert results[-1].cumulative.share_nn_over_30 > 0
    for batch, result in zip(batches, results, strict=True):
        assert result.batch.to_dict() == DiversityTracker.from_examples(batch, CATEGORIES).metrics().to_dict()


def test_tracker_metrics_match_their_definitions():
    examples = make_examples(8, 150)
    m = DiversityTracker.from_examples(examples, CATEGORIES).metrics()
    fields = [text for e in examples for text in (e["user"], e["response"])]
    tokens = [tokenize(e["user"]) + tokenize(e["response"]) for e in examples]
    sets = [set(ngrams(tokenize(e["user"]), 3)) | set(ngrams(tokenize(e["response"]), 3)) for e in examples]
    shared, mins, flagged = brute(sets, 0.3)
    words = [len(e["response"].split()) for e in examples]
    buckets = Counter("0-49" if w < 50 else "50-149" if w < 150 else "150-399" if w < 400 else "400-799"
                      for w in words)
    tones = Counter(e["labels"]["tone"] for e in examples)

    assert m.examples == 150 and m.tokens == sum(map(len, tokens))
    assert m.mean_ttr == pytest.approx(statistics.fmean(ttr(t) for t in tokens))
    assert m.mattr_50 == pytest.approx(statistics.fmean(mattr(t) for t in tokens))
    assert m.corpus_ttr == pytest.approx(len({w for t in tokens for w in t}) / m.tokens)
    assert (m.distinct_1, m.distinct_2, m.distinct_3) == pytest.approx(
        tuple(distinct_n(fields, n) for n in (1, 2, 3)))
    assert m.ngram_overlap == pytest.approx(shared / mins)
    assert m.share_nn_over_30 == pytest.approx(flagged / 150) and flagged > 0
    assert m.unique_verbs == len(set().union(*(verbs(e["user"]) for e in examples)))
    assert m.unique_topics == len(set().union(*(topics(e["user"]) for e in examples)))
    assert m.response_words_mean == pytest.approx(statistics.fmean(words))
    assert m.response_words_std == pytest.approx(statistics.pstdev(words))
    assert m.response_words_cv == pytest.approx(statistics.pstdev(words) / statistics.fmean(words))
    assert m.response_length_histogram == {k: buckets.get(k, 0) for k in
                                           ("0-49", "50-149", "150-399", "400-799", "800+")}
    p = [c / 150 for c in tones.values()]
    assert m.tone_entropy == pytest.approx(-sum(x * math.log(x) for x in p) / math.log(3))
    assert m.format_entropy is not None and m.format_entropy < 1.0  # 2 of the 3 formats used
    assert set(m.label_entropy) == {"tone", "format"}


def test_metrics_round_trip_through_json():
    result = DiversityTracker(CATEGORIES).add_batch(make_examples(2, 30))
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()
    assert set(result.to_dict()) == {"batch", "cumulative"}


def test_empty_and_tiny_examples_do_not_break_the_tracker():
    tracker = DiversityTracker()
    empty = tracker.add_batch([])
    assert empty.batch.examples == 0 and empty.cumulative.mean_ttr == 0.0
    tiny = tracker.add_batch([{"user": "hi", "response": "", "labels": {}}, {"user": "", "response": "ok"}])
    assert tiny.cumulative.examples == 2
    assert tiny.cumulative.ngram_overlap == 0.0 and tiny.cumulative.share_nn_over_30 == 0.0
    assert tiny.cumulative.tone_entropy is None


def test_common_phrases_names_the_most_shared_3gram():
    rng = random.Random(4)
    examples = [{"user": "question " + " ".join(rng.choices(WORDS, k=8)),
                 "response": "make sure to " + " ".join(rng.choices(WORDS, k=20)), "labels": {}}
                for _ in range(30)]
    assert DiversityTracker.from_examples(examples).common_phrases(1) == ["make sure to"]


# ---- gates and steering ------------------------------------------------------------------------------

def test_shortfalls_fire_below_the_seed_thresholds():
    low = Metrics(mean_ttr=0.29, ngram_overlap=0.30, unique_verbs=49, unique_topics=99)
    found = {s.metric: s for s in shortfalls(low, examples_so_far=5000, total_planned=5000)}
    assert set(found) == {"mean_ttr", "ngram_overlap", "unique_verbs", "unique_topics"}
    assert [found[k].threshold for k in ("mean_ttr", "ngram_overlap", "unique_verbs", "unique_topics")] == [
        0.3, 0.30, 50, 100]
    assert "50" in found["unique_verbs"].message


def test_no_shortfalls_at_or_past_the_thresholds():
    ok = Metrics(mean_ttr=0.3, ngram_overlap=0.2999, unique_verbs=50, unique_topics=100)
    assert shortfalls(ok, examples_so_far=5000, total_planned=5000) == []
    assert set(THRESHOLDS) == {"mean_ttr", "ngram_overlap", "unique_verbs", "unique_topics"}


def test_count_thresholds_scale_with_progress():
    # half way: 50·sqrt(0.5) = 35.4 -> 36 verbs, 100·sqrt(0.5) = 70.7 -> 71 topics
    enough = Metrics(mean_ttr=0.5, unique_verbs=36, unique_topics=71)
    short = Metrics(mean_ttr=0.5, unique_verbs=35, unique_topics=70)
    assert shortfalls(enough, examples_so_far=2500, total_planned=5000) == []
    found = {s.metric: s.required for s in shortfalls(short, examples_so_far=2500, total_planned=5000)}
    assert found == {"unique_verbs": 36, "unique_topics": 71}


def test_steering_turns_shortfalls_into_prompt_changes():
    low = Metrics(mean_ttr=0.1, ngram_overlap=0.5, unique_verbs=3, unique_topics=4)
    plan = steering(shortfalls(low, 1000, 1000), used_verbs={"create", "analyze"})
    assert plan["temperature_step"] > 0 and plan["avoid_list_size"] > 0
    assert plan["prefer_least_used_topics"] is True
    assert plan["verbs_to_use"] and not {"create", "analyze"} & set(plan["verbs_to_use"])
    assert len(plan["phrasing_instructions"]) == 4
    only_verbs = steering(shortfalls(Metrics(mean_ttr=0.5, unique_verbs=3, unique_topics=500), 1000, 1000))
    assert set(only_verbs) == {"verbs_to_use", "phrasing_instructions"}
    assert steering([]) == {}
