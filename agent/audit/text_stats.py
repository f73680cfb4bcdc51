"""Per-text measures for the diversity audit: tokens, TTR/MATTR, distinct-n, verbs and topics, entropy."""

from __future__ import annotations

import bisect
import functools
import gzip
import importlib.util
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path

import numpy as np

from agent.audit.overlap import stable_order

WORD = re.compile(r"\w+(?:['’]\w+)*")
AUXILIARIES = frozenset({"be", "have", "do"})

# ---- pure functions ---------------------------------------------------------------------------------

# ASCII characters that are neither \w nor an apostrophe, mapped to a space
_NOT_WORD = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) in "_'")})


def tokenize(text: str) -> list[str]:
    r"""Lower-cased words: runs of letters, digits or underscores, keeping inner apostrophes (don't).

    ASCII texts skip the regex (~60 % less CPU): every character that is neither a word character nor an
    apostrophe becomes a space and str.split() cuts there. A match of WORD never spans such a character,
    and an apostrophe between two word characters stays inside its word, so the runs left are findall's
    words; a text with any other apostrophe ("'quoted'", "a''b") takes the regex, which drops those.
    (In ASCII, \w is [A-Za-z0-9_]; other texts take the regex: Unicode \w and ’ need it.)"""
    low = text.lower()
    if not text.isascii():
        return WORD.findall(low)
    kept = low.translate(_NOT_WORD)
    at = kept.find("'")
    while at >= 0:  # an apostrophe not between two word characters: findall drops it, split would keep it
        if at == 0 or at + 1 == len(kept) or kept[at - 1] in " '" or kept[at + 1] in " '":
            return WORD.findall(low)
        at = kept.find("'", at + 1)
    return kept.split()


def ttr(tokens: Sequence[str]) -> float:
    """Type-token ratio: distinct tokens / tokens (0.0 for no tokens)."""
    return len(set(tokens)) / len(tokens) if tokens else 0.0


def mattr(tokens: Sequence[str], window: int = 50) -> float:
    """Moving-average TTR (Covington & McFall): mean TTR of every window of `window` tokens.

    Texts shorter than a window get their plain TTR. Hand-rolled because it is a sliding count in O(n);
    lexicalrichness recomputes each window (O(n·w)) and brings its own tokenizer.
    """
    if len(tokens) <= window:
        return ttr(tokens)
    counts = Counter(tokens[:window])
    types = len(counts)
    total = types
    for i in range(window, len(tokens)):
        old, new = tokens[i - window], tokens[i]
        counts[old] -= 1
        if counts[old] == 0:
            types -= 1
        if counts[new] == 0:
            types += 1
        counts[new] += 1
        total += types
    return total / ((len(tokens) - window + 1) * window)


def segment_measures(ids: np.ndarray, lengths: np.ndarray, window: int = 50) -> tuple[list[float], list[int]]:
    """(mattr() of each consecutive segment of `ids` (lengths[k] ids each), its number of distinct ids),
    vectorised over all of them: token i adds one type to every window of its segment that holds it but not
    its previous occurrence, so the sum over windows is a sum of interval lengths; the tokens with no previous
    occurrence are the segment's types. Segments no longer than a window: their TTR."""
    n = len(ids)
    lengths = np.asarray(lengths, dtype=np.int64)
    seg = np.repeat(np.arange(len(lengths)), lengths)
    start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    key = seg * (int(ids.max(initial=0)) + 1) + ids
    order = stable_order(key)  # by segment and id, then position
    prev = np.full(n, -1, dtype=np.int64)
    same = key[order[1:]] == key[order[:-1]]
    prev[order[1:][same]] = order[:-1][same]
    pos = np.arange(n) - start
    prev = np.where(prev >= 0, prev - start, -1)
    size = np.repeat(lengths, lengths)
    first = np.maximum(prev + 1, pos - window + 1)  # window starts that count token i as new
    last = np.minimum(pos, size - window)
    spans = np.clip(last - first + 1, 0, None)
    totals = np.bincount(seg, weights=spans, minlength=len(lengths)).astype(np.int64).tolist()
    types = np.bincount(seg[prev < 0], minlength=len(lengths)).tolist()
    return [t / ((k - window + 1) * window) if k > window else (d / k if k else 0.0)
            for t, d, k in zip(totals, types, lengths.tolist(), strict=True)], types


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct n-grams / n-gram occurrences over all texts (n-grams never cross texts)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        grams = ngrams(tokenize(text), n)
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else 0.0


