"""Diversity metrics of a dataset, per batch and cumulative: the seed's "Quality Metrics to Track".

Gates (THRESHOLDS, from seed 000): mean TTR >= 0.3, n-gram overlap < 30%, 50+ verbs, 100+ topics.
Corpus-wide TTR falls with size (0.74 at 100 tokens, 0.02 at 700k), so the TTR gate applies to the
MEAN PER-EXAMPLE TTR; MATTR(50) and corpus TTR are reported beside it.

What is measured on what:
  words      tokenize(): lower-cased runs of letters/digits/underscores, inner apostrophes kept.
  example    user text + response text; n-grams never cross from one to the other.
  TTR/MATTR  per example over its user+response tokens, then averaged.
  overlap    word 3-grams. pooled = sum over pairs |A∩B| / sum over pairs min(|A|,|B|) (sets of distinct
             3-grams); share_nn_over_30 = share of examples A whose nearest neighbour B has
             |A∩B| / |A| > 0.3. Both exact, from an inverted index, never an all-pairs scan.
  verbs      PatternTagger VB* tags (TextBlob's bundled lexicon, offline), lemmatised with lemminflect, on the
             USER text (the instruction: Self-Instruct's verb diversity); be/have/do are left out.
  topics     noun compounds of the user text: a run of nouns (NN*), last 3 words at most, lower-cased,
             the head noun singular ("CUDA errors" -> "cuda error", "Lambda Labs" -> "lambda labs").
  lengths    response words = whitespace-separated words (as a reader counts them).
  variety    normalised Shannon entropy of each label dimension (1.0 = even spread).

DiversityTracker.add_batch() updates the cumulative state in time proportional to the batch and returns
BatchMetrics (the batch alone, and everything so far); from_examples() rebuilds the state at resume.
shortfalls() names the gates a run misses (verb/topic counts scaled by progress) and steering() turns
them into prompt changes for the next batch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any, Literal

import numpy as np

from tests.tracker_d825af4.overlap import (
    _ID_BITS,
    _ID_MASK,
    BatchOverlap,
    KeyTable,
    OverlapIndex,
    SetBatch,
    _Grow,
)
from tests.tracker_d825af4.text_stats import normalised_entropy, segment_measures, tokenize, verbs_and_topics

LENGTH_BUCKETS = ((0, "0-49"), (50, "50-149"), (150, "150-399"), (400, "400-799"), (800, "800+"))
LAYOUT = 3  # the stored tracker's layout (agent/audit/state.py checks it): 1 held Python dicts per n-gram;
            # 2 had no bitmap of the frequent n-grams (OverlapIndex._bits); older layouts are rebuilt
REBUILD_CHUNK = 128  # from_examples() feeds the stored examples in batches of this many

# ---- metrics and the incremental tracker ------------------------------------------------------------

@dataclass
class Metrics:
    examples: int = 0
    tokens: int = 0
    mean_ttr: float = 0.0          # the seed's TTR gate
    mattr_50: float = 0.0          # mean per-example MATTR, window 50
    corpus_ttr: float = 0.0        # distinct words / words over all examples (falls with size)
    distinct_1: float = 0.0        # = corpus_ttr by definition; kept under its usual name
    distinct_2: float = 0.0
    distinct_3: float = 0.0
    ngram_overlap: float = 0.0     # pooled 3-gram overlap, the seed's "< 30% between examples"
    share_nn_over_30: float = 0.0  # examples sharing > 30% of their 3-grams with some other example
    unique_verbs: int = 0
    unique_topics: int = 0
    response_words_mean: float = 0.0
    response_words_std: float = 0.0  # population standard deviation
    response_words_cv: float = 0.0   # std / mean: length variance without the unit
    response_length_histogram: dict[str, int] = field(default_factory=dict)
    tone_entropy: float | None = None    # from the "tone" label dimension, None when absent
    format_entropy: float | None = None  # from the "format" label dimension, None when absent
    label_entropy: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BatchMetrics:
    batch: Metrics         # the batch as if it were the whole dataset (pairs within the batch)
    cumulative: Metrics    # everything added so far, this batch included

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch.to_dict(), "cumulative": self.cumulative.to_dict()}


@dataclass
class _Example:
    """One example's Python-level measures; its n-grams live in the batch's arrays."""
    tokens: int
    ttr: float
    mattr: float
    words: int
    verbs: set[str]
    topics: set[str]
    labels: dict[str, str]


@dataclass
class _Batch:
    """A batch of examples as arrays: word ids (user then response text of each example, in order), the
    bigram keys (occurrences) and the 3-gram sets. n-grams never cross from one text to the next."""
    examples: list[_Example]
    words: np.ndarray        # the distinct word ids
    bigrams: np.ndarray      # the distinct bigram keys
    n_bigrams: int
    trigrams: SetBatch
    n_trigrams: int


def _bucket(words: int) -> str:
    return next(name for low, name in reversed(LENGTH_BUCKETS) if words >= low)


class _Totals:
    """Everything the metrics need, updated a batch at a time in time proportional to the batch. large:
    the running totals (hash tables of the distinct words and n-grams seen); else one batch's own."""

    def __init__(self, large: bool = True) -> None:
        self.n = self.tokens = self.n_bigrams = self.n_trigrams = 0
        self.n_types = self.n_distinct_bigrams = 0
        self.sum_ttr = self.sum_mattr = 0.0
        self.large = large
        self.types_seen = _Grow(np.bool_)   # by word id (large only)
        self.bigrams = KeyTable()           # distinct bigram keys (large only)
        # a batch's own figures come from SetBatch alone; the dataset's from the incremental index
        self.index: OverlapIndex | BatchOverlap = OverlapIndex() if large else BatchOverlap()
        self.verbs: Counter[str] = Counter()
        self.topics: Counter[str] = Counter()
        self.words_sum = self.words_sq = 0  # ints: the variance stays exact
        self.histogram: Counter[str] = Counter()
        self.labels: dict[str, Counter[str]] = {}

    def add(self, batch: _Batch) -> None:
        for e in batch.examples:  # in order: float sums and first-seen orders as one example at a time
            self.n += 1
            self.tokens += e.tokens
            self.sum_ttr += e.ttr
            self.sum_mattr += e.mattr
            self.verbs.update(e.verbs)
            self.topics.update(e.topics)
            self.words_sum += e.words
            self.words_sq += e.words * e.words
            self.histogram[_bucket(e.words)] += 1
            for dim, cat in e.labels.items():
                self.labels.setdefault(dim, Counter())[cat] += 1
        self.n_bigrams += batch.n_bigrams
        self.n_trigrams += batch.n_trigrams
        words, bigrams = batch.words, batch.bigrams
        if self.large:
            if len(words) and words[-1] >= self.types_seen.n:
                self.types_seen.extend(np.zeros(int(words[-1]) + 1 - self.types_seen.n, dtype=np.bool_))
            seen = self.types_seen.view
            self.n_types += int(np.count_nonzero(~seen[words]))
            seen[words] = True
            self.bigrams.add(bigrams)
            self.n_distinct_bigrams = len(self.bigrams)
            assert isinstance(self.index, OverlapIndex)
            self.index.add_batch(batch.trigrams)
        else:
            self.n_types += len(words)
            self.n_distinct_bigrams += len(bigrams)
            assert isinstance(self.index, BatchOverlap)
            self.index.use(batch.trigrams)

    def metrics(self, categories: Mapping[str, Sequence[str]]) -> Metrics:
        n = self.n or 1
        mean = self.words_sum / n
        std = math.sqrt(max(0.0, self.words_sq / n - mean * mean))
        entropy = {d: normalised_entropy(c, len(categories.get(d, ()))) for d, c in sorted(self.labels.items())}
        corpus_ttr = self.n_types / self.tokens if self.tokens else 0.0
        return Metrics(
            examples=self.n,
            tokens=self.tokens,
            mean_ttr=self.sum_ttr / n,
            mattr_50=self.sum_mattr / n,
            corpus_ttr=corpus_ttr,
            distinct_1=corpus_ttr,
            distinct_2=self.n_distinct_bigrams / self.n_bigrams if self.n_bigrams else 0.0,
            distinct_3=self.index.distinct / self.n_trigrams if self.n_trigrams else 0.0,
            ngram_overlap=self.index.pooled_overlap,
            share_nn_over_30=self.index.share_flagged,
            unique_verbs=len(self.verbs),
            unique_topics=len(self.topics),
            response_words_mean=mean,
            response_words_std=std,
            response_words_cv=std / mean if mean else 0.0,
            response_length_histogram={name: self.histogram.get(name, 0) for _, name in LENGTH_BUCKETS},
            tone_entropy=entropy.get("tone"),
            format_entropy=entropy.get("format"),
            label_entropy=entropy,
        )


