"""Measured labels: what can be measured is measured, not trusted.

measure(record, plan) gives, for every dimension whose `measure` is not "trusted", the category the record
really belongs to, or None when it fits none (a 20-word reply when the shortest bucket starts at 50): the
auditor compares that with the requested label and rejects off-spec examples.

  response_words  words of the (last) assistant reply / chosen / completion, bucketed by min..max_words
  input_words     words of the first user message / prompt, bucketed the same way
  turns           user turns, bucketed by each category's min..max_turns
  code            the category declaring `code: true` when the reply has a fenced or indented code block, an
                  inline code span of 2+ tokens or a call/assignment (`pip install x`, `f(x)`, `a=b`), or a
                  worked example: "for example" / "for instance" / "e.g." followed in the same sentence by a
                  digit, a quoted value or code; the one declaring `code: false` otherwise
  typos           the category declaring `typos: true` when a spelling and register check over the user turns
                  finds typos (see typo_signals), else the `typos: false` one
  format          the category declaring `format:` json (a fenced block that parses to an object/array), table
                  (header + separator row), list (a list of 2+ items), else plain; when several are present the
                  requested one wins, else the first of json, table, list
Every decision reads what the plan declares (agent/plan.py validates it on load), never a category's name.
A word is a whitespace-separated token holding a letter or digit (so list numbers count, "-" and "|" don't).
"""

from __future__ import annotations

import gzip
import json
import pkgutil
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from itertools import compress
from typing import TYPE_CHECKING, Any

from agent.plan import Dimension, Plan
from agent.records import response_text, user_text, user_turns

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

FORMAT_ORDER = ("json", "table", "list")