_TEXTBLOB_DEFAULT = ("NN", "NNP", "CD")   # textblob.en's Parser(default=...): unknown, capitalised, number


@functools.cache
def _textblob_text():
    """TextBlob's PatternTagger code (textblob/_text.py: find_tags, its suffix rules; a bundled lexicon, no
    corpus download), loaded as a module of its own: importing it as textblob._text runs the package's
    __init__, which imports NLTK (0.4 s CPU per process) for classes the tagger does not use. _text.py
    itself imports only the standard library. tests/test_fast_paths.py checks the tags equal those of
    textblob.en's own parser, and tests/test_loads.py that a tagging run leaves NLTK unimported."""
    spec = importlib.util.spec_from_file_location("agent._textblob_text", _textblob_folder() / "_text.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def _textblob_folder() -> Path:
    package = importlib.util.find_spec("textblob")   # finds the package without running its __init__
    if package is None or package.origin is None:
        raise ImportError("textblob is not installed")
    return Path(package.origin).parent


def find_tags(tokens: list[str]) -> list[list[str]]:
    """textblob.en's parser.find_tags(tokens) (Penn tags): textblob.en passes find_tags only the language,
    its lexicon and its defaults (no morphology, context or entity rules), and so do we."""
    return _textblob_text().find_tags(tokens, language="en", lexicon=_lexicon(), default=_TEXTBLOB_DEFAULT)


class SortedLines:
    """The lines of a word list whose lines open with a word and a separator ("word tag", "word,pos,lemma"),
    found by word on demand. A run looks up a few thousand words; building the libraries' own dicts parses
    all ~90k lines (0.1-0.2 s per process). Sorted whole lines put every line that opens with a given
    prefix in one block starting where the prefix would sort, so a lookup is a bisect; both bundled files
    are already sorted, which makes sorted() a linear pass here."""

    def __init__(self, lines: Iterable[str], sep: str) -> None:
        self._lines = sorted(lines)
        self._sep = sep

    def rows(self, word: str) -> list[str]:
        """The lines that open with word + separator, in sorted order."""
        prefix = word + self._sep
        lines = self._lines
        i = bisect.bisect_left(lines, prefix)
        found = []
        while i < len(lines) and lines[i].startswith(prefix):
            found.append(lines[i])
            i += 1
        return found


class LazyLexicon:
    """TextBlob's English lexicon (word -> Penn tag) as its Lexicon.load() reads it (stripped lines, ";;;"
    comments skipped, the first two space-separated fields), each entry parsed when first asked for. The
    parser's find_tags() only ever calls lexicon.get(). Its keys are unique, so the file order of repeated
    keys (the last one wins in load()) never matters; tests/test_loads.py checks every entry and absent
    words against the library's own dict."""

    def __init__(self, path: str) -> None:
        with open(path, encoding="utf-8") as f:
            self._table = SortedLines((line.strip() for line in f.read().split("\n")), " ")

    def get(self, word: str, default: str | None = None) -> str | None:
        if not word or " " in word or word.startswith(";;;"):
            return default   # never a key: keys are the first fields of non-comment lines
        rows = self._table.rows(word)
        return rows[-1].split(" ")[:2][1] if rows else default


@functools.cache
def _lexicon() -> LazyLexicon:
    return LazyLexicon(str(_textblob_folder() / "en" / "en-lexicon.txt"))


class LazyLemmaTable:
    """lemminflect's lemma table (word -> {upos: lemma spellings}) as LemmaLUCodec.load() builds it, each
    word's entry parsed when first asked for. lemminflect's Lemmatizer only ever calls .get(word, {}) on it
    (and deep-copies the result); tests/test_loads.py checks every entry against the library's load."""

    def __init__(self, path: str) -> None:
        with gzip.open(path, "rb") as f:
            self._table = SortedLines(f.read().decode().split("\n"), ",")

    def get(self, word: str, default: dict | None = None) -> dict | None:
        entry: dict[str, tuple[str, ...]] = {}
        if word and "," not in word:
            for row in self._table.rows(word):
                _, category, forms = row.strip().split(",")
                upos = category.upper()
                entry[upos if upos != "MODAL" else "AUX"] = tuple(forms.split("/"))  # lemminflect's categoryToUPos
        return entry or default


@functools.cache
def _lemmatizer():
    """lemminflect's Lemmatizer (a process-wide singleton) with its lemma table read lazily: it loads the
    table on first use unless the instance already holds one (the `lemma_dict` attribute)."""
    from lemminflect import config
    from lemminflect.core.Lemmatizer import Lemmatizer

    lemmatizer = Lemmatizer()
    if not hasattr(lemmatizer, "lemma_dict"):
        lemmatizer.lemma_dict = LazyLemmaTable(config.lemma_lu_fn)
    return lemmatizer


_TAG_TOKEN = re.compile(r"\w+(?=n't)|n't|\w+(?:[-.]\w+)*|'\w+|[^\w\s]")  # Penn style: do|n't, what|'s
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def pos_tags(text: str) -> list[tuple[str, str]]:
    """Penn tags from TextBlob's PatternTagger lexicon and rules. We split sentences and words ourselves
    (half the time of PatternTagger.tag(), whose own tokenizer and string round trip dominate), and tag
    word by word through a cache: TextBlob's English parser applies no contextual rules (no context,
    morphology or entity files; it passes only the lexicon), so a token's tag depends on the token alone
    and on whether it opens its sentence (the lexicon is asked for its lower-case form there). Each
    distinct token is tagged once by the parser's own find_tags; tests/test_fast_paths.py checks the
    tags equal find_tags on whole sentences."""
    tagged: list[tuple[str, str]] = []
    for tokens in _sentence_tokens(text):
        tagged.append((tokens[0], _first_tag(tokens[0])))
        tagged += zip(tokens[1:], map(_tag, tokens[1:]), strict=True)
    return tagged


def _sentence_tokens(text: str) -> Iterator[list[str]]:
    """The tokens of each sentence that holds any, as pos_tags() and verbs_and_topics() tag them."""
    for sentence in _SENTENCE_END.split(text.replace("’", "'")):
        tokens = _TAG_TOKEN.findall(sentence)
        if tokens:
            yield tokens


@functools.lru_cache(maxsize=1 << 17)
def _tag(token: str) -> str:
    """The parser's tag for a token that does not open its sentence (its tag there, after a full stop)."""
    return str(find_tags([".", token])[1][1])


@functools.lru_cache(maxsize=1 << 16)
def _first_tag(token: str) -> str:
    return str(find_tags([token])[0][1])


@functools.lru_cache(maxsize=65536)
def _verb_forms(word: str) -> tuple[bool, bool]:
    """(lemminflect knows a verb reading, it knows ONLY a verb reading)."""
    forms = _lemmatizer().getAllLemmas(word)
    return "VERB" in forms, "VERB" in forms and not forms.keys() & {"NOUN", "PROPN", "ADJ"}


@functools.lru_cache(maxsize=65536)
def _lemma(word: str, upos: str) -> str:
    found = _lemmatizer().getLemma(word, upos)
    return found[0] if found else word


_TOPIC_WORD = re.compile(r"[a-z][a-z0-9+#.-]*")
_SUBJECTS = frozenset({"i", "we", "you", "they", "he", "she", "it"})
_NOMINAL_LEFT = frozenset({"DT", "PRP$", "JJ", "CD", "POS", "IN"})  # what precedes a noun, not a verb
_OBJECT_RIGHT = frozenset({"DT", "PRP$", "PRP"})                    # what opens a verb's object
NOT_VERBS = frozenset({"please"})  # PatternTagger tags the request word "Please" VB


_OTHER, _VERB, _MAYBE = 0, 1, 2


@functools.lru_cache(maxsize=1 << 17)
def _reading(word: str, tag: str) -> tuple[int, str | None, str | None, bool]:
    """What verbs_and_topics() makes of a tagged token before looking at its neighbours, cached per
    (word, tag): (kind, verb, noun, verb_only). kind _VERB: a verb (VB* tag); _MAYBE: a noun-tagged word
    with a verb reading, a verb or not by its neighbours (_verb_in_context); _OTHER: not a verb. verb: its
    lemma as a counted verb (None for be/have/do and "please"); noun: its word in a noun run (None: it
    closes the run); verb_only: lemminflect knows it only as a verb."""
    w = word.lower()
    noun = (_lemma(w, "NOUN") if tag in ("NN", "NNS") else w) if tag.startswith("NN") and _TOPIC_WORD.fullmatch(w) else None
    if not w.replace("-", "").isalpha():
        return _OTHER, None, noun, False
    lemma = _lemma(w, "VERB")
    verb = lemma if lemma not in AUXILIARIES and w not in NOT_VERBS else None
    if tag.startswith("VB"):
        return _VERB, verb, noun, False
    if tag not in ("NN", "NNS"):
        return _OTHER, None, noun, False
    has_verb, verb_only = _verb_forms(w)
    return (_MAYBE if has_verb else _OTHER), verb, noun, verb_only


def verbs_and_topics(text: str) -> tuple[set[str], set[str]]:
    """Both sets from one tagging pass (see verbs() and topics()): pos_tags()'s tokens and tags, each token's
    tag and reading from one cached call (tests/test_fast_paths.py checks the rules token by token)."""
    tokens: list[str] = []
    read: list[tuple[str, int, str | None, str | None, bool]] = []  # per token: (tag, *_reading)
    for found in _sentence_tokens(text):
        tokens += found
        read.append(_first_token(found[0]))
        read += map(_token, islice(found, 1, None))
    found_verbs: set[str] = set()
    found_topics: set[str] = set()
    run: list[str] = []
    last = len(read) - 1
    for i, (_, kind, verb, noun, verb_only) in enumerate(read):
        if kind == _VERB or (kind == _MAYBE and _verb_in_context(tokens, read, i, last, verb_only)):
            if run:
                found_topics.add(" ".join(run[-3:]))
                run = []
            if verb is not None:
                found_verbs.add(verb)
        elif noun is not None:
            run.append(noun)
        elif run:
            found_topics.add(" ".join(run[-3:]))
            run = []
    if run:
        found_topics.add(" ".join(run[-3:]))
    return found_verbs, found_topics


def _verb_in_context(tokens: list[str], read: list[tuple[str, int, str | None, str | None, bool]], i: int,
                     last: int, verb_only: bool) -> bool:
    """Is the noun-tagged word i with a verb reading (kind _MAYBE) a verb? PatternTagger's unknown-word rule tags
    verbs as nouns ("She deploys" -> NNS, "I use" -> NN), repaired three ways: a verb after a subject pronoun or
    modal, or when a determiner follows it and none precedes it ("and monitors the logs"), or when the dictionary
    knows it only as a verb and nothing nominal precedes it. `tokens` and `read` are verbs_and_topics()'s lists."""
    prev_word, prev_tag = (tokens[i - 1], read[i - 1][0]) if i else ("", "")
    next_tag = read[i + 1][0] if i < last else ""
    if prev_word.lower() in _SUBJECTS or prev_tag == "MD":
        return True
    return prev_tag not in _NOMINAL_LEFT and (next_tag in _OBJECT_RIGHT or verb_only)


@functools.lru_cache(maxsize=1 << 17)
def _token(token: str) -> tuple[str, int, str | None, str | None, bool]:
    """(tag, *_reading) of a token that does not open its sentence."""
    tag = _tag(token)
    return (tag, *_reading(token, tag))


@functools.lru_cache(maxsize=1 << 16)
def _first_token(token: str) -> tuple[str, int, str | None, str | None, bool]:
    tag = _first_tag(token)
    return (tag, *_reading(token, tag))


def verbs(text: str) -> set[str]:
    """Verb lemmas (VB* tags and repaired noun tags, see _verb_in_context), without be/have/do."""
    return verbs_and_topics(text)[0]


def topics(text: str) -> set[str]:
    """Noun compounds: runs of nouns, last 3 words at most, head noun singular, lower-cased."""
    return verbs_and_topics(text)[1]


def normalised_entropy(counts: Mapping[str, int], k: int | None = None) -> float:
    """Shannon entropy / log(k); k = number of possible categories (default: those observed).
    Three lines here rather than scipy.stats.entropy: scipy is not a declared dependency."""
    total = sum(counts.values())
    k = max(k or 0, sum(1 for c in counts.values() if c > 0))
    if total == 0 or k < 2:
        return 0.0
    h = -sum(c / total * math.log(c / total) for c in counts.values() if c > 0)
    return h / math.log(k)