class DiversityTracker:
    """Cumulative diversity state; add_batch() costs time proportional to the batch, not the history.

    Examples are dicts {"user": str, "response": str, "labels": {dimension: category}}. `categories`
    (dimension -> the plan's category names) lets entropy count categories that never appeared.
    The engine stores it in the ledger (agent/audit/state.py) and from_examples() rebuilds it when the
    stored one is missing or of another layout.
    """

    def __init__(self, categories: Mapping[str, Sequence[str]] | None = None):
        self.layout = LAYOUT
        self.categories = dict(categories or {})
        self._vocab: dict[str, int] = {}
        self._words: list[str] = []  # id -> word, to spell out common phrases
        self._totals = _Totals()

    @classmethod
    def from_examples(
        cls, examples: Iterable[Mapping[str, Any]], categories: Mapping[str, Sequence[str]] | None = None
    ) -> DiversityTracker:
        tracker = cls(categories)
        chunk: list[Mapping[str, Any]] = []
        for example in examples:
            chunk.append(example)
            if len(chunk) == REBUILD_CHUNK:
                tracker._totals.add(tracker._batch(chunk))
                chunk = []
        if chunk:
            tracker._totals.add(tracker._batch(chunk))
        return tracker

    def add_batch(self, examples: Sequence[Mapping[str, Any]]) -> BatchMetrics:
        batch = self._batch(examples)
        alone = _Totals(large=False)
        alone.add(batch)
        self._totals.add(batch)
        return BatchMetrics(alone.metrics(self.categories), self.metrics())

    def metrics(self) -> Metrics:
        return self._totals.metrics(self.categories)

    @property
    def used_verbs(self) -> set[str]:
        """Verb lemmas seen so far: pass to steering() so it suggests new ones."""
        return set(self._totals.verbs)

    def topic_counts(self) -> Counter[str]:
        """How many examples' user texts mention each extracted topic (noun compound)."""
        return Counter(self._totals.topics)

    def common_phrases(self, k: int = 40) -> list[str]:
        """The k word 3-grams held by the most examples: the avoid list for the next prompts."""
        # the running totals are built large=True, so their index is an OverlapIndex
        return [self._spell(key) for key, _ in self._totals.index.most_common(k)]  # type: ignore[union-attr]

    def _spell(self, key: int) -> str:
        ids = ((key >> 2 * _ID_BITS) & _ID_MASK, (key >> _ID_BITS) & _ID_MASK, key & _ID_MASK)
        return " ".join(self._words[i] if i < len(self._words) else "?" for i in ids)

    def _batch(self, examples: Sequence[Mapping[str, Any]]) -> _Batch:
        """Tokens, word ids (numbered in order of first appearance), n-gram keys and per-example measures."""
        tokens: list[str] = []
        lengths: list[int] = []  # tokens per text: user, response, user, response...
        users, words = [], []
        for example in examples:
            user, response = str(example.get("user", "")), str(example.get("response", ""))
            for text in (user, response):
                found = tokenize(text)
                tokens += found
                lengths.append(len(found))
            users.append(user)
            words.append(len(response.split()))
        vocab, known = self._vocab, len(self._vocab)
        found_ids = list(map(vocab.get, tokens))  # C-level; the words not seen yet get ids below, in order
        if None in found_ids:
            j = found_ids.index(None)
            while True:
                found_ids[j] = vocab.setdefault(tokens[j], len(vocab))
                try:
                    j = found_ids.index(None, j + 1)
                except ValueError:
                    break
        ids = np.array(found_ids, dtype=np.int64)
        if len(vocab) > known:
            self._words += reversed(list(islice(reversed(vocab), len(vocab) - known)))
        m = len(examples)
        text_len = np.array(lengths, dtype=np.int64)
        per_example = text_len.reshape(m, 2).sum(axis=1) if m else np.zeros(0, dtype=np.int64)
        owner = np.repeat(np.arange(m), per_example)
        # past 2**21 distinct words ids fold together and keys may collide: Heaps' law puts that
        # beyond ~10**11 words of text
        a = ids & _ID_MASK
        left = np.repeat(text_len, text_len) - (np.arange(len(ids)) - np.repeat(np.cumsum(text_len) - text_len, text_len))
        bi_ok, tri_ok = left[:-1] >= 2, left[:-2] >= 3  # tokens left in the text, this one included
        bigrams = ((a[:-1] << _ID_BITS) | a[1:])[bi_ok]
        trigrams = ((a[:-2] << 2 * _ID_BITS) | (a[1:-1] << _ID_BITS) | a[2:])[tri_ok]
        mattrs, distinct = segment_measures(ids, per_example)  # distinct: each example's number of word types
        out = []
        for e, example in enumerate(examples):
            n, found_verbs_topics = int(per_example[e]), verbs_and_topics(users[e])
            labels = {str(k): str(v) for k, v in (example.get("labels") or {}).items()}
            out.append(_Example(n, distinct[e] / n if n else 0.0, mattrs[e], words[e], *found_verbs_topics, labels))
        if len(vocab) <= 16 * len(ids):  # the batch's distinct words by marking them: no sort
            marks = np.zeros(len(vocab), dtype=np.bool_)
            marks[ids] = True
            batch_words = np.flatnonzero(marks)
        else:
            batch_words = np.unique(ids)
        return _Batch(out, batch_words, np.unique(bigrams), len(bigrams), SetBatch(trigrams, owner[:-2][tri_ok], m),
                      len(trigrams))