@cache
def _markdown(inline: bool = True) -> MarkdownIt:
    """The parser of what a reader sees (lists inside fences don't count); inline=False: the same block structure
    without inline parsing (a third of the cost), as only inline code spans need it. Built at first use: most
    replies are answered without a parse, and markdown_it's import is a tenth of a second."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark").enable("table")
    return parser if inline else parser.disable("inline")


WORKED_EXAMPLE = re.compile(r"\b(?:for example|for instance|e\.g\.)[,:]?\s[^.!?\n]*?(?:\d|[\"'“`])", re.I)


# a whitespace-separated token with no letter or digit: [^\W_] is exactly str.isalnum, \s is str.split's
_NO_WORD_TOKEN = re.compile(r"(?<!\S)(?:[^\w\s]|_)+(?!\S)")


# An ASCII text as bytes: letters and digits "a", whitespace (str.isspace, str.split's rule) " ", the rest dropped
_ASCII = bytes(range(128))
_ALNUM = bytes(c for c in _ASCII if chr(c).isalnum())
_SPACE = bytes(c for c in _ASCII if chr(c).isspace())
_WORD_SHAPE = bytes.maketrans(_ALNUM + _SPACE, b"a" * len(_ALNUM) + b" " * len(_SPACE))
_NOT_WORD_OR_SPACE = bytes(c for c in _ASCII if c not in _ALNUM and c not in _SPACE)


def word_count(text: str) -> int:
    """Tokens holding a letter or digit (equal to the per-character test, tested). An ASCII text drops every
    byte that is neither a letter, a digit nor whitespace (a token without a letter or digit vanishes, the others
    become runs of "a") and counts where a run starts: three C-level byte passes, no token objects built.
    Other texts: all tokens minus those without one."""
    if text.isascii():
        shape = text.encode("ascii").translate(_WORD_SHAPE, _NOT_WORD_OR_SPACE)
        return shape.count(b" a") + shape.startswith(b"a")
    return len(text.split()) - len(_NO_WORD_TOKEN.findall(text))


_BOUNDS = {"words": ("min_words", "max_words"), "turns": ("min_turns", "max_turns")}


def bucket(words: int, dimension: Dimension, unit: str = "words") -> str | None:
    """The first category whose [min_<unit>, max_<unit>] holds the count (inclusive; a missing bound is open)."""
    low, high = _BOUNDS.get(unit) or (f"min_{unit}", f"max_{unit}")
    for cat in dimension.categories:
        lo, hi = getattr(cat, low), getattr(cat, high)
        if lo is None and hi is None:
            continue
        if (lo is None or words >= lo) and (hi is None or words <= hi):
            return cat.name
    return None


def measure(record: dict[str, Any], plan: Plan, requested: dict[str, str] | None = None) -> dict[str, str | None]:
    reply = response_text(record)
    out: dict[str, str | None] = {}
    for name, dim in plan.dimensions.items():
        kind = dim.measure
        if kind == "trusted":
            continue
        if kind == "response_words":
            out[name] = bucket(word_count(reply), dim)
        elif kind == "input_words":
            out[name] = bucket(word_count(user_text(record)), dim)
        elif kind == "turns":
            out[name] = bucket(user_turns(record), dim, "turns")
        elif kind == "code":
            out[name] = _declaring(dim, "code", has_example(reply))
        elif kind == "typos":
            out[name] = _declaring(dim, "typos", has_typos(_user_texts(record)))
        elif kind == "format":
            out[name] = _format(dim, formats_found(reply), (requested or {}).get(name))
    return out


def _declaring(dim: Dimension, field_name: str, value: object) -> str | None:
    """The category that declares `field_name: value` (the plan validates that at most one does)."""
    for c in dim.categories:    # a plain loop: measure runs per example, and next(generator) costs more
        if getattr(c, field_name) == value:
            return c.name
    return None


def _format(dim: Dimension, found: list[str], requested: str | None) -> str | None:
    if not found:
        return _declaring(dim, "format", "plain")
    want = None
    for c in dim.categories if requested else ():    # dim.category(requested).format, without a generator
        if c.name == requested:
            want = c.format
            break
    return _declaring(dim, "format", want if want in found else found[0])


def _user_texts(record: dict[str, Any]) -> list[str]:
    if "messages" in record:
        return [m.get("content", "") for m in record["messages"] if isinstance(m, dict) and m.get("role") == "user"]
    return [str(record.get("prompt", ""))]


# What every token has_example and formats_found look at needs: a fence or inline code (` or ~), a table
# (|), an indented code block (a tab or 4 spaces opening a line), a list marker opening a line, or a
# blockquote (>) that could hold one. A text with none of these (and no lone \r line breaks, which
# markdown-it reads as new lines) parses to no such token, so it is not parsed at all.
_MARKDOWN_HINT = re.compile(r"[`~|>\r]|^[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)|^(?: {0,3}\t| {4})", re.M)


@lru_cache(maxsize=256)
def _parse(text: str) -> tuple:
    """Markdown block tokens (no inline children), parsed once for has_example and formats_found (read-only)."""
    if not _MARKDOWN_HINT.search(text):
        return ()
    return tuple(_markdown(inline=False).parse(text))


# A fence opens with 3+ backticks or tildes; an indented code block needs 4 columns of spaces or a tab past its
# container's content column (a list item's or a blockquote's): with none of these, no code token can exist.
def _code_block_hint(text: str) -> bool:
    return "```" in text or "~~~" in text or "\t" in text or "    " in text


_OPENING = re.compile(r"`{3,}[^`\n]*")       # a backtick fence's opening line (its info holds no backtick)
_CLOSING = re.compile(r" {0,3}`{3,}[ \t]*")   # a line that would close it


def _first_fence_mark(text: str) -> int:
    """Where the first fence mark (``` or ~~~) starts, -1 if nowhere: two substring searches instead of a regex
    scanning for either (the second search stops where the first found a mark)."""
    backticks = text.find("```")
    tildes = text.find("~~~", 0, backticks if backticks >= 0 else len(text))
    return tildes if tildes >= 0 else backticks


def _fenced_for_sure(text: str) -> bool:
    """True when the text surely holds a fence with content, without parsing it; False: parse to know.

    Sure means: the first fence mark of the text opens a line of its own (no indent, so in no list item,
    blockquote or indented code block, and no earlier fence is open for it to close), nothing before it can
    hold it (no "<" for an HTML block, "|" for a table, "[" for a link definition; no "\r" or NUL, which
    markdown-it rewrites), and the next line has text and does not close it."""
    start = _first_fence_mark(text)
    if start < 0 or (start and text[start - 1] != "\n"):
        return False
    end = text.find("\n", start)
    if end < 0 or not _OPENING.fullmatch(text, start, end):
        return False
    before = text[:start]
    if "<" in before or "|" in before or "[" in before or "\r" in text[:end + 1] or "\0" in text[:end + 1]:
        return False
    stop = text.find("\n", end + 1)
    line = text[end + 1:stop if stop >= 0 else len(text)]
    return bool(line.strip()) and "\r" not in line and "\0" not in line and not _CLOSING.fullmatch(line)


def has_example(text: str) -> bool:
    if _fenced_for_sure(text):
        return True
    if _code_block_hint(text) and any(tok.type in ("fence", "code_block") and tok.content.strip()
                                             for tok in _parse(text)):
        return True
    if "`" in text:  # an inline code span needs a backtick: only then parse the inline content too
        for tok in _markdown().parse(text):
            for child in tok.children or []:
                if child.type == "code_inline" and (len(child.content.split()) >= 2 or re.search(r"\w\(|=", child.content)):
                    return True
    return _may_name_example(text) and bool(WORKED_EXAMPLE.search(CODE_SPANS.sub("`", text)))


_EXAMPLE_WORDS = ("for example", "for instance", "e.g.")


def _may_name_example(text: str) -> bool:
    """WORKED_EXAMPLE's words, looked for in the lower-cased text first (a substring search instead of a
    case-insensitive regex at every position). Only for ASCII texts: under re.I "ſ" matches "s", "K" (Kelvin)
    "k"; other texts take the regex. Cutting out code spans cannot create the words (it leaves a backtick)."""
    if not text.isascii():
        return True
    low = text.lower()
    return any(w in low for w in _EXAMPLE_WORDS)


# What a list, a table or a JSON fence needs beyond _MARKDOWN_HINT: a list marker opening a line (or a ">" for
# one in a blockquote; "\r" as markdown-it reads it as a line break), a "|" (a table's header row holds one),
# and for JSON a "{" or "[" opening the fence's content or "json" in its info string. A reply that hints only
# at code (a fence of shell commands, inline code, indentation) holds none and is not parsed for its format.
# (Substring tests and a letter-free regex: a third of the cost of one case-insensitive regex. "json" is looked
# for in str.lower(), as _parses_as_json reads the info string, so no text that could hold it is skipped.)
_LIST_LINE = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)", re.M)
# the same after a line break: a literal first character, which sre looks for with a fast scan (re.M's "^" is
# tried at every position)
_LIST_AFTER_BREAK = re.compile(r"\n[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)", re.M)


