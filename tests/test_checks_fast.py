"""Round 4's fast paths of the per-record checks and measured labels give the answers of the code they
replaced (issue 11 item 7, part D). The replaced code is kept here as the reference; each pair is compared on
the simulated provider's texts, hand-written cases and fuzz built to hit every branch. Speed is measured by
bench/bench_audit.py --labels, never here.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from agent.audit import checks, labels
from tests.test_fast_paths import HAND_WRITTEN, simulated_texts

ASCII = "".join(map(chr, range(128)))


# ---- PII: the shape prefilters -----------------------------------------------------------------------

def every_scan(text: str) -> list[tuple[str, str]]:
    """find_pii with no prefilter: every pattern over every text."""
    found: dict[str, str] = {}
    for code, value in [*checks._emails(text), *checks._numbers(text)]:
        found.setdefault(code, value)
    names = {"pii_email": "an e-mail address", "pii_phone": "a phone number", "pii_card": "a payment card number",
             "pii_national_id": "a national id number", "pii_iban": "an IBAN"}
    return [(code, f"{names[code]} ({checks._mask(value)})") for code, value in found.items()]


def pii_fuzz(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    pieces = ["4111", "1111", "5500", "0000", "0004", "4242", "6011", "3782", "822463", "10005", "078", "05", "1120",
              "219", "09", "9999", "DE89", "3704", "0044", "0532", "0130", "00", "GB82", "WEST", "1234", "5698",
              "7654", "32", "+1", "415", "867", "5309", "(415)", "555", "0123", "2", "7", "-", "--", " ", "  ", ".",
              "(", ")", "\t", "\n", "\x1c", "\x0b", "x", "AB", "Q", "é", "٣", "０", "\u00a0", "@", "bob", "gmail.com"]
    real = ["536-22-1234", "401-52-7788", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "5500 0000 0000 0004",
            "GB82 WEST 1234 5698 7654 32", "+1 415 867 5309", "(415) 867-5309", "6011-0009-9013-9424", "5105105105105100"]
    out = []
    for _ in range(n):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 14)))
        if rng.random() < 0.5:     # a real number in noise, maybe with one character changed
            number = rng.choice(real)
            if rng.random() < 0.3:
                i = rng.randrange(len(number))
                number = number[:i] + rng.choice(pieces) + number[i + 1:]
            text = text[:rng.randint(0, len(text))] + number + rng.choice(["", " ", ".", "-", "x", "0"]) + text
        out.append(text)
    return out


def test_pii_shape_prefilters_equal_every_scan():
    rng = random.Random(7)
    texts = simulated_texts() + HAND_WRITTEN + pii_fuzz(6000, 11) + [
        "".join(rng.choice("0123456789 -().\t\x1c\x1fAZ") for _ in range(rng.randint(7, 40))) for _ in range(3000)]
    kinds: Counter[str] = Counter()
    for text in texts:
        expected = every_scan(text)
        assert checks._find_pii.__wrapped__(text) == tuple(expected), repr(text)
        kinds.update(code for code, _ in expected)
    assert all(kinds[k] >= 20 for k in ("pii_phone", "pii_card", "pii_national_id", "pii_iban")), kinds
    assert sum(t.isascii() for t in texts) > len(texts) // 2     # the shape path is the one taken


def test_phone_shape_is_phone_hint_on_every_ascii_text():
    """PHONE_SHAPE on the shape finds a run exactly where PHONE_HINT does on the text (\\s as Python reads it)."""
    rng = random.Random(3)
    alphabet = "0123456789" * 12 + " ().-\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f" * 4 + ASCII
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(20000)]
    for text in texts:
        shape = text.encode("ascii").translate(checks._SHAPE)
        assert (checks.PHONE_SHAPE.search(shape) is not None) == (checks.PHONE_HINT.search(text) is not None), repr(text)
    assert sum(checks.PHONE_HINT.search(t) is not None for t in texts) > 500


# ---- word_count on ASCII texts -----------------------------------------------------------------------

def test_word_count_on_every_ascii_character():
    def plain(text: str) -> int:
        return sum(1 for token in text.split() if any(ch.isalnum() for ch in token))

    rng = random.Random(4)
    fuzz = ["".join(rng.choice(ASCII) for _ in range(rng.randint(0, 40))) for _ in range(5000)]
    for text in fuzz + [ASCII, ASCII[::-1], "_ __ a_ _1 - -- -x |"]:
        assert labels.word_count(text) == plain(text), repr(text)


# ---- the typo score: per-token table lookups -----------------------------------------------------------

def test_typo_score_equals_typo_signals_score():
    rng = random.Random(9)
    words = ["the", "teh", "i", "I", "i'm", "pls", "PLS", "IM", "gpu", "GPU", "nvidia-smi", "multi-gpu", "recieve",
             "colour", "optimise", "e.g.", "etc.", "Dr.", "3.", "it.", "why?", "ok!", "??", "!!", "?!", "x", "`code`",
             "`a", "http://x.io/a", "www.site.com", "bob@mail.com", "@", "-", "—", "can't", "won’t", "dont", ".", "a.",
             "wat", "hello.", "World.", "frobnicator", "instanse", "\n", "A100", "snake_case", "--flag", "Teh."]
    fuzz = ["".join(rng.choice(words) + rng.choice([" ", " ", "  ", "\n", ""]) for _ in range(rng.randint(0, 25)))
            for _ in range(5000)]
    texts = simulated_texts() + HAND_WRITTEN + fuzz
    for text in texts:
        assert labels.typo_score(text) == labels.typo_signals(text).score, repr(text)
    for i in range(0, len(texts) - 2, 3):
        group = texts[i:i + 3]
        assert labels.has_typos(group) == (sum(labels.typo_signals(t).score for t in group) >= 2)
    assert sum(labels.typo_signals(t).has_typos for t in texts) > 1000
    assert sum(labels.typo_signals(t).lowercase_starts > 1 for t in texts) > 100


def test_token_table_clears_when_full_and_still_answers():
    table = labels._TokenTable(len, size=3)
    assert [table[w] for w in ["a", "bb", "ccc", "dddd", "a"]] == [1, 2, 3, 4, 1]
    assert len(table) <= 3


# ---- reply rules: lower-cased text and rules, literal prefilters ---------------------------------------

def test_reply_rules_on_lowered_text_equal_the_re_i_rules():
    """Every reply rule read off the lower-cased text by the lower-cased rules (and the verb and don't-know
    prefilters) gives what the re.I rules give on the text, for each behaviour, in any letter case."""
    from tests.test_fast_paths import plain_reply_issues

    rng = random.Random(31)
    pieces = ["I", "i", "WE", "We", " ", "\n", ", ", ". ", "CANNOT", "Can't", "cant", "Can Not", "WON'T", "won’t",
              "Will not", "am Unable to", "'M NOT ABLE TO", "be able to", "won", "can", "I DO NOT KNOW", "i don’t have",
              "I'm Not Sure", "I am not sure", "I have no ACCESS", "not something we can", "Not anything I can",
              "outside our SCOPE", "beyond my expertise", "out of scope", "I’m afraid", "i'm sorry, but", "Unfortunately",
              "BECAUSE", "Policy", "privacy", "is not supported", "Would violate", "HELP", "assist", "you Can",
              "Contact", "Instead", "let me know", "here's how", "a Lawyer", "?", "`x?`", "```\nhelp\n```", "but",
              "however", "GUARANTEE", "stress", "As An AI", "ſ", "ı", "K", "é", "the", "price"]
    fuzz = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 18))) for _ in range(6000)]
    texts = simulated_texts() + HAND_WRITTEN + fuzz
    codes: Counter[str] = Counter()
    for i, text in enumerate(texts):
        replies = [("assistant turn 1", text)] + ([("assistant turn 2", texts[i - 1])] if i % 4 == 0 else [])
        for behaviour in (None, "negative", "adversarial", "ambiguous"):
            got = checks.reply_issues(replies, behaviour)
            assert got == plain_reply_issues(replies, behaviour), (repr(text), behaviour)
            codes.update(issue.code for issue in got)
    assert all(codes[c] > 100 for c in ("as_an_ai", "refusal_without_help", "negative_not_declined", "negative_no_reason",
                                         "negative_no_redirect", "ambiguous_no_clarification")), codes
    for text in texts:   # the verb prefilter answers as the ten substring tests it replaced
        low = text.lower()
        verbs = ("cannot", "cant", "can't", "can’t", "can not", "won't", "won’t", "will not", "unable to", "not able to")
        assert checks._may_refuse(low, checks.LOWER) == any(v in low for v in verbs), repr(text)


def test_lowered_rules_refuse_a_pattern_with_other_capitals():
    with pytest.raises(ValueError, match="cannot be lower-cased"):
        checks._lowered(re.compile(r"\Sfoo", re.I))
    with pytest.raises(ValueError):
        checks._lowered(re.compile(r"foo"))    # not case-insensitive: nothing to lower


# ---- Markdown hints: substring searches and literal-prefix regexes for character-class scans ---------------

def test_fence_and_list_line_searches_equal_the_regexes():
    rng = random.Random(12)
    pieces = ["`", "``", "```", "~", "~~", "~~~", "\n", "\r", " ", "  ", "\t", "-", "*", "+", "1.", "12)", "1234567890.",
              "a", "word", "|", ">", "\n- ", "\n  * ", "\n3) "]
    fuzz = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 14))) for _ in range(20000)]
    for text in simulated_texts() + HAND_WRITTEN + fuzz:
        m = re.search(r"```|~~~", text)   # the regex _first_fence_mark replaced
        assert labels._first_fence_mark(text) == (m.start() if m else -1), repr(text)
        assert labels._list_line(text) == (labels._LIST_LINE.search(text) is not None), repr(text)
    assert sum(labels._list_line(t) for t in fuzz) > 5000 and sum(labels._first_fence_mark(t) > 0 for t in fuzz) > 5000


# ---- start-up: the word list without SpellChecker's frequency tables; parsers and validators on first use ----

def test_dictionary_is_spellcheckers_word_list():
    from spellchecker import SpellChecker

    assert labels._dictionary() == frozenset(SpellChecker(language="en").word_frequency.dictionary)


def test_audit_modules_import_no_parser_or_validator_until_needed():
    import subprocess
    import sys

    code = ("import sys, agent.audit.checks, agent.audit.labels as L; from agent.plan import load_plan; "
            "plan = load_plan('plans/example.yaml'); "
            "rec = {'messages': [{'role': 'user', 'content': 'How do I resize my instance?'}, "
            "{'role': 'assistant', 'content': 'Stop it, pick a size, start it. That is all it takes.'}]}; "
            "agent.audit.checks.check_record(rec, 'chat', plan.quality, {}); L.measure(rec, plan, {}); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'markdown_it', 'phonenumbers', 'stdnum'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_one_boundary_redirect_finds_what_redirect_finds():
    assert checks._alternatives(r"a|[|]b|(c|d)|\|e|[]|]f|[^]|]g") == ["a", "[|]b", "(c|d)", r"\|e", "[]|]f", "[^]|]g"]
    assert checks._one_boundary(re.compile(r"\?|\bhelp|\bassist\b")).pattern == r"\?|\b(?:help|assist\b)"
    rng = random.Random(8)
    words = ["help", "helper", "unhelpful", "assist", "happy to", "glad to", "I can walk", "we can look", "if you need",
             "if you'd like", "you could", "instead", "alternatively", "try", "retry", "consider", "contact", "reach out",
             "help center", "helpcentre", "docs", "guide", "ticket", "let me know", "feel free", "here's how",
             "here is what", "a lawyer", "your admin", "an account manager", "?", "x", "_", "-", "é", "we", "can", "the"]
    fuzz = ["".join(rng.choice(words) + rng.choice([" ", "", "_", ".", "\n"]) for _ in range(rng.randint(1, 6)))
            for _ in range(20000)]
    for text in simulated_texts() + HAND_WRITTEN + fuzz:
        low = text.lower()
        if text.isascii():
            assert (checks.LOWER.redirect.search(low) is None) == (checks.REDIRECT.search(text) is None), repr(text)
    assert sum(checks.REDIRECT.search(t) is None for t in fuzz) > 3000


def test_refusal_scanned_from_its_first_letters_matches_where_refusal_matches():
    rng = random.Random(10)
    pieces = ["i", "we", "I", "WE", " ", "  ", "\n", "\t", "cannot", "can't", "can’t", "cant", "can not", "won't",
              "will not", "am unable to", "are not able to", "'m unable to", "’re not able to", "stress", "recommend it enough",
              "wi", "xi", "_i", "hi", "owe", "é", "ſ", "guarantee", "help"]
    # ASCII only: the lower-cased rules read ASCII texts alone
    subjects, spaces = ["i", "we", "I", "WE", "wi", "xi", "_i", "hi", "owe"], ["", " ", "  ", "\n", "\t", "'"]
    verbs = ["cannot", "can't", "cant", "can not", "won't", "will not", "am unable to", "are not able to",
             "m unable to", "re not able to", "re unable to", "help"]
    tails = ["", " stress", " recommend it enough", " guarantee", " help", "."]
    pieces = [p for p in pieces if p.isascii()]
    fuzz = ["".join(rng.choice(pieces) + rng.choice(subjects) + rng.choice(spaces) + rng.choice(verbs) + rng.choice(tails)
                    for _ in range(rng.randint(1, 5))) for _ in range(20000)]
    spans = 0
    for text in simulated_texts() + HAND_WRITTEN + fuzz:
        if text.isascii():
            low = text.lower()
            got = [m.span() for m in checks.LOWER.refusal.finditer(low)]
            assert got == [m.span() for m in checks.REFUSAL.finditer(text)], repr(text)
            spans += len(got)
    assert spans > 1000
    with pytest.raises(ValueError, match="group of words"):
        checks._first_words_scanned(re.compile(r"\b(?:i|we)(can)"))
    with pytest.raises(ValueError):
        checks._first_words_scanned(re.compile(r"(?:i|we)\s"))
