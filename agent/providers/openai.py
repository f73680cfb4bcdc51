"""OpenAI chat completions, and every server that speaks the same API (vLLM, Ollama, llama.cpp, LM Studio).

Structured output degrades step by step when a server refuses it, and the provider remembers what worked:
    json_schema         response_format json_schema, strict
    json_object+schema  (compatible servers only) response_format {"type": "json_object", "schema": ...} as
                        llama-cpp-python takes it for grammar-constrained JSON, and vLLM's guided_json
    json_object         response_format json_object, the schema appended to the system prompt
    text                no response_format; the first JSON object is taken from the reply (fenced or not)
A refusal is recognised by status *and* message: 400/422, and the 500 llama-cpp-python sends for a
response_format it does not know (its validation error wrapped as a server error).
Every SDK exception becomes a ProviderError here; the SDK's own retries are off (limits.py retries).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlparse, urlsplit, urlunsplit

from agent.errors import ConfigError, ProviderError
from agent.faults import redact, status_error
from agent.providers.base import (
    Capabilities,
    Completion,
    NoOptions,
    Provider,
    Request,
    check_base_url,
    redact_url,
    url_secrets,
)
from agent.reply import extract_json

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

MODES = ("json_schema", "json_object+schema", "json_object", "text")
OFFICIAL_MODES = ("json_schema", "json_object", "text")
KEY_HINT = "OPENAI_API_KEY (or --api-key)"
LOCAL_KEY = "not-needed"  # local OpenAI-compatible servers ignore the key but the SDK wants one
# a refusal names the structured-output feature; "X is not supported" about anything else is not one
REFUSAL = re.compile(r"response_format|json_schema|json_object|structured output|guided_json", re.I)
REFUSAL_STATUS = (400, 422, 500)
RATE_PREFIX = "x-ratelimit-"
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class _Refused(Exception):
    """The server rejected this response_format."""


class OpenAIOptions(NoOptions):
    # sent as-is in the request body: sampling knobs of OpenAI-compatible servers (vLLM/llama.cpp top_k,
    # repetition_penalty, min_p) that the official API does not have
    extra_body: dict[str, Any] = {}


class OpenAIProvider(Provider):
    name = "openai"
    default_model = "gpt-4o-mini"
    capabilities = Capabilities(json_schema=True, temperature=True, prompt_caching=True, batch_api=True)
    Options = OpenAIOptions

    def __init__(self, *, model: str, api_key: str | None = None, base_url: str | None = None, seed: int = 0,
                 extra_body: dict[str, Any] | None = None, **options: Any) -> None:
        self.model = model
        self.extra_body = dict(extra_body or {})
        self.seed = seed
        source = "--base-url" if base_url else "OPENAI_BASE_URL"
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        if self.base_url:
            self.base_url = check_base_url(self.base_url, source)
        self.shown_url = redact_url(self.base_url)   # what logs and messages may show
        official = self.base_url is None or urlparse(self.base_url).hostname == "api.openai.com"
        self.modes = OFFICIAL_MODES if official else MODES
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if official:
                raise ConfigError("no OpenAI API key: set OPENAI_API_KEY or pass --api-key")
            key = LOCAL_KEY
        self._key = key
        self._secrets = [key, *url_secrets(self.base_url)]
        # OpenAI's newer models take only max_completion_tokens; compatible servers know max_tokens.
        self._max_tokens_field = "max_completion_tokens" if official else "max_tokens"
        self.mode = "json_schema"
        # the SDK's HTTP transport: aiohttp where installed, else httpx2; httpx2 also for a URL holding
        # user:password@, which aiohttp refuses beside the SDK's Authorization header (a ValueError per call)
        userinfo = bool(self.base_url and "@" in urlsplit(self.base_url).netloc)
        self.transport = "httpx2" if userinfo else "aiohttp"
        if options:
            log.debug("openai provider ignores options: %s", ", ".join(sorted(options)))

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIProvider(model={self.model!r}, base_url={self.shown_url!r}, mode={self.mode!r})"

    def _make_client(self) -> openai.AsyncOpenAI:
        import openai  # the SDK loads with the first call, so plan checks and --help never pay for it

        # a query in the URL (?api-version=..., ?key=...) goes on every request, not into the path
        parts = urlsplit(self.base_url) if self.base_url else None
        # keep_blank_values: `?api-version=` must leave the path too, not stay in it as a bare "?"
        query = dict(parse_qsl(parts.query, keep_blank_values=True)) if parts and parts.query else None
        base = urlunsplit(parts._replace(query="")) if parts and parts.query else self.base_url
        return openai.AsyncOpenAI(api_key=self._key, base_url=base, max_retries=0, default_query=query,
                                  http_client=self._http_client())

    def _http_client(self) -> Any:
        """The SDK's aiohttp client (openai[aiohttp]) where aiohttp is installed, else the SDK's default (httpx2).
        Same requests and replies; about 1 ms less CPU a call at zero latency (bench/README.md)."""
        import openai

        if self.transport == "aiohttp":
            try:
                return openai.DefaultAioHttpClient()
            except RuntimeError:   # the SDK says aiohttp is missing (or too old for its adapter)
                self.transport = "httpx2"
        return None

    async def complete(self, request: Request) -> Completion:
        mode = self.mode
        while True:
            try:
                completion = await self._call(request, mode)
            except _Refused as refused:
                following = self.modes[self.modes.index(mode) + 1]
                log.info("%s refused response_format %s (%s); trying %s",
                         self.shown_url or "OpenAI", mode, refused, following)
                mode = following
                continue
            # Remember only a fallback that worked: a 400 that merely said "not supported" about something
            # else fails again in the next mode and must not downgrade every later call.
            if self.modes.index(mode) > self.modes.index(self.mode):
                self.mode = mode
            return completion

    async def _call(self, request: Request, mode: str) -> Completion:
        # on the first call, not at plan load: the SDK's exception classes and its HTTP library's Response
        import httpx2
        import openai

        try:
            # The SDK's own client.post, as its README shows for requests it has no method for: the same
            # headers, auth, URL, timeout and error classes as create(), without create()'s walk of every
            # argument against the SDK's TypedDicts and without building a ChatCompletion model from the
            # reply (together ~1 ms a call; bench/README.md). The body is what create() sent, byte for byte
            # (tests/test_openai_path.py).
            response = await self._sdk().post("/chat/completions", cast_to=httpx2.Response,
                                              body=self._body(request, mode), options=self._options(request))
        except openai.APIStatusError as e:
            detail = redact(str(e.message), self._secrets)
            if mode != "text" and e.status_code in REFUSAL_STATUS and REFUSAL.search(detail):
                raise _Refused(detail[:200]) from None
            raise status_error(e.status_code, detail, e.response.headers, provider="OpenAI",
                               key_hint=self._key_hint(), secret=self._secrets) from None
        except openai.APIConnectionError as e:   # APITimeoutError is one
            cause: BaseException | None = e.__cause__ or e
            if isinstance(e, openai.APITimeoutError):
                cause = self._unreachable(e)
                if cause is None:
                    raise ProviderError(f"OpenAI request timed out after {request.timeout:g} s", retryable=True,
                                        kind="timeout") from None
            reason = redact(str(cause), self._secrets)
            raise ProviderError(f"cannot reach {self.shown_url or 'OpenAI'}: {reason}", retryable=True,
                                kind="connection") from None
        try:
            return completion_of(json.loads(response.content), mode, rate_limits(response.headers))
        except (ValueError, LookupError, AttributeError, TypeError) as e:
            # A transport fault, not bad content: a body that is not JSON (json.JSONDecodeError is a
            # ValueError) or JSON of another shape (no choices, a message that is not an object).
            raise ProviderError(f"unreadable reply from {self.shown_url or 'OpenAI'}: {type(e).__name__}",
                                retryable=True, kind="malformed") from None

    def _unreachable(self, error: BaseException) -> BaseException | None:
        """The connection fault inside a timeout the aiohttp transport reported: the SDK's aiohttp adapter turns
        every aiohttp connection error (refused, unknown host, server hung up) into httpx2.ConnectTimeout, which
        the SDK raises as APITimeoutError. httpx2 reports them as connection errors, and so do we."""
        if self.transport != "aiohttp":
            return None
        import aiohttp

        cause = error.__cause__
        while cause is not None:
            if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
                return cause
            cause = cause.__cause__
        return None

    def _body(self, request: Request, mode: str) -> dict[str, Any]:
        """The JSON body create() built: its own fields in its order (model, the token limit, seed,
        temperature), then the messages and response format, then the plan's extra_body, whose keys win."""
        body: dict[str, Any] = {"model": request.model or self.model, self._max_tokens_field: request.max_tokens}
        if request.seed is not None:
            body["seed"] = request.seed
        body["temperature"] = request.temperature
        body["messages"] = _messages(request, mode)
        if mode == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": request.schema_name, "schema": request.schema, "strict": True}}
        elif mode == "json_object+schema":
            # llama-cpp-python reads the schema here and constrains sampling with a grammar; vLLM reads
            # guided_json. Each server ignores the other's field.
            body["response_format"] = {"type": "json_object", "schema": request.schema}
        elif mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        body.update(self.extra_body)   # the plan's extra_body wins, as before
        if mode == "json_object+schema":
            body["guided_json"] = request.schema
        return body

    def _options(self, request: Request) -> Any:
        # what create() gives client.post besides the body: the timeout, and bearer auth (the key)
        return {"timeout": request.timeout, "security": {"bearer_auth": True}}

    def _key_hint(self) -> str:
        return KEY_HINT + (f"; the server is {self.shown_url} (OPENAI_BASE_URL)" if self.base_url else "")