def _list_line(text: str) -> bool:
    """_LIST_LINE.search(text) finds a line: re.M's "^" is the text's start or just after a "\n"."""
    return _LIST_LINE.match(text) is not None or _LIST_AFTER_BREAK.search(text) is not None


def _format_hint(text: str) -> bool:
    return ("|" in text or ">" in text or "{" in text or "[" in text or "\r" in text or _list_line(text)
            or "json" in text.lower())


def formats_found(text: str) -> list[str]:
    """Which of json / table / list the text holds, in FORMAT_ORDER."""
    if not _format_hint(text):
        return []
    found = _formats_by_lines(text)
    return formats_in(_parse(text)) if found is None else found


# --- formats without a parse ---------------------------------------------------------------------------
# markdown-it's block parse costs ~1 ms a reply; most replies are paragraphs, flat lists, pipe tables and
# fences, whose block structure a walk over the lines gives exactly. _formats_by_lines answers for texts
# made only of such lines and returns None (parse to know) at the first line that could be anything else:
# an indented line (code, or an item's continuation), a blockquote, HTML, a link definition, a setext or
# thematic break, an empty list item, a "|" outside a table that starts after a blank line, a tab, \r or NUL.
# Equal to the parse on the simulated corpus and on fuzz (tests/test_fast_paths.py).
_ORDERED = re.compile(r"(\d{1,9})([.)])(?:[ \t]|$)")        # an ordered list marker opening a line
_HEADING = re.compile(r"#{1,6}(?: |$)")                    # an ATX heading (tabs send the text to the parse)
_DELIMITER_CELL = re.compile(r":?-+:?")
_NOT_PARAGRAPH_START = frozenset(" \t#>-*+_=`~<[|")        # what may open anything but a paragraph line


