"""One jinja2 Environment over prompts/, and the Requests the engine sends."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from agent.example import Spec
from agent.plan import Plan
from agent.providers.base import Request

PROMPTS_DIR = Path(os.environ.get("DATAGEN_PROMPTS", Path(__file__).resolve().parent.parent / "prompts"))


@functools.cache
def environment() -> Environment:
    # StrictUndefined: a missing variable is a bug to see, not an empty string in a prompt
    return Environment(loader=FileSystemLoader(PROMPTS_DIR), undefined=StrictUndefined,
                       keep_trailing_newline=True, autoescape=False, trim_blocks=True)


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


_MESSAGE = {
    "type": "object",
    "properties": {"role": {"type": "string", "enum": ["user", "assistant"]}, "content": {"type": "string"}},
    "required": ["role", "content"],
    "additionalProperties": False,
}
_ITEMS = {
    "chat": {"id": {"type": "string"}, "messages": {"type": "array", "items": _MESSAGE}},
    "preference": {"id": {"type": "string"}, "prompt": {"type": "string"}, "chosen": {"type": "string"},
                   "rejected": {"type": "string"}},
    "kto": {"id": {"type": "string"}, "prompt": {"type": "string"}, "completion": {"type": "string"}},
}


def reply_schema(shape: str) -> dict[str, Any]:
    item = {"type": "object", "properties": _ITEMS[shape], "required": list(_ITEMS[shape]), "additionalProperties": False}
    return {"type": "object", "properties": {"examples": {"type": "array", "items": item}},
            "required": ["examples"], "additionalProperties": False}


def word_ranges(plan: Plan) -> dict[str, dict[str, str]]:
    return {
        d: {c.name: f"{c.min_words}-{c.max_words} words" for c in dim.categories if c.min_words is not None}
        for d, dim in plan.dimensions.items()
    }


def spec_lines(plan: Plan, specs: list[Spec]) -> list[str]:
    """One line per spec: '[id] topic: ...; question_type=factual; response_length=short (50-150 words); ...'."""
    words = word_ranges(plan)
    lines = []
    for s in specs:
        parts = [f"topic: {s.topic}"] if s.topic else []
        for dim, cat in s.labels.items():
            rng = words.get(dim, {}).get(cat)
            parts.append(f"{dim}={cat}" + (f" ({rng})" if rng else ""))
        lines.append(f"[{s.id}] " + "; ".join(parts))
    return lines


@functools.lru_cache(maxsize=8)
def _system(plan_json: str, shape: str) -> str:
    return render("system.j2", plan=Plan.model_validate_json(plan_json), shape=shape)


def system_prompt(plan: Plan) -> str:
    return _system(plan.model_dump_json(), plan.record_shape)


def build_request(plan: Plan, specs: list[Spec], *, avoid: list[str] = (), steering: dict | None = None,
                  temperature: float | None = None, system: str | None = None) -> Request:
    steering = steering or {}
    user = render("batch.j2", specs=specs, spec_lines=spec_lines(plan, specs), avoid=list(avoid),
                  steering={"instructions": steering.get("instructions", [])})
    g = plan.generation
    return Request(
        system=system or system_prompt(plan),
        user=user,
        schema=reply_schema(plan.record_shape),
        model=g.model,
        temperature=g.temperature if temperature is None else temperature,
        max_tokens=g.max_output_tokens,
        timeout=g.timeout_seconds,
        seed=g.seed,
        specs=tuple(specs),
    )


def reask_request(original: Request, reply_text: str, errors: list[str]) -> Request:
    """A new request (the original is never mutated) that quotes what was wrong with the reply."""
    note = render("reask.j2", errors=errors[:10], specs=original.specs)
    quoted = reply_text[:2000]
    user = f"{original.user}\n\nYour previous reply was:\n{quoted}\n\n{note}"
    return Request(**{**original.__dict__, "user": user, "purpose": "reask"})


def sample_request(plan: Plan) -> Request:
    """A representative request (first categories of every dimension) for estimates and template tests."""
    labels = {d: next(c.name for c in dim.categories if (c.quota or 0) > 0 or c.share > 0)
              for d, dim in plan.dimensions.items()}
    specs = [Spec(id=f"s{i}", labels=labels, topic="example topic", system_prompt=plan.system_prompts[0])
             for i in range(plan.generation.examples_per_call)]
    return build_request(plan, specs, avoid=["an earlier question"] * 20)


def parse_json_reply(text: str) -> Any:
    return json.loads(text)
