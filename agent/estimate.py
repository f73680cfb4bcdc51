"""Tokens, money and time before anything is spent: computed from the plan's real rendered prompts."""

from __future__ import annotations

from dataclasses import dataclass

from agent.plan import Plan


@dataclass
class Estimate:
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None      # None when the model has no price
    minutes: float


def _mean_words(plan: Plan, dim_name: str, fallback: float) -> float:
    dim = plan.dimensions.get(dim_name)
    if dim is None:
        return fallback
    total = 0.0
    for c in dim.categories:
        lo = c.min_words or 0
        hi = c.max_words or lo
        total += c.share * (lo + hi) / 2
    return total or fallback


def estimate(plan: Plan, prices=None, *, retry_overhead: float = 1.25, tokens_per_second: float = 60.0,
             concurrency: int | None = None) -> Estimate:
    """Expected usage for the whole plan. retry_overhead covers re-asks and rejected examples (measured ~1.2x)."""
    from agent import tokens
    from agent.prompts import sample_request

    per_call = plan.generation.examples_per_call
    calls = -(-plan.total // per_call)
    request = sample_request(plan)
    input_per_call = tokens.count(request.system) + tokens.count(request.user)
    turns = 1 + (plan.dimensions["turns"].categories[-1].share if "turns" in plan.dimensions else 0.0)
    words = (_mean_words(plan, "response_length", 250) + _mean_words(plan, "input_length", 40)) * turns
    output_per_example = int(words * 1.35) + 30  # ~1.35 tokens per English word, plus JSON framing
    calls = int(calls * retry_overhead)
    input_tokens = calls * input_per_call
    output_tokens = int(plan.total * retry_overhead) * output_per_example
    from agent import providers

    table = prices
    if table is None:
        table = tokens.load_prices()
    cost = None
    price = providers.get(plan.generation.provider).price(plan.generation.model, table)
    if price is not None:
        cost = (input_tokens * price.input + output_tokens * price.output) / 1e6
    # a typical hosted model writes ~60 tokens/s per call; calls overlap up to the concurrency cap
    seconds_per_call = 2 + output_per_example * per_call / tokens_per_second
    minutes = calls * seconds_per_call / max(1, concurrency or plan.generation.concurrency or 32) / 60
    return Estimate(calls, input_tokens, output_tokens, cost, minutes)


LOCAL_TOKENS_PER_SECOND = 8.0   # a small model on a few CPU cores, one reply at a time (llama.cpp, measured ~5-15)


def estimate_lines(plan: Plan, local: bool = False) -> list[str]:
    """local: the server is on this machine or a private address (one call at a time, CPU speed)."""
    e = estimate(plan, **({"tokens_per_second": LOCAL_TOKENS_PER_SECOND, "concurrency": 1} if local else {}))
    money = f"${e.cost_usd:,.2f}" if e.cost_usd is not None else "unknown (model not in the price table)"
    from agent import providers

    if providers.get(plan.generation.provider).simulated:
        money = "$0 (simulated provider: offline, not training data)"
    when = (f"~{e.minutes:.1f} min at concurrency {plan.generation.concurrency or '32 (adaptive)'}." if not local else
            f"~{e.minutes:.0f} min on a local server at ~{LOCAL_TOKENS_PER_SECOND:g} tokens/s, one call at a time "
            f"(includes ~25% re-asks and rejections; a run's measured speed may differ).")
    return [
        f"Estimate for {plan.generation.provider}/{plan.generation.model}: ~{e.calls:,} calls, "
        f"~{e.input_tokens:,} input + ~{e.output_tokens:,} output tokens, cost {money}, {when}",
    ]