def _paragraph_start(line: str) -> bool:
    """The line surely starts (or lazily continues) a paragraph: nothing else can begin with its first character."""
    return line[0] not in _NOT_PARAGRAPH_START and not (line[0].isdigit() and _ORDERED.match(line))


def _table_columns(header: str, delimiter: str) -> bool:
    """markdown-it's table rule for a header and delimiter row, both opening with "|" at column 0; False: not
    a table or not sure (escapes, control or non-ASCII characters the parse trims differently)."""
    if not header.isascii() or "\\" in header or any(c < " " for c in header + delimiter) or set(delimiter) - set("|-: "):
        return False
    cells = [c.strip(" ") for c in delimiter.split("|")]
    if any(not c and 0 < i < len(cells) - 1 for i, c in enumerate(cells)):
        return False
    aligns = [c for c in cells if c]
    if not all(_DELIMITER_CELL.fullmatch(c) for c in aligns):
        return False
    columns = header.strip(" ").split("|")
    columns = columns[1:] if columns and not columns[0] else columns
    columns = columns[:-1] if columns and not columns[-1] else columns
    return 0 < len(columns) == len(aligns)


@lru_cache(maxsize=64)     # a handful of fence marks ("```", "~~~~"), compiled once each
def _closing_fence(mark: str) -> re.Pattern[str]:
    """A line that closes a fence opened by `mark`: up to 3 spaces, the mark or longer, trailing blanks."""
    return re.compile(rf" {{0,3}}{re.escape(mark)}{re.escape(mark[0])}*[ \t]*")


def _formats_by_lines(text: str) -> list[str] | None:
    if "\r" in text or "\0" in text:
        return None
    lines = text.split("\n")
    if len(lines) > 2000:     # a table row count that could reach markdown-it's autocompleted-cell limit
        return None
    found: set[str] = set()
    state = "none"            # none (after a blank or a block) | para | item (its paragraph open) | gap (blank in a list)
    kind = ""                 # the open list's marker char: "-", "*", "+", "." or ")"
    items = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip(" \t"):
            state = "gap" if state in ("item", "gap") else "none"
            continue
        if "\t" in line:
            return None
        if line.startswith(("```", "~~~")):
            mark = line[0] * (len(line) - len(line.lstrip(line[0])))
            info = line[len(mark):]
            if mark[0] == "`" and "`" in info:
                return None
            closing = _closing_fence(mark)
            start = i
            while i < len(lines) and not closing.fullmatch(lines[i]):
                i += 1
            if _parses_as_json("\n".join(lines[start:i]), info):
                found.add("json")
            i += 1            # past the closing line (or the end)
            state, items = "none", 0
            continue
        if line[0] == "#":
            if not _HEADING.match(line):
                return None
            state, items = "none", 0
            continue
        if line[0] == "|":
            if state != "none" or i >= len(lines) or not lines[i].startswith("|") or not _table_columns(line, lines[i]):
                return None
            found.add("table")
            i += 1
            while i < len(lines) and lines[i].startswith("|"):    # body rows run to a blank line
                if "\t" in lines[i]:
                    return None
                i += 1
            if i < len(lines) and lines[i].strip(" \t"):
                return None
            state, items = "none", 0
            continue
        ordered = _ORDERED.match(line) if line[0].isdigit() else None
        if ordered or line[0] in "-*+":
            marker_end = ordered.end(2) if ordered else 1
            content = line[marker_end + 1:]
            if line[marker_end:marker_end + 1] != " " or not content or not _paragraph_start(content):
                return None   # an empty item, wide or tab spacing, a thematic break, a nested block: parse
            if ordered and state == "para" and int(ordered.group(1)) != 1:
                continue      # only "1." may interrupt a paragraph: the line continues it
            marker = ordered.group(2) if ordered else line[0]
            if state in ("item", "gap") and marker == kind:
                items += 1
            else:
                kind, items = marker, 1
            if items >= 2:
                found.add("list")
            state = "item"
            continue
        if not _paragraph_start(line):
            return None
        if state == "gap":
            items = 0
        state = "item" if state == "item" else "para"   # lazy continuation of an item's paragraph
    return [f for f in FORMAT_ORDER if f in found]


