"""Tokens, money and time before anything is spent: computed from the plan's real rendered prompts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.ledger import SURPLUS
from agent.plan import Plan

MAX_TAIL_COPIES = 4      # the most copies of one spec the engine draws at once in the tail (generate.py)


# Share of requested examples that end up accepted, for a run with nothing measured yet. Measured on the
# drifting simulated provider (~0.8-0.9 with the example plan) and on hosted models (~0.8, issue 9); a run's
# own measured rate replaces it as soon as the run has made a few calls.
PRIOR_ACCEPTANCE = 0.8
MIN_MEASURED_CALLS = 5


@dataclass
class Estimate:
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None      # None when the model has no price
    minutes: float
    rejections: int = 0         # examples expected to be rejected (or lost) on the way
    surplus: int = 0            # tail copies expected to come too late
    measured: Measured | None = None


@dataclass
class Measured:
    """What this plan's run has shown so far (the ledger): the estimate for what remains uses it."""
    calls: int                  # completed generate calls
    accepted: int
    tried: int                  # specs sent whose outcome was accepted, rejected or lost (surplus left out)
    output_per_call: float
    latency_s: float            # mean seconds per call
    parallel: float             # calls in flight on average (total call time / wall time)

    @property
    def acceptance(self) -> float:
        return self.accepted / self.tried if self.tried and self.accepted else PRIOR_ACCEPTANCE

    @property
    def tokens_per_second(self) -> float:
        return self.output_per_call / self.latency_s if self.latency_s > 0 else 0.0


def measure_run(ledger) -> Measured | None:
    """The run's rates from its ledger, or None before MIN_MEASURED_CALLS completed calls."""
    db = ledger.db
    n, out, lat, first, last = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(latency), 0), MIN(created_at),"
        " MAX(created_at) FROM calls WHERE purpose = 'generate' AND status IN ('ok', 'invalid')").fetchone()
    if n < MIN_MEASURED_CALLS:
        return None
    accepted, tried = db.execute(
        "SELECT COALESCE(SUM(status = 'accepted'), 0), COALESCE(SUM(reason IS NULL OR reason NOT LIKE ?), 0)"
        " FROM examples", (SURPLUS + "%",)).fetchone()
    mean = lat / n
    # wall time the calls covered (resumes' idle gaps included, so parallelism errs low and time high)
    wall = max(mean, (last - first) + mean)
    return Measured(calls=n, accepted=accepted, tried=tried, output_per_call=out / n, latency_s=mean,
                    parallel=max(1.0, lat / wall))


