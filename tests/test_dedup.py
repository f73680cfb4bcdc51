"""Near-duplicate detection against the seed's rule (difflib ratio > threshold, autojunk off, new first).

The generated corpus (make_corpus) is also what bench/bench_dedup.py measures.
"""

from __future__ import annotations

import difflib
import random
import string
from itertools import accumulate

import cydifflib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz
from rapidfuzz.distance import LCSseq

from agent.audit import dedup
from agent.audit.dedup import NearDupIndex, dedupe, length_window, reference_dedupe, similarity

# -- a seeded generator of user questions ------------------------------------------------------------------
# Real words for the common part of the vocabulary, pseudo-words (seeded syllables) for the long tail of
# product names and jargon; Zipf-like weights so some words recur across questions as they do in real data.
_NOUNS = ["account", "password", "email", "invoice", "order", "refund", "payment", "card", "subscription", "plan", "user", "team", "project", "file", "folder", "report", "dashboard", "setting", "profile", "device", "phone", "laptop", "printer", "network", "router", "server", "database", "table", "query", "error", "message", "notification", "update", "version", "release", "feature", "bug", "ticket", "request", "response", "address", "shipping", "delivery", "package", "product", "price", "discount", "coupon", "cart", "checkout", "receipt", "balance", "transfer", "bank", "loan", "rate", "tax", "form", "document", "page", "link", "button", "screen", "window", "menu", "option", "field", "value", "record", "backup", "storage", "memory", "disk", "battery", "charger", "cable", "camera", "photo", "video", "speaker", "headset", "keyboard", "monitor", "license", "key", "token", "session", "login", "access", "permission", "role", "group", "member", "admin", "manager", "customer", "client", "vendor", "contract", "schedule", "meeting", "calendar", "event", "reminder", "task", "deadline", "budget", "cost", "estimate", "quote", "policy", "warranty", "repair", "return", "exchange", "store", "branch", "office", "room", "car", "engine", "insurance", "claim", "doctor", "appointment", "prescription", "medicine", "symptom", "test", "result", "course", "lesson", "grade", "exam", "teacher", "student", "homework", "essay", "recipe", "oven", "garden", "plant", "heater", "sensor", "alarm", "lock", "door", "code", "script", "function", "variable", "loop", "method", "library", "module", "api", "endpoint", "webhook", "log", "metric", "alert", "cluster", "node", "container", "image", "volume", "pipeline", "build", "deploy", "commit", "merge"]
_VERBS = ["reset", "change", "update", "cancel", "delete", "remove", "add", "create", "open", "close", "save", "export", "import", "upload", "download", "install", "configure", "enable", "disable", "connect", "sync", "share", "send", "receive", "pay", "refund", "return", "track", "check", "find", "fix", "restart", "stop", "start", "run", "build", "deploy", "test", "merge", "rename", "move", "copy", "restore", "recover", "verify", "confirm", "approve", "reject", "schedule", "book", "transfer", "convert", "replace", "repair", "clean", "measure", "calculate", "compare", "migrate", "upgrade", "downgrade"]
_ADJS = ["new", "old", "main", "shared", "private", "public", "broken", "slow", "fast", "empty", "full", "wrong", "missing", "duplicate", "expired", "active", "inactive", "default", "custom", "monthly", "yearly", "free", "paid", "secure", "large", "small", "first", "last", "recent", "local", "remote"]
_DETS = ["the", "a", "an", "my", "our", "this", "that", "these", "some", "any", "each", "every", "no", "all", "your", "its", "their"]
_PREPS = ["in", "on", "with", "for", "from", "to", "into", "about", "after", "before", "during", "without", "under", "over", "through", "between", "by", "at"]
_CONJS = ["and", "but", "because", "when", "while", "although", "so", "since", "unless", "if"]
_OPENERS = ["how do i", "how can i", "how should i", "what is the best way to", "why does it fail when i",
            "is it possible to", "can you explain how to", "what happens if i", "i am trying to",
            "could you help me", "where can i", "when should i", "do i need to", "is there a way to",
            "what are the steps to", "why can't i", "should i", "please tell me how to"]