def formats_in(tokens: Sequence[Any]) -> list[str]:
    """formats_found's walk over a parsed token stream (block-level tokens are all it reads)."""
    found = set()
    for i, tok in enumerate(tokens):
        if tok.type == "fence" and _parses_as_json(tok.content, tok.info):
            found.add("json")
        elif tok.type == "table_open":
            found.add("table")
        elif tok.type in ("bullet_list_open", "ordered_list_open"):
            items = 0
            for t in tokens[i + 1:]:
                if t.level == tok.level and t.type == tok.type.replace("_open", "_close"):
                    break
                items += t.type == "list_item_open" and t.level == tok.level + 1
            if items >= 2:
                found.add("list")
    return [f for f in FORMAT_ORDER if f in found]


def _parses_as_json(content: str, info: str) -> bool:
    try:
        value = json.loads(content)
    except ValueError:
        return False
    return isinstance(value, dict | list) or info.strip().lower().startswith("json")


# --- typos -------------------------------------------------------------------------------------------
def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Only all-lowercase alphabetic words are spell-checked: capitalised words are names or sentence starts,
# and anything with a digit, an inner capital, "_", "/", ".", "@", "=" or a leading "-" is a technical
# token (A100, PyTorch, snake_case, --flag, v1.2, URLs). pyspellchecker's 160k-word English list is the
# dictionary (TextBlob's en-spelling.txt has 29k book words and lacks "password", "latency", "configure";
# its tagger lexicon accepts "occured", "adn"). General dictionaries lack software jargon, hence TECH_WORDS.
TECH_WORDS = _word_set("""
api sdk cli gui gpu cpu tpu vram vcpu nvme ssd hdd ram os ui ux io ide repo config env async runtime
workflow dataset dataloader tokenizer tokenize tokenized hyperparameter finetune finetuning finetuned
checkpointing quantize quantized quantization lora qlora llm rlhf dpo sft gpt bert embedding backend frontend
webhook endpoint localhost hostname signup logout autoscaling autoscaler autoscale preemptible serverless
namespace middleware plugin app cron crontab sudo systemd systemctl journalctl stdout stderr stdin regex
kubernetes kubectl docker dockerfile podman containerd helm nginx apache linux ubuntu debian centos rhel
macos wsl bash zsh ssh scp rsync sftp http https tcp udp dns vpn vpc subnet cidr json yaml yml toml csv xml
html css url uri uuid utf jwt oauth saml sso mfa totp pytorch tensorflow keras jax onnx tensorrt triton vllm
cuda cudnn nccl rocm nvidia amd jupyter conda pip pipx npm npx yarn pnpm nodejs git github gitlab
bitbucket postgres postgresql mysql sqlite redis mongodb kafka aws gcp azure iam terraform ansible grafana
prometheus javascript typescript golang kotlin deepspeed fsdp huggingface wandb mlflow streamlit gradio
fastapi django numpy pandas scipy matplotlib sklearn colab kaggle runpod vultr paperspace coreweave hetzner
keypair passphrase gb tb mb kb gbps mbps ghz mhz hrs mins secs vs etc eg ie approx inference multi
spot ondemand uptime downtime failover devops mlops sla gdpr hipaa soc fp bf int nvlink infiniband pcie
sxm hbm tflops teraflops petaflops ok okay
""")
# informal spellings that a dictionary accepts or a user writes on purpose ("cant", "wont" are words too,
# but in a support question they are missing apostrophes)
INFORMAL = _word_set("""
pls plz u ur thx thnx tnx ty idk wanna gonna gotta dont cant wont doesnt isnt didnt im ive youre thats
whats hows theres couldnt wouldnt shouldnt lol btw omg cuz coz kinda sorta gimme lemme dunno aint tho thru
wat r y ya nvm imo tbh
""")
ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "approx", "incl", "min", "max", "sec", "no", "fig", "mr", "dr"})
CODE_SPANS = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.S)
URLS = re.compile(r"\b(?:https?://|www\.)\S+|\S+@\S+")
REPEATED_PUNCT = re.compile(r"[?!]{2,}")
TECHNICAL = re.compile(r"[\d_/\\.:@=<>$#~|{}\[\]()*+&%^]|^-|.[A-Z]")
STRIP = ".,;:!?()[]{}\"'“”‘’«»*"
APOSTROPHE_SUFFIXES = ("'s", "'t", "'re", "'ll", "'ve", "'d", "'m")