def tail_copies(acceptance: float, left: int = 1, slots: int = 10**6) -> int:
    """How many times over the engine draws each of the last `left` specs: ~1/acceptance (2 to
    MAX_TAIL_COPIES), as far as `slots` (specs that can be in flight at once) allow; 1 where the copies would
    only queue (a server taking one call at a time gains nothing from them)."""
    copies = max(2, min(MAX_TAIL_COPIES, math.ceil(1 / max(0.01, acceptance))))
    copies = min(copies, slots // max(1, left))
    return copies if copies >= 2 else 1


def calls_needed(left: int, acceptance: float, per_call: int, batch_size: int,
                 parallel: float = 32) -> tuple[int, int, int]:
    """(calls, rejections, surplus) to fill `left` examples at this acceptance rate, tail copies included.

    Every example needs 1/acceptance tries; the last batch is drawn `copies` times over (generate.py), and
    each slot takes one accepted copy: the other accepted copies are surplus."""
    if left <= 0:
        return 0, 0, 0
    acceptance = min(1.0, max(0.01, acceptance))
    tries = left / acceptance
    tail = min(left, batch_size)
    copies = tail_copies(acceptance, tail, int(parallel) * per_call)
    surplus = tail * max(0.0, copies * acceptance - 1) if copies > 1 else 0.0
    calls = math.ceil((tries + surplus) / per_call)
    return calls, round(tries - left), round(surplus)


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


def estimate(plan: Plan, prices=None, *, tokens_per_second: float = 60.0, concurrency: int | None = None,
             measured: Measured | None = None, accepted: int = 0) -> Estimate:
    """Expected usage for the `plan.total - accepted` examples left, rejections and tail surplus included.

    With `measured` (this plan's run so far) its acceptance rate, output tokens per call, latency and
    parallelism replace the priors (PRIOR_ACCEPTANCE, words x 1.35 tokens, tokens_per_second, concurrency)."""
    from agent import tokens
    from agent.prompts import sample_request

    per_call = plan.generation.examples_per_call
    left = max(0, plan.total - accepted)
    acceptance = measured.acceptance if measured else PRIOR_ACCEPTANCE
    parallel = measured.parallel if measured else max(1, concurrency or plan.generation.concurrency or 32)
    calls, rejections, surplus = calls_needed(left, acceptance, per_call, plan.generation.batch_size, parallel)
    request = sample_request(plan)
    input_per_call = tokens.count(request.system) + tokens.count(request.user)
    turns = 1 + (plan.dimensions["turns"].categories[-1].share if "turns" in plan.dimensions else 0.0)
    words = (_mean_words(plan, "response_length", 250) + _mean_words(plan, "input_length", 40)) * turns
    output_per_example = int(words * 1.35) + 30  # ~1.35 tokens per English word, plus JSON framing
    output_per_call = measured.output_per_call if measured else output_per_example * per_call
    input_tokens = calls * input_per_call
    output_tokens = int(calls * output_per_call)
    from agent import providers

    table = prices
    if table is None:
        table = tokens.load_prices()
    cost = None
    price = providers.get(plan.generation.provider).price(plan.generation.model, table)
    if price is not None:
        cost = (input_tokens * price.input + output_tokens * price.output) / 1e6
    # a typical hosted model writes ~60 tokens/s per call; calls overlap up to the concurrency cap
    seconds_per_call = measured.latency_s if measured else 2 + output_per_call / tokens_per_second
    minutes = calls * seconds_per_call / parallel / 60
    return Estimate(calls, input_tokens, output_tokens, cost, minutes, rejections, surplus, measured)


def eta_seconds(left: int, acceptance: float, per_call: int, batch_size: int, seconds_per_call: float,
                parallel: float = 32) -> float:
    """Seconds to fill `left` examples at the wall time per completed call measured so far."""
    return calls_needed(left, acceptance, per_call, batch_size, parallel)[0] * seconds_per_call


LOCAL_TOKENS_PER_SECOND = 8.0   # a small model on a few CPU cores, one reply at a time (llama.cpp, measured ~5-15)


def estimate_lines(plan: Plan, local: bool = False, ledger=None, prices=None) -> list[str]:
    """local: the server is on this machine or a private address (one call at a time, CPU speed).
    ledger: this plan's run so far, if any: the estimate is then for what remains, at the measured rates.
    prices: the price table (built-in one merged with the user's --prices); None = the built-in one."""
    measured = measure_run(ledger) if ledger is not None else None
    accepted = ledger.accepted_count() if ledger is not None else 0
    e = estimate(plan, prices, measured=measured, accepted=accepted, concurrency=1 if local else None,
                 **({"tokens_per_second": LOCAL_TOKENS_PER_SECOND} if local else {}))
    money = f"${e.cost_usd:,.2f}" if e.cost_usd is not None else "unknown (model not in the price table)"
    from agent import providers

    if providers.get(plan.generation.provider).simulated:
        money = "$0 (simulated provider: offline, not training data)"
    if measured:
        when = (f"~{e.minutes:.1f} min at this run's measured {measured.latency_s:.1f} s per call, "
                f"{measured.tokens_per_second:.0f} tokens/s, {measured.parallel:.1f} calls in flight.")
        basis = (f"measured over {measured.calls:,} calls: {measured.acceptance:.0%} of examples accepted, "
                 f"{measured.accepted / measured.calls:.1f} accepted per call")
    else:
        when = (f"~{e.minutes:.1f} min at concurrency {plan.generation.concurrency or '32 (adaptive)'}." if not local else
                f"~{e.minutes:.0f} min on a local server at ~{LOCAL_TOKENS_PER_SECOND:g} tokens/s, one call at a time.")
        basis = f"no run yet: assumes {PRIOR_ACCEPTANCE:.0%} of examples accepted (a run's measured rate may differ)"
    left = plan.total - accepted
    what = f"the {left:,} examples left" if accepted else f"{plan.total:,} examples"
    return [
        f"Estimate for {plan.generation.provider}/{plan.generation.model}, {what}: ~{e.calls:,} calls, "
        f"~{e.input_tokens:,} input + ~{e.output_tokens:,} output tokens, cost {money}, {when}",
        f"  includes ~{e.rejections:,} rejected examples and ~{e.surplus:,} surplus tail copies; {basis}",
    ]