_SUBJECTS = ["i", "we", "my team", "the app", "our system", "the customer", "my manager", "it", "the server"]


def _pseudo_word(rng: random.Random) -> str:
    onsets = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr", "ch", "sp"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "ee"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "x"]
    return "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(rng.choice([1, 1, 2])))


class Vocab:
    def __init__(self, seed: int):
        rng = random.Random(seed)
        self.words = {
            "noun": _NOUNS + [_pseudo_word(rng) for _ in range(1500)],
            "verb": _VERBS + [_pseudo_word(rng) + rng.choice(["", "e", "ate", "ify", "ize"]) for _ in range(300)],
            "adj": _ADJS + [_pseudo_word(rng) + rng.choice(["al", "ive", "ous", "y", "ic", ""]) for _ in range(200)],
        }
        for words in self.words.values():
            rng.shuffle(words)
        self.cum = {k: list(accumulate(1 / (i + 1) ** 0.9 for i in range(len(w)))) for k, w in self.words.items()}

    def pick(self, rng: random.Random, kind: str) -> str:
        return rng.choices(self.words[kind], cum_weights=self.cum[kind])[0]

    def noun_phrase(self, rng: random.Random) -> str:
        parts = [rng.choice(_DETS)]
        if rng.random() < 0.4:
            parts.append(self.pick(rng, "adj"))
        parts.append(self.pick(rng, "noun"))
        if rng.random() < 0.25:
            parts.append(self.pick(rng, "noun"))
        return " ".join(parts)

    def sentence(self, rng: random.Random, ask: bool) -> list[str]:
        words = [rng.choice(_OPENERS) if ask else rng.choice(_SUBJECTS), self.pick(rng, "verb"),
                 self.noun_phrase(rng)]
        while rng.random() < 0.6:
            if rng.random() < 0.6:
                words += [rng.choice(_PREPS), self.noun_phrase(rng)]
            else:
                words += [rng.choice(_CONJS), rng.choice(_SUBJECTS), self.pick(rng, "verb"), self.noun_phrase(rng)]
        return " ".join(words).split()


def input_words(rng: random.Random) -> int:
    """Seed 000's input-length mix: 40% short (5-20 words), 40% medium (20-100), 20% long (100-200)."""
    r = rng.random()
    return rng.randint(5, 20) if r < 0.4 else rng.randint(20, 100) if r < 0.8 else rng.randint(100, 200)


def question(vocab: Vocab, rng: random.Random, n_words: int) -> str:
    sentences: list[list[str]] = []
    while sum(map(len, sentences)) < n_words:
        sentences.append(vocab.sentence(rng, ask=not sentences or rng.random() < 0.3))
    extra = sum(map(len, sentences)) - n_words
    sentences[-1] = sentences[-1][:len(sentences[-1]) - extra] or sentences[-1][:1]
    ends = [rng.choice(".,!;.") for _ in sentences[:-1]] + ["?"]
    return " ".join(" ".join(s).capitalize() + end for s, end in zip(sentences, ends, strict=True))


def near_copy(vocab: Vocab, rng: random.Random, text: str, strength: float) -> str:
    """Edit round(strength * words) places: word insertions, deletions, substitutions, swaps, typos, case
    and punctuation changes. Strengths up to ~0.25 put the copies on both sides of the 0.85 threshold."""
    words = text.split()
    for _ in range(max(1, round(strength * len(words)))):
        op, at = rng.random(), rng.randrange(len(words))
        w = words[at]
        if op < 0.2:
            words.insert(at, rng.choice([vocab.pick(rng, "noun"), vocab.pick(rng, "verb"), rng.choice(_DETS)]))
        elif op < 0.35 and len(words) > 3:
            del words[at]
        elif op < 0.5:
            words[at] = vocab.pick(rng, "noun")
        elif op < 0.6 and at + 1 < len(words):
            words[at], words[at + 1] = words[at + 1], w
        elif op < 0.8:   # a typo: insert, drop, replace or swap one character
            i, c = rng.randrange(len(w)), rng.choice(string.ascii_lowercase)
            words[at] = rng.choice([w[:i] + c + w[i:], w[:i] + w[i + 1:] or w, w[:i] + c + w[i + 1:],
                                    w[:i] + w[i + 1:i + 2] + w[i:i + 1] + w[i + 2:]])
        elif op < 0.9:
            words[at] = w.upper() if rng.random() < 0.2 else w.lower() if w[:1].isupper() else w.capitalize()
        else:
            words[at] = w.rstrip(",.!?;") if w[-1:] in ",.!?;" else w + rng.choice(",.!?;")
    return " ".join(words)