@dataclass
class TypoSignals:
    informal: list[str] = field(default_factory=list)    # INFORMAL words, lower-case "i", "??"
    unknown: list[str] = field(default_factory=list)     # lower-case non-technical words not in the dictionary
    lowercase_starts: int = 0                             # sentences starting with a lower-case dictionary word

    @property
    def score(self) -> int:
        return 2 * len(self.informal) + len(self.unknown) + self.lowercase_starts

    @property
    def has_typos(self) -> bool:
        """Threshold: 1 informal marker, or 2 unknown words, or 1 unknown word plus 1 lower-case start.
        A single unknown word alone is tolerated: it is more often unlisted jargon than a typo."""
        return self.score >= 2


def has_typos(texts: list[str]) -> bool:
    return sum(map(typo_score, texts)) >= 2


@cache
def _dictionary() -> frozenset[str]:
    """pyspellchecker's English word list, lower-cased, as SpellChecker(language="en") holds it (tested). Only
    membership is asked, and SpellChecker's load also parses the frequencies and builds totals and a letter set
    (0.2 s CPU, against 0.07 s here): the keys are read off the JSON by a regex when it holds no escape and the
    regex finds one key per entry (each key is then a plain "...": ), else by json.loads."""
    raw = pkgutil.get_data("spellchecker", "resources/en.json.gz")
    if raw is None:
        raise FileNotFoundError("pyspellchecker's resources/en.json.gz")
    text = gzip.decompress(raw).decode("utf-8")
    keys = _JSON_KEY.findall(text) if "\\" not in text else []
    if len(keys) != text.count(",") + 1:
        keys = list(json.loads(text))
    return frozenset(keys if text == text.lower() else map(str.lower, keys))


_JSON_KEY = re.compile(r'"([^"\\]*)": ')


@lru_cache(maxsize=65536)  # words repeat (Zipf): most lookups are cache hits
def known_word(word: str) -> bool:
    word = word.replace("’", "'").lower()
    spell = _dictionary()
    if word in spell or word in TECH_WORDS or word.removesuffix("s") in TECH_WORDS or word.removesuffix("es") in TECH_WORDS:
        return True
    for suffix in APOSTROPHE_SUFFIXES:
        if word.endswith(suffix) and (word[: -len(suffix)] in spell or word in ("won't", "can't", "shan't")):
            return True
    # British spellings: the dictionary is American ("optimise" -> "optimize", "behaviour" -> "behavior")
    american = re.sub(r"is(e|ed|es|ing|ation|ations)$", r"iz\1", word).replace("our", "or")
    return american != word and american in spell


def _prose(text: str) -> str:
    """The text without code spans, URLs and addresses. Each pattern needs a character a substring test rules
    out: a code span "`", a URL "://" or "www.", an address "@" (URLS' "\\S+@\\S+" backtracks over every token)."""
    prose = CODE_SPANS.sub(" ", text) if "`" in text else text
    if "@" in prose or "://" in prose or "www." in prose:
        prose = URLS.sub(" ", prose)
    return prose


def _repeated_punct(prose: str) -> bool:
    """REPEATED_PUNCT may match: each of its matches starts with one of these pairs (substring tests are a
    fraction of the cost of its character-class scan)."""
    return "??" in prose or "?!" in prose or "!?" in prose or "!!" in prose


