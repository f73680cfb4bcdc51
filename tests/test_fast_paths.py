"""The audit's fast paths give the same answers as the straightforward code they replaced (issue 11 item 7).

Each pair is checked on generated sets and texts, the simulated provider's output and hand-written cases:
same overlap figures, same verbs and topics, same labels. Speed itself is measured by bench/, never here.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from agent.audit.diversity import DiversityTracker
from agent.audit.overlap import BatchOverlap, OverlapIndex
from agent.audit.text_stats import mattr, tokenize, ttr
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


# ---- measured labels and PII: the same answers as the plain code ---------------------------------------

def simulated_texts(n: int = 400) -> list[str]:
    """User and assistant messages as the simulated provider writes them, over all its label values."""
    from agent.providers.simulated_text import assistant_message, user_message

    rng = random.Random(3)
    out = []
    for _ in range(n):
        labels = {"behaviour": rng.choice(["standard", "ambiguous", "adversarial", "negative"]),
                  "question_type": rng.choice(["factual", "troubleshooting", "multi_step"]),
                  "typos": rng.choice(["clean", "typos"]), "examples": rng.choice(["with_examples", "conceptual"]),
                  "format": rng.choice(["plain", "list", "table", "json"]),
                  "tone": rng.choice(["professional", "conversational", "mixed"])}
        topic = rng.choice(["spot instance preemption", "egress fees", "persistent volumes", "SSH keys"])
        lo = rng.choice([5, 20, 50, 150])
        out += [user_message(rng, labels, topic, lo, lo * 3), assistant_message(rng, labels, topic, lo, lo * 4)]
    return out


HAND_WRITTEN = [
    "", "   ", "plain words only. Two sentences here!", "a - b", "- one\n- two", "* one\n* two\n", "+ a\n+ b",
    "1. first\n2. second", "1) first\n2) second", "  - indented\n  - list", "> - quoted\n> - list",
    "text\n\n    indented code\n", "\tcode after a tab", "use `pip install x` now", "~~~\ncode\n~~~",
    "```json\n{\"a\": 1}\n```", "| a | b |\n|---|---|\n| 1 | 2 |", "a | b\n--|--\n1 | 2", "line\r- one\r- two",
    "line\r\n- one\r\n- two", "For example, set 'x' to 3.", "e.g. run it twice", "-not a list", "1.5 GB is the size",
    "10. tenth\n11. eleventh", "1234567890. too many digits", "word\u00a0word", "__init__ and _ and -- and ...",
    "naïve café ½ ² ٣ test", "emoji 🙂 only 🙂", "Call +1 415 867 5309 or write to jane.doe@gmail.com",
    "card 4111 1111 1111 1112 and 5500 0000 0000 0004", "SSN 078-05-1120, IBAN DE89 3704 0044 0532 0130 00",
    "digits ٤١٥٨٦٧٥٣٠٩ in Arabic-Indic", "ssn ０７８-０５-１１２０ fullwidth", "mail me at bob@example.com",
]


def test_word_count_equals_the_per_character_rule():
    def plain(text: str) -> int:
        return sum(1 for token in text.split() if any(ch.isalnum() for ch in token))

    from agent.audit.labels import word_count

    rng = random.Random(1)
    alphabet = "ab1_-|*. \t\n\u00a0\u2003½²٣é🙂'’\x1c"
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    for text in simulated_texts() + HAND_WRITTEN + fuzz:
        assert word_count(text) == plain(text), text


def plain_has_example(text: str) -> bool:
    """has_example as first written: a full Markdown parse (inline content included) of every text."""
    import re

    from agent.audit import labels

    for tok in labels._markdown().parse(text):
        if tok.type in ("fence", "code_block") and tok.content.strip():
            return True
        for child in tok.children or []:
            if child.type == "code_inline" and (len(child.content.split()) >= 2 or re.search(r"\w\(|=", child.content)):
                return True
    return bool(labels.WORKED_EXAMPLE.search(labels.CODE_SPANS.sub("`", text)))


def plain_formats_found(text: str) -> list[str]:
    from agent.audit import labels

    return labels.formats_in(labels._markdown().parse(text))   # the full parse: no hint skip, inline content included


def test_markdown_fast_paths_equal_a_full_parse_of_every_text():
    """Skipping texts that cannot hold code/table/list, and inline parsing only for backticks, change nothing."""
    from agent.audit import labels

    rng = random.Random(2)
    pieces = ["word", " ", "\n", "\n\n", "- ", "* ", "+ ", "1. ", "2) ", "    ", "\t", "`", "``", "```", "~~~", "|",
              "---", "> ", "\r", "e.g. 5", "{\"a\": 1}", "x=1", "f(x)", "`a b`", "`f(x)`", "\\`"]
    fuzz = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 14))) for _ in range(3000)]
    texts = simulated_texts() + HAND_WRITTEN + fuzz
    for text in texts:
        assert labels.has_example(text) == plain_has_example(text), repr(text)
        assert labels.formats_found(text) == plain_formats_found(text), repr(text)
    assert sum(not labels._MARKDOWN_HINT.search(t) for t in texts) > 100       # the skip is taken
    assert sum(plain_has_example(t) for t in texts) > 100 and sum(bool(plain_formats_found(t)) for t in texts) > 100


def test_pii_prefilters_change_nothing():
    from agent.audit import checks

    def plain(text: str) -> list[tuple[str, str]]:
        found: dict[str, str] = {}
        for code, value in [*checks._emails(text), *checks._numbers(text)]:   # every scan, always
            found.setdefault(code, value)
        names = {"pii_email": "an e-mail address", "pii_phone": "a phone number", "pii_card": "a payment card number",
                 "pii_national_id": "a national id number", "pii_iban": "an IBAN"}
        return [(code, f"{names[code]} ({checks._mask(value)})") for code, value in found.items()]

    hits = 0
    for text in simulated_texts() + HAND_WRITTEN:
        assert checks.find_pii(text) == plain(text), text
        hits += bool(plain(text))
    assert hits >= 4


def plain_reply_issues(replies: list[tuple[str, str]], behaviour: str | None) -> list:
    """checks.reply_issues as first written: every regex over every reply, no literal prefilter."""
    from agent.audit import checks as C

    def refusal(text: str) -> bool:
        return any(not C.HEDGE.match(text, m.end()) for m in C.REFUSAL.finditer(text))

    def redirect(text: str) -> bool:
        text, parts, pos = C.CODE.sub(" ", text), [], 0
        for m in C.REFUSAL.finditer(text):
            if m.start() < pos:
                continue
            parts.append(text[pos:m.start()])
            end = C.CLAUSE_END.search(text, m.end())
            pos = end.start() if end else len(text)
        parts.append(text[pos:])
        return bool(C.REDIRECT.search(" ".join(parts)))

    issues = [C.Issue("as_an_ai", f"{w} uses an 'As an AI ...' phrase") for w, t in replies if C.AS_AN_AI.search(t)]
    if behaviour == "negative":
        declining = [(w, t) for w, t in replies if C.REFUSAL.search(t) or C.DONT_KNOW.search(t)]
        if not declining:
            return issues + ([C.Issue("negative_not_declined", "a negative example must decline or say it doesn't "
                                      "know; no reply does")] if replies else [])
        where, text = declining[-1]
        if not C.REASON.search(text):
            issues.append(C.Issue("negative_no_reason", f"{where} declines without a reason (because, out of scope, "
                                                        "policy, ...)"))
        if not redirect(text):
            issues.append(C.Issue("negative_no_redirect", f"{where} declines without redirecting to legitimate help"))
    else:
        issues += [C.Issue("refusal_without_help", f"{w} refuses without offering help, an alternative or a question")
                   for w, t in replies if refusal(t) and not redirect(t)]
    if behaviour == "ambiguous" and replies and not any("?" in C.CODE.sub("", t) for _, t in replies):
        issues.append(C.Issue("ambiguous_no_clarification",
                              "the request is ambiguous but no reply asks a clarifying question"))
    return issues


def test_reply_rules_prefilters_change_nothing():
    """The lower-cased literal prefilters before AS_AN_AI and REFUSAL give the regexes' answers, in any case,
    with either apostrophe, and on non-ASCII texts (where re.I matches "ſ" as "s": the prefilter stands aside)."""
    from agent.audit import checks

    rng = random.Random(23)
    pieces = ["I", "i", "We", "we", " ", "  ", "\n", ". ", "cannot", "CAN'T", "can’t", "cant", "can not", "won't",
              "WON’T", "will not", "am unable to", "'m not able to", "’re unable to", "help", "stress", "guarantee",
              "As an AI", "as a language model", "AS AN LLM", "aſ an AI", "as a large language model", "wıll not",
              "because", "policy", "?", "`x?`", "```\ncan't\n```", "but", "instead", "support", "unfortunately",
              "I don't know", "I'm not sure", "the", "price", "é"]
    fuzz = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 16))) for _ in range(5000)]
    texts = simulated_texts() + HAND_WRITTEN + fuzz
    flagged = 0
    for i, text in enumerate(texts):
        replies = [("assistant turn 1", text)] + ([("assistant turn 2", texts[i - 1])] if i % 3 == 0 else [])
        for behaviour in (None, "negative", "ambiguous"):
            got = checks.reply_issues(replies, behaviour)
            assert got == plain_reply_issues(replies, behaviour), repr(text)
            flagged += bool(got)
    assert flagged > 3000
    assert sum(checks._may_refuse(*checks._reading(t)) for t in simulated_texts()) < len(simulated_texts())   # the skip is taken


# ---- the diversity tracker: the same figures as the example-at-a-time definitions ------------------------

def test_pos_tags_equal_the_parser_on_whole_sentences():
    """Tagging token by token through the cache gives what TextBlob's parser gives on each whole sentence."""
    from textblob.en import parser  # the library's own tagger, with its own lexicon load

    from agent.audit import text_stats

    def plain(text: str) -> list[tuple[str, str]]:
        tagged = []
        for sentence in text_stats._SENTENCE_END.split(text.replace("’", "'")):
            tokens = text_stats._TAG_TOKEN.findall(sentence)
            if tokens:
                tagged += [(w, t) for w, t in parser.find_tags(tokens)]
        return tagged

    rng = random.Random(5)
    words = ["The", "the", "I", "use", "Please", "run", "e.g.", "1.5", "don't", "What's", "U.S.", "GPU's", "x-ray",
             "A100", "deploys", "-", "Monitors", "IS", "iT", "Lambda", "99%", "3/4", "$5", "naïve", "won't"]
    fuzz = [" ".join(rng.choice(words) + rng.choice(["", "", ".", "?", "!", ",", "’s"]) for _ in range(rng.randint(1, 15)))
            for _ in range(2000)]
    for text in simulated_texts() + HAND_WRITTEN + fuzz:
        assert text_stats.pos_tags(text) == plain(text), text


