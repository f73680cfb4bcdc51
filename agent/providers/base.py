"""One small interface for every LLM backend.

A provider turns a Request into a Completion, or raises ProviderError (retryable or not).
It does no retrying of its own: retries and timeouts live in agent/retries.py, pacing in agent/limits.py, and
the SDKs' built-in retries are switched off so retries never multiply.
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

from agent.errors import InputError

if TYPE_CHECKING:  # records (and what it imports) stays out of `plan --show`'s start-up
    from agent.records import Spec


@dataclass(frozen=True)
class Request:
    system: str                 # the long shared prompt (plan, categories); providers may cache it
    user: str                   # this call's request: the specs to write
    schema: dict[str, Any]      # JSON schema of the expected reply object
    schema_name: str = "examples"
    model: str = ""
    temperature: float = 0.8
    max_tokens: int = 8000
    timeout: float = 120.0
    seed: int | None = None
    specs: tuple[Spec, ...] = ()   # the same specs as structured data (the simulated provider reads them)
    purpose: str = "generate"      # generate | reask | judge | brainstorm


@dataclass
class Completion:
    text: str                        # the reply as text (JSON expected)
    data: Any = None                 # already-parsed JSON where the API returned structured output
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    finish_reason: str = "stop"      # "stop" | "length" | other provider value
    model: str = ""
    mode: str = "json_schema"        # how structure was obtained: json_schema | json_object | text | tool
    rate: dict[str, float] = field(default_factory=dict)  # rate-limit headers, normalised (see limits.py)


@dataclass(frozen=True)
class Capabilities:
    """What a provider's API can do; the runner, the estimate and the diversity controller read these."""
    json_schema: bool = True      # the API enforces the reply's JSON schema (else a forced tool call or parsing)
    temperature: bool = True      # the request's temperature reaches the model
    prompt_caching: bool = False  # a repeated system prompt is read from a cache (cheaper cached input)
    batch_api: bool = False       # the API has an asynchronous batch endpoint (datagen does not use it yet)


class NoOptions(BaseModel):
    """A provider with no options of its own: generation.provider_options must be empty."""
    model_config = ConfigDict(extra="forbid")


class Provider(ABC):
    """One backend, described in one file: its registry name, default model, capabilities, the pydantic model
    of its plan options (generation.provider_options), its price lookup and the mapping of a Request to its SDK.
    The constructor takes model, api_key, base_url, seed and the validated options as keyword arguments."""
    name: ClassVar[str]
    default_model: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()
    Options: ClassVar[type[BaseModel]] = NoOptions
    simulated: ClassVar[bool] = False   # offline stand-in: its output is not training data, and it costs nothing
    _client: Any = None

    @classmethod
    def price(cls, model: str, table: Any) -> Any:
        """The model's price (tokens.Price) from the price table, or None when it is not known."""
        return table.price(model)

    @abstractmethod
    async def complete(self, request: Request) -> Completion: ...

    _secrets: list[str] = []

    def redact(self, text: str) -> str:
        """`text` with this provider's key and URL credentials replaced: safe for a file, a log or a message."""
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _make_client(self) -> Any:
        """The SDK client; providers backed by an SDK build it here (no SDK is imported in this module)."""
        raise NotImplementedError

    def _sdk(self) -> Any:
        if self._client is None:  # built on first use, inside the running event loop
            self._client = self._make_client()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


# --- server URLs: checked before any call, secrets never stored or shown --------------------------------------
SECRET_QUERY = re.compile(r"key|token|secret|pass|auth|sig|credential", re.I)


def check_base_url(url: str, source: str) -> str:
    """The URL if it can address a server; InputError (exit 2, one line) before any call otherwise."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError on a port that is not a number or out of range
    except ValueError as e:
        raise InputError(f"{source}: {shown!r} is not a usable server URL ({e}); give one like "
                         f"http://127.0.0.1:8000/v1") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in url.strip():
        raise InputError(f"{source}: {shown!r} is not a usable server URL (it needs http:// or https:// and a "
                         f"host); give one like http://127.0.0.1:8000/v1")
    del port
    return url.strip()


def redact_url(url: str | None) -> str | None:
    """The URL with credentials removed: user:password@ and the values of key/token/secret query parameters."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return re.sub(r"//[^/@]*@", "//***@", url)
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        netloc = f"***@{host}{port}"
    query = urlencode([(k, "***" if SECRET_QUERY.search(k) else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str | None) -> list[str]:
    """The credential strings inside a URL, to redact from any message that might echo them."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password, parts.username]
    except ValueError:
        return []
    found += [v for k, v in parse_qsl(parts.query) if SECRET_QUERY.search(k)]
    return [s for s in found if s and len(s) >= 3]


def is_local(url: str | None) -> bool:
    """A server on this machine or a private network: one that runs one model, often one reply at a time."""
    if not url:
        return False
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host in ("localhost", "host.docker.internal") or host.endswith(".local"):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_loopback or addr.is_private or addr.is_link_local
