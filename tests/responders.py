"""Loopback-server responders that answer like a model: they read the specs from the prompt text."""

from __future__ import annotations

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
            return provider.reply(Request(system="", user=user, schema=schema, purpose=purpose)).text

    return respond