def completion_of(reply: Any, mode: str, rate: dict[str, float]) -> Completion:
    """The Completion in a chat completion's JSON, read as the SDK's ChatCompletion model read it: the fields
    the API always sends must be there (choices, message, finish_reason, model), null or not; the optional ones
    may be missing; a body of another shape raises (LookupError, AttributeError, TypeError)."""
    choice = reply["choices"][0]
    message = choice["message"]
    content = message.get("content") or ""
    finish = choice.get("finish_reason") or "stop"
    refusal = message.get("refusal")
    if refusal and not content:
        content, finish = refusal, "refusal"
    if not isinstance(content, str):
        raise TypeError("the message content is not text")
    try:
        data = extract_json(content)   # prose or a fence around it is fine; a torn document is parsed later
    except ValueError:
        data = None
    usage = reply.get("usage")
    details = usage.get("prompt_tokens_details") if usage else None
    return Completion(
        text=content,   # as the model wrote it: quoted in a re-ask, kept in the ledger when unusable
        data=data,
        input_tokens=(usage.get("prompt_tokens") or 0) if usage else 0,
        output_tokens=(usage.get("completion_tokens") or 0) if usage else 0,
        cached_tokens=(details.get("cached_tokens") or 0) if details else 0,
        finish_reason=finish, model=reply.get("model") or "", mode=mode, rate=rate,
    )


