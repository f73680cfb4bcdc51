"""Pacing for provider calls, the same for every provider (retries: agent/retries.py; faults: agent/faults.py).

Limiter            keeps calls inside the provider's limits with no tuning: a concurrency window (AIMD: cut on
                   429/529, grow slowly while it is the bottleneck; for a local server, start at one and grow
                   only while the time per token stays flat), token buckets for requests, input tokens,
                   output tokens and combined tokens, a pause shared by every caller after a 429 with
                   retry-after, and limits learned from the rate-limit headers (Completion.rate) when the user
                   gave none.

Completion.rate keys, as the providers normalise them:
requests_limit, requests_remaining, requests_reset_s, and the same for tokens_, input_tokens_, output_tokens_.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from dataclasses import dataclass

from agent.errors import ProviderError
from agent.providers.base import Completion

log = logging.getLogger(__name__)

START_CONCURRENCY = 32      # calls in flight before anything is learned
LOCAL_CEILING = 16          # a server on this machine or a private address: one model, a few slots at most
LOCAL_FLOOR_TPS = 8.0       # tokens/s assumed of a local server before one reply is measured (small CPU models)
FLAT = 1.25                 # seconds per output token within 25% of the best seen: more calls are not queueing
QUEUEING = 1.6              # 60% slower per token than the best: the server queues, so one call fewer
AUTO_CEILING = 1024         # most calls in flight when the user set no cap (20 s replies at high RPM need hundreds)
BURST_S = 1.0               # a bucket holds one second of its rate: smooth pacing, no minute-sized bursts
CUT = 0.8                   # AIMD multiplicative decrease on 429/529
BUCKETS = ("requests", "input_tokens", "output_tokens", "tokens")   # also the Completion.rate key prefixes


# --- the limiter --------------------------------------------------------------------------------------------
class _Bucket:
    """Token bucket refilled continuously at `per_minute / 60` per second.

    Hand-rolled: the rate changes at run time (learned from headers), charges are reconciled with the real
    usage after each reply, and the balance may go into debt; aiolimiter supports none of these.
    """

    __slots__ = ("per_minute", "rate", "capacity", "tokens", "stamp", "taken")

    def __init__(self, per_minute: float, now: float) -> None:
        self.stamp = now
        self.taken = 0.0     # all charges ever made; slots remember it to discount later charges
        self.capacity = self.tokens = math.inf
        self.rate = 0.0
        self.set(per_minute, now)

    def set(self, per_minute: float, now: float) -> None:
        self.refill(now)
        self.per_minute = per_minute
        self.rate = per_minute / 60
        self.capacity = max(1.0, self.rate * BURST_S)
        self.tokens = min(self.tokens, self.capacity)

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def delay(self, amount: float, now: float) -> float:
        self.refill(now)
        need = min(amount, self.capacity)  # a charge larger than the bucket waits for a full bucket
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def take(self, amount: float) -> None:
        self.tokens -= amount
        self.taken += amount


class _Window:
    """Calls in flight, with a limit that can shrink while permits are out.

    Hand-rolled: asyncio.Semaphore cannot be resized, and AIMD needs exactly that.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self.in_flight < self.limit and not self.waiters:
            self._grant()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted, then cancelled: hand the permit on
                self.release()
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self.wake()

    def resize(self, limit: int) -> None:
        self.limit = limit
        self.wake()

    def wake(self) -> None:
        while self.waiters and self.in_flight < self.limit:
            fut = self.waiters.popleft()
            if not fut.done():
                self._grant()
                fut.set_result(None)

    def _grant(self) -> None:
        self.in_flight += 1


@dataclass(frozen=True)
class LimiterStats:
    concurrency: int            # the current in-flight limit (AIMD)
    in_flight: int              # calls sent and not yet answered
    peak_in_flight: int
    waits: int                  # acquisitions that had to wait for a bucket or a pause
    waited_s: float             # total time callers spent waiting for them
    rate_limited: int           # 429/529 replies seen
    cuts: int                   # concurrency decreases
    limits: dict[str, float]    # per-minute limits in force: requests, input_tokens, output_tokens, tokens


