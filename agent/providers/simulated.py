"""The offline `simulated` provider: deterministic from a seed, no network, and it drifts like a real model.

With drift on (the default) about 15% of examples miss a measured part of their spec (mostly the length
bucket, sometimes the code/format/typo request), about 5% are near-copies of earlier questions, and about 3%
of replies are malformed or truncated. The auditor and rebalancer have real work to do on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import re
import zlib
from collections.abc import Sequence

from pydantic import Field

from agent import tokens
from agent.prompts import parse_spec_lines
from agent.providers import simulated_text as text
from agent.providers.base import Capabilities, Completion, NoOptions, Provider, Request
from agent.providers.simulated_intent import Intent, intent
from agent.records import Spec

DRIFT_OFF_SPEC = 0.15
DRIFT_NEAR_COPY = 0.05
DRIFT_BAD_REPLY = 0.03
DRIFT_UNGROUNDED = 0.08   # a grounded answer states a figure its passage does not (an invented price, say)
DRIFT_COPY_REFERENCE = 0.04  # a question copied (one word changed) from a real example the prompt showed
REFERENCE_USER = re.compile(r"^- User: (.+)$", re.M)


class SimulatedOptions(NoOptions):
    drift: bool = True                                  # --no-drift sets False: follow every spec exactly
    latency: float | None = Field(default=None, ge=0)   # seconds per call (default: DATAGEN_SIMULATED_LATENCY)


class SimulatedProvider(Provider):
    name = "simulated"
    default_model = "simulated-1"
    # it stands in for a model that samples; prompt caching and batches are of no use offline
    capabilities = Capabilities(json_schema=True, temperature=True)
    Options = SimulatedOptions
    simulated = True

    @classmethod
    def price(cls, model: str, table: object) -> tokens.Price:
        return tokens.Price(input=0.0, output=0.0)   # offline: free whatever the model name

    def __init__(self, model: str = "simulated-1", api_key: str | None = None, base_url: str | None = None,
                 seed: int = 0, drift: bool = True, latency: float | None = None, **_: object):
        self.model = model
        self.seed = seed
        self.drift = drift
        # DATAGEN_SIMULATED_LATENCY (seconds per call) makes demos and crash tests behave like a slow API
        self.latency = latency if latency is not None else float(os.environ.get("DATAGEN_SIMULATED_LATENCY", "0"))
        self.asked: list[str] = []   # earlier user messages, for planted near-copies

    def _rng(self, request: Request) -> random.Random:
        # the whole prompt and the per-call seed are the key, as they are for a real model's sampler: a spec asked
        # again gets new text. (The key once held the prompt's length and no seed where a loopback server read
        # the prompt: equal-length prompts drew the same text, and a re-asked spec came back a near-duplicate.)
        key = f"{self.seed}|{request.purpose}|{','.join(s.id for s in request.specs)}|{request.seed}"
        return random.Random(zlib.crc32(request.user.encode(), zlib.crc32(key.encode())))

    async def complete(self, request: Request) -> Completion:
        if self.latency:
            await asyncio.sleep(self.latency)
        return self.reply(request)

    def reply(self, request: Request) -> Completion:
        """The whole reply, synchronously (a loopback test server calls this from its own thread)."""
        rng = self._rng(request)
        if request.purpose == "brainstorm":
            return self._finish(request, json.dumps({"topics": brainstorm(rng, request.user)}))
        if request.purpose == "assign":  # files the passage by keywords, as a weak model would
            return self._finish(request, json.dumps({"category": assign_by_keywords(request)}))
        if request.purpose == "judge":
            return self._finish(request, json.dumps({"labels": self._judge(rng, request)}))
        shape = "chat"
        props = request.schema.get("properties", {}).get("examples", {}).get("items", {}).get("properties", {})
        if "chosen" in props:
            shape = "preference"
        elif "completion" in props:
            shape = "kto"
        # the specs are read from the prompt text itself, as a model would; request.specs is the fallback
        specs = parse_spec_lines(request.user) or list(request.specs)
        shown = REFERENCE_USER.findall(request.user)
        items = [self._example(rng, spec, shape, request.purpose, shown, request.system) for spec in specs]
        body = json.dumps({"examples": items}, ensure_ascii=False)
        if self.drift and request.purpose == "generate" and rng.random() < DRIFT_BAD_REPLY:
            if rng.random() < 0.5:  # truncated mid-reply, as when max_tokens runs out
                return self._finish(request, body[: len(body) // 2], finish_reason="length")
            return self._finish(request, body.replace('"examples"', "examples", 1))  # malformed JSON
        return self._finish(request, body)

    def _finish(self, request: Request, body: str, finish_reason: str = "stop") -> Completion:
        out = tokens.count(body)
        if out > request.max_tokens:   # like a real model: the reply stops at max_tokens
            body = body[: len(body) * request.max_tokens // out]
            out, finish_reason = tokens.count(body), "length"
        return Completion(text=body, input_tokens=tokens.count(request.system) + tokens.count(request.user),
                          output_tokens=out, finish_reason=finish_reason, model=self.model, mode="json_schema")

    def _judge(self, rng: random.Random, request: Request) -> list[dict]:
        """Labels as requested, except that with drift ~10% of one label disagrees, as a real judge would."""
        props = request.schema["properties"]["labels"]["items"]["properties"]
        out = []
        for spec in request.specs:
            labels: dict[str, str | int] = {d: spec.labels[d] for d in props if d in spec.labels}
            if self.drift and labels and rng.random() < 0.10:
                d = rng.choice(sorted(labels))
                labels[d] = rng.choice(props[d]["enum"])
            if "faithful" in props:  # grounded runs: mostly faithful, now and then a low rating
                labels["faithful"] = 2 if self.drift and rng.random() < 0.04 else rng.choice([4, 5])
            out.append({"id": spec.id, **labels})
        return out

    def _example(self, rng: random.Random, spec: Spec, shape: str, purpose: str, shown: Sequence[str] = (),
                 system: str = "") -> dict:
        # what the spec asks for, read from the prompt's declared categories (their descriptions and ranges),
        # as a model reads it: never from the category names alone
        want = intent(system, spec.labels)
        labels = want.aspects
        if self.drift and purpose == "generate" and rng.random() < DRIFT_OFF_SPEC:
            labels, want = miss(rng, labels, want)
        known = grounded_facts(rng, spec.document, self.drift and purpose == "generate") if spec.document else []
        lo, hi = want.response_words
        question = text.user_message(rng, labels, spec.topic, *want.input_words)
        if self.drift and purpose == "generate" and self.asked and rng.random() < DRIFT_NEAR_COPY:
            question = near_copy(rng, rng.choice(self.asked))
        elif self.drift and purpose == "generate" and shown and rng.random() < DRIFT_COPY_REFERENCE:
            question = near_copy(rng, rng.choice(shown))
        self.asked.append(question)
        if shape == "preference":
            chosen = text.assistant_message(rng, labels, spec.topic, lo, hi, known=known)
            rejected = text.assistant_message(rng, labels, spec.topic, lo, hi, undesirable=True)
            return {"id": spec.id, "prompt": question, "chosen": chosen, "rejected": rejected}
        if shape == "kto":
            bad = spec.labels.get("kto_label") == "undesirable"
            return {"id": spec.id, "prompt": question,
                    "completion": text.assistant_message(rng, labels, spec.topic, lo, hi, undesirable=bad,
                                                        known=[] if bad else known)}
        messages = [{"role": "user", "content": question},
                    {"role": "assistant", "content": text.assistant_message(rng, labels, spec.topic, lo, hi, known=known)}]
        for _ in range(rng.randint(*want.turns) - 1):   # the follow-up turns a multi-turn spec declares
            follow = text._fill(rng, rng.choice(text.FOLLOW_UPS), spec.topic)
            if labels.get("typos") == "typos":
                follow = text.add_typos(rng, follow)
            messages.append({"role": "user", "content": follow})
            messages.append({"role": "assistant", "content": text.assistant_message(rng, labels, spec.topic, lo, hi, known=known)})
        return {"id": spec.id, "messages": messages}


def assign_by_keywords(request: Request) -> str:
    from agent.sources import Passage, assign

    names = request.schema["properties"]["category"]["enum"]
    described = dict(re.findall(r"^- (\S+): (.*)$", request.user, re.M))
    passage = request.user.split("Passage:\n", 1)[-1]
    return assign([Passage("p", "", "", passage, "")], {n: described.get(n, "") for n in names})[0].category


def grounded_facts(rng: random.Random, document: str, drift: bool) -> list[str]:
    """Two facts from the passage, in a random order; with drift, sometimes one figure in them is invented."""
    found = text.facts(document)
    picked = rng.sample(found[:6], min(2, len(found[:6]))) if found else []
    if drift and picked and rng.random() < DRIFT_UNGROUNDED:
        i = next((k for k, f in enumerate(picked) if re.search(r"\d", f)), None)
        if i is not None:  # the first figure, changed: 2.49 -> 3.49, 80 -> 81
            picked[i] = re.sub(r"\d+", lambda m: str(int(m.group(0)) + 1), picked[i], count=1)
    return picked


def miss(rng: random.Random, labels: dict[str, str], want: Intent) -> tuple[dict[str, str], Intent]:
    """Drift: get one measured part of the spec wrong, the way real models do (mostly length)."""
    out, got = dict(labels), dataclasses.replace(want)
    roll = rng.random()
    if roll < 0.6:   # the reply's length lands in the next range over (a neighbour category's)
        lo, hi = want.response_words
        got.response_words = (hi + 1, hi + max(hi - lo, 50)) if hi <= 600 and (lo <= 60 or rng.random() < 0.5) else (max(1, lo // 3), lo - 1)
    elif roll < 0.75 and "code" in out:
        out["code"] = "conceptual" if out["code"] == "with_examples" else "with_examples"
    elif roll < 0.85:
        lo, hi = want.input_words
        got.input_words = (hi + 1, hi + max(hi - lo, 10)) if hi <= 200 and (lo <= 5 or rng.random() < 0.5) else (max(1, lo // 3), lo - 1)
    elif roll < 0.95 and out.get("typos") == "typos":
        out["typos"] = "clean"
    elif "format" in out:
        out["format"] = "plain" if out["format"] != "plain" else "list"
    return out, got


def near_copy(rng: random.Random, question: str) -> str:
    """One small edit: the kind of copy the auditor's SequenceMatcher > 0.85 rule exists to catch."""
    words = question.split()
    i = rng.randrange(len(words) + 1)
    return " ".join(words[:i] + [rng.choice(["really", "actually", "also", "now", "still"])] + words[i:])


def brainstorm(rng: random.Random, prompt: str) -> list[str]:
    found = re.search(r"List (\d+) distinct", prompt)
    count = int(found.group(1)) if found else 12
    seen: set[str] = set()
    while len(seen) < count:
        seen.add(f"{rng.choice(text.ADJECTIVES)} {rng.choice(text.NOUNS)} {rng.choice(['limits', 'setup', 'errors', 'costs', 'migration', 'monitoring'])}")
    return sorted(seen)
