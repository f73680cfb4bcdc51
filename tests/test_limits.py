"""The Limiter and call_with_retries: pacing measured at the loopback server, retries through stub providers."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.errors import ProviderError
from agent.limits import Limiter
from agent.providers.base import Completion, Provider, Request
from agent.providers.openai import OpenAIProvider
from agent.retries import Attempt, call_with_retries
from tests.fakeserver import fake_server_fixture  # noqa: F401 - registers `fake_server`

pytestmark = pytest.mark.timeout(30)

REQUEST = Request(system="Write test data.", user="One example.", schema={"type": "object"}, model="m",
                  timeout=2.0, max_tokens=2000)


class Scripted(Provider):
    """Raises the scripted errors in order, then returns `reply`."""

    name = "scripted"

    def __init__(self, errors: list[BaseException], reply: Completion | None = None) -> None:
        self.errors = list(errors)
        self.reply = reply or Completion(text="{}", data={}, output_tokens=10)
        self.calls = 0

    async def complete(self, request: Request) -> Completion:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.reply


class Stuck(Provider):
    name = "stuck"

    async def complete(self, request: Request) -> Completion:
        await asyncio.sleep(30)
        raise AssertionError("never reached: the attempt deadline cancels it")


async def warm(server) -> OpenAIProvider:
    """A provider whose SDK client has made one call (server.requests[0], not through any limiter).

    The client's one-off start-up cost would otherwise space the first requests out by itself.
    """
    provider = OpenAIProvider(model="m", api_key="k", base_url=server.openai_url)
    await provider.complete(REQUEST)
    return provider


async def run_calls(server, limiter: Limiter, *waves: int) -> list[Completion]:
    """Waves of concurrent calls, one wave after the other, on a warm provider."""
    provider = await warm(server)
    try:
        results: list[Completion] = []
        for n in waves:
            results += await asyncio.gather(*(call_with_retries(provider, REQUEST, limiter, initial_wait=0.01)
                                              for _ in range(n)))
        return results
    finally:
        await provider.aclose()


def worst_excess(times: list[float], rate: float) -> float:
    """Most requests between any two arrivals beyond what `rate` per second allows in that time."""
    times = sorted(times)
    return max(j - i + 1 - rate * (times[j] - times[i]) for i in range(len(times)) for j in range(i, len(times)))


# --- pacing, measured at the server ---------------------------------------------------------------------------
def test_concurrency_cap_is_never_exceeded(fake_server):
    server = fake_server(latency=0.05)
    limiter = Limiter(concurrency=3)
    results = asyncio.run(run_calls(server, limiter, 15))
    assert len(results) == 15 and len(server.requests) == 16
    assert server.max_in_flight == 3   # reached, never exceeded
    assert limiter.stats.peak_in_flight == 3


# A token bucket of one second allows `rate` at once plus `rate` per second; 2 requests of slack absorb the
# client's own scheduling jitter. Unpaced, 20 warm calls reach the server within ~0.1 s (excess ~19).
SLACK = 2


def test_requests_per_minute_limit_holds_at_the_server(fake_server):
    server = fake_server()
    limiter = Limiter(requests_per_minute=600)       # 10 per second
    asyncio.run(run_calls(server, limiter, 20))
    times = [r.time for r in server.requests[1:]]
    assert len(times) == 20
    assert worst_excess(times, 10) <= 10 + SLACK
    assert limiter.stats.waits > 0


def test_limits_learned_from_headers_pace_later_calls(fake_server):
    server = fake_server(rpm=600)   # over 60 s: this test never reaches it, only the headers tell
    limiter = Limiter()
    asyncio.run(run_calls(server, limiter, 1, 20))
    assert limiter.stats.limits["requests"] == 600
    times = [r.time for r in server.requests[2:]]
    assert len(times) == 20 and server.counts["429"] == 0
    assert worst_excess(times, 10) <= 10 + SLACK


def test_no_call_is_lost_to_a_storm_of_429s(fake_server):
    server = fake_server(rpm=1200, window_s=0.5)     # 10 per half second, 20 calls at once
    limiter = Limiter()
    results = asyncio.run(run_calls(server, limiter, 20))
    assert len(results) == 20 and server.counts["ok"] == 21
    assert server.counts["429"] > 0 and limiter.stats.rate_limited == server.counts["429"]


def test_penalise_holds_every_caller_until_retry_after(fake_server):
    server = fake_server()

    async def run():
        provider = await warm(server)
        limiter = Limiter()
        limiter.penalise(0.3)
        start = time.monotonic()
        await asyncio.gather(*(call_with_retries(provider, REQUEST, limiter) for _ in range(3)))
        await provider.aclose()
        return start

    start = asyncio.run(run())
    assert min(r.time for r in server.requests[1:]) - start >= 0.3


def test_429_pauses_other_callers_too(fake_server):
    server = fake_server(faults=[None, "429"], retry_after_s=0.4, latency=0.02)

    async def run():
        provider = await warm(server)
        limiter = Limiter()
        first = asyncio.create_task(call_with_retries(provider, REQUEST, limiter, initial_wait=0.01))
        while not limiter.stats.rate_limited:   # the first caller has had its 429
            await asyncio.sleep(0.005)
        await call_with_retries(provider, REQUEST, limiter)   # a new caller: must wait out retry-after too
        await first
        await provider.aclose()

    asyncio.run(run())
    rejected = server.requests[1]
    assert rejected.outcome == "429" and len(server.requests) == 4
    assert all(r.time - rejected.time >= 0.4 for r in server.requests[2:])


# --- the limiter's own arithmetic, through its public API ---------------------------------------------------------
def test_aimd_cuts_on_429_and_grows_back_slowly():
    async def run():
        limiter = Limiter(concurrency=10)
        async with limiter.slot() as first:   # one quick success: the latency sets a near-zero cool-down
            first.done(Completion(text="{}"))
        slots = [limiter.slot() for _ in range(10)]
        for slot in slots:
            await slot.__aenter__()
        slots[0].failed(ProviderError("slow down", retryable=True, kind="rate_limit", retry_after=0))
        cut = limiter.stats.concurrency
        for slot in slots:
            await slot.__aexit__(None, None, None)
        # keep the window full (a waiter queued) so growth is warranted; latency ~0 ends the cool-down at once
        grown = []
        for _ in range(3 * cut):
            async with limiter.slot() as s1:
                waiter = asyncio.create_task(_hold(limiter, limiter.stats.concurrency))  # one too many
                while limiter.stats.in_flight < limiter.stats.concurrency:
                    await asyncio.sleep(0)
                s1.done(Completion(text="{}"))
            await waiter
            grown.append(limiter.stats.concurrency)
        return cut, grown, limiter.stats.cuts

    cut, grown, cuts = asyncio.run(run())
    assert cut == 8 and cuts == 1
    assert grown[-1] > cut and grown[-1] <= 10          # recovered, never past the cap
    assert all(b - a <= 1 for a, b in zip([cut, *grown], grown, strict=False))   # one step at a time


async def _hold(limiter: Limiter, n: int) -> None:
    slots = [limiter.slot() for _ in range(n)]
    await asyncio.gather(*(s.__aenter__() for s in slots))
    for s in slots:
        await s.__aexit__(None, None, None)


@pytest.mark.parametrize(("used", "expect_waits"), [(1, False), (200, True)])
def test_output_token_estimates_are_reconciled_with_real_usage(used, expect_waits):
    # 60k output tokens/min = 1000/s, a bucket of 1000. The first call reserves max_tokens (200), later ones
    # the mean really used: 8 calls using 200 each must wait for the bucket, 8 using 1 never do.
    provider = Scripted([], Completion(text="{}", data={}, output_tokens=used))
    request = Request(system="s", user="u", schema={}, max_tokens=200)

    async def run():
        limiter = Limiter(output_tokens_per_minute=60_000)
        for _ in range(8):
            await call_with_retries(provider, request, limiter)
        return limiter.stats

    stats = asyncio.run(run())
    assert (stats.waits > 0) is expect_waits


def test_servers_remaining_count_overrides_our_bucket():
    async def run():
        limiter = Limiter(requests_per_minute=6000)    # 100/s: a bucket of 100, plenty for two calls
        async with limiter.slot() as slot:
            slot.done(Completion(text="{}", rate={"requests_limit": 6000, "requests_remaining": 0}))
        async with limiter.slot():
            pass
        return limiter.stats

    assert asyncio.run(run()).waits == 1


# --- call_with_retries -----------------------------------------------------------------------------------------------
def test_retries_until_success_and_reports_every_attempt():
    errors = [ProviderError("boom", retryable=True, kind="server"),
              ProviderError("slow", retryable=True, kind="rate_limit", retry_after=0.01)]
    provider = Scripted(errors)
    attempts: list[Attempt] = []
    completion = asyncio.run(call_with_retries(provider, REQUEST, Limiter(), attempts.append, initial_wait=0.01))
    assert completion is provider.reply and provider.calls == 3
    assert [(a.status, a.kind, a.number) for a in attempts] == [("error", "server", 1), ("error", "rate_limit", 2),
                                                               ("ok", None, 3)]
    assert attempts[1].retry_after == 0.01


def test_non_retryable_error_is_raised_at_once():
    provider = Scripted([ProviderError("bad schema", retryable=False, kind="bad_request")])
    with pytest.raises(ProviderError, match="bad schema"):
        asyncio.run(call_with_retries(provider, REQUEST, Limiter(), initial_wait=0.01))
    assert provider.calls == 1


def test_the_last_error_is_raised_when_attempts_run_out():
    errors = [ProviderError(f"down {i}", retryable=True, kind="server") for i in range(3)]
    provider = Scripted(errors)
    attempts: list[Attempt] = []
    with pytest.raises(ProviderError, match="down 2"):
        asyncio.run(call_with_retries(provider, REQUEST, Limiter(), attempts.append, max_attempts=3,
                                      initial_wait=0.01))
    assert provider.calls == 3 and [a.kind for a in attempts] == ["server"] * 3


def test_a_hung_call_becomes_a_retryable_timeout():
    attempts: list[Attempt] = []
    request = Request(system="", user="u", schema={}, timeout=0.05)
    with pytest.raises(ProviderError) as caught:
        asyncio.run(call_with_retries(Stuck(), request, Limiter(), attempts.append, max_attempts=2,
                                      initial_wait=0.01))
    assert caught.value.kind == "timeout" and caught.value.retryable
    assert [a.kind for a in attempts] == ["timeout", "timeout"]


def test_unexpected_errors_are_recorded_and_surface():
    provider = Scripted([KeyError("bug")])
    attempts: list[Attempt] = []
    with pytest.raises(KeyError):
        asyncio.run(call_with_retries(provider, REQUEST, Limiter(), attempts.append))
    assert provider.calls == 1 and attempts[0].kind == "unexpected"


def test_the_request_is_not_changed():
    before = repr(REQUEST)
    asyncio.run(call_with_retries(Scripted([ProviderError("x", retryable=True, kind="server")]), REQUEST,
                                  Limiter(), initial_wait=0.01))
    assert repr(REQUEST) == before


def test_concurrency_is_the_stats_figure_as_the_window_moves():
    limiter = Limiter()
    seen = []
    for limit in (32, 7, 1, 1024):
        limiter._window.resize(limit)
        assert limiter.concurrency == limiter.stats.concurrency == limit
        seen.append(limiter.concurrency)
    assert Limiter(concurrency=5).concurrency == 5 and seen == [32, 7, 1, 1024]


async def _old_call_with_retries(provider, request, limiter, on_attempt=None, max_attempts=8, max_wait=60.0,
                                 initial_wait=0.5, max_seconds=None):
    """call_with_retries before its first attempt ran ahead of tenacity: every attempt inside tenacity's loop."""
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

    from agent.retries import _attempt, _Backoff, _Clock, _retryable, estimate_input

    est_input = estimate_input(request)
    est_output = limiter.expected_output(request.max_tokens)
    clock = _Clock(max_seconds)

    def out_of_time(state) -> bool:
        return clock.remaining() - (state.upcoming_sleep or 0.0) < 1.0

    max_tries = stop_after_attempt(max_attempts)
    retrying = AsyncRetrying(stop=lambda state: max_tries(state) or out_of_time(state),
                             wait=_Backoff(initial_wait, max_wait), retry=retry_if_exception(_retryable), reraise=True)
    number = 0
    async for attempt in retrying:
        with attempt:
            number += 1
            return await _attempt(provider, request, limiter, est_input, est_output, clock, number, on_attempt)
    raise AssertionError("unreachable")


