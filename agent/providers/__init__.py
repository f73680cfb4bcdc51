"""Provider registry: a dict of names to classes, imported lazily so a missing SDK never breaks others."""

from __future__ import annotations

import importlib

from agent.errors import InputError
from agent.providers.base import Completion, Provider, Request

__all__ = ["Completion", "Provider", "Request", "PROVIDERS", "create"]

PROVIDERS = {
    "simulated": "agent.providers.simulated:SimulatedProvider",
    "openai": "agent.providers.openai:OpenAIProvider",
    "anthropic": "agent.providers.anthropic:AnthropicProvider",
}


def create(name: str, *, model: str, api_key: str | None = None, base_url: str | None = None,
           seed: int = 0, **options) -> Provider:
    """Build a provider by name. Missing keys raise ConfigError naming the variable to set."""
    target = PROVIDERS.get(name)
    if target is None:
        raise InputError(f"unknown provider {name!r}; choose one of: {', '.join(PROVIDERS)}")
    module, _, cls = target.partition(":")
    provider_cls = getattr(importlib.import_module(module), cls)
    return provider_cls(model=model, api_key=api_key, base_url=base_url, seed=seed, **options)