# ---- gates and steering -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Threshold:
    bound: float
    kind: Literal["at_least", "below"]
    scaled: bool  # a count that only makes sense for the whole dataset: expected grows with progress
    seed: str     # the seed's wording


THRESHOLDS: dict[str, Threshold] = {
    "mean_ttr": Threshold(0.3, "at_least", False, "Lexical diversity (TTR > 0.3)"),
    "ngram_overlap": Threshold(0.30, "below", False, "N-gram overlap < 30% between examples"),
    "unique_verbs": Threshold(50, "at_least", True, "Unique verb usage (50+ different verbs)"),
    "unique_topics": Threshold(100, "at_least", True, "Unique topics/entities (100+ different subjects)"),
}


@dataclass(frozen=True)
class Shortfall:
    metric: str
    value: float
    required: float  # the bound applied now (scaled by progress for counts)
    threshold: float  # the seed's number
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def required(metric: str, examples_so_far: int, total_planned: int) -> float:
    """The bound that applies now. Distinct counts grow roughly like sqrt(n) (Heaps' law), so a run
    p of the way through is expected to hold threshold·sqrt(p) verbs/topics, rounded up."""
    t = THRESHOLDS[metric]
    if not t.scaled:
        return t.bound
    progress = min(1.0, examples_so_far / total_planned) if total_planned > 0 else 1.0
    return float(math.ceil(t.bound * math.sqrt(progress)))


