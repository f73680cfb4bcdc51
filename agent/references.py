"""Real examples as style references: a few shown per call, never copied.

A plan's `examples:` names files of the user's real conversations in any export format datagen reads
(agent.dataset.load detects it). Each call shows PER_CALL of them, rotated so that no two calls in a row see
the same set; the auditor rejects a generated example whose user message near-duplicates one of them (the
same symmetric SequenceMatcher rule as the run's own near-duplicates, agent/audit/dedup.py).
"""

from __future__ import annotations

import random

from agent import dataset
from agent.audit.dedup import NearDupIndex
from agent.errors import ConfigError, InputError
from agent.export.formats import to_canonical
from agent.records import response_text, user_text

PER_CALL = 3
SHOWN_CHARS = 600      # a reference is a style sample: its first 600 characters carry the style


def load(paths: list[str]) -> list[tuple[str, str]]:
    """(user message, assistant reply) of every usable row; ConfigError for an unreadable file."""
    pairs: list[tuple[str, str]] = []
    for path in paths:
        try:
            rows = dataset.load(path)
        except (InputError, OSError) as e:
            msg = str(getattr(e, "strerror", None) or e)
            where = "" if msg.startswith(str(path)) else f"{path}: "  # the loader's messages name the file
            raise ConfigError(f"examples: {where}{msg}; fix the file or remove it from the plan") from None
        for row in rows:
            record = to_canonical(row, rows.format)
            user, reply = user_text(record).strip(), response_text(record).strip()
            if user and reply:
                pairs.append((user, reply))
    if paths and not pairs:
        raise ConfigError(f"examples: {', '.join(paths)} hold no conversation with a user message and a reply")
    return pairs


class References:
    def __init__(self, pairs: list[tuple[str, str]], threshold: float, seed: int = 0, per_call: int = PER_CALL):
        self.pairs = pairs
        self.per_call = min(per_call, len(pairs))
        self.rng = random.Random(seed)
        self.order: list[int] = []
        self.last: frozenset[int] = frozenset()
        self.index = NearDupIndex(threshold)
        self.index.extend((i, u) for i, (u, _) in enumerate(pairs))

    def next(self) -> list[tuple[str, str]]:
        """The next set to show: walks a shuffled order so every example is shown before any repeats, and
        never the same set as the call before (possible only with a single example, or as many as fit one call)."""
        if not self.per_call:
            return []
        chosen: list[int] = []
        for _ in range(4 * len(self.pairs) + 4):
            if not self.order:
                self.order = list(range(len(self.pairs)))
                self.rng.shuffle(self.order)
            i = self.order.pop()
            if i not in chosen:
                chosen.append(i)
            if len(chosen) == self.per_call:
                if frozenset(chosen) != self.last or len(self.pairs) <= self.per_call:
                    break
                chosen = chosen[1:]
        self.last = frozenset(chosen)
        return [(self.pairs[i][0][:SHOWN_CHARS], self.pairs[i][1][:SHOWN_CHARS]) for i in chosen]

    def copied(self, text: str) -> tuple[int, float] | None:
        """(which real example, ratio) when `text` near-duplicates one of them."""
        found = self.index.find(text)
        return (int(found[0]), found[1]) if found else None  # type: ignore[call-overload]