def typo_signals(text: str) -> TypoSignals:
    sig = TypoSignals()
    prose = _prose(text)
    if _repeated_punct(prose):
        sig.informal += REPEATED_PUNCT.findall(prose)
    tokens = prose.split()
    for raw in tokens:
        informal, unknown = _token_signals(raw)
        if informal:
            sig.informal.append(informal)
        elif unknown:
            sig.unknown += unknown
    # sentence starts: the first token, and each token after one ending in . ! or ? (SENTENCE_BREAK's
    # matches, read off the same tokens: a token of 2+ characters ending so, followed by another token)
    starts = tokens[:1] + [tokens[i + 1] for i in range(len(tokens) - 1) if _ends_with_break(tokens[i])]
    sig.lowercase_starts = sum(1 for w in starts if _lowercase_dictionary_word(w.strip(STRIP)))
    return sig


class _TokenTable(dict[str, int]):
    """token -> f(token), computed on first sight: a C-level dict lookup per token (map over the tokens, no
    Python frame) where an lru_cache call costs a few times more. Cleared when full (tokens repeat: Zipf)."""

    def __init__(self, f: Callable[[str], int | bool], size: int = 65536):
        super().__init__()
        self.f, self.size = f, size

    def __missing__(self, token: str) -> int:
        if len(self) >= self.size:
            self.clear()
        value = self[token] = int(self.f(token))
        return value


def _token_score(raw: str) -> int:
    informal, unknown = _token_signals(raw)
    return 2 if informal else len(unknown)


def _ends_with_break(token: str) -> bool:
    return token[-1] in ".!?" and len(token) > 1 and _ends_sentence(token[:-1])


_SCORES = _TokenTable(_token_score)
_BREAKS = _TokenTable(_ends_with_break)
_LOWER_STARTS = _TokenTable(lambda token: _lowercase_dictionary_word(token.strip(STRIP)))


def typo_score(text: str) -> int:
    """typo_signals(text).score without listing what was found: per-token figures summed from C-level lookups
    (has_typos needs only the score; equal to typo_signals', tests/test_checks_fast.py)."""
    prose = _prose(text)
    score = 2 * len(REPEATED_PUNCT.findall(prose)) if _repeated_punct(prose) else 0
    tokens = prose.split()
    if not tokens:
        return score
    score += sum(map(_SCORES.__getitem__, tokens))
    # sentence starts: the first token and each token after a sentence break (compress pairs token i+1 with
    # token i's break)
    after_breaks = compress(tokens[1:], map(_BREAKS.__getitem__, tokens))
    return score + _LOWER_STARTS[tokens[0]] + sum(map(_LOWER_STARTS.__getitem__, after_breaks))


@lru_cache(maxsize=65536)  # tokens repeat (Zipf): one lookup instead of a few Python calls per token
def _token_signals(raw: str) -> tuple[str, tuple[str, ...]]:
    """What one whitespace-separated token adds: (the token, when it is informal; else '', and its unknown
    parts). Read-only: the tuple is shared by every text holding the token."""
    token = raw.strip(STRIP)
    if not token:
        return "", ()
    lower = token.lower().replace("’", "'")
    if _is_informal(token, lower):
        return token, ()
    parts = token.split("-")
    if len(parts) > 1 and any(p.lower() in TECH_WORDS for p in parts):
        return "", ()    # nvidia-smi, multi-gpu: a command or a compound built on jargon
    return "", tuple(p for p in parts if _checkable(p) and not known_word(p))


def _is_informal(token: str, lower: str) -> bool:
    """A lower-case pronoun "i" ("i'm", "i've"), or an INFORMAL word not written as an acronym ("IM")."""
    if token == "i" or (token[0] == "i" and lower.startswith(("i'm", "i've", "i'd", "i'll"))):
        return True
    return lower in INFORMAL and not (token.isupper() and len(token) > 1)


def _checkable(part: str) -> bool:
    return bool(part) and part.replace("'", "").replace("’", "").isalpha() and part.islower() and not TECHNICAL.search(part)


def _ends_sentence(prev: str) -> bool:
    word = prev.strip(STRIP).lower()
    return word.isalpha() and word not in ABBREVIATIONS


def _lowercase_dictionary_word(word: str) -> bool:
    lower = word.lower()
    return (word.isalpha() and word.islower() and lower in _dictionary() and lower not in TECH_WORDS
            and lower not in INFORMAL and lower != "i")