def shortfalls(metrics: Metrics, examples_so_far: int, total_planned: int) -> list[Shortfall]:
    """Each gated metric on the wrong side of its bound (pass the cumulative metrics)."""
    found = []
    for name, t in THRESHOLDS.items():
        value = getattr(metrics, name)
        need = required(name, examples_so_far, total_planned)
        bad = value < need if t.kind == "at_least" else value >= need
        if bad:
            side = "at least" if t.kind == "at_least" else "below"
            note = f" ({examples_so_far}/{total_planned} examples)" if t.scaled else ""
            found.append(Shortfall(name, value, need, t.bound,
                                   f"{name} is {value:.3g}, needs {side} {need:g}{note}; seed: {t.seed}"))
    return found


# Task verbs to suggest when verb variety falls short (the seed's list first, then common neighbours).
TASK_VERBS = (
    "create", "analyze", "compare", "debug", "explain", "configure", "deploy", "monitor", "migrate",
    "estimate", "optimize", "troubleshoot", "benchmark", "schedule", "restore", "scale", "upgrade",
    "cancel", "authenticate", "export", "import", "share", "limit", "automate", "verify", "recover",
    "transfer", "rename", "delete", "resize", "reserve", "encrypt", "audit", "diagnose", "profile",
    "install", "integrate", "tune", "evaluate", "secure", "connect", "download", "upload", "mount",
    "rotate", "revoke", "refund", "forecast", "throttle", "validate",
)
VERBS_PER_BATCH = 12
AVOID_LIST_SIZE = 40
TEMPERATURE_STEP = 0.1


