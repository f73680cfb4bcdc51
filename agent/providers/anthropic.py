"""Anthropic messages, with structured output through one forced tool call.

The tool's input_schema is the request's schema and tool_choice forces it, so the reply's tool input is the
object we asked for. The long shared system prompt goes in a system block marked cache_control ephemeral:
repeated calls read it from the prompt cache (usage.cache_read_input_tokens). Every SDK exception becomes a
ProviderError here; the SDK's own retries are off (limits.py retries).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError, ProviderError
from agent.faults import redact, status_error
from agent.providers.base import (
    Capabilities,
    Completion,
    Provider,
    Request,
    check_base_url,
    redact_url,
    url_secrets,
)

if TYPE_CHECKING:
    import anthropic

log = logging.getLogger(__name__)

KEY_HINT = "ANTHROPIC_API_KEY (or --api-key)"
STOP_REASONS = {"max_tokens": "length", "tool_use": "stop", "end_turn": "stop", "stop_sequence": "stop"}
RATE_KINDS = ("requests", "input-tokens", "output-tokens", "tokens")


class AnthropicProvider(Provider):
    name = "anthropic"
    default_model = "claude-haiku-4-5"
    # json_schema: structure comes from a forced tool call instead. temperature: messages.create in the
    # anthropic 2.x SDK has no temperature, top_p or top_k (checked on 2.15), so no sampling control reaches
    # the model; the run says so at start and the diversity controller uses its other levers.
    capabilities = Capabilities(json_schema=False, temperature=False, prompt_caching=True, batch_api=True)

    def __init__(self, *, model: str, api_key: str | None = None, base_url: str | None = None, seed: int = 0,
                 **options: Any) -> None:
        self.model = model
        self.seed = seed  # the Messages API has no seed
        source = "--base-url" if base_url else "ANTHROPIC_BASE_URL"
        self.base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        if self.base_url:
            self.base_url = check_base_url(self.base_url, source)
        self.shown_url = redact_url(self.base_url)
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ConfigError("no Anthropic API key: set ANTHROPIC_API_KEY or pass --api-key")
        self._key = key
        self._secrets = [key, *url_secrets(self.base_url)]
        if options:
            log.debug("anthropic provider ignores options: %s", ", ".join(sorted(options)))

    def __repr__(self) -> str:  # never show the key
        return f"AnthropicProvider(model={self.model!r}, base_url={self.shown_url!r})"

    def _make_client(self) -> anthropic.AsyncAnthropic:
        import anthropic  # the SDK loads with the first call, so plan checks and --help never pay for it

        return anthropic.AsyncAnthropic(api_key=self._key, base_url=self.base_url, max_retries=0)

    async def complete(self, request: Request) -> Completion:
        import anthropic  # on the first call, not at plan load; here for its exception classes

        tool = re.sub(r"[^A-Za-z0-9_-]", "_", request.schema_name)[:64] or "reply"
        kwargs: dict[str, Any] = {
            "model": request.model or self.model,
            "max_tokens": request.max_tokens,  # no temperature: this SDK's Messages API (2.x) dropped it
            "messages": [{"role": "user", "content": request.user}],
            "tools": [{"name": tool, "description": "Record the complete reply as structured data.",
                       "input_schema": request.schema}],
            "tool_choice": {"type": "tool", "name": tool, "disable_parallel_tool_use": True},
            "timeout": request.timeout,
        }
        if request.system:
            kwargs["system"] = [{"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}]
        where = self.shown_url or "Anthropic"
        try:
            raw = await self._sdk().messages.with_raw_response.create(**kwargs)
        except anthropic.APIStatusError as e:
            raise status_error(e.status_code, str(e.message), e.response.headers, provider="Anthropic",
                               key_hint=self._key_hint(), secret=self._secrets) from None
        except anthropic.APITimeoutError:
            raise ProviderError(f"Anthropic request timed out after {request.timeout:g} s", retryable=True,
                                kind="timeout") from None
        except anthropic.APIConnectionError as e:
            raise ProviderError(f"cannot reach {where}: {redact(str(e.__cause__ or e), self._secrets)}",
                                retryable=True, kind="connection") from None
        try:
            message = await raw.parse()
            return _completion(message, tool, rate_limits(raw.headers))
        except (ValueError, AttributeError, TypeError, anthropic.APIResponseValidationError) as e:
            # A transport fault, not bad content: the body was not the JSON envelope the API promises.
            raise ProviderError(f"unreadable reply from {where}: {type(e).__name__}", retryable=True,
                                kind="malformed") from None

    def _key_hint(self) -> str:
        return KEY_HINT + (f"; the server is {self.shown_url} (ANTHROPIC_BASE_URL)" if self.base_url else "")


def _completion(message: Any, tool: str, rate: dict[str, float]) -> Completion:
    data = next((b.input for b in message.content if b.type == "tool_use" and b.name == tool), None)
    if data is not None:
        text = json.dumps(data, ensure_ascii=False)
    else:  # cut off before the tool call, or the model wrote prose: the engine sees invalid content
        text = "".join(getattr(b, "text", "") for b in message.content)
    usage = message.usage
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    return Completion(
        text=text, data=data,
        # Anthropic's input_tokens excludes cache reads and writes; ours counts the whole prompt.
        input_tokens=(usage.input_tokens or 0) + cache_read + cache_write,
        output_tokens=usage.output_tokens or 0,
        cached_tokens=cache_read,
        finish_reason=STOP_REASONS.get(message.stop_reason or "", message.stop_reason or "stop"),
        model=message.model or "", mode="tool", rate=rate,
    )


def rate_limits(headers: Any) -> dict[str, float]:
    """anthropic-ratelimit-* headers as Completion.rate keys (requests_*, input_tokens_*, output_tokens_*)."""
    rate: dict[str, float] = {}
    now = datetime.now().astimezone()
    for kind in RATE_KINDS:
        key = kind.replace("-", "_")
        for field in ("limit", "remaining"):
            value = headers.get(f"anthropic-ratelimit-{kind}-{field}")
            if value:
                with contextlib.suppress(ValueError):
                    rate[f"{key}_{field}"] = float(value)
        reset = headers.get(f"anthropic-ratelimit-{kind}-reset")
        if reset:
            with contextlib.suppress(ValueError, TypeError):
                rate[f"{key}_reset_s"] = max(0.0, (datetime.fromisoformat(reset) - now).total_seconds())
    return rate
