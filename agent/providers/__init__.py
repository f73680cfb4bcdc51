"""Provider registry: names to the one file that describes each provider, imported only when used.

Everything that needs to know the providers (the CLI's --provider, the interview, plan validation, the estimate,
the runner) asks here; nothing else names a provider. A new provider is one file with a Provider subclass,
added by `register("name", "package.module:Class")` (or the class itself), or by a package that declares an
entry point in the group "datagen.providers" (name = "module:Class").
"""

from __future__ import annotations

import importlib
from typing import Any

from agent.errors import InputError
from agent.providers.base import Capabilities, Completion, Provider, Request

__all__ = ["Capabilities", "Completion", "Provider", "Request", "register", "names", "get", "create",
           "check_options", "default_model"]

ENTRY_POINT_GROUP = "datagen.providers"

_registry: dict[str, str | type[Provider]] = {
    "simulated": "agent.providers.simulated:SimulatedProvider",
    "openai": "agent.providers.openai:OpenAIProvider",
    "anthropic": "agent.providers.anthropic:AnthropicProvider",
}
_entry_points_read = False


def register(name: str, target: str | type[Provider]) -> None:
    """Make a provider available under `name`: a Provider subclass or "module:Class" (imported on first use)."""
    _registry[name] = target


def _read_entry_points() -> None:
    """Installed packages' providers, read once and only when a name is not built in (keeps start-up fast)."""
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _registry.setdefault(ep.name, ep.value)


def names(*, installed: bool = True) -> list[str]:
    """Every known provider name; installed=False skips reading entry points (for --help)."""
    if installed:
        _read_entry_points()
    return list(_registry)


def known(name: str) -> bool:
    if name not in _registry:
        _read_entry_points()
    return name in _registry


def unknown(name: str) -> str:
    return f"unknown provider {name!r}; choose one of: {', '.join(names())}"


def checked_name(name: str) -> str:
    """`name` if it is a known provider, else ValueError (what a pydantic field validator raises)."""
    if not known(name):
        raise ValueError(unknown(name))
    return name


def get(name: str) -> type[Provider]:
    """The provider's class (its file is imported now); InputError for a name nobody registered."""
    if not known(name):
        raise InputError(unknown(name))
    target = _registry[name]
    if isinstance(target, str):
        module, _, cls = target.partition(":")
        target = getattr(importlib.import_module(module), cls)
        _registry[name] = target
    return target


def default_model(name: str) -> str:
    return get(name).default_model


def check_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """generation.provider_options validated by the provider's own Options model (pydantic ValidationError
    otherwise); the validated values, defaults filled in, as keyword arguments for its constructor."""
    return get(name).Options.model_validate(options or {}).model_dump()


def create(name: str, *, model: str, api_key: str | None = None, base_url: str | None = None,
           seed: int = 0, options: dict[str, Any] | None = None) -> Provider:
    """Build a provider by name. Missing keys raise ConfigError naming the variable to set."""
    from pydantic import ValidationError

    cls = get(name)
    try:
        checked = check_options(name, options)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"provider option {where or '(options)'} for {name}: {first['msg']}; "
                         f"allowed options: {', '.join(cls.Options.model_fields) or 'none'}") from None
    # every concrete provider takes these keywords; the abstract base declares no constructor
    return cls(model=model, api_key=api_key, base_url=base_url, seed=seed, **checked)  # type: ignore[call-arg]