def make_corpus(n: int, seed: int = 0, dup_rate: float = 0.2, max_strength: float = 0.25) -> list[str]:
    """n questions; about dup_rate of them are near-copies of an earlier one (which may itself be a copy)."""
    rng, vocab = random.Random(seed), Vocab(seed)
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < dup_rate:
            texts.append(near_copy(vocab, rng, rng.choice(texts), rng.uniform(0, max_strength)))
        else:
            texts.append(question(vocab, rng, input_words(rng)))
    return texts


def short_corpus(n: int, seed: int) -> list[str]:
    """Short and medium questions only (5-40 words), where the literal quadratic reference stays affordable."""
    rng, vocab = random.Random(seed), Vocab(seed)
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.3:
            texts.append(near_copy(vocab, rng, rng.choice(texts), rng.uniform(0, 0.25)))
        else:
            texts.append(question(vocab, rng, rng.randint(5, 40)))
    return texts


# -- the rule itself ------------------------------------------------------------------------------------------
# Lower-case with every character used 4+ times: difflib's autojunk (on for texts of 200+ characters) then
# drops every character of it from the index and only the common prefix matches.
QUESTION = ("when i reset the password on the account the reset email goes to an old address, so i want to change "
            "the email on the account to a new one, and then reset the password again, then the account page states "
            "the email is in use, so how can i change the email, and how can i reset the password")


def test_one_inserted_word_in_a_long_question_is_found():
    """The autojunk trap: with difflib's default this one-word insertion scores 0.02."""
    assert 250 <= len(QUESTION) <= 300
    copy = QUESTION.replace("when i reset", "when i first reset", 1)
    assert difflib.SequenceMatcher(None, copy, QUESTION).ratio() < 0.05   # the trap is real for this pair
    assert similarity(copy, QUESTION) > 0.98
    for mode in ("exact", "fast"):
        index = NearDupIndex(mode=mode)
        index.add("q1", QUESTION)
        assert index.find(copy) == ("q1", similarity(copy, QUESTION))
        assert dedupe([QUESTION, copy], mode=mode) == [(1, 0, similarity(copy, QUESTION))]


OLD = "Why does the app log me out every time I switch between the phone and the laptop?"
SCRAMBLED = "Why out the log app does every time I switch between the phone and the laptop?"
OLD_2 = "Can I change the email address on my account without losing my order history?"
SCRAMBLED_2 = "Can address change I email the on my account without losing my order history?"


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_a_pair_over_the_threshold_in_either_order_is_a_near_duplicate(mode):
    # preconditions, straight from difflib: each pair crosses 0.85 in one argument order only
    assert difflib.SequenceMatcher(None, SCRAMBLED, OLD, autojunk=False).ratio() > 0.85
    assert difflib.SequenceMatcher(None, OLD, SCRAMBLED, autojunk=False).ratio() <= 0.85
    assert difflib.SequenceMatcher(None, SCRAMBLED_2, OLD_2, autojunk=False).ratio() <= 0.85
    assert difflib.SequenceMatcher(None, OLD_2, SCRAMBLED_2, autojunk=False).ratio() > 0.85
    assert similarity(OLD, SCRAMBLED) == similarity(SCRAMBLED, OLD) > 0.85   # the relation is symmetric

    # whichever comes first in the file, the later one is the duplicate (a one-way rule kept two of these)
    for first, second in [(OLD, SCRAMBLED), (SCRAMBLED, OLD), (OLD_2, SCRAMBLED_2), (SCRAMBLED_2, OLD_2)]:
        assert dedupe([first, second], mode=mode) == [(1, 0, similarity(first, second))]
        index = NearDupIndex(mode=mode)
        index.add("kept", first)
        assert index.find(second) == ("kept", similarity(first, second))


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_exactly_at_the_threshold_is_not_a_duplicate(mode):
    # 17 common characters in 17 + 23: ratio 34/40; 18 in 18 + 22: ratio 36/40
    at_085 = ("reset my password today", "reset my password")
    at_090 = ("reset my passwords now", "reset my passwords")
    assert similarity(*at_085) == 0.85
    assert similarity(*at_090) == 0.9
    for threshold, (new, old), expected in [(0.85, at_085, None), (0.85, at_090, 0.9), (0.9, at_090, None),
                                            (0.84, at_085, 0.85)]:
        index = NearDupIndex(threshold, mode)
        index.add(7, old)
        assert index.find(new) == (None if expected is None else (7, expected))
        assert dedupe([old, new], threshold, mode) == ([] if expected is None else [(1, 0, expected)])


