"""One logical provider call: transient faults retried (tenacity), every attempt paced by the Limiter and
bounded in time, and the whole call bounded in time across its retries.

Invalid content (a reply that fails our schema) is not a transport fault and is not retried here: the engine
re-asks quoting the validation errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from agent import tokens
from agent.errors import ProviderError
from agent.providers.base import Completion, Provider, Request

if TYPE_CHECKING:
    from agent.limits import Limiter

@dataclass
class Attempt:
    status: str                  # "ok" | "error"
    kind: str | None             # None, or the ProviderError kind (rate_limit, server, timeout, ...)
    message: str
    latency_s: float
    retry_after: float | None = None
    number: int = 1              # 1 for the first try


@functools.lru_cache(maxsize=16)
def _count_cached(text: str) -> int:
    return tokens.count(text)   # the long shared system prompt is the same object call after call


def estimate_input(request: Request) -> int:
    """The request's input tokens, for the budget's worst case and the limiter's token buckets."""
    return _estimate(request.system, request.user)


# Each request is estimated twice, at dispatch (Engine.worst_cost) and when its call starts (call_with_retries),
# with every call of a dispatch burst (up to the limiter's ceiling of 1,024 in flight) in between: remembering
# the last 2,048 prompts makes the second estimate a lookup. A function of the two texts, so the figure is the same.
@functools.lru_cache(maxsize=2048)
def _estimate(system: str, user: str) -> int:
    return _count_cached(system) + tokens.count_lines(user) + 8


def _retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.retryable


class _Backoff:
    """tenacity wait: retry-after (plus a little jitter) when the server gave one, else jittered exponential."""

    def __init__(self, initial: float, max_wait: float) -> None:
        self.exponential = wait_exponential_jitter(multiplier=initial, max=max_wait, jitter=initial)

    def __call__(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return retry_after + random.uniform(0, min(1.0, 0.1 * retry_after + 0.01))
        return self.exponential(state)


class _Clock:
    """A call's total time bound, counted from its first send (time queued behind other calls is not its own)."""

    def __init__(self, total: float | None) -> None:
        self.total = total
        self.started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def remaining(self) -> float:
        if self.total is None:
            return math.inf
        if self.started is None:
            return self.total
        return self.total - (time.monotonic() - self.started)


async def call_with_retries(provider: Provider, request: Request, limiter: Limiter,
                            on_attempt: Callable[[Attempt], None] | None = None, max_attempts: int = 8,
                            max_wait: float = 60.0, initial_wait: float = 0.5,
                            max_seconds: float | None = None) -> Completion:
    """One logical call: paced by `limiter`, retried while the error is retryable; raises the last error.

    Each attempt is bounded by its timeout plus a small margin (asyncio.timeout) even if the SDK's own timeout
    fails to fire, and reported to `on_attempt` (success or failure). The timeout is request.timeout, raised
    for a server measured to write slowly (Limiter.attempt_timeout). `max_seconds` bounds the whole call,
    retries and their waits included, from its first send: no retry starts that could not finish within it,
    so a hanging server cannot hold a call for 8 x the timeout. retry-after is honoured even above max_wait:
    asking earlier only earns another 429.
    """
    est_input = estimate_input(request)
    est_output = limiter.expected_output(request.max_tokens)
    clock = _Clock(max_seconds)
    # The first attempt runs before tenacity is set up: nearly every call ends in it, and tenacity's loop cost
    # ~0.1 ms a call. Tenacity then starts from the outcome of that attempt, as its own first attempt (the
    # same attempt numbers, waits and stops; tests/test_limits.py runs both ways on scripted faults).
    try:
        return await _attempt(provider, request, limiter, est_input, est_output, clock, 1, on_attempt)
    except ProviderError as error:
        if not _retryable(error):
            raise   # what tenacity does with an error it does not retry (and with any other exception)
        first = error

    def out_of_time(state: RetryCallState) -> bool:
        return clock.remaining() - (state.upcoming_sleep or 0.0) < 1.0

    # one stop callable: tenacity types `stop_base | x` for stop_base objects only, not a plain function
    max_tries = stop_after_attempt(max_attempts)
    retrying = AsyncRetrying(stop=lambda state: max_tries(state) or out_of_time(state), wait=_Backoff(initial_wait, max_wait),
                             retry=retry_if_exception(_retryable), reraise=True)
    number = 0
    async for attempt in retrying:
        with attempt:
            number += 1
            if number == 1:
                raise first
            return await _attempt(provider, request, limiter, est_input, est_output, clock, number, on_attempt)
    raise AssertionError("unreachable: tenacity either returns or re-raises")


async def _attempt(provider: Provider, request: Request, limiter: Limiter, est_input: int, est_output: int,
                   clock: _Clock, number: int, on_attempt: Callable[[Attempt], None] | None) -> Completion:
    async with limiter.slot(est_input, est_output) as slot:
        clock.start()
        start = time.monotonic()
        timeout = min(limiter.attempt_timeout(request.timeout, request.max_tokens), max(1.0, clock.remaining()))
        if timeout != request.timeout:
            request = dataclasses.replace(request, timeout=timeout)   # the SDK's own timeout follows
        deadline = timeout + min(1.0, 0.25 * timeout)
        try:
            try:
                async with asyncio.timeout(deadline):   # cheaper than wait_for: no extra task per call
                    completion = await provider.complete(request)
            except TimeoutError:
                raise ProviderError(f"no reply within {deadline:.1f} s", retryable=True, kind="timeout") from None
        except ProviderError as error:
            slot.failed(error)
            if on_attempt:
                on_attempt(Attempt("error", error.kind, str(error), time.monotonic() - start, error.retry_after,
                                   number))
            raise
        except Exception as error:  # a bug, not a fault: record it, then let it surface
            if on_attempt:
                on_attempt(Attempt("error", "unexpected", f"{type(error).__name__}: {error}",
                                   time.monotonic() - start, None, number))
            raise
        slot.done(completion)
        if on_attempt:
            on_attempt(Attempt("ok", None, "", time.monotonic() - start, None, number))
        return completion
