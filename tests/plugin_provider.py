"""A provider added from outside agent/providers, in this one file: the test of issue 11's "a provider is one
file". It declares everything the registry asks (name, default model, capabilities, options, price) and answers
from the simulated writer, so a run on it fills a plan offline; it records what it was sent."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agent.providers import Capabilities, Completion, Provider, Request
from agent.providers.base import NoOptions
from agent.providers.simulated import SimulatedProvider
from agent.tokens import Price


class ParrotOptions(NoOptions):
    seed_offset: int = Field(default=0, ge=0)   # checked by the plan's generation.provider_options


class ParrotProvider(Provider):
    name = "parrot"
    default_model = "parrot-1"
    capabilities = Capabilities(json_schema=True, temperature=False)
    Options = ParrotOptions
    sent: list[Request] = []   # every request of the last instance, for the test to read
    made: list[dict[str, Any]] = []

    @classmethod
    def price(cls, model: str, table: Any) -> Price:
        return Price(input=1.0, output=2.0)   # USD per million tokens, whatever the model name

    def __init__(self, *, model: str, api_key: str | None = None, base_url: str | None = None, seed: int = 0,
                 seed_offset: int = 0) -> None:
        self.model = model
        self._writer = SimulatedProvider(model=model, seed=seed + seed_offset, drift=False)
        ParrotProvider.sent = []
        ParrotProvider.made.append({"model": model, "seed_offset": seed_offset})

    async def complete(self, request: Request) -> Completion:
        ParrotProvider.sent.append(request)
        return self._writer.reply(request)