def test_empty_and_tiny_texts_follow_difflib():
    assert similarity("", "") == 1.0       # difflib: two empty sequences are identical
    assert dedupe(["", "", "a", "a", "ab"]) == [(1, 0, 1.0), (3, 2, 1.0)]
    assert dedupe(["", "", "a", "a", "ab"], mode="fast") == [(1, 0, 1.0), (3, 2, 1.0)]
    for mode in ("exact", "fast"):
        index = NearDupIndex(mode=mode)
        index.add("empty", "")
        assert (index.find(""), index.find("?")) == (("empty", 1.0), None)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="mode"):
        NearDupIndex(mode="quick")
    with pytest.raises(ValueError, match="threshold"):
        NearDupIndex(threshold=0)
    with pytest.raises(ValueError, match="mode"):
        dedupe(["a"], mode="approx")


# -- the exact prunings are bounds ---------------------------------------------------------------------------
def _pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng, vocab = random.Random(seed), Vocab(seed)
    texts = make_corpus(n, seed)
    near = [(near_copy(vocab, rng, t, rng.uniform(0, 0.3)), t) for t in texts]
    return near + [(rng.choice(texts), rng.choice(texts)) for _ in range(n)]


def test_cydifflib_gives_difflibs_numbers():
    pairs = _pairs(40, 3) + [("naïve café", "naive cafe"), ("计算:[小题]根号81", "已知3x+1的算术平方根是4"), ("", "x")]
    for new, old in pairs:
        for a, b in ((new, old), (old, new)):
            assert (cydifflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
                    == difflib.SequenceMatcher(None, a, b, autojunk=False).ratio())
        assert dedup._ratio(new, old) == similarity(new, old) == similarity(old, new)


def projection_bound(a: str, b: str) -> int:
    """The class-projection bound: the LCS of each class's projections, and the space's smaller count."""
    parts = zip(dedup._projections(a), dedup._projections(b), strict=True)
    return sum(LCSseq.similarity(x, y) for x, y in parts) + min(a.count(" "), b.count(" "))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abc ,A", max_size=40), st.text(alphabet="abc ,A", max_size=40))
def test_rapidfuzz_and_projection_bounds_are_never_below_difflib(a, b):
    assert projection_bound(a, b) >= LCSseq.similarity(a, b)
    # rapidfuzz's ratio is symmetric and bounds SequenceMatcher's in both orders, so it prefilters the
    # two-order rule exactly
    assert fuzz.ratio(a, b) == fuzz.ratio(b, a)
    assert fuzz.ratio(a, b) / 100 >= difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() - 1e-12
    assert fuzz.ratio(a, b) / 100 >= difflib.SequenceMatcher(None, b, a, autojunk=False).ratio() - 1e-12


def test_bounds_hold_on_generated_pairs():
    for new, old in _pairs(40, 4):
        assert projection_bound(new, old) >= LCSseq.similarity(new, old)
        assert fuzz.ratio(new, old) / 100 >= similarity(new, old) - 1e-12


