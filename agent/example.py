"""The records that flow through a run.

Spec     what one example must be: a category per dimension, plus a topic and a system prompt.
record   what came back for a Spec, in its canonical shape (a plain dict; the ledger stores it as JSON):
           chat        {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
           preference  {"system": str, "prompt": str, "chosen": str, "rejected": str}
           kto         {"system": str, "prompt": str, "completion": str, "label": bool}
         Export turns these into the trainer formats; nothing else reshapes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Shape = Literal["chat", "preference", "kto"]


@dataclass(frozen=True)
class Spec:
    id: str                    # unique across a run's resumes: "r<run>b<batch>-<index>", e.g. "r1b3-17"
    labels: dict[str, str]     # dimension -> category
    topic: str = ""
    system_prompt: str = ""
    tail: bool = False         # one of several copies drawn for the last examples: if a sibling filled its slot
                               # first, it is surplus, not a rejection


def user_text(record: dict[str, Any]) -> str:
    """The first user message: what near-duplicate detection and input-length measure."""
    if "messages" in record:
        return next((m.get("content", "") for m in record["messages"] if m.get("role") == "user"), "")
    return str(record.get("prompt", ""))


def response_text(record: dict[str, Any]) -> str:
    """The (last) assistant reply; for preference pairs the chosen one."""
    if "messages" in record:
        replies = [m.get("content", "") for m in record["messages"] if m.get("role") == "assistant"]
        return replies[-1] if replies else ""
    return str(record.get("chosen", record.get("completion", "")))


def user_turns(record: dict[str, Any]) -> int:
    if "messages" in record:
        return sum(1 for m in record["messages"] if m.get("role") == "user")
    return 1
