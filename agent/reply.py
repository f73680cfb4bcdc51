"""Parse a provider's reply into per-spec items, or say exactly what is wrong (for the one re-ask)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.providers.base import Completion
from agent.yamlfile import format_loc


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["user", "assistant"]
    content: str


class ChatItem(_Item):
    messages: list[_Message] = Field(min_length=2)


class PreferenceItem(_Item):
    prompt: str
    chosen: str
    rejected: str


class KtoItem(_Item):
    prompt: str
    completion: str


ITEM_MODELS = {"chat": ChatItem, "preference": PreferenceItem, "kto": KtoItem}


@dataclass
class Parsed:
    items: dict[str, BaseModel] = field(default_factory=dict)   # spec id -> valid item
    item_errors: dict[str, str] = field(default_factory=dict)   # spec id -> why its item is unusable
    errors: list[str] = field(default_factory=list)             # reply-level errors: re-ask worthy

    @property
    def ok(self) -> bool:
        return not self.errors


def extract_json(text: str) -> Any:
    """JSON from a reply that may wrap it in a ``` fence or prose (plain-text fallback mode)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    fenced = re.search(r"```(?:json)?\s*(\{.*\})\s*```", text, re.S)
    candidate = fenced.group(1) if fenced else text[text.find("{"): text.rfind("}") + 1]
    return json.loads(candidate)


def parse_reply(completion: Completion, shape: str, spec_ids: list[str]) -> Parsed:
    out = Parsed()
    if completion.finish_reason == "length":
        out.errors.append("the reply was cut off at the output token limit (finish reason 'length'); "
                          "write shorter examples so the whole JSON fits")
        return out
    data = completion.data
    if data is None:
        try:
            data = extract_json(completion.text)
        except (json.JSONDecodeError, ValueError) as e:
            out.errors.append(f"the reply is not valid JSON ({e.msg if hasattr(e, 'msg') else e})")
            return out
    items = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(items, list):
        out.errors.append('the reply must be an object {"examples": [...]}')
        return out
    model = ITEM_MODELS[shape]
    wanted = set(spec_ids)
    for i, raw in enumerate(items):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        try:
            item = model.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            msg = f"examples[{i}].{format_loc(tuple(err['loc']))}: {err['msg']}"
            if isinstance(raw_id, str) and raw_id in wanted:
                out.item_errors[raw_id] = msg
            else:
                out.errors.append(msg)
            continue
        if item.id in wanted and item.id not in out.items:
            out.items[item.id] = item
    if not out.items and not out.item_errors:
        out.errors.append(f"none of the requested ids ({', '.join(spec_ids)}) came back")
    return out


def parse_judgement(completion: Completion, plan) -> dict[str, dict[str, str]]:
    """The judge's labels per spec id, keeping only known dimension/category names ({} when unusable)."""
    try:
        data = completion.data if completion.data is not None else extract_json(completion.text)
    except (json.JSONDecodeError, ValueError):
        return {}
    out: dict[str, dict[str, str]] = {}
    for row in (data.get("labels") if isinstance(data, dict) else None) or []:
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            continue
        labels = {d: c for d, c in row.items() if d in plan.dimensions and isinstance(c, str)
                  and plan.dimensions[d].category(c) is not None}
        out[row["id"]] = labels
    return out