@pytest.mark.parametrize("threshold", [0.5, 0.85, 0.9, 0.99])
def test_length_window_holds_every_length_that_can_match(threshold):
    for n in range(0, 200):
        lo, hi = length_window(n, threshold)
        outside = [m for m in range(0, 3 * n + 3) if not lo <= m <= hi]
        assert all(n + m and 2 * min(n, m) / (n + m) <= threshold for m in outside), n
        assert lo > 0 or n < 10   # and it does prune


# -- the whole walk against the seed's loop -------------------------------------------------------------------
def test_exact_mode_and_prefiltered_reference_equal_the_literal_seed_loop():
    texts = short_corpus(90, seed=5)
    expected = reference_dedupe(texts)
    assert len(expected) >= 15
    assert dedupe(texts, mode="exact") == expected
    assert reference_dedupe(texts, prefilter=True) == expected


@pytest.fixture(scope="module")
def corpus_and_reference():
    texts = make_corpus(1000, seed=11)
    return texts, reference_dedupe(texts, prefilter=True)


def test_generated_corpus_has_pairs_on_both_sides_of_the_threshold(corpus_and_reference):
    texts, reference = corpus_and_reference
    ratios = [r for _, _, r in reference]
    assert sum(0.85 < r < 0.9 for r in ratios) >= 15           # drops just above the threshold
    assert len(reference) >= 100
    lengths = sorted(len(t.split()) for t in texts)
    assert lengths[0] <= 6 and lengths[-1] >= 150              # short to long questions


def test_exact_mode_equals_the_reference_on_1000_generated_questions(corpus_and_reference):
    texts, reference = corpus_and_reference
    assert dedupe(texts, mode="exact") == reference
    assert dedupe(texts, mode="auto") == reference


def _check_fast(texts: list[str], reference: list[tuple[int, int, float]], found: list[tuple[int, int, float]]):
    dropped = {i for i, _, _ in found}
    for i, j, r in found:              # no false hit: every reported pair obeys the rule, against a kept text
        assert j < i and j not in dropped and r == similarity(texts[i], texts[j]) > 0.85
    ref_dropped = {i for i, _, _ in reference}
    assert len(dropped & ref_dropped) >= 0.99 * len(ref_dropped)
    # a drop the reference did not make can only follow a miss: its match was dropped by the reference
    by_index = {i: j for i, j, _ in found}
    assert all(by_index[i] in ref_dropped for i in dropped - ref_dropped)


def test_fast_mode_finds_99_percent_and_nothing_false(corpus_and_reference):
    texts, reference = corpus_and_reference
    _check_fast(texts, reference, dedupe(texts, mode="fast"))


# -- the index --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def probes_and_answers():
    """200 kept texts, 200 probes, and each probe's first kept match by brute force (or None)."""
    rng, vocab = random.Random(8), Vocab(8)
    kept = make_corpus(200, seed=8, dup_rate=0.0)
    probes = [near_copy(vocab, rng, rng.choice(kept), rng.uniform(0, 0.25)) for _ in range(150)] + kept[:20]
    probes += make_corpus(30, seed=9, dup_rate=0.0)
    # rapidfuzz first only to save time: it is an upper bound (tested above)
    answers = [next(((f"k{i}", similarity(p, t)) for i, t in enumerate(kept)
                     if fuzz.ratio(p, t) > 85 - 1e-6 and similarity(p, t) > 0.85), None) for p in probes]
    return kept, probes, answers


@pytest.mark.parametrize("mode", ["exact", "fast", "auto"])
def test_find_agrees_with_similarity(mode, probes_and_answers, monkeypatch):
    monkeypatch.setattr(dedup, "AUTO_SWITCH", 100)    # auto crosses over to LSH halfway through the kept set
    kept, probes, answers = probes_and_answers
    index = NearDupIndex(mode=mode)
    index.extend((f"k{i}", t) for i, t in enumerate(kept[:50]))
    for i, t in enumerate(kept[50:], start=50):
        index.add(f"k{i}", t)
    assert len(index) == 200 and index.fast == (mode != "exact")
    misses = 0
    for probe, expected in zip(probes, answers, strict=True):
        got = index.find(probe)
        if mode == "exact":
            assert got == expected
        elif got is None:
            misses += expected is not None
        else:        # LSH may pick a later kept text than the first match, never a wrong one
            assert got[1] == similarity(probe, kept[int(str(got[0])[1:])]) > 0.85
    assert sum(a is not None for a in answers) >= 80 and misses <= 2