def test_first_attempt_ahead_of_tenacity_retries_as_before(monkeypatch):
    """Scripted fault sequences through the old and the new call_with_retries: the same attempts (kind, message,
    number), the same waits asked for (jitter seeded alike), the same calls and the same result or error."""
    import random

    sleeps: list[float] = []

    async def no_sleep(seconds, result=None):
        sleeps.append(seconds)
        return result

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    outcomes = [lambda i: ProviderError(f"server {i}", retryable=True, kind="server"),
                lambda i: ProviderError(f"reset {i}", retryable=True, kind="connection"),
                lambda i: ProviderError(f"bad {i}", retryable=False, kind="bad_request"),
                lambda i: KeyError(f"bug {i}"),
                None]   # success
    rng = random.Random(4)

    def run(fn, picks, kwargs, seed):
        sleeps.clear()
        random.seed(seed)
        script = [p(i) if p else None for i, p in enumerate(picks)]   # new exception objects for each run
        provider = Scripted(script[:script.index(None)] if None in script else script)
        attempts: list[Attempt] = []
        try:
            result: object = asyncio.run(fn(provider, REQUEST, Limiter(), attempts.append, **kwargs))
        except (ProviderError, KeyError) as e:
            result = (type(e).__name__, str(e), getattr(e, "kind", None))
        return (result if isinstance(result, tuple) else ("ok", result is provider.reply), provider.calls,
                [(a.status, a.kind, a.message, a.number, a.retry_after) for a in attempts], list(sleeps))

    kinds = set()
    for case in range(400):
        picks = [rng.choice(outcomes) for _ in range(rng.randint(1, 10))]
        kwargs = {"max_attempts": rng.choice([1, 2, 3, 8]), "max_seconds": rng.choice([None, None, 2.0, 40.0]),
                  "initial_wait": rng.choice([0.01, 0.5])}
        old = run(_old_call_with_retries, picks, kwargs, case)
        assert run(call_with_retries, picks, kwargs, case) == old, (picks, kwargs)
        kinds.add((old[0][0], old[1] > 1, bool(old[3])))
    # successes, errors raised at once and after retries, with and without waits, all met
    assert {("ok", True, True), ("ok", False, False), ("ProviderError", True, True), ("ProviderError", False, False),
            ("KeyError", False, False), ("KeyError", True, True)} <= kinds
