"""The trainer formats: canonical record -> format (export) and format -> canonical (validate).

Seed 002's five shapes, exactly as the seed writes them:
    openai    {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}   (TRL SFT "messages")
    sharegpt  {"conversations": [{"from": "system"|"human"|"gpt", "value": str}, ...]}
    alpaca    {"instruction": str, "input": str, "output": str}                          (single turn only)
    dpo       {"prompt": str, "chosen": str, "rejected": str}                           (TRL DPO, standard form)
    kto       {"prompt": str, "completion": str, "label": bool}                         (TRL KTO, unpaired)
The system prompt has no field in alpaca, dpo and kto: it is dropped there (never folded into "input" or
"prompt", which would teach the model to expect it as user text) and the exporter counts the records that
lost one. A multi-turn conversation cannot be one Alpaca record: to_format returns None for it and the
exporter reports how many were left out and why.

The shapes trainers apply a chat template to, keeping the system prompt and every turn:
    alpaca-history  {"instruction", "input": "", "output", "system": str, "history": [[user, assistant], ...]}
                    (LLaMA-Factory's alpaca columns: earlier turns go to history, the last pair is the example)
    dpo-chat        {"prompt": [{system}, {user}], "chosen": [{assistant}], "rejected": [{assistant}]}
    kto-chat        {"prompt": [{system}, {user}], "completion": [{assistant}], "label": bool}
                    (TRL's conversational preference / unpaired preference forms: is_conversational is true)
    openai-dpo      {"input": {"messages": [{system}, {user}]}, "preferred_output": [{assistant}],
                     "non_preferred_output": [{assistant}]}             (OpenAI preference fine-tuning)
    dpo-system      {"system", "prompt", "chosen", "rejected"}          (strings; LLaMA-Factory's alpaca ranking)
    kto-system      {"system", "prompt", "completion", "label"}         (strings; LLaMA-Factory's alpaca kto_tag)
"""

from __future__ import annotations

from typing import Any

from agent.errors import InputError

FORMATS = ("openai", "alpaca", "sharegpt", "dpo", "kto", "alpaca-history", "dpo-chat", "kto-chat", "openai-dpo",
           "dpo-system", "kto-system")
# which canonical record shape each format is made from
SHAPE_OF = {"openai": "chat", "alpaca": "chat", "sharegpt": "chat", "dpo": "preference", "kto": "kto",
            "alpaca-history": "chat", "dpo-chat": "preference", "kto-chat": "kto", "openai-dpo": "preference",
            "dpo-system": "preference", "kto-system": "kto"}
KEYS = {
    "openai": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "input", "output"),
    "dpo": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "alpaca-history": ("instruction", "input", "output", "system", "history"),
    "dpo-chat": ("prompt", "chosen", "rejected"),
    "kto-chat": ("prompt", "completion", "label"),
    "openai-dpo": ("input", "preferred_output", "non_preferred_output"),
    "dpo-system": ("system", "prompt", "chosen", "rejected"),
    "kto-system": ("system", "prompt", "completion", "label"),
}
# formats whose records carry the system prompt and every turn (the rest drop or leave out; see above)
KEEPS_ALL = ("openai", "sharegpt", "alpaca-history", "dpo-chat", "kto-chat", "openai-dpo", "dpo-system", "kto-system")
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
    if fmt in ("dpo-system", "kto-system"):
        return {"system": record.get("system") or "", **(to_format(record, fmt.removesuffix("-system")) or {})}
    if fmt == "alpaca-history":
        return _to_alpaca_history(record["messages"])
    if fmt == "dpo-chat":
        return {"prompt": _prompt_messages(record), "chosen": [_assistant(record["chosen"])],
                "rejected": [_assistant(record["rejected"])]}
    if fmt == "kto-chat":
        return {"prompt": _prompt_messages(record), "completion": [_assistant(record["completion"])],
                "label": record["label"]}
    if fmt == "openai-dpo":
        return {"input": {"messages": _prompt_messages(record)}, "preferred_output": [_assistant(record["chosen"])],
                "non_preferred_output": [_assistant(record["rejected"])]}
    raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def is_plain_chat(record: dict[str, Any]) -> bool:
    """True when `record` is exactly {"messages": [{"role": system|user|assistant, "content": str}, ...]} (a
    non-empty list, these keys in this order): then to_format(record, "openai") equals it, key order and all
    (the same JSON text), and to_canonical of that line gives it back (export.pipeline._scan relies on both)."""
    if len(record) != 1:
        return False
    msgs = record.get("messages")
    if type(msgs) is not list or not msgs:
        return False
    for m in msgs:
        if type(m) is not dict or list(m) != _ROLE_CONTENT or type(m["role"]) is not str \
                or m["role"] not in TO_SHAREGPT or type(m["content"]) is not str:
            return False
    return True


_ROLE_CONTENT = ["role", "content"]


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _prompt_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """A preference/KTO record's prompt as chat messages: the system prompt (when there is one), then the user."""
    system = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    return system + [{"role": "user", "content": record["prompt"]}]