def test_extend_gives_the_same_index_as_adding_one_by_one(monkeypatch):
    monkeypatch.setattr(dedup, "AUTO_SWITCH", 200)
    texts = make_corpus(300, seed=12)
    probes = make_corpus(340, seed=12)[300:] + [near_copy(Vocab(1), random.Random(1), t, 0.05) for t in texts[:40]]
    for bulk_mode, single_mode in [("exact", "exact"), ("fast", "fast"), ("auto", "fast")]:
        bulk, single = NearDupIndex(mode=bulk_mode), NearDupIndex(mode=single_mode)
        bulk.extend(enumerate(texts))       # auto: crosses AUTO_SWITCH inside extend and rebuilds as fast
        for i, t in enumerate(texts):
            single.add(i, t)
        assert len(bulk) == 300 and bulk.fast == (bulk_mode != "exact")
        answers = [bulk.find(p) for p in probes]
        assert answers == [single.find(p) for p in probes]
        assert sum(a is not None for a in answers) >= 30


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_non_latin_text(mode):
    old = "Как сбросить пароль, если у меня больше нет доступа к старой электронной почте?"
    new = old.replace("старой", "прежней")
    cjk_old = "我无法登录我的账户，重置密码的邮件一直没有收到，请问应该怎么办？"
    cjk_new = cjk_old.replace("一直", "")
    assert similarity(new, old) > 0.85 and similarity(cjk_new, cjk_old) > 0.85
    assert dedupe([old, cjk_old, new, cjk_new], mode=mode) == [
        (2, 0, similarity(new, old)), (3, 1, similarity(cjk_new, cjk_old))]


# -- find's filters (character counts, class projections one class at a time) change no answer ---------------
def _keep_first_with_the_index(texts: list[str], threshold: float = 0.85) -> list[tuple[int, int, float]]:
    """The auditor's loop: find, then add when there is no match."""
    index, dropped = NearDupIndex(threshold, mode="exact"), []
    for i, t in enumerate(texts):
        hit = index.find(t)
        if hit is None:
            index.add(i, t)
        else:
            dropped.append((i, hit[0], hit[1]))
    return dropped


def _simulated_questions(n: int, seed: int) -> list[str]:
    """User messages as the simulated provider writes them, a fifth of them lightly edited copies."""
    from tests.test_fast_paths import simulated_texts

    rng, vocab = random.Random(seed), Vocab(seed)
    texts = simulated_texts(n)[0::2]
    return [near_copy(vocab, rng, rng.choice(texts[:k]), rng.uniform(0, 0.2)) if k and rng.random() < 0.2 else t
            for k, t in enumerate(texts)]


def _fuzzed_texts(n: int, seed: int) -> list[str]:
    """Texts over awkward alphabets (non-ASCII, DEL, digits, case, runs of one character) and their edits."""
    rng = random.Random(seed)
    alphabets = ["abc ,A", string.printable, "aeé ü\x7f5ж中", "xX \n"]
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.35:
            old = list(rng.choice(texts))
            for _ in range(rng.randint(0, 4)):
                if old:
                    old[rng.randrange(len(old))] = rng.choice(string.printable + "éж")
            texts.append("".join(old))
        else:
            alphabet = rng.choice(alphabets)
            texts.append("".join(rng.choice(alphabet) for _ in range(rng.choice([5, 40, 63, 64, 65, 90, 300]))))
    return texts


@pytest.mark.parametrize("texts", [
    pytest.param(lambda: _simulated_questions(600, 31), id="simulated"),
    pytest.param(lambda: _fuzzed_texts(400, 32), id="fuzzed"),
    pytest.param(lambda: make_corpus(500, seed=33), id="generated"),
])
def test_find_equals_the_seed_walk(texts):
    texts = texts()
    expected = reference_dedupe(texts, prefilter=True)
    assert len(expected) >= 20
    assert _keep_first_with_the_index(texts) == expected == dedupe(texts, mode="exact")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcA ,é\x7f5", max_size=80), st.text(alphabet="abcA ,é\x7f5", max_size=80))