def test_key_table_numbers_keys_like_a_dict(monkeypatch):
    from agent.audit import overlap
    from agent.audit.overlap import KeyTable

    monkeypatch.setattr(overlap, "_CHUNK", 300)   # resizes re-insert in several slices
    rng = np.random.default_rng(1)
    table, plain = KeyTable(), {}
    for size in (0, 1, 5, 700, 3000, 20000, 10):   # grows past its first capacities; repeats and misses
        keys = np.unique(np.concatenate([rng.integers(-2**62, 2**62, size), rng.integers(0, 5000, size)]))
        keys = keys[keys != -1]
        absent = table.find(keys) < 0
        assert absent.tolist() == [k not in plain for k in keys.tolist()]
        nums = table.add(keys)
        for k, n in zip(keys.tolist(), nums.tolist(), strict=True):
            assert plain.setdefault(k, n) == n               # a key held keeps its number
        assert sorted(nums[absent].tolist()) == list(range(len(plain) - int(absent.sum()), len(plain)))  # new: the next ones
        assert table.find(keys).tolist() == [plain[k] for k in keys.tolist()]
    assert len(table) == len(plain)


class PlainTracker:
    """The tracker's figures straight from their definitions, one example at a time (the code it replaced)."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.sets: list[set[int]] = []
        self.df: Counter = Counter()
        self.common: list[int] = []
        self.bigrams: set = set()
        self.n_bigrams = self.n_trigrams = self.tokens = 0
        self.sum_ttr = self.sum_mattr = 0.0

    def add(self, example: dict) -> None:
        uni, tri = [], []
        for text in (example["user"], example["response"]):
            ids = [self.vocab.setdefault(t, len(self.vocab)) for t in tokenize(text)]
            uni += ids
            self.bigrams.update(zip(ids, ids[1:], strict=False))
            self.n_bigrams += max(0, len(ids) - 1)
            tri += [(a << 42) | (b << 21) | c for a, b, c in zip(ids, ids[1:], ids[2:], strict=False)]
        self.tokens += len(uni)
        self.sum_ttr += ttr(uni)
        self.sum_mattr += mattr(uni)
        self.n_trigrams += len(tri)
        for key in set(tri):   # in a Python set's order, as the old index met them
            self.df[key] += 1
            if self.df[key] == 16:
                self.common.append(key)
        self.sets.append(set(tri))

    def phrases(self, k: int) -> list[str]:
        words = list(self.vocab)
        top = sorted(self.common, key=self.df.__getitem__, reverse=True)[:k]   # stable: ties in arrival order
        return [" ".join(words[(key >> shift) & (2**21 - 1)] for shift in (42, 21, 0)) for key in top]


def simulated_examples(n: int, seed: int) -> list[dict]:
    texts = simulated_texts(n)
    rng = random.Random(seed)
    return [{"user": texts[2 * i], "response": texts[2 * i + 1],
             "labels": {"tone": rng.choice(["professional", "mixed"])}} for i in range(n)]


@pytest.mark.parametrize("corpus", ["simulated", "edited copies"])
def test_tracker_equals_the_plain_definitions_batch_after_batch(corpus, monkeypatch):
    from agent.audit import overlap

    monkeypatch.setattr(overlap, "_CHUNK", 1000)   # table resizes and arena compactions in several slices
    examples = simulated_examples(360, 1) if corpus == "simulated" else make_examples(9, 360)
    tracker, plain = DiversityTracker({"tone": ["professional", "mixed"]}), PlainTracker()
    start = 0
    for size in (1, 40, 3, 100, 56, 160):
        batch = examples[start:start + size]
        start += size
        result = tracker.add_batch(batch).cumulative
        for e in batch:
            plain.add(e)
        n = len(plain.sets)
        assert (result.examples, result.tokens) == (n, plain.tokens)
        assert (result.mean_ttr, result.mattr_50) == (plain.sum_ttr / n, plain.sum_mattr / n)   # exact floats
        assert result.corpus_ttr == len(plain.vocab) / plain.tokens
        assert result.distinct_2 == len(plain.bigrams) / plain.n_bigrams
        assert result.distinct_3 == len(plain.df) / plain.n_trigrams
        assert tracker.common_phrases(40) == plain.phrases(40)
    shared, mins, flagged = brute(plain.sets, 0.3)
    assert (result.ngram_overlap, result.share_nn_over_30) == (shared / mins, flagged / len(plain.sets))
    assert flagged > 0 and len(plain.common) >= 10   # the flags and the avoid list (with ties) are exercised
    rebuilt = DiversityTracker.from_examples(examples, {"tone": ["professional", "mixed"]})
    assert rebuilt.metrics() == tracker.metrics() and rebuilt.common_phrases(40) == tracker.common_phrases(40)


def test_verbs_and_topics_equal_the_token_by_token_rules():
    """The cached per-(word, tag) readings give the sets the rules give read out token by token."""
    from agent.audit import text_stats as ts

    def is_verb(tagged, i):
        word, tag = tagged[i]
        if tag.startswith("VB"):
            return True
        if tag not in ("NN", "NNS") or not ts._verb_forms(word.lower())[0]:
            return False
        prev_word, prev_tag = tagged[i - 1] if i else ("", "")
        next_tag = tagged[i + 1][1] if i + 1 < len(tagged) else ""
        if prev_word.lower() in ts._SUBJECTS or prev_tag == "MD":
            return True
        return prev_tag not in ts._NOMINAL_LEFT and (next_tag in ts._OBJECT_RIGHT or ts._verb_forms(word.lower())[1])

    def plain(text):
        verbs, topics, run = set(), set(), []
        tagged = ts.pos_tags(text)
        for i, (word, tag) in enumerate(tagged):
            w = word.lower()
            if w.replace("-", "").isalpha() and is_verb(tagged, i):
                if run:
                    topics.add(" ".join(run[-3:]))
                    run = []
                lemma = ts._lemma(w, "VERB")
                if lemma not in ts.AUXILIARIES and w not in ts.NOT_VERBS:
                    verbs.add(lemma)
            elif tag.startswith("NN") and ts._TOPIC_WORD.fullmatch(w):
                run.append(ts._lemma(w, "NOUN") if tag in ("NN", "NNS") else w)
            elif run:
                topics.add(" ".join(run[-3:]))
                run = []
        if run:
            topics.add(" ".join(run[-3:]))
        return verbs, topics

    rng = random.Random(6)
    words = ["I", "we", "use", "uses", "monitors", "the", "logs", "will", "deploy", "please", "Please", "be", "has",
             "GPU", "x-ray", "c++", "node.js", "errors", "and", "a", "my", "it", "can", "resize", "volumes", "Lambda"]
    fuzz = [" ".join(rng.choice(words) + rng.choice(["", "", "", ".", "?", ","]) for _ in range(rng.randint(1, 14)))
            for _ in range(2000)]
    found = 0
    for text in simulated_texts() + HAND_WRITTEN + fuzz:
        assert ts.verbs_and_topics(text) == plain(text), text
        found += bool(plain(text)[0]) and bool(plain(text)[1])
    assert found > 500


def test_tokenize_equals_the_regex():
    """tokenize's ASCII path (translate + split) gives findall's words on every text."""
    import re

    from agent.audit.text_stats import tokenize

    word = re.compile(r"\w+(?:['’]\w+)*")   # the definition, as before the fast path
    rng = random.Random(4)
    alphabet = "ab_Z9'’ \t\n.,-!?\x0b\x1c\x1féK\u00a0_"
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(20000)]
    fuzz += ["".join(chr(rng.randrange(128)) for _ in range(rng.randint(0, 30))) for _ in range(20000)]
    for text in simulated_texts() + HAND_WRITTEN + fuzz + ["'quoted'", "a''b", "don't 'n' rock'n'roll''", "\u212a"]:
        assert tokenize(text) == word.findall(text.lower()), repr(text)


@pytest.mark.parametrize(("frequent_df", "frequent_share"), [(2, 10**9), (5, 10**9), (40, 10**9), (2, 8), (5, 3)])
def test_frequent_key_bitmap_holds_each_sets_frequent_keys(frequent_df, frequent_share):
    """Row i of the bitmap has exactly the columns of the frequent keys set i holds (added in batches, keys
    turning frequent in the middle of a batch included), hot[i] counts them, and a key is frequent once
    frequent_df sets and a 1/frequent_share of the sets held it at the end of a batch."""
    rng = random.Random(frequent_df)
    sets = as_int_sets(common_key_sets(frequent_df, 260))
    index = OverlapIndex(0.3, frequent_df=frequent_df, frequent_share=frequent_share)
    df: Counter = Counter()
    bar = {}   # key -> the holders it needed when it turned frequent
    start = 0
    while start < len(sets):
        size = rng.choice([1, 3, 37, 64, 80])
        index.add_sets(sets[start:start + size])
        for s in sets[start:start + size]:
            df.update(s)
        start += size
        need = max(frequent_df, start // frequent_share)
        bar.update({k: need for k, d in df.items() if d >= need and k not in bar})
    column = {int(num): c for c, num in enumerate(index._frequent.view.tolist())}
    key_num = dict(zip(sorted(df), index._table.find(np.array(sorted(df))).tolist(), strict=True))
    assert {key_num[k] for k in bar} == set(column) and len(column) == index._bits.columns > 0
    bits = np.unpackbits(index._bits.words[:len(sets)].view(np.uint8), axis=1, bitorder="little")
    for i, s in enumerate(sets):
        expected = {column[key_num[k]] for k in s if k in bar}
        assert set(np.flatnonzero(bits[i]).tolist()) == expected
        assert index.hot.view[i] == len(expected)


def test_spans_are_the_concatenated_ranges():
    from agent.audit.overlap import _spans

    rng = np.random.default_rng(5)
    for _ in range(3000):
        q = int(rng.integers(0, 9))
        starts, lengths = rng.integers(0, 1000, q), rng.integers(0, 5, q).astype(np.int32)
        expected = [i for s, n in zip(starts.tolist(), lengths.tolist(), strict=True) for i in range(s, s + n)]
        got = _spans(starts, lengths)
        assert got.tolist() == expected and got.dtype == np.int64


def test_postings_arena_holds_what_a_dict_of_lists_holds(monkeypatch):
    from agent.audit import overlap

    monkeypatch.setattr(overlap, "_CHUNK", 7)       # compactions copy in several slices
    rng = np.random.default_rng(2)
    postings, plain = overlap._Postings(), {}
    compactions = 0
    for set_id in range(400):   # each batch: one new set id held by some keys (new keys too)
        nums = np.unique(rng.integers(0, 60 + set_id // 4, rng.integers(1, 30)))
        holes_before = postings.holes
        postings.add(nums, np.ones(len(nums), dtype=np.int64), np.full(len(nums), set_id))
        compactions += postings.holes < holes_before
        for k in nums.tolist():
            plain.setdefault(k, []).append(set_id)
        keys = np.array(sorted(plain))
        start, length = postings.span(keys)
        assert [postings.ids[a:a + n].tolist() for a, n in zip(start, length, strict=True)] == [plain[k] for k in keys.tolist()]
    assert compactions > 0


def test_formats_by_lines_equal_the_full_parse():
    """formats_found's line walk (no parse) gives the parse's answer wherever it answers, on the simulated
    replies and on fuzz built from the lines CommonMark reads differently (lazy continuation, indented
    items, setext underlines, tables after paragraphs, fences inside items, "2." after a paragraph), and
    it answers for most simulated replies (the parse is the exception)."""
    from agent.audit import labels

    rng = random.Random(19)
    lines = ["Some text.", "more words here", "- item", "* item", "+ item", "-item", "- ", "-", "1. one", "2. two",
             "10) ten", "1) one", "3.5 GB", "  - nested", "   continued", "    code", "\tcode", "", "", " ", "---",
             "***", "- - -", "===", "# Title", "#tag", "## Sub", "> quote", "> - quoted", "<div>", "</div>",
             "[a]: /url", "| a | b |", "|---|---|", "|:-|-:|", "| 1 | 2 |", "|---|", "a | b", "--|--", "| x",
             "```", "```json", "```py", "```a`b", "````", "~~~", "~~~ json", "   ```", "    ```", "{\"a\": 1}",
             "[1, 2]", "\"s\"", "null", "}", "- **bold** item", "- `code`", "- > q", "- # h", "- 1. n",
             "\u00a0- x", "\f- x", "- x\r", "1.\tx", "-\tx", "* * *", "_ _ _", "2. a | b", "- | c |", "| \\| |"]
    fuzz = ["\n".join(rng.choice(lines) for _ in range(rng.randint(1, 9))) for _ in range(8000)]
    # and texts made only of lines the walk reads itself, to drive its states (paragraph, item, gap) deep
    plain = ["Some text.", "more words", "- a", "* b", "+ c", "1. one", "2. two", "1) one", "3) three", "3.5 GB", "",
             "", "# Title", "```", "```json", "~~~", "{\"a\": 1}", "[1]", "| a | b |", "|---|---|", "| 1 | 2 |"]
    fuzz += ["\n".join(rng.choice(plain) for _ in range(rng.randint(1, 12))) for _ in range(6000)]
    texts = simulated_texts() + HAND_WRITTEN + fuzz
    answered = 0
    for text in texts:
        by_lines = labels._formats_by_lines(text)
        if by_lines is not None:
            answered += 1
            assert by_lines == plain_formats_found(text), repr(text)
        assert labels.formats_found(text) == plain_formats_found(text), repr(text)
    replies = [t for t in simulated_texts() if labels._format_hint(t)]
    assert sum(labels._formats_by_lines(t) is not None for t in replies) > 0.9 * len(replies)
    assert answered > 5000
    assert {tuple(plain_formats_found(t)) for t in fuzz if labels._formats_by_lines(t) is not None} >= {
        ("list",), ("table",), ("json",), ()}


def test_substring_hints_equal_the_regexes_they_replace():
    """The hints before the Markdown walk and the worked-example regex, written as substring tests, say what
    the regexes said (as necessary conditions: a False is never a text the regex would have matched)."""
    import re

    from agent.audit import labels

    format_hint = re.compile(r"[>|\r{\[]|json|^[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)", re.M | re.I)
    code_block_hint = re.compile(r"```|~~~|\t| {4}")
    rng = random.Random(29)
    pieces = ["json", "JSON", "jſon", "Json", "{", "[", "|", ">", "\r", "- ", "1. ", "  * ", "x", " ", "    ", "\t",
              "\n", "```", "~~~", "For Example, ", "for instance: ", "E.G. ", "e.g.", "fOr eXample", "for ex`a`ample ",
              "for exampl", "'x'", "3", "`y`", "ſ", "K", "é"]
    fuzz = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 10))) for _ in range(6000)]
    differ = 0
    for text in simulated_texts() + HAND_WRITTEN + ["```jſon\n1\n```", "```JſON\n\"s\"\n```"] + fuzz:
        if labels._format_hint(text) != bool(format_hint.search(text)):   # re.I reads "ſ" as "s"; lower() doesn't
            differ += 1
            assert not labels._format_hint(text) and plain_formats_found(text) == [], repr(text)
        assert labels.formats_found(text) == plain_formats_found(text), repr(text)
        assert labels._code_block_hint(text) == bool(code_block_hint.search(text)), repr(text)
        if labels.WORKED_EXAMPLE.search(labels.CODE_SPANS.sub("`", text)):
            assert labels._may_name_example(text), repr(text)
    assert sum(not labels._may_name_example(t) for t in simulated_texts()) > 200   # the skip is taken
    assert differ > 10      # "jſon" texts: the regex parsed them, for nothing


# ---- the tracker against its d825af4 code (read from the repository's history), batch after batch ----------

def tracker_view(tracker, n_planned: int) -> dict:
    """Everything a run reads from a tracker: metrics, avoid list, verbs, topic counts, and the steering."""
    from agent.audit.diversity import shortfalls, steering

    metrics = tracker.metrics()
    found = shortfalls(metrics, metrics.examples, n_planned)
    return {"metrics": metrics.to_dict(), "phrases": tracker.common_phrases(40), "verbs": tracker.used_verbs,
            "topics": dict(tracker.topic_counts()),
            "steering": [steering(found, tracker.used_verbs, temperature=t) for t in (True, False)]}


def overlap_view(index) -> dict:
    """The overlap index's figures and its per-set state."""
    return {"figures": (index.distinct, index.shared, index.min_sum, index.n_flagged),
            "flagged": index.flagged.view.tolist(), "hot": index.hot.view.tolist(),
            "frequent": index._frequent.view.tolist(), "common": index.most_common(30)}


