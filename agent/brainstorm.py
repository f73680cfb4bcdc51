"""`datagen plan --brainstorm`: concrete topics per domain category, stored in the plan.

The seed wants 100+ distinct subjects; the generator then rotates through the least-used topics.
"""

from __future__ import annotations

import asyncio
import json
import math

from agent.audit.dedup import NearDupIndex
from agent.errors import ProviderError
from agent.limits import Limiter
from agent.plan import Plan
from agent.prompts import brainstorm_request
from agent.providers.base import Provider
from agent.reply import extract_json
from agent.retries import call_with_retries

SUBJECTS_WANTED = 120  # a little over the seed's "100+ different subjects"


def per_category_default(plan: Plan) -> int:
    cats = [c for c in plan.dimensions["domain"].categories if c.share > 0] if "domain" in plan.dimensions else []
    return max(10, math.ceil(SUBJECTS_WANTED / max(1, len(cats))))


def merge_topics(existing: list[str], new: list[str], threshold: float) -> list[str]:
    """Keep existing topics; add new ones that are neither case-insensitive repeats nor near-duplicates."""
    index = NearDupIndex(threshold)
    index.extend((i, t.lower()) for i, t in enumerate(existing))
    out = list(existing)
    for topic in (t.strip() for t in new if isinstance(t, str)):
        if topic and index.find(topic.lower()) is None:
            index.add(len(out), topic.lower())
            out.append(topic)
    return out


async def brainstorm(plan: Plan, provider: Provider, per_category: int) -> dict[str, list[str]]:
    if "domain" not in plan.dimensions:
        raise ProviderError("the plan has no 'domain' dimension to brainstorm topics for", retryable=False, kind="plan")
    limiter = Limiter(concurrency=plan.generation.concurrency)  # None: adaptive
    cats = [c for c in plan.dimensions["domain"].categories if c.share > 0]

    async def one(category) -> tuple[str, list[str]]:
        completion = await call_with_retries(provider, brainstorm_request(plan, category, per_category), limiter)
        try:
            data = completion.data if completion.data is not None else extract_json(completion.text)
            topics = data.get("topics", []) if isinstance(data, dict) else []
        except (json.JSONDecodeError, ValueError):
            topics = []
        return category.name, topics

    try:
        found = await asyncio.gather(*(one(c) for c in cats))
    finally:
        await provider.aclose()
    topics = dict(plan.topics)
    for name, new in found:
        topics[name] = merge_topics(topics.get(name, []), new, plan.quality.dedup_threshold)
    return topics