class Limiter:
    """Paces provider calls so a run gets the provider's full throughput without being told its limits.

    concurrency: a hard cap on calls in flight; None (the default) starts at 32 and adapts up to 1024.
    *_per_minute: limits the user knows; any left None are learned from the replies' rate-limit headers.
    """

    def __init__(self, concurrency: int | None = None, requests_per_minute: int | None = None,
                 input_tokens_per_minute: int | None = None, output_tokens_per_minute: int | None = None,
                 tokens_per_minute: int | None = None, local: bool = False) -> None:
        now = time.monotonic()
        given = (requests_per_minute, input_tokens_per_minute, output_tokens_per_minute, tokens_per_minute)
        self._fixed = {name: value for name, value in zip(BUCKETS, given, strict=True) if value}
        self._buckets = {name: _Bucket(value, now) for name, value in self._fixed.items()}
        self.local = local
        self._ceiling = concurrency or (LOCAL_CEILING if local else AUTO_CEILING)
        self._adaptive = concurrency is None
        # a local server starts at one call in flight and grows only while the time per token stays flat
        self._window = _Window(concurrency or (1 if local else START_CONCURRENCY))
        self._per_token_best: float | None = None     # seconds per output token, fastest seen (local servers)
        self._level_samples: list[float] = []         # seconds per output token at the current window size
        self._local_max = self._ceiling
        self._gate = asyncio.Lock()       # one caller at a time takes tokens: FIFO order, no thundering herd
        self._pause_until = 0.0
        self._cut_until = 0.0
        self._successes = 0
        self._latency: float | None = None      # moving averages of successful calls
        self._output: float | None = None
        self._tps: float | None = None          # output tokens per second of one call, moving average
        self._sent = 0           # calls past the gate, at the provider (the window also holds callers at the gate)
        self._peak = 0
        self._waits = 0
        self._waited = 0.0
        self._rate_limited = 0
        self._cuts = 0

    def slot(self, est_input_tokens: int = 0, est_output_tokens: int = 0) -> Slot:
        """`async with limiter.slot(i, o) as s: c = await ...; s.done(c)` (or s.failed(error))."""
        return Slot(self, est_input_tokens, est_output_tokens)

    @property
    def stats(self) -> LimiterStats:
        return LimiterStats(self._window.limit, self._sent, self._peak, self._waits,
                            self._waited, self._rate_limited, self._cuts,
                            {name: b.per_minute for name, b in self._buckets.items()})

    @property
    def concurrency(self) -> int:
        """The current in-flight limit (stats.concurrency, without building the whole LimiterStats)."""
        return self._window.limit

    def expected_output(self, max_tokens: int) -> int:
        """Output tokens to reserve for a call: the running mean once known, else a guess below max_tokens."""
        return int(self._output) if self._output is not None else min(max_tokens, 1000)

    @property
    def tokens_per_second(self) -> float | None:
        return self._tps

    def attempt_timeout(self, timeout: float, max_tokens: int) -> float:
        """An attempt's timeout: the plan's, or more where the server is measured (or, being local, assumed)
        to write slower than max_tokens needs; a slow server writing a long reply is not a hang."""
        tps = self._tps or (LOCAL_FLOOR_TPS if self.local else None)
        if not tps:
            return timeout
        return max(timeout, 1.5 * max_tokens / tps + 5)

    def penalise(self, retry_after: float) -> None:
        """Every caller waits until `retry_after` seconds from now (a 429 tells us the whole key is blocked)."""
        self._pause_until = max(self._pause_until, time.monotonic() + retry_after)

    def observe(self, completion: Completion, slot: Slot | None = None) -> None:
        """Learn limits from a reply's rate headers and trust the server's `remaining` over our own count."""
        rate = completion.rate
        if not rate:
            return
        now = time.monotonic()
        for name in BUCKETS:
            limit = rate.get(f"{name}_limit")
            bucket = self._buckets.get(name)
            if limit and limit > 0 and name not in self._fixed:
                if bucket is None:
                    bucket = self._buckets[name] = _Bucket(limit, now)
                    log.debug("learned %s limit: %s per minute", name, limit)
                elif bucket.per_minute != limit:
                    bucket.set(limit, now)
            remaining = rate.get(f"{name}_remaining")
            if bucket is None or remaining is None or slot is None:
                continue
            # The server counted up to this request; discount what we sent since, credit the refill since.
            # (A slot that started before the bucket existed has no mark: everything the bucket took is later.)
            later = bucket.taken - slot.taken.get(name, 0.0)
            allowed = remaining - later + bucket.rate * (now - slot.started)
            bucket.refill(now)
            bucket.tokens = min(bucket.tokens, max(-bucket.capacity, allowed))  # at most a second of debt

    # --- called by Slot ---------------------------------------------------------------------------------
    async def _enter(self, slot: Slot) -> None:
        await self._window.acquire()
        try:
            async with self._gate:
                waited = False
                while True:
                    now = time.monotonic()
                    delay = self._pause_until - now
                    for name, amount in slot.charges():
                        bucket = self._buckets.get(name)
                        if bucket is not None:
                            delay = max(delay, bucket.delay(amount, now))
                    if delay <= 0:
                        break
                    waited = True
                    self._waited += delay
                    await asyncio.sleep(delay)
                self._waits += waited
                for name, amount in slot.charges():
                    bucket = self._buckets.get(name)
                    if bucket is not None:
                        bucket.take(amount)
                        slot.taken[name] = bucket.taken
                slot.started = time.monotonic()
                self._sent += 1
                self._peak = max(self._peak, self._sent)
        except BaseException:
            self._window.release()
            raise

    def _exit(self, slot: Slot) -> None:
        if slot.started:
            self._sent -= 1
        self._window.release()

    def _done(self, slot: Slot, completion: Completion) -> None:
        now = time.monotonic()
        latency = now - slot.started
        self._latency = latency if self._latency is None else 0.8 * self._latency + 0.2 * latency
        out = completion.output_tokens
        self._output = out if self._output is None else 0.9 * self._output + 0.1 * out
        if out > 0 and latency > 0:
            tps = out / latency
            self._tps = tps if self._tps is None else 0.8 * self._tps + 0.2 * tps
        # Reconcile the estimates with what was really used (Anthropic does the same with output tokens).
        actual = {"input_tokens": completion.input_tokens, "output_tokens": completion.output_tokens,
                  "tokens": completion.input_tokens + completion.output_tokens}
        for name, amount in slot.charges():
            bucket = self._buckets.get(name)
            if bucket is not None and name in actual and name in slot.taken:
                bucket.refill(now)
                bucket.tokens = min(bucket.capacity, bucket.tokens + amount - actual[name])
        self.observe(completion, slot)
        if self.local and self._adaptive:
            self._grow_local(latency / max(1, completion.output_tokens))
        else:
            self._grow(now)

    def _grow_local(self, per_token: float) -> None:
        """One call more while the time per output token stays flat; one fewer (and no growth past it again)
        when it rises with the calls in flight: that is the server queueing, not capacity."""
        window = self._window
        best = self._per_token_best = min(per_token, self._per_token_best or per_token)
        self._level_samples.append(per_token)
        if len(self._level_samples) < max(2, window.limit):
            return
        mean = sum(self._level_samples) / len(self._level_samples)
        self._level_samples = []
        if mean > QUEUEING * best and window.limit > 1:
            self._local_max = window.limit - 1
            window.resize(window.limit - 1)
            log.info("local server queues at %d calls in flight; keeping %d", window.limit + 1, window.limit)
        elif mean <= FLAT * best and window.limit < self._local_max:
            window.resize(window.limit + 1)

    def _grow(self, now: float) -> None:
        window = self._window
        if now < self._cut_until or window.limit >= self._ceiling:
            return
        target = window.limit
        requests = self._buckets.get("requests")
        if self._adaptive and not self._cuts and requests is not None and self._latency is not None:
            # Little's law: the calls in flight needed to reach the request rate at the current latency
            # (a first sizing only: once a 429 has cut the window, it grows additively).
            target = max(target, math.ceil(requests.rate * self._latency * 1.5) + 1)
        self._successes += 1
        # The window is the bottleneck only if callers wait for it while nobody waits at the rate gate.
        if self._successes >= window.limit and window.waiters and not self._gate.locked():
            self._successes = 0
            target = max(target, window.limit + 1)   # additive increase, about one per round trip
        if target != window.limit:
            window.resize(min(self._ceiling, target))

    def _needed(self, kind: str) -> int:
        """Calls in flight a known request rate needs at the current latency (Little's law, 20% headroom).

        A 429 under a known rate limit is the rate's doing, which the buckets and the pause handle: cutting
        the window below this would only lose throughput. An overload (529) is the server's, so no floor.
        """
        requests = self._buckets.get("requests")
        if kind != "rate_limit" or requests is None or self._latency is None:
            return 0
        return math.ceil(requests.rate * self._latency * 1.2) + 1

    def _failed(self, slot: Slot, error: ProviderError) -> None:
        if error.kind not in ("rate_limit", "overloaded"):
            return
        self._rate_limited += 1
        now = time.monotonic()
        if error.retry_after:
            self.penalise(error.retry_after)
        if now >= self._cut_until:
            window = self._window
            self._cuts += 1
            self._successes = 0
            cut = int(min(window.limit, self._sent) * CUT)
            window.resize(min(window.limit, max(1, cut, self._needed(error.kind))))
            self._cut_until = now + max(error.retry_after or 0.0, self._latency or 1.0)
            log.info("%s: calls in flight cut to %d", error.kind, window.limit)


class Slot:
    """One call's permission to run; made by Limiter.slot()."""

    __slots__ = ("limiter", "est_input", "est_output", "taken", "started")

    def __init__(self, limiter: Limiter, est_input: int, est_output: int) -> None:
        self.limiter = limiter
        self.est_input = est_input
        self.est_output = est_output
        self.taken: dict[str, float] = {}
        self.started = 0.0

    def charges(self) -> tuple[tuple[str, float], ...]:
        return (("requests", 1), ("input_tokens", self.est_input), ("output_tokens", self.est_output),
                ("tokens", self.est_input + self.est_output))

    def done(self, completion: Completion) -> None:
        self.limiter._done(self, completion)

    def failed(self, error: ProviderError) -> None:
        self.limiter._failed(self, error)

    async def __aenter__(self) -> Slot:
        await self.limiter._enter(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.limiter._exit(self)