def fuzz_examples(seed: int, n: int) -> list[dict]:
    """Short texts from a tiny vocabulary with stock phrases in most of them (3-grams turn frequent at once),
    near copies, empty and one-word texts, and the odd non-ASCII word."""
    rng = random.Random(seed)
    words = ["make", "sure", "to", "the", "gpu", "node", "run", "fails", "use", "a", "key", "naïve", "don't", "é"]
    stock = ["make sure to", "use the gpu", "the node fails"]
    out: list[dict] = []
    for _ in range(n):
        if out and rng.random() < 0.2:
            e = dict(rng.choice(out))
            e["response"] = e["response"] + " " + rng.choice(words)
        else:
            parts = [rng.choice(stock) if rng.random() < 0.5 else " ".join(rng.choices(words, k=rng.randint(0, 6)))
                     for _ in range(rng.randint(0, 6))]
            e = {"user": "How do I " + " ".join(rng.choices(words, k=rng.randint(0, 5))) + "?",
                 "response": ". ".join(parts), "labels": {"tone": rng.choice(["professional", "mixed"])}}
        out.append(e)
    return out


@pytest.mark.parametrize("batch_size", [1, 7, 50, 200])
@pytest.mark.parametrize(("corpus", "frequent_df"), [("simulated", 256), ("simulated", 8), ("fuzz", 3)])
def test_tracker_equals_its_d825af4_code_batch_after_batch(batch_size, corpus, frequent_df, monkeypatch):
    """Same batch and cumulative metrics, avoid list, verbs, topic counts and steering as the old code after
    every batch, with a save and restore (agent/audit/state.py) half way; most rare keys' postings are joined
    as arena views, the others gathered."""
    from agent.audit import overlap
    from agent.audit.auditor import STATE_MODULES
    from agent.audit.state import dumps, loads, same_shape
    from tests.old_code import load

    old_code = load("d825af4", ["overlap", "text_stats", "diversity"])
    old_overlap, OldTracker = old_code["overlap"], old_code["diversity"].DiversityTracker

    monkeypatch.setattr(overlap, "_SLICE", 3)
    n = 400 if batch_size > 1 else 120
    examples = simulated_examples(n, 2) if corpus == "simulated" else fuzz_examples(batch_size, n)
    categories = {"tone": ["professional", "conversational", "mixed"]}
    new, old = DiversityTracker(categories), OldTracker(categories)
    new._totals.index = OverlapIndex(frequent_df=frequent_df)
    old._totals.index = old_overlap.OverlapIndex(frequent_df=frequent_df)
    for start in range(0, n, batch_size):
        batch = examples[start:start + batch_size]
        assert new.add_batch(batch).to_dict() == old.add_batch(batch).to_dict()
        assert tracker_view(new, n) == tracker_view(old, n)
        assert overlap_view(new._totals.index) == overlap_view(old._totals.index)
        if start < n // 2 <= start + batch_size:
            restored = loads(dumps(new, STATE_MODULES), STATE_MODULES)
            assert same_shape(restored, DiversityTracker(categories))
            new = restored
    figures = new.metrics()
    assert figures.share_nn_over_30 > 0 and len(new.common_phrases(40)) >= (10 if corpus == "simulated" else 4)
    assert frequent_df > 8 or len(new._totals.index._frequent.view) > 0   # the frequent-key bitmap is used