def test_character_counts_bound_the_lcs_class_by_class(a, b):
    counts = dedup._char_counts([a, b]) if a or b else dedup._char_counts(["", ""])
    assert counts.sum(axis=1).tolist() == [len(a), len(b)]
    per_class = dedup._class_sums(dedup.np.minimum(counts[0], counts[1])).tolist()
    assert per_class[-1] == min(a.count(" "), b.count(" "))   # the space: a class whose LCS is its count
    for bound, x, y in zip(per_class[:-1], dedup._projections(a), dedup._projections(b), strict=True):
        assert bound >= LCSseq.similarity(x, y)
    assert sum(per_class) >= LCSseq.similarity(a, b)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="abcA ,é", max_size=60), st.text(alphabet="abcA ,é", max_size=60))
def test_ratio_skipping_the_second_order_when_the_first_is_the_lcs_is_still_the_rule(a, b):
    assert dedup._ratio(a, b) == similarity(a, b)


def test_a_texts_counts_and_projections_are_computed_once(monkeypatch):
    calls = {"_projections": 0, "_char_counts": 0}
    for name in calls:
        real = getattr(dedup, name)

        def counted(*args, _real=real, _name=name):
            calls[_name] += 1
            return _real(*args)

        monkeypatch.setattr(dedup, name, counted)
    texts = make_corpus(60, seed=34, dup_rate=0.0)
    texts = [t for t in texts if len(t) > 70][:30]
    index = NearDupIndex(mode="exact")
    for i, t in enumerate(texts):
        assert index.find(t) is None
        index.add(i, t)          # the find's counts and projections are kept, not recomputed
    assert calls == {"_projections": len(texts), "_char_counts": len(texts)}   # once per text, by find or add


def test_a_bulk_extend_holds_the_same_counts_as_adding_one_by_one():
    texts = [f"question {i} about the {'router' * (i % 5)} and é{i % 7}?" for i in range(4200)]  # > one 4096 block
    bulk, single = NearDupIndex(mode="exact"), NearDupIndex(mode="exact")
    bulk.extend(enumerate(texts))
    for i, t in enumerate(texts):
        single.add(i, t)
    n = len(texts)
    assert (bulk._table._counts[:n] == dedup._char_counts(texts)).all()   # type: ignore[union-attr]
    assert (bulk._table._counts[:n] == single._table._counts[:n]).all()   # type: ignore[union-attr]
    probes = [texts[4150] + "!", "question 4199 about the routerrouterrouterrouter and é6?", "unrelated words"]
    assert [bulk.find(p) for p in probes] == [single.find(p) for p in probes] != [None] * 3


# -- bigger runs (make test-long) -------------------------------------------------------------------------------
@pytest.mark.long
def test_exact_mode_equals_the_literal_seed_loop_with_long_questions():
    texts = make_corpus(250, seed=21, dup_rate=0.3)
    assert dedupe(texts, mode="exact") == reference_dedupe(texts)


@pytest.mark.long
def test_exact_and_fast_modes_on_6000_generated_questions():
    texts = make_corpus(6000, seed=22)
    reference = reference_dedupe(texts, prefilter=True)
    assert dedupe(texts, mode="exact") == reference
    _check_fast(texts, reference, dedupe(texts, mode="fast"))


@pytest.mark.parametrize("merge", [1, 7, 10_000])
def test_find_is_the_same_whether_rows_are_sorted_in_or_still_recent(merge, monkeypatch):
    """The window is a slice of the by-length copy plus a mask over rows added since: any split gives the rule."""
    monkeypatch.setattr(dedup, "_MERGE", merge)
    texts = _simulated_questions(300, 35) + _fuzzed_texts(150, 36)
    expected = reference_dedupe(texts, prefilter=True)
    assert len(expected) >= 20
    assert _keep_first_with_the_index(texts) == expected


