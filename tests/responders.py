"""Loopback-server responders that answer like a model: they read the specs from the prompt text."""

from __future__ import annotations

import json
import threading
from typing import Any

from agent.providers.base import Request
from agent.providers.simulated import SimulatedProvider


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content or [] if isinstance(block, dict))


def simulated_responder(seed: int = 0, drift: bool = False):
    """responder(request_body) -> reply text, for OpenAI chat and Anthropic messages bodies alike."""
    provider = SimulatedProvider(seed=seed, drift=drift)
    lock = threading.Lock()  # the server answers from several threads; the provider keeps a little state

    def respond(body: dict[str, Any]) -> str:
        messages = body.get("messages", [])
        user = _text(messages[-1]["content"]) if messages else ""
        schema = {}
        if "response_format" in body:
            schema = body["response_format"].get("json_schema", {}).get("schema", {})
        elif body.get("tools"):
            schema = body["tools"][0].get("input_schema", {})
        props = schema.get("properties", {})
        purpose = "judge" if "labels" in props else "brainstorm" if "topics" in props else (
            "reask" if "Your previous reply" in user else "generate")
        if not props:  # json_object / text fallback modes: the reply schema is in the prompt; assume chat
            from agent.prompts import reply_schema

            schema = reply_schema("chat")
        with lock:
            # the system prompt (the plan's categories) and the call's seed reach the provider as a model sees them
            system = next((_text(m["content"]) for m in messages if m.get("role") == "system"), body.get("system", ""))
            return provider.reply(Request(system=_text(system), user=user, schema=schema, purpose=purpose,
                                          seed=body.get("seed"))).text

    return respond


def small_model_responder(seed: int = 0, *, prose: bool = True, extra_item: bool = True, drift: bool = False):
    """Answers like the small instruct models seen on llama-cpp-python's server: with the reply schema in
    response_format (the grammar-constrained json_object+schema mode) the reply follows it; without, the model
    writes JSON of its own shape: ids of its own ("example1", ...), an extra item, and prose around the JSON."""
    inner = simulated_responder(seed=seed, drift=drift)

    def respond(body: dict[str, Any]) -> str:
        text = inner(body)
        constrained = isinstance((body.get("response_format") or {}).get("schema"), dict)
        if constrained:
            return text
        try:
            data = json.loads(text)
        except ValueError:
            return text
        items = data.get("examples") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return text
        for i, item in enumerate(items):
            if isinstance(item, dict):
                item["id"] = f"example{i + 1}"
        if extra_item and items:
            items.append({**items[0], "id": f"example{len(items) + 1}"})
        out = json.dumps(data, ensure_ascii=False)
        if prose:
            out = f"Sure! Here are the examples you asked for:\n{out}\nI hope these help."
        return out

    return respond


def unusable_responder(kind: str):
    """A model whose replies are never usable: "empty", "refusal", "wrong_shape" or "wrong_ids"."""
    replies = {
        "empty": "",
        "refusal": "I'm sorry, but I can't help with that request.",
        "wrong_shape": json.dumps({"answer": "Here is a helpful answer about networking.", "score": 5}),
        "wrong_ids": json.dumps({"examples": [{"id": "q1", "messages": [
            {"role": "user", "content": "What is a VLAN?"}, {"role": "assistant", "content": "A VLAN is..."}]}] * 2}),
    }
    reply = replies[kind]

    def respond(body: dict[str, Any]) -> str:
        return reply

    return respond


def avoid_copier_responder(seed: int = 0):
    """The 0.5B model on llama.cpp (real-behaviours.md section 11): when the prompt lists what is "Already
    covered", it writes those entries, in order, as its new user turns, word for word. It copies a list of
    short topic cues the same way; only with no list does it write questions of its own."""
    inner = simulated_responder(seed=seed)

    def respond(body: dict[str, Any]) -> str:
        text = inner(body)
        user = _text(body["messages"][-1]["content"])
        head = next((h for h in ("Already covered:", "Topics already covered") if h in user), None)
        if head is None:
            return text
        listed = [line[2:] for line in user.split(head, 1)[1].splitlines() if line.startswith("- ")]
        data = json.loads(text)
        for i, item in enumerate(data["examples"]):
            if listed:
                item["messages"][0]["content"] = listed[i % len(listed)]
        return json.dumps(data)

    return respond