@pytest.mark.parametrize("batch_size", [1, 7, 50, 200])
@pytest.mark.parametrize(("frequent_df", "frequent_share"), [(2, 8), (5, 3), (40, 10**9)])
def test_overlap_index_equals_its_d825af4_code_on_random_sets(batch_size, frequent_df, frequent_share, monkeypatch):
    """Random small sets (empty ones too) over a small universe, a few keys forced into most sets so they turn
    frequent: the same flags, hot counts, frequent keys, figures and most common keys after every batch."""
    from agent.audit import overlap
    from tests.old_code import load

    old_overlap = load("d825af4", ["overlap"])["overlap"]
    rng = random.Random(batch_size * 100 + frequent_df)
    monkeypatch.setattr(overlap, "_SLICE", rng.choice([0, 2, 5, 1 << 30]))
    sets: list[set[int]] = []
    for _ in range(400):
        s = set(rng.sample(range(300), rng.randint(0, 30)))
        if rng.random() < 0.8:
            s |= {1000 + k for k in range(5) if rng.random() < 0.9}   # the forced frequent keys
        if sets and rng.random() < 0.15:
            donor = sorted(rng.choice(sets))
            s |= set(rng.sample(donor, k=min(8, len(donor))))
        sets.append(s)
    new = OverlapIndex(0.3, frequent_df=frequent_df, frequent_share=frequent_share)
    old = old_overlap.OverlapIndex(0.3, frequent_df=frequent_df, frequent_share=frequent_share)
    for start in range(0, len(sets), batch_size):
        new.add_sets(sets[start:start + batch_size])
        old.add_sets(sets[start:start + batch_size])
        assert overlap_view(new) == overlap_view(old)
    assert 0 < new.n_flagged < len(sets) and len(new._frequent.view) >= 5


def test_stable_order_is_numpys_stable_argsort():
    """The radix sort behind SetBatch and segment_measures orders int64 keys as np.argsort(kind="stable"):
    ties in input order, negative keys (SetBatch's codes of non-int keys) first, every digit width."""
    from agent.audit.overlap import stable_order

    rng = np.random.default_rng(3)
    for t in range(3000):
        n = int(rng.integers(0, 60))
        keys = [rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64), rng.integers(0, 5, n),
                rng.integers(-3, 3, n) * (2**47 + 12345), rng.integers(0, 2**40, n) | (rng.integers(0, 2, n) << 62),
                rng.integers(-2, 2**16, n)][t % 5]
        assert stable_order(keys).tolist() == np.argsort(keys, kind="stable").tolist(), keys.tolist()