def test_counts_over_the_storage_cap_keep_the_bound_an_upper_bound(monkeypatch):
    """Stored counts are capped (uint16 in use); the query's excess over the cap is added back. With a cap of 3
    nearly every count is over it, and find still gives the rule's answers, including ones the cap would hide."""
    monkeypatch.setattr(dedup, "_CAP", 3)
    monkeypatch.setattr(dedup, "_COUNT", dedup.np.uint8)
    texts = _simulated_questions(200, 37)
    expected = reference_dedupe(texts, prefilter=True)
    assert len(expected) >= 10
    assert _keep_first_with_the_index(texts) == expected
    index = NearDupIndex(mode="exact")
    index.add("a", "e" * 90 + " eee")
    assert index.find("e" * 92) == ("a", similarity("e" * 92, "e" * 90 + " eee"))


def _candidates_by_brute_force(texts: list[str], k: int, threshold: float = 0.85) -> list[int]:
    """Which of texts[:k] the exact scan must hand on for texts[k]: every text in the length window when the
    query is short, else every one whose class bound (the spaces' smaller count plus each class projection's
    LCS, no pruning, no counts) reaches the LCS the rule needs. Computed pair by pair, independently of the
    scan's order of classes, its count bound, its sorted copy and its cutoffs."""
    text = texts[k]
    lo, hi = length_window(len(text), threshold)
    window = [j for j in range(k) if lo <= len(texts[j]) <= hi]
    if len(text) <= dedup._DIRECT:
        return window
    mine = dedup._projections(text)
    out = []
    for j in window:
        bound = min(text.count(" "), texts[j].count(" ")) + sum(
            LCSseq.similarity(x, y) for x, y in zip(mine, dedup._projections(texts[j]), strict=True))
        if bound >= (len(text) + len(texts[j])) * threshold * (1 - 1e-9) / 2:
            out.append(j)
    return out


@pytest.mark.parametrize("order", [(0, 1, 2, 3, 4, 5), (5, 4, 3, 2, 1, 0), (1, 5, 0, 4, 2, 3), dedup._LCS_ORDER])
def test_the_scans_candidates_are_the_class_bounds_in_any_order_of_classes(order, monkeypatch):
    """The order the classes' LCS runs in is a matter of CPU only: for every order, the exact scan's candidates
    are exactly the texts whose full class bound reaches the rule's need (a brute force), on simulated,
    fuzzed and generated texts, with rows both in the sorted copy and recent."""
    monkeypatch.setattr(dedup, "_LCS_ORDER", order)
    monkeypatch.setattr(dedup, "_MERGE", 37)
    texts = _simulated_questions(160, 41) + _fuzzed_texts(90, 42) + make_corpus(120, seed=43)
    table = dedup._LengthTable(0.85)
    found = 0
    for k, text in enumerate(texts):
        ids, held = table.candidates(text)
        expected = _candidates_by_brute_force(texts, k)
        assert ids == expected and held == [texts[j] for j in expected], k
        found += len(ids)
        table.add(k, text)
    assert found >= 1000      # the scan was exercised: long windows, not a corpus of strangers


def test_the_class_order_runs_every_class_once():
    assert sorted(dedup._LCS_ORDER) == list(range(dedup._N_LCS))


def _projections_by_str_translate(text: str) -> tuple[str, ...]:
    """The class projections as dedup.py computed them before its ASCII bytes path (kept as the reference)."""
    others = text.translate(dedup._DELETE_LETTERS)
    letters = text.translate(dict.fromkeys(map(ord, set(others)))) if others else text
    return (*(letters.translate(t) for t in dedup._KEEP_GROUP), others)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=string.printable + "\x00\x7fé", max_size=300))
def test_projections_of_ascii_texts_equal_the_str_translate_path(text):
    assert dedup._projections(text) == _projections_by_str_translate(text)
    assert all(type(p) is str for p in dedup._projections(text))


def test_projections_equal_the_str_translate_path_on_questions():
    texts = _simulated_questions(300, 44) + _fuzzed_texts(200, 45) + make_corpus(300, seed=46)
    assert sum(t.isascii() for t in texts) >= 300 and sum(not t.isascii() for t in texts) >= 20
    for t in texts:
        assert dedup._projections(t) == _projections_by_str_translate(t)
