"""One small interface for every LLM backend.

A provider turns a Request into a Completion, or raises ProviderError (retryable or not).
It does no retrying of its own: retries, pacing and timeouts live in agent/limits.py, and
the SDKs' built-in retries are switched off so retries never multiply.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent.example import Spec


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


class Provider(ABC):
    name: ClassVar[str]
    simulated: ClassVar[bool] = False
    supports_json_schema: ClassVar[bool] = True
    _client: Any = None

    @abstractmethod
    async def complete(self, request: Request) -> Completion: ...

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
