"""Parse a provider's reply into per-spec items, or say exactly what is wrong (for the one re-ask)."""

from __future__ import annotations

import functools
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


ITEM_MODELS: dict[str, type[_Item]] = {"chat": ChatItem, "preference": PreferenceItem, "kto": KtoItem}


def reply_schema(shape: str, ids: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON schema of a reply, derived from the pydantic item models (one source of truth).

    With `ids`, the item ids are an enum of exactly those ids and the array holds exactly that many items:
    grammar-constrained servers (llama.cpp, vLLM) then cannot invent ids or item counts.
    """
    item = json.loads(_item_schema_text(shape))   # fresh dicts every call: callers may change theirs
    examples: dict[str, Any] = {"type": "array", "items": item}
    if ids:
        item["properties"]["id"] = {"type": "string", "enum": list(ids)}
        examples["minItems"] = examples["maxItems"] = len(ids)
    return {"type": "object", "properties": {"examples": examples}, "required": ["examples"],
            "additionalProperties": False}


@functools.cache
def _model_schema(shape: str) -> dict[str, Any]:
    """pydantic's schema of an item model, built once per shape (model_json_schema costs ~1.5 ms a call);
    read-only: _strict_schema copies it."""
    return ITEM_MODELS[shape].model_json_schema()


@functools.cache
def _item_schema_text(shape: str) -> str:
    """The strict item schema as JSON text, built once per shape: decoding it makes fresh dicts and lists at a
    third of the cost of _strict_schema's walk (the same values in the same key order)."""
    return json.dumps(_strict_schema(_model_schema(shape)))


def _strict_schema(node: Any, defs: dict[str, Any] | None = None) -> Any:
    """pydantic's schema in the strict form structured-output APIs take: $refs inlined, no titles,
    every property required, no extra properties."""
    if isinstance(node, dict):
        defs = {**(defs or {}), **node.get("$defs", {})}
        if "$ref" in node:
            return _strict_schema(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        out = {k: _strict_schema(v, defs) for k, v in node.items() if k not in ("title", "$defs")}
        if out.get("type") == "object" and "properties" in out:
            out["required"] = list(out["properties"])
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict_schema(v, defs) for v in node]
    return node


@dataclass
class Parsed:
    items: dict[str, BaseModel] = field(default_factory=dict)   # spec id -> valid item
    item_errors: dict[str, str] = field(default_factory=dict)   # spec id -> why its item is unusable
    errors: list[str] = field(default_factory=list)             # reply-level errors: re-ask worthy
    notes: dict[str, str] = field(default_factory=dict)         # spec id -> how its item was found (by position)
    truncated: bool = False                                     # cut off at the token limit
    extra: int = 0                                              # items beyond the requested ones, ignored

    @property
    def ok(self) -> bool:
        return not self.errors


def _partial(text: str) -> Any:
    """The complete values of a JSON document cut off part-way (jiter's partial mode drops the torn tail)."""
    import jiter  # installed with the openai SDK; its partial mode is made for truncated LLM output

    return jiter.from_json(text.encode(), partial_mode=True)


def load_json(text: str) -> tuple[Any, bool]:
    """(value, complete) from a reply that may wrap JSON in prose or a ``` fence, or be cut off part-way.

    In order: the whole text; the first object of the fence (or the text) decoded whole, prose after it
    ignored; that object cut off part-way (its complete values, via jiter); a later object (prose with braces
    before the JSON). Raises ValueError when there is no JSON object at all."""
    try:
        return json.loads(text), True
    except ValueError:
        pass
    fenced = re.search(r"```(?:json)?\s*(.*?)(?:```|$)", text, re.S)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(text)
    decoder = json.JSONDecoder()
    for candidate in candidates:
        start = candidate.find("{")
        if start < 0:
            continue
        try:
            return decoder.raw_decode(candidate, start)[0], True
        except ValueError:
            pass
        try:
            value = _partial(candidate[start:].strip())
        except ValueError:
            value = None
        if isinstance(value, dict) and value:
            return value, False
        for match in re.finditer(r"\{", candidate[start + 1:]):
            try:
                return decoder.raw_decode(candidate, start + 1 + match.start())[0], True
            except ValueError:
                continue
    raise ValueError("no JSON object in the reply")


def extract_json(text: str) -> Any:
    """JSON from a reply that may wrap it in a ``` fence or prose (complete documents only)."""
    value, complete = load_json(text)
    if not complete:
        raise ValueError("the JSON in the reply is incomplete")
    return value


def _items_of(data: Any, shape: str) -> list | None:
    """The list of examples, wherever a small model put it: {"examples": [...]}, a bare list, another key
    holding the only list, or one bare item."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("examples"), list):
        return data["examples"]
    lists = [v for v in data.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
    if len(lists) == 1:
        return lists[0]
    fields = set(ITEM_MODELS[shape].model_fields) - {"id"}
    if fields <= set(data):
        return [data]
    return None


def parse_reply(completion: Completion, shape: str, spec_ids: list[str]) -> Parsed:
    """Per-spec items from a reply, tolerating what real models do: prose or fences around the JSON, ids of
    their own (matched in order when the item count is right), extra items (ignored), and a reply cut off at
    the token limit (every complete example is kept; the one being written when it was cut is dropped)."""
    out = Parsed(truncated=completion.finish_reason == "length")
    data, complete = completion.data, True
    if data is None:
        try:
            data, complete = load_json(completion.text)
        except ValueError as e:
            if out.truncated:
                out.errors.append("the reply was cut off at the output token limit (finish reason 'length') "
                                  "before one example was complete; write shorter examples")
            else:
                out.errors.append(f"the reply is not valid JSON ({e.msg if hasattr(e, 'msg') else e})")
            return out
    items = _items_of(data, shape)
    if items is None:
        out.errors.append('the reply must be an object {"examples": [...]}')
        return out
    if not complete and items:
        items = items[:-1]   # the last item was being written when the reply stopped: it may be incomplete
    model = ITEM_MODELS[shape]
    wanted = set(spec_ids)
    raw_ids = [raw.get("id") if isinstance(raw, dict) else None for raw in items]
    # ids of the model's own: with the right count, or with none of ours at all and enough items, the items
    # are taken in order (recorded per example) and the rest ignored
    by_position = (len(items) == len(spec_ids) and set(raw_ids) != wanted) or (
        len(items) > len(spec_ids) and not wanted.intersection(i for i in raw_ids if isinstance(i, str)))
    for i, raw in enumerate(items):
        raw_id = raw_ids[i]
        target = (spec_ids[i] if i < len(spec_ids) else None) if by_position else raw_id
        if not isinstance(target, str) or target not in wanted or target in out.items or target in out.item_errors:
            out.extra += 1
            continue
        if by_position and raw_id != target and isinstance(raw, dict):
            out.notes[target] = f"matched by position: the reply called it {str(raw_id)[:40]!r}"
            raw = {**raw, "id": target}
        try:
            out.items[target] = model.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            out.item_errors[target] = f"examples[{i}].{format_loc(tuple(err['loc']))}: {err['msg']}"
    if not out.items and not out.item_errors:
        if out.truncated:
            out.errors.append("the reply was cut off at the output token limit (finish reason 'length') "
                              "before one example was complete; write shorter examples")
        else:
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
