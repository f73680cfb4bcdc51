"""A process loads only what it uses (issue 11 item 7): TextBlob's lexicon and lemminflect's lemma table are
read on demand, entry by entry, with the same entries the libraries' own loads build; tagging never imports
NLTK. Speed is measured by bench/, never here."""

from __future__ import annotations

import random
import subprocess
import sys

from agent.audit import text_stats as ts
from agent.audit.text_stats import SortedLines


def absent_words(keys: list[str], seed: int) -> list[str]:
    """Words near the keys that a prefix lookup could confuse with them: prefixes, extensions, other case,
    the separators themselves, comment markers, random strings."""
    rng = random.Random(seed)
    sample = rng.sample(keys, 3000)
    near = [k[:-1] for k in sample] + [k + rng.choice(["s", "-", "'", ",", " ", ".", "x"]) for k in sample]
    near += [k.upper() for k in sample] + [k.title() for k in sample]
    near += ["", " ", ",", ";;;", ";;; x", "a b", "a,b", "\t", "zzzzzz"]
    near += ["".join(rng.choice("abcdefghij-',. ") for _ in range(rng.randint(1, 8))) for _ in range(3000)]
    return near


def test_lexicon_has_the_entries_textblob_loads():
    from textblob.en import lexicon  # textblob's own Lexicon, loaded the library's way

    full = dict(lexicon.items())
    lazy = ts._lexicon()
    assert len(full) > 90_000
    assert all(lazy.get(word) == tag for word, tag in full.items())
    for word in absent_words(list(full), 1):
        assert lazy.get(word, "default") == full.get(word, "default"), repr(word)


def test_lemma_table_has_the_entries_lemminflect_loads():
    from lemminflect import config
    from lemminflect.codecs.LemmaLUCodec import LemmaLUCodec

    full = LemmaLUCodec.load(config.lemma_lu_fn)
    lazy = ts.LazyLemmaTable(config.lemma_lu_fn)
    assert len(full) > 50_000
    assert all(lazy.get(word, {}) == entry for word, entry in full.items())
    for word in absent_words(list(full), 2):
        assert lazy.get(word, {}) == full.get(word, {}), repr(word)


def test_the_lemmatizer_reads_the_lazy_table():
    table = ts._lemmatizer().lemma_dict
    assert isinstance(table, ts.LazyLemmaTable)
    assert ts._lemma("deploys", "VERB") == "deploy" and ts._lemma("volumes", "NOUN") == "volume"
    assert ts._verb_forms("monitors") == (True, False) and ts._verb_forms("deploys") == (True, True)


def test_sorted_lines_finds_every_line_of_a_word_and_no_other():
    lines = ["b x", "a y", "a-b z", "a'c w", "ab q", "a v", "", ";;; a"]
    table = SortedLines(lines, " ")
    assert table.rows("a") == ["a v", "a y"]
    assert table.rows("a-b") == ["a-b z"] and table.rows("ab") == ["ab q"] and table.rows("c") == []
    rng = random.Random(3)
    words = ["".join(rng.choice("ab-'") for _ in range(rng.randint(1, 4))) for _ in range(300)]
    lines = [f"{w} {i}" for i, w in enumerate(words)]
    table = SortedLines(lines, " ")
    for w in set(words) | {"a", "b", "-", "ab-"}:
        assert table.rows(w) == sorted(line for line in lines if line.split(" ")[0] == w)


def test_tagging_and_lemmatising_leave_nltk_unimported():
    """TextBlob's package __init__ imports NLTK (0.4 s CPU per process); the audit's tagger must not run it,
    nor build lemminflect's whole lemma table."""
    code = ("import sys\n"
            "from agent.audit.text_stats import verbs_and_topics, _lemmatizer\n"
            "assert verbs_and_topics('She deploys the models. I use GPUs.') == "
            "({'deploy', 'use'}, {'model', 'gpus'}), verbs_and_topics('She deploys the models. I use GPUs.')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nltk', 'textblob')))\n"
            "print(type(_lemmatizer().lemma_dict).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "LazyLemmaTable"]


def test_is_copy_equals_the_ratio_of_each_entry():
    from rapidfuzz import fuzz

    from agent.avoid import COPY_RATIO, is_copy

    def plain(shown: list[str], text: str) -> bool:
        return bool(text) and any(fuzz.ratio(text.lower(), s.lower()) >= COPY_RATIO for s in shown)

    rng = random.Random(4)
    base = ["How do I stop a GPU instance?", "What is the refund policy for annual plans?", "Reset my password",
            "Can I resize a volume while it is attached?", "", "A", "ÉTÉ à Paris"]

    def edit(s: str) -> str:   # a few character edits: scores around the 90 threshold
        chars = list(s)
        for _ in range(rng.randint(0, 4)):
            i = rng.randint(0, len(chars))
            op = rng.random()
            if op < 0.4 and chars[i:]:
                del chars[i]
            elif op < 0.8:
                chars.insert(i, rng.choice("abcxyz ?"))
            else:
                chars[i:i + 1] = [c.upper() for c in chars[i:i + 1]]
        return "".join(chars)

    hits = 0
    for _ in range(3000):
        shown = [edit(rng.choice(base)) for _ in range(rng.randint(0, 5))]
        text = edit(rng.choice(base))
        assert is_copy(shown, text) == plain(shown, text), (shown, text)
        hits += plain(shown, text)
    assert 300 < hits < 2700   # both answers are exercised