def _messages(request: Request, mode: str) -> list[dict[str, str]]:
    system = request.system
    if mode != "json_schema":
        schema = json.dumps(request.schema, indent=1)
        system = (f"{system}\n\nReply with a single JSON object and nothing else. "
                  f"It must match this JSON schema:\n```json\n{schema}\n```").strip()
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": request.user}]


@functools.lru_cache(maxsize=256)   # a few distinct values a run ("20ms", "6m0s"), read from every reply
def go_seconds(value: str) -> float | None:
    """OpenAI's reset durations ("20ms", "1s", "6m0s", "1h2m3.5s") in seconds."""
    parts = DURATION.findall(value)
    if not parts:
        try:
            return float(value)
        except ValueError:
            return None
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[unit] for n, unit in parts)


# (header, Completion.rate key, a reset duration?) in the order the keys were always added
RATE_HEADERS = tuple(item for kind in ("requests", "tokens") for item in (
    (f"x-ratelimit-limit-{kind}", f"{kind}_limit", False),
    (f"x-ratelimit-remaining-{kind}", f"{kind}_remaining", False),
    (f"x-ratelimit-reset-{kind}", f"{kind}_reset_s", True)))


def rate_limits(headers: Any) -> dict[str, float]:
    """x-ratelimit-* headers as Completion.rate keys (requests_*, tokens_*)."""
    rate: dict[str, float] = {}
    # one pass over the headers (httpx2's items() joins repeated ones with ", " as get() does), then lookups in
    # the few rate headers (tests/test_openai_path.py compares it with a get() per header)
    found = {key: value for key, value in headers.items() if key.startswith(RATE_PREFIX)}
    if not found:
        return rate
    for header, key, reset in RATE_HEADERS:
        value = found.get(header)
        if not value:
            continue
        if reset:
            seconds = go_seconds(value)
            if seconds is not None:
                rate[key] = seconds
            continue
        try:  # noqa: SIM105 - contextlib.suppress, a context manager per header, cost more than the rest of the read
            rate[key] = float(value)
        except ValueError:
            pass
    return rate
