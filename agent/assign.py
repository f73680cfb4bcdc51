"""`assign_passages: llm`: one LLM call per passage files it under a domain category, cached in the ledger.

Keywords (agent/sources.py) file most passages right and cost nothing; a passage whose words fit several
categories, or none, is filed better by a model. A passage keeps the category stored in the ledger while its
text (hash) and the plan's domain categories are unchanged, so a resume calls only for new or changed
passages. A failed call leaves that passage's keyword category and says so in run.log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

from agent.errors import ProviderError
from agent.ledger import CallRow, Ledger
from agent.limits import Limiter
from agent.plan import Plan
from agent.prompts import render
from agent.providers.base import Provider, Request
from agent.reply import extract_json
from agent.retries import call_with_retries
from agent.sources import Passage, domain_categories
from agent.tokens import PriceTable

log = logging.getLogger(__name__)


def assign_request(plan: Plan, categories: dict[str, str], passage: Passage) -> Request:
    schema = {"type": "object", "additionalProperties": False, "required": ["category"],
              "properties": {"category": {"type": "string", "enum": list(categories)}}}
    g = plan.generation
    return Request(system="You file documentation passages under subject areas. Reply with JSON only.",
                   user=render("assign.j2", plan=plan, categories=categories, passage=passage.document()[:6000]),
                   schema=schema, schema_name="category", model=g.model, temperature=0.0, max_tokens=200,
                   timeout=g.timeout_seconds, seed=g.seed, purpose="assign")


def categories_key(categories: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(categories, sort_keys=True).encode()).hexdigest()[:16]


async def assign_with_llm(plan: Plan, passages: list[Passage], provider: Provider, limiter: Limiter,
                          ledger: Ledger, prices: PriceTable) -> list[Passage]:
    categories = domain_categories(plan)
    key = categories_key(categories)
    cached = {}
    if ledger.meta("assign_categories") == key:
        cached = {(r[0], r[1]): r[2] for r in ledger.db.execute("SELECT id, hash, category FROM passages")}
    out: list[Passage] = []
    todo = [p for p in passages if cached.get((p.id, p.hash)) not in categories]
    chosen: dict[str, str] = {}

    async def one(p: Passage) -> None:
        try:
            completion = await call_with_retries(provider, assign_request(plan, categories, p), limiter)
        except ProviderError as e:
            log.warning("passage %s: the assignment call failed (%s); its keyword category %s stays", p.id, e.kind, p.category)
            return
        cost = prices.cost(completion.model or plan.generation.model, completion.input_tokens,
                           completion.output_tokens, completion.cached_tokens)
        ledger.record_call([CallRow(batch=0, purpose="assign", provider=provider.name,
                                    model=completion.model or plan.generation.model, status="ok",
                                    input_tokens=completion.input_tokens, output_tokens=completion.output_tokens,
                                    cached_tokens=completion.cached_tokens, cost=cost, mode=completion.mode)], [],
                           simulated=provider.simulated)
        try:
            data = completion.data if completion.data is not None else extract_json(completion.text)
        except ValueError:
            data = None
        name = data.get("category") if isinstance(data, dict) else None
        if name in categories:
            chosen[p.id] = name
        else:
            log.warning("passage %s: the model named no known category (%r); its keyword category %s stays",
                        p.id, name, p.category)

    if todo:
        await asyncio.gather(*(one(p) for p in todo))
    for p in passages:
        category = chosen.get(p.id) or (cached.get((p.id, p.hash)) if p not in todo else None) or p.category
        out.append(Passage(p.id, p.source, p.heading, p.text, p.hash, category))
    ledger.set_meta("assign_categories", key)
    log.info("passages filed by the model: %d called, %d cached", len(todo), len(passages) - len(todo))
    return out