def steering(shortfalls: Sequence[Shortfall], used_verbs: Iterable[str] = (), *,
             temperature: bool = True) -> dict[str, Any]:
    """Prompt changes for the next batch; {} when nothing falls short. temperature=False: the provider cannot
    change its sampling, so wording variety is asked for with an avoid list and fresh topics instead. Keys
    (only those that apply):

    temperature_step          float: raise the sampling temperature by this much (the engine caps it)
    avoid_list_size           int: put this many of tracker.common_phrases() in the prompt as phrases to avoid
    phrasing_instructions     list[str]: sentences to add to the generation prompt
    verbs_to_use              list[str]: task verbs not used yet, one per question
    prefer_least_used_topics  bool: draw the plan's least-used topics first
    """
    names = {s.metric for s in shortfalls}
    out: dict[str, Any] = {}
    said: list[str] = []
    if names & {"mean_ttr", "ngram_overlap"}:
        if temperature:
            out["temperature_step"] = TEMPERATURE_STEP
        else:   # the levers left: phrases to avoid and subjects not covered yet
            out["avoid_list_size"] = AVOID_LIST_SIZE
            out["prefer_least_used_topics"] = True
    if "mean_ttr" in names:
        said.append("Vary the wording: use precise, specific terms and synonyms; do not repeat the same "
                    "words and phrases within one example.")
    if "ngram_overlap" in names:
        out["avoid_list_size"] = AVOID_LIST_SIZE
        said.append("Open every question and answer differently; do not reuse sentence templates, and do not "
                    "use any phrase from the avoid list.")
    if "unique_verbs" in names:
        used = set(used_verbs)
        out["verbs_to_use"] = [v for v in TASK_VERBS if v not in used][:VERBS_PER_BATCH]
        said.append("Ask for different actions: build each question around one of these verbs: "
                    + ", ".join(out["verbs_to_use"]) + ".")
    if "unique_topics" in names:
        out["prefer_least_used_topics"] = True
        said.append("Ask about specific, concrete subjects (named features, components, error messages, "
                    "settings) that earlier examples did not cover.")
    if said:
        out["phrasing_instructions"] = said
    return out
