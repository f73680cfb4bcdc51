"""The five trainer formats: canonical record -> format (export) and format -> canonical (validate).

    openai    {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}   (TRL SFT "messages")
    sharegpt  {"conversations": [{"from": "system"|"human"|"gpt", "value": str}, ...]}
    alpaca    {"instruction": str, "input": str, "output": str}                          (single turn only)
    dpo       {"prompt": str, "chosen": str, "rejected": str}                           (TRL DPO, standard form)
    kto       {"prompt": str, "completion": str, "label": bool}                         (TRL KTO, unpaired)

Field names and shapes are exactly seed 002's. The system prompt has no field in alpaca, dpo and kto: it is
dropped there (never folded into "input" or "prompt", which would teach the model to expect it as user
text) and the exporter counts the records that lost one. A multi-turn conversation cannot be one Alpaca
record: to_format returns None for it and the exporter reports how many were left out and why.
"""

from __future__ import annotations

from typing import Any

from agent.errors import InputError

FORMATS = ("openai", "alpaca", "sharegpt", "dpo", "kto")
# which canonical record shape each format is made from
SHAPE_OF = {"openai": "chat", "alpaca": "chat", "sharegpt": "chat", "dpo": "preference", "kto": "kto"}
KEYS = {
    "openai": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "input", "output"),
    "dpo": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
}
TO_SHAREGPT = {"system": "system", "user": "human", "assistant": "gpt"}
FROM_SHAREGPT = {v: k for k, v in TO_SHAREGPT.items()}
MULTI_TURN_REASON = "multi-turn conversations cannot be Alpaca records (one instruction, one output)"


class Unconvertible(ValueError):
    """A line of a trainer file whose structure is too broken to turn into a canonical record."""


def check_fits(fmt: str, shape: str) -> None:
    """InputError unless records of `shape` can be written as `fmt`."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if SHAPE_OF[fmt] != shape:
        fits = [f for f in FORMATS if SHAPE_OF[f] == shape]
        raise InputError(f"format {fmt} needs {SHAPE_OF[fmt]} records but this plan makes {shape} records; "
                         f"export it as {' or '.join(fits)} instead")


def to_format(record: dict[str, Any], fmt: str) -> dict[str, Any] | None:
    """The record in `fmt`; None when it cannot be expressed there (a multi-turn chat as Alpaca)."""
    if fmt == "openai":
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in record["messages"]]}
    if fmt == "sharegpt":
        return {"conversations": [{"from": TO_SHAREGPT[m["role"]], "value": m["content"]}
                                  for m in record["messages"]]}
    if fmt == "alpaca":
        turns = [m for m in record["messages"] if m["role"] != "system"]
        if [m["role"] for m in turns] != ["user", "assistant"]:
            return None
        return {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"]}
    if fmt == "dpo":
        return {"prompt": record["prompt"], "chosen": record["chosen"], "rejected": record["rejected"]}
    if fmt == "kto":
        return {"prompt": record["prompt"], "completion": record["completion"], "label": record["label"]}
    raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def drops_system(record: dict[str, Any], fmt: str) -> bool:
    """True when writing `record` as `fmt` loses a non-empty system prompt."""
    if fmt in ("openai", "sharegpt"):
        return False
    if "messages" in record:
        return any(m.get("role") == "system" and m.get("content") for m in record["messages"])
    return bool(record.get("system"))


def detect(obj: Any) -> str | None:
    """The format a parsed line looks like, from its keys; None when it looks like none of them."""
    if not isinstance(obj, dict):
        return None
    if "messages" in obj:
        return "openai"
    if "conversations" in obj:
        return "sharegpt"
    if "instruction" in obj and "output" in obj:
        return "alpaca"
    if "chosen" in obj and "rejected" in obj:
        return "dpo"
    if "completion" in obj and "label" in obj:
        return "kto"
    return None


def structure_errors(obj: Any, fmt: str) -> list[str]:
    """What stops a line from being a record of `fmt` at all (missing keys, wrong types, unknown roles)."""
    if not isinstance(obj, dict):
        return [f"expected a JSON object, got {type(obj).__name__}"]
    errors = [f"missing key '{k}'" for k in KEYS[fmt] if k not in obj]
    if errors:
        return errors
    if fmt in ("openai", "sharegpt"):
        key, role_key, text_key = ("messages", "role", "content") if fmt == "openai" else ("conversations", "from", "value")
        roles = TO_SHAREGPT if fmt == "openai" else FROM_SHAREGPT
        turns = obj[key]
        if not isinstance(turns, list) or not turns:
            return [f"'{key}' must be a non-empty list"]
        for i, t in enumerate(turns, 1):
            if not isinstance(t, dict) or not isinstance(t.get(role_key), str) or not isinstance(t.get(text_key), str):
                errors.append(f"{key}[{i}] must be an object with string '{role_key}' and '{text_key}'")
            elif t[role_key] not in roles:
                errors.append(f"{key}[{i}] has {role_key} {t[role_key]!r}; allowed: {', '.join(roles)}")
        return errors
    for k in KEYS[fmt]:
        if k == "label":
            if not isinstance(obj[k], bool):
                errors.append(f"'label' must be true or false, got {obj[k]!r}")
        elif not isinstance(obj[k], str):
            errors.append(f"'{k}' must be a string, got {type(obj[k]).__name__}")
    return errors


def to_canonical(obj: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A line of `fmt` as the canonical record check_record reads. Raises Unconvertible on broken structure."""
    errors = structure_errors(obj, fmt)
    if errors:
        raise Unconvertible("; ".join(errors))
    if fmt == "openai":
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in obj["messages"]]}
    if fmt == "sharegpt":
        return {"messages": [{"role": FROM_SHAREGPT[t["from"]], "content": t["value"]} for t in obj["conversations"]]}
    if fmt == "alpaca":
        # Alpaca's "input" is context for the instruction; trainers join them into the one user turn
        user = obj["instruction"] + (f"\n\n{obj['input']}" if obj["input"].strip() else "")
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": obj["output"]}]}
    if fmt == "dpo":
        return {"system": "", "prompt": obj["prompt"], "chosen": obj["chosen"], "rejected": obj["rejected"]}
    return {"system": "", "prompt": obj["prompt"], "completion": obj["completion"], "label": obj["label"]}