def _to_alpaca_history(messages: list[dict[str, str]]) -> dict[str, Any] | None:
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    turns = [m for m in messages if m["role"] != "system"]
    roles = [m["role"] for m in turns]
    if not turns or roles != ["user", "assistant"] * (len(turns) // 2):
        return None  # not strict user/assistant pairs: history cannot hold it
    pairs = [[turns[i]["content"], turns[i + 1]["content"]] for i in range(0, len(turns), 2)]
    *history, (instruction, output) = pairs
    return {"instruction": instruction, "input": "", "output": output, "system": system, "history": history}


def drops_system(record: dict[str, Any], fmt: str) -> bool:
    """True when writing `record` as `fmt` loses a non-empty system prompt."""
    if fmt in KEEPS_ALL:
        return False
    if "messages" in record:
        return any(m.get("role") == "system" and m.get("content") for m in record["messages"])
    return bool(record.get("system"))


def detect(obj: Any) -> str | None:
    """The format a parsed line looks like, from its keys; None when it looks like none of them."""
    if not isinstance(obj, dict):
        return None
    if "preferred_output" in obj:
        return "openai-dpo"
    if isinstance(obj.get("prompt"), list):
        return "dpo-chat" if "chosen" in obj else "kto-chat" if "completion" in obj else None
    if "instruction" in obj and "history" in obj:
        return "alpaca-history"
    if "system" in obj and "prompt" in obj:
        return "dpo-system" if "chosen" in obj else "kto-system" if "completion" in obj else None
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
    if fmt in CHAT_SHAPED:
        return _chat_shaped_errors(obj, fmt)
    if fmt == "alpaca-history":
        errors = [f"'{k}' must be a string, got {type(obj[k]).__name__}"
                  for k in ("instruction", "input", "output", "system") if not isinstance(obj[k], str)]
        history = obj["history"]
        if not isinstance(history, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(t, str) for t in p) for p in history):
            errors.append("'history' must be a list of [user, assistant] string pairs")
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


# the conversational preference shapes: field -> the roles its message list must hold, in order
CHAT_SHAPED = {
    "dpo-chat": {"prompt": "prompt", "chosen": "reply", "rejected": "reply"},
    "kto-chat": {"prompt": "prompt", "completion": "reply"},
    "openai-dpo": {"input.messages": "prompt", "preferred_output": "reply", "non_preferred_output": "reply"},
}


def _messages_at(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _chat_shaped_errors(obj: dict[str, Any], fmt: str) -> list[str]:
    errors = []
    for path, kind in CHAT_SHAPED[fmt].items():
        msgs = _messages_at(obj, path)
        if not isinstance(msgs, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in msgs):
            errors.append(f"'{path}' must be a list of objects with string 'role' and 'content'")
            continue
        roles = [m["role"] for m in msgs]
        want = ([["user"], ["system", "user"]] if kind == "prompt" else [["assistant"]])
        if roles not in want:
            errors.append(f"'{path}' has roles {roles}; expected " + " or ".join(str(w) for w in want))
    if fmt == "kto-chat" and not isinstance(obj.get("label"), bool):
        errors.append(f"'label' must be true or false, got {obj.get('label')!r}")
    return errors


def _from_prompt(msgs: list[dict[str, str]]) -> tuple[str, str]:
    system = next((m["content"] for m in msgs if m["role"] == "system"), "")
    return system, next(m["content"] for m in msgs if m["role"] == "user")


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
    if fmt == "alpaca-history":
        head = [{"role": "system", "content": obj["system"]}] if obj["system"] else []
        user = obj["instruction"] + (f"\n\n{obj['input']}" if obj["input"].strip() else "")
        turns = [m for u, a in obj["history"] for m in ({"role": "user", "content": u},
                                                         {"role": "assistant", "content": a})]
        return {"messages": head + turns + [{"role": "user", "content": user},
                                              {"role": "assistant", "content": obj["output"]}]}
    if fmt == "dpo-chat":
        system, prompt = _from_prompt(obj["prompt"])
        return {"system": system, "prompt": prompt, "chosen": obj["chosen"][0]["content"],
                "rejected": obj["rejected"][0]["content"]}
    if fmt == "kto-chat":
        system, prompt = _from_prompt(obj["prompt"])
        return {"system": system, "prompt": prompt, "completion": obj["completion"][0]["content"],
                "label": obj["label"]}
    if fmt == "openai-dpo":
        system, prompt = _from_prompt(obj["input"]["messages"])
        return {"system": system, "prompt": prompt, "chosen": obj["preferred_output"][0]["content"],
                "rejected": obj["non_preferred_output"][0]["content"]}
    if fmt in ("dpo-system", "kto-system"):
        return {**to_canonical({k: v for k, v in obj.items() if k != "system"}, fmt.removesuffix("-system")),
                "system": obj["system"]}
    if fmt == "dpo":
        return {"system": "", "prompt": obj["prompt"], "chosen": obj["chosen"], "rejected": obj["rejected"]}
    return {"system": "", "prompt": obj["prompt"], "completion": obj["completion"], "label": obj["label"]}
