"""The async batch engine: draw specs from what remains, call the provider, audit, record, rebalance.

Calls stay in flight continuously (the rate limit, not a batch barrier, sets the pace): a batch is the set
of specs drawn together from the remaining quotas, and its audit record is written when its last call is
done. Every completed call is audited and committed at once, so rebalancing follows every call.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import sqlite3
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from agent.audit.auditor import Auditor, to_record
from agent.audit.dedup import AUTO_SWITCH
from agent.avoid import AvoidList, is_copy
from agent.draw import draw
from agent.errors import BudgetExceeded, NoProgress, ProviderError
from agent.estimate import PRIOR_ACCEPTANCE, eta_seconds, tail_copies
from agent.ledger import CallRow, ExampleRow, Ledger, is_lost, is_surplus
from agent.limits import Limiter
from agent.plan import Plan
from agent.progress import headline
from agent.prompts import PlanPrompts, judge_request, reask_request
from agent.providers.base import Completion, Provider, Request
from agent.records import Spec, Steering, Unfillable, response_text, user_text
from agent.reply import Parsed, parse_judgement, parse_reply
from agent.retries import Attempt, call_with_retries
from agent.sources import PassagePicker
from agent.tokens import PriceTable

log = logging.getLogger(__name__)
MAX_FAILED_CALLS_IN_A_ROW = 8
FATAL_KINDS = {"auth", "quota"}
RATE_WINDOW = 20         # completed calls the acceptance-rate brake looks back over
YIELD_SPAN = 3           # the yield brake looks back over this many times max_calls_without_progress calls
MIN_YIELD = 0.05         # ... and stops a run whose calls there accepted fewer than this share of what they asked
YOUNG_OBJECTS = 10_000   # the collector's first threshold while a run's loop runs (the default is 700)
REPLY_KEPT = 2000        # characters of an unusable reply kept in the ledger


@dataclass
class Outcome:
    batch: int
    specs: list[Spec]
    completions: list[Completion] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    parsed: Parsed | None = None
    judged: dict[str, dict[str, str]] = field(default_factory=dict)   # spec id -> the judge's labels
    faithful: dict[str, int] = field(default_factory=dict)            # spec id -> the judge's 1-5 (grounded runs)
    purposes: list[str] = field(default_factory=list)                 # one per completion
    error: ProviderError | None = None
    latency: float = 0.0
    pending: int | None = None      # its ledger row, written when it was sent
    worst: float = 0.0              # its worst-case cost, reserved while it is in flight
    avoid: tuple[list[str], str] = ([], "questions")   # the avoid list it was shown, and in which form

    @property
    def reply(self) -> Parsed:
        """The parsed reply, which every call that ended without a ProviderError has."""
        if self.parsed is None:
            raise RuntimeError(f"a call of batch {self.batch} ended without an error or a parsed reply")
        return self.parsed


@dataclass
class RunResult:
    accepted: int
    total: int
    rejected: int
    cost: float
    calls: int
    unfillable: list[Unfillable]
    simulated: bool
    lost: int = 0          # specs lost to failed calls: never examples, so not counted as rejected
    surplus: int = 0       # tail copies a sibling copy beat to the slot: neither rejected nor lost

    @property
    def complete(self) -> bool:
        return self.accepted >= self.total


def judged_faithfulness(completion: Completion) -> dict[str, int]:
    from agent.audit.grounding import faithfulness
    from agent.reply import extract_json

    try:
        return faithfulness(completion.data if completion.data is not None else extract_json(completion.text))
    except ValueError:
        return {}


def fault_rows(out: Outcome) -> list[tuple[str, str, float]]:
    """(kind, message, latency) of each failed attempt of a call, as the ledger's faults table keeps them."""
    return [(a.kind or "error", a.message, a.latency_s) for a in out.attempts if a.status != "ok"]


class FirstDone:
    """asyncio.wait(tasks, return_when=FIRST_COMPLETED) for a set of tasks that changes between waits, with one
    done-callback per task for its life: asyncio.wait adds a callback to every task in flight and removes them
    all again at each wait, O(calls in flight) per completed call (34 -> 18 us a completion at 34 in flight,
    215 -> 55 us at 400; the limiter allows 1,024). The same done and pending sets: the tasks done when the wait resumes, after the same
    one turn of the event loop when one is done already (tests/test_call_path.py runs both on scripted tasks)."""

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task] = set()          # what the current wait is for
        self._done_before: set[asyncio.Task] = set()    # ... and which of them were done when it began

    def watch(self, task: asyncio.Task) -> asyncio.Task:
        task.add_done_callback(self._wake)
        return task

    def _wake(self, task: asyncio.Task | None = None) -> None:
        # a task's callback counts when the task ended during this wait (one that ended before may run its
        # callback late, as asyncio.wait's old callbacks did: theirs woke a finished wait, so nothing)
        if task is not None and (task not in self._tasks or task in self._done_before):
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, tasks: set[asyncio.Task]) -> tuple[set[asyncio.Task], set[asyncio.Task]]:
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._tasks = tasks
        self._done_before = {task for task in tasks if task.done()}
        if self._done_before:
            loop.call_soon(self._wake)   # asyncio.wait's callback on a task done already runs the same way
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._tasks = self._done_before = set()
        done: set[asyncio.Task] = set()
        pending: set[asyncio.Task] = set()
        for task in tasks:
            (done if task.done() else pending).add(task)
        return done, pending


class Engine:
    def __init__(self, plan: Plan, ledger: Ledger, provider: Provider, limiter: Limiter, prices: PriceTable,
                 *, max_cost: float | None = None, progress=None, budget_source: str = "--max-cost",
                 passages=None, references=None):
        self.plan = plan
        self.prompts = PlanPrompts(plan)   # the system prompt, ranges and budgets of every request, worked out once
        self.ledger = ledger
        self.provider = provider
        self.limiter = limiter
        self.prices = prices
        self.max_cost = max_cost
        self.budget_source = budget_source
        self.progress = progress
        # where the run stands comes from the ledger alone (Ledger.run_state says how); what is kept below is
        # this run's cache of it, written back through record_call and record_batch
        state = ledger.run_state(plan)
        self.auditor = Auditor(plan, ledger, state, references)
        # the auditor's index stays exact up to AUTO_SWITCH kept texts: an export can then trust this run's finds
        ledger.note_dedup(plan.quality.dedup_threshold, exact=plan.total <= AUTO_SWITCH)
        self.run_no = ledger.next_run_number()
        self.rng = random.Random(plan.generation.seed * 1_000_003 + self.run_no)
        self.batch_no = state.last_batch
        # grounding (agent/sources.py, agent/references.py): a passage per spec, real examples per call
        self.picker: PassagePicker | None = None
        self.use_passages(passages)
        self.references = references
        self.reserved: dict[str, Counter[str]] = {d: Counter() for d in plan.dimensions}
        self.open_calls: Counter[int] = Counter()
        self.topic_use: Counter[str] = Counter(state.topic_use)
        self.prompt_turn = 0
        self.spent = state.spent
        self.calls_this_run = 0
        self.cost_this_run = 0.0
        self.failed_in_a_row = 0
        self.rejected_this_run = 0
        self.lost_this_run = 0
        self.surplus_this_run = 0
        self.completed_calls = 0                     # calls done this run, failed or not (for the ETA)
        self.latency_sum = 0.0
        self.steer = Steering()
        self.avoid: list[str] = state.recent_questions
        self.avoid_list = AvoidList()                # how the avoid list is shown (small models copy it)
        self.started = time.monotonic()
        self.reserved_cost = 0.0                     # the worst case of every call in flight, reserved at dispatch
        self.unstarted: set[int] = set()             # pending rows of calls dispatched whose task has not run yet
        self.no_progress_calls = 0                   # completed calls in a row that accepted nothing
        self.accepted_this_run = 0
        # (accepted, specs asked, cost) per completed call, as far back as the brakes look: the rate test over the
        # last RATE_WINDOW, the yield test over the last YIELD_SPAN x max_calls_without_progress (a stray accept
        # every few calls resets no_progress_calls, so a run re-asking specs whose answers come back as
        # near-duplicates, a model out of new questions, spent on at a fraction of an example per call)
        self.yield_calls = YIELD_SPAN * plan.generation.max_calls_without_progress
        self.recent: deque[tuple[int, int, float]] = deque(maxlen=max(RATE_WINDOW, self.yield_calls))
        self.reasons: Counter[str] = Counter()      # rejections this run, by reason
        self.last_unusable: str | None = None        # the last unusable reply (shortened, redacted)
        self.modes: Counter[str] = Counter()
        if self.auditor.unfillable:   # given up on by an earlier run of this same plan: not retried, and said so
            log.warning("not retrying %s: given up on in an earlier run of this plan after repeated misses; change "
                        "the plan (e.g. audit.max_attempts_per_category, the model, its ranges) to try again",
                        ", ".join(f"{d}.{c}" for d, c in self.auditor.unfillable))

    def use_passages(self, passages) -> None:
        """Ground every spec drawn from now on in one of these passages (least used first)."""
        if passages:
            self.picker = PassagePicker(passages, self.ledger.passage_usage(), self.rng)

    # -- drawing ------------------------------------------------------------------------------------
    def available(self) -> dict[str, dict[str, int]]:
        return {d: {c: max(0, n - self.reserved[d][c]) for c, n in cats.items()}
                for d, cats in self.auditor.remaining().items()}

    def draw_batch(self) -> list[list[Spec]]:
        labels = draw(self.available(), self.plan.generation.batch_size, self.rng, self.plan.exclusions)
        if not labels:
            return []
        copies = self.tail_copies()
        self.batch_no += 1
        specs = []
        # in the tail every spec is drawn `copies` times (copy 0 of all, then copy 1 of all: siblings land in
        # different calls, in parallel); the first copy that fits fills the slot, the rest are surplus
        for i, lab in enumerate(lab for _ in range(copies) for lab in labels):
            for d, c in lab.items():
                self.reserved[d][c] += 1
            passage = self.picker.pick(lab.get("domain", "")) if self.picker else None
            topic = passage.heading.split(" > ")[-1] if passage and passage.heading else self.topic(lab)
            specs.append(Spec(id=f"r{self.run_no}b{self.batch_no}-{i}", labels=lab, topic=topic,
                              system_prompt=self.system_prompt(), passage=passage.id if passage else "",
                              document=passage.document() if passage else "", tail=copies > 1))
        if copies > 1:
            log.info("tail: %d specs left to draw, each drawn %d times over", len(labels), copies)
        k = self.plan.generation.examples_per_call
        calls = [specs[i:i + k] for i in range(0, len(specs), k)]
        self.open_calls[self.batch_no] = len(calls)
        return calls

    def tail_copies(self) -> int:
        """How many times over to draw each spec: 1, except in the tail (at most a batch left), where refilling
        one rejected spec at a time costs a round trip per miss. ~1/acceptance copies (the run's measured
        rate, or PRIOR_ACCEPTANCE before any), as many as fit in the calls it can have in flight."""
        g = self.plan.generation
        left = self.auditor.shortfall()
        if left > g.batch_size:
            return 1
        return tail_copies(self.acceptance(), left, self.parallel() * g.examples_per_call)

    def parallel(self) -> int:
        """Calls the run can have in flight now: the plan's cap, or what the adaptive limiter allows."""
        return self.plan.generation.concurrency or self.limiter.concurrency

    def acceptance(self) -> float:
        """Share of specs sent this run that became accepted examples (surplus copies left out)."""
        tried = self.accepted_this_run + self.rejected_this_run + self.lost_this_run
        return self.accepted_this_run / tried if tried and self.accepted_this_run else PRIOR_ACCEPTANCE

    def topic(self, labels: dict[str, str]) -> str:
        topics = self.plan.topics.get(labels.get("domain", ""), [])
        if not topics:
            return labels.get("domain", "").replace("_", " ")
        least = min(self.topic_use[t] for t in topics)
        choice = self.rng.choice([t for t in topics if self.topic_use[t] == least])
        self.topic_use[choice] += 1
        return choice

    def system_prompt(self) -> str:
        prompts = self.plan.system_prompts
        self.prompt_turn += 1
        return prompts[(self.prompt_turn - 1) % len(prompts)]

    # -- one call -----------------------------------------------------------------------------------
    def request_for(self, specs: list[Spec]) -> tuple[Request, tuple[list[str], str]]:
        """The request a call for `specs` sends, and the avoid list it shows: built at dispatch, so the budget
        reserves what is really sent (the avoid list and steering included)."""
        instructions = self.steer.phrasing_instructions + self.auditor.instructions()
        temperature = min(1.5, self.plan.generation.temperature + self.steer.temperature_step)
        shown = self.avoid_list.shown(self.avoid)
        # a seed per call, drawn from the run's seeded generator (after the references, as before): reproducible,
        # yet calls differ. One seed for every call made a local llama.cpp model write the same question call
        # after call (near-duplicates).
        request = self.prompts.request(specs, avoid=shown + self.steer.avoid_phrases,
                                       steering={"instructions": instructions}, temperature=temperature,
                                       avoid_cues=self.avoid_list.mode == "cues",
                                       references=self.references.next() if self.references else (),
                                       seed=self.rng.randrange(2**31))
        return request, (shown, self.avoid_list.mode)

    async def call(self, batch: int, specs: list[Spec], request: Request, avoid: tuple[list[str], str],
                   worst: float, pending: int) -> Outcome:
        """One call and its re-ask (and judge). `pending`: its ledger row, written at dispatch (pending_row)."""
        out = Outcome(batch, specs, worst=worst)
        started = time.monotonic()
        out.avoid = avoid
        ids = [s.id for s in specs]
        self.unstarted.discard(pending)
        out.pending = pending
        try:
            completion = await self.send(request, out)
            out.completions.append(completion)
            out.purposes.append("generate")
            out.parsed = parse_reply(completion, self.plan.record_shape, ids)
            if not out.parsed.ok:  # one re-ask that quotes what was wrong
                again = reask_request(request, completion.text, out.parsed.errors)
                completion = await self.send(again, out)
                out.completions.append(completion)
                out.purposes.append("reask")
                reparsed = parse_reply(completion, self.plan.record_shape, ids)
                out.parsed = reparsed if reparsed.ok else Parsed(errors=out.parsed.errors + reparsed.errors)
        except ProviderError as e:
            out.error = e
        except asyncio.CancelledError:
            # cancelled (a signal, the brake): the request may be at the provider, and billed, so its pending
            # row stays, counted at its worst case (over-counting a queued one is the safe side)
            self.reserved_cost -= out.worst
            self.ledger.record_faults(out.pending, fault_rows(out))
            raise
        if out.error is None and out.reply.ok and self.plan.audit.judge and out.reply.items:
            await self.judge(out, specs)
        out.latency = time.monotonic() - started
        return out

    def pending_row(self, batch: int, worst: float) -> int:
        """The ledger row of a call about to be dispatched, counted at its worst case until its record settles it.
        Written at dispatch, right after the last call's record, while SQLite's code and pages are still in the
        CPU's caches: in the call's task, after other calls' work, the same insert cost ~3x the CPU
        (bench/README.md). The same rows in the same order: tasks start in dispatch order, and nothing else
        writes a call row in between; the row of a task cancelled before it started (never sent) is removed
        when the run ends, as such a task never wrote one."""
        pending = self.ledger.add_pending(batch, self.provider.name, self.plan.generation.model, worst)
        self.unstarted.add(pending)
        return pending

    async def send(self, request, out: Outcome) -> Completion:
        return await call_with_retries(self.provider, request, self.limiter, out.attempts.append,
                                       max_seconds=self.plan.generation.max_call_seconds)

    def worst_cost(self, request) -> float:
        """The most a call can cost: its prompt and max_tokens of output, twice (a possible re-ask), plus the
        judge call when the plan has one."""
        from agent.retries import estimate_input

        model = self.plan.generation.model
        inp = estimate_input(request)
        # the re-ask repeats the prompt and quotes up to 2,000 characters of the reply (~600 tokens)
        worst = self.prices.cost(model, inp, request.max_tokens) + self.prices.cost(model, inp + 600, request.max_tokens)
        if self.plan.audit.judge:
            worst += self.prices.cost(model, inp + request.max_tokens, 2000)
        return worst

    async def judge(self, out: Outcome, specs: list[Spec]) -> None:
        """One judge call classifies the call's examples; if it fails, the requested labels stand."""
        texts = {}
        for s in specs:
            item = out.reply.items.get(s.id)
            if item is not None:
                record = to_record(item, s, self.plan.record_shape)
                texts[s.id] = (user_text(record), response_text(record))
        request = judge_request(self.plan, specs, texts)
        try:
            completion = await self.send(request, out)
        except ProviderError as e:
            log.warning("judge call failed (%s); requested labels kept for %d examples", e.kind, len(texts))
            return
        out.completions.append(completion)
        out.purposes.append("judge")
        out.judged = parse_judgement(completion, self.plan)
        if any(s.document for s in specs):
            out.faithful = judged_faithfulness(completion)

    # -- recording ----------------------------------------------------------------------------------
    def record(self, out: Outcome) -> None:
        """Audit a finished call, commit it with its examples in one transaction, then update this run's
        figures; the batch's audit record is written when its last call is recorded."""
        self.release(out)
        rows, failed = self.audit(out)
        accepted = sum(r.status == "accepted" for r in rows)
        # Invalid replies and items are attempts at their categories that came to nothing, for the unfillable
        # detector: but only while the run accepts something elsewhere. When nothing at all is accepted the
        # fault is the model or the server, not a category, and the progress brake says so.
        if failed and self.accepted_this_run + accepted > 0 and self.no_progress_calls < self.brake_calls():
            self.auditor.count_failed(failed)
        calls = self.call_rows(out)
        if out.error is None and (failed or out.reply.notes or not accepted):
            self.keep_replies(out, calls)
        self.ledger.record_call(calls, rows, fault_rows(out), simulated=self.provider.simulated, settles=out.pending,
                                state=self.auditor.category_state(), dedup_checked=True)
        self.tally(out, calls, rows, accepted)
        self.open_calls[out.batch] -= 1
        if self.open_calls[out.batch] == 0:
            self.close_batch(out.batch)

    def release(self, out: Outcome) -> None:
        """The call's specs no longer hold their categories' places: the audit decides where they count."""
        for spec in out.specs:
            for d, c in spec.labels.items():
                self.reserved[d][c] -= 1

    def audit(self, out: Outcome) -> tuple[list[ExampleRow], list[Spec]]:
        """One row per spec (accepted, rejected or lost), and the specs the reply gave nothing usable for."""
        rows: list[ExampleRow] = []
        failed: list[Spec] = []
        if out.error is not None:
            return [self.auditor.reject_spec(s, f"call_failed:{out.error.kind}", str(out.error)) for s in out.specs], []
        if not out.reply.ok:
            detail = "; ".join(out.reply.errors)[:500]
            return [self.auditor.reject_spec(s, "invalid_reply", detail) for s in out.specs], list(out.specs)
        shown = out.avoid[0]
        copied = (lambda text: is_copy(shown, text)) if shown else None   # copies of the avoid list are not misses
        for s in out.specs:
            item = out.reply.items.get(s.id)
            if item is not None:
                row = self.auditor.admit(s, item, judged=out.judged.get(s.id), faithful=out.faithful.get(s.id),
                                         copied=copied)
                if s.id in out.reply.notes:   # ids invented by the model, matched in order: say so
                    row.detail = "; ".join(filter(None, [row.detail, out.reply.notes[s.id]]))
                rows.append(row)
                continue
            if s.id in out.reply.item_errors:
                rows.append(self.auditor.reject_spec(s, "invalid_item", out.reply.item_errors[s.id]))
            elif out.reply.truncated:
                rows.append(self.auditor.reject_spec(s, "cut_off", "the reply hit the output token limit before "
                                                                   "this example"))
            else:
                rows.append(self.auditor.reject_spec(s, "missing_from_reply", "the reply had no example with this id"))
            failed.append(s)
        return rows, failed

    def call_rows(self, out: Outcome) -> list[CallRow]:
        """The ledger rows of the call's requests (generate, re-ask, judge), priced, with its status."""
        calls = []
        for i, c in enumerate(out.completions):
            cost = self.prices.cost(c.model or self.plan.generation.model, c.input_tokens, c.output_tokens, c.cached_tokens)
            calls.append(CallRow(batch=out.batch, purpose=out.purposes[i], provider=self.provider.name,
                                 model=c.model or self.plan.generation.model, status="ok", input_tokens=c.input_tokens,
                                 output_tokens=c.output_tokens, cached_tokens=c.cached_tokens, cost=cost,
                                 latency=out.latency, mode=c.mode))
            self.modes[c.mode] += 1
        if out.error is not None:
            calls.append(CallRow(batch=out.batch, purpose="generate", provider=self.provider.name,
                                 model=self.plan.generation.model, status="error", kind=out.error.kind,
                                 attempts=len(out.attempts), latency=out.latency, error=str(out.error)[:500]))
        elif calls and not out.reply.ok:
            calls[-1].status, calls[-1].kind = "invalid", "invalid_reply"
        elif "judge" in out.purposes and not out.judged:
            calls[-1].status, calls[-1].kind = "invalid", "invalid_judgement"
        return calls

    def keep_replies(self, out: Outcome, calls: list[CallRow]) -> None:
        """A reply that gave nothing, or not as asked: keep what the model said, so a person can see why
        (shortened, secrets redacted)."""
        n = out.purposes.index("judge") if "judge" in out.purposes else len(out.completions)
        for call, c in zip(calls[:n], out.completions[:n], strict=True):
            call.reply = self.provider.redact(c.text[:REPLY_KEPT])
        self.last_unusable = calls[n - 1].reply if n else None

    def tally(self, out: Outcome, calls: list[CallRow], rows: list[ExampleRow], accepted: int) -> None:
        """This run's figures after a committed call: spend, counts, the brake's window, the avoid list."""
        self.reserved_cost -= out.worst
        if self.picker:  # least-used follows accepted examples: a passage whose example failed is due again
            for r in rows:
                if r.status != "accepted" and r.passage:
                    self.picker.release(r.passage)
        cost = sum(c.cost for c in calls)
        self.spent += cost
        self.cost_this_run += cost
        self.calls_this_run += len(calls)
        surplus = sum(is_surplus(r.reason) for r in rows)   # tail copies a sibling beat: neither rejected nor lost
        self.surplus_this_run += surplus
        self.rejected_this_run += sum(r.status == "rejected" and not is_lost(r.reason) for r in rows) - surplus
        self.lost_this_run += sum(r.status == "rejected" and is_lost(r.reason) for r in rows)  # no example existed
        self.reasons.update(r.reason for r in rows if r.status == "rejected" and r.reason and not is_surplus(r.reason))
        self.accepted_this_run += accepted
        if out.error is None and not (surplus and not accepted and surplus == len(rows)):
            # a completed call: the brake counts it (one whose examples all came too late, as tail surplus,
            # is neither progress nor its lack)
            self.recent.append((accepted, len(rows) - surplus, cost))
            self.no_progress_calls = 0 if accepted else self.no_progress_calls + 1
        self.avoid_list.note(*out.avoid, [r.user_text for r in rows if r.user_text])
        self.avoid = ([r.user_text for r in rows if r.status == "accepted"] + self.avoid)[: self.steer.avoid_size]
        self.failed_in_a_row = self.failed_in_a_row + 1 if out.error is not None else 0
        self.completed_calls += 1
        self.latency_sum += out.latency

    # -- the progress brake ---------------------------------------------------------------------------
    def brake_calls(self) -> int:
        return self.plan.generation.max_calls_without_progress

    def brake(self) -> str | None:
        """Why the run must stop for lack of progress, or None."""
        n = self.brake_calls()
        if self.no_progress_calls >= n:
            return f"{self.no_progress_calls} calls in a row accepted no example (generation.max_calls_without_progress: {n})"
        # a trickle is no progress either: over the last YIELD_SPAN*n calls, under MIN_YIELD of the specs they asked
        # for were accepted (stray accepts kept resetting the count above; each accept took 20+ specs)
        if len(self.recent) >= self.yield_calls:
            span = list(self.recent)[-self.yield_calls:]
            accepted, asked = sum(a for a, _, _ in span), sum(k for _, k, _ in span)
            if asked and accepted < MIN_YIELD * asked:
                return (f"the last {len(span)} calls accepted {accepted} of the {asked} examples they asked for, "
                        f"under {MIN_YIELD:.0%}")
        # the rate test guards the default budget (derived from the estimate); a budget the user chose is theirs
        # to spend, and the budget stop (exit 3) ends it
        if self.max_cost is None or not self.budget_source.startswith("default") or len(self.recent) < RATE_WINDOW:
            return None
        window = list(self.recent)[-RATE_WINDOW:]
        accepted = sum(a for a, _, _ in window)
        cost = sum(c for _, _, c in window)
        left = self.plan.total - self.auditor.n_accepted
        if accepted == 0 or cost <= 0 or left <= 0:
            return None
        needed = left / accepted * cost   # at the acceptance rate and cost of the last calls
        if self.spent + needed > self.max_cost:
            return (f"at the last {len(window)} calls' rate ({accepted} accepted for ${cost:.4f}) the {left:,} "
                    f"examples left need ~${needed:.2f}, beyond the ${self.max_cost:.2f} budget ({self.budget_source})")
        return None

    def diagnosis(self, why: str) -> str:
        top = ", ".join(f"{r} {n}" for r, n in self.reasons.most_common(4)) or "none"
        mode = ", ".join(f"{m} {n}" for m, n in self.modes.most_common()) or "no reply"
        sample = (self.last_unusable or "").replace("\n", " ")
        sample = (sample[:300] + "…") if len(sample) > 300 else sample
        lines = [
            f"stopped: {why}; {self.auditor.n_accepted:,} of {self.plan.total:,} accepted, ${self.spent:.4f} spent; "
            "everything is saved",
            f"  rejections this run: {top}",
            f"  response mode: {mode}",
        ]
        if sample:
            lines.append(f"  last unusable reply: {sample!r}")
        if self.reasons and self.reasons.most_common(1)[0][0] == "near_duplicate":
            lines.append("  the model repeats questions it already wrote: add topics (topics:), raise generation.temperature, "
                         "or lower the total")
        lines.append("  try: a stronger model (--model), fewer examples per call (generation.examples_per_call), or a "
                     "lower total; `datagen audit` shows the kept replies; re-run to resume")
        return "\n".join(lines)

    def close_batch(self, batch: int) -> None:
        self.open_calls.pop(batch, None)
        summary = self.auditor.close_batch(
            batch, cost_total=round(self.spent, 6), calls_this_run=self.calls_this_run,
            elapsed_s=round(time.monotonic() - self.started, 2), run=self.run_no,
            remaining_total=self.auditor.shortfall())
        state = self.auditor.snapshot(self.ledger.last_accepted_id()) if self.auditor.snapshot_due() else None
        self.ledger.record_batch(summary, state)
        self.steer = summary.steering
        log.info("%s", headline(summary))
        if self.progress:
            self.progress.batch(summary)

    # -- the loop -----------------------------------------------------------------------------------
    def capacity(self) -> int:
        """Calls to keep in flight: the plan's cap, or what the adaptive limiter allows now (plus a little
        queue so a freed slot never waits for a draw). Not more: specs drawn early miss the rebalancing."""
        return self.plan.generation.concurrency or self.limiter.concurrency + 2

    def over_budget(self, worst: float) -> bool:
        """Would sending a call of this worst case risk the budget? Every call in flight is reserved at its
        worst case (max output tokens, plus a re-ask) when dispatched, so the cap holds even if all of them
        come back as long as they may."""
        return self.max_cost is not None and self.spent + self.reserved_cost + worst > self.max_cost

    async def run(self) -> RunResult:
        queue: deque[tuple[int, list[Spec]]] = deque()
        in_flight: set[asyncio.Task] = set()
        completions = FirstDone()
        budget_hit = False
        self.update_progress()
        # resume sends its first calls at once; the near-duplicate index is rebuilt meanwhile
        index_ready: asyncio.Future | None = asyncio.ensure_future(asyncio.to_thread(self.auditor.load_index))
        # A call leaves thousands of short-lived objects (the reply's JSON, its items, rows): at the collector's
        # default first threshold (700) that was several young collections a call, and an older one every ten.
        # A higher first threshold halves the collector's CPU per call (bench/README.md "Round 6: loop"); what
        # it frees is the same, a little later. Restored when the run ends.
        collector = gc.get_threshold()
        gc.set_threshold(max(collector[0], YOUNG_OBJECTS), *collector[1:])
        try:
            while self.auditor.n_accepted < self.plan.total:
                if not queue:
                    queue.extend((self.batch_no, c) for c in self.draw_batch())
                while queue and len(in_flight) < self.capacity() and not budget_hit:
                    request, avoid = self.request_for(queue[0][1])
                    worst = self.worst_cost(request)
                    if self.over_budget(worst):
                        if not in_flight:
                            budget_hit = True   # not even one more call fits
                        break
                    batch, specs = queue.popleft()
                    pending = self.pending_row(batch, worst)
                    self.reserved_cost += worst   # before the task runs: the next check must see it
                    in_flight.add(completions.watch(asyncio.ensure_future(
                        self.call(batch, specs, request, avoid, worst, pending))))
                if not in_flight:
                    break  # nothing left to draw (unfillable categories) or the budget is spent
                done, in_flight = await completions.wait(in_flight)
                if index_ready is not None:
                    await index_ready
                    index_ready = None
                # every finished task's exception is looked at before any is raised: a storage fault (a full disk)
                # in one left the others' "exception was never retrieved" to asyncio's logger at shutdown
                raised = [e for e in (t.exception() for t in done if not t.cancelled()) if e is not None]
                if raised:
                    raise raised[0]
                # in dispatch order (a call's ledger row is numbered at dispatch): `done` is a set, whose order
                # follows the tasks' addresses, so calls that finished together were recorded in an order that
                # changed from run to run, and with it which examples a run accepted
                outs = sorted((task.result() for task in done), key=lambda out: out.pending)
                for out in outs:   # every finished call is recorded before any stop is decided
                    self.record(out)
                for out in outs:
                    if out.error is not None and (out.error.kind in FATAL_KINDS or not out.error.retryable
                                                  and self.failed_in_a_row >= 2):
                        raise out.error
                if self.failed_in_a_row >= MAX_FAILED_CALLS_IN_A_ROW:
                    last = next(o.error for o in reversed(outs) if o.error is not None)
                    raise ProviderError(f"stopping: {self.failed_in_a_row} calls in a row failed; last: {last}",
                                        retryable=False, kind=last.kind)
                why = self.brake()
                if why:
                    raise NoProgress(self.diagnosis(why))
                self.update_progress()
        finally:
            gc.set_threshold(*collector)
            if index_ready is not None:
                await index_ready  # never leave the worker thread running past the run
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            if self.unstarted:   # dispatched, then cancelled before their task ran: never sent
                try:
                    self.ledger.drop_pending(sorted(self.unstarted))
                except sqlite3.Error as e:   # e.g. the full disk that stopped the run: they stay, at their worst case
                    log.warning("%d calls never sent stay counted at their worst case: %s", len(self.unstarted), e)
                self.unstarted.clear()
            # the plan can fill (or the budget end) while a batch's last calls are queued or cancelled:
            # its audit record is still written, for what it did
            open_batches = [b for b, n in self.open_calls.items() if n > 0]
            stale = (self.ledger.last_batch_total() or 0) != self.auditor.n_accepted  # e.g. killed after accepting
            if self.auditor.batch_processed or stale:
                self.close_batch(max(open_batches, default=self.batch_no))
            self.open_calls.clear()
            if self.auditor.dirty:
                self.ledger.save_state(self.auditor.snapshot(self.ledger.last_accepted_id()))
            self.update_progress(final=True)
        if budget_hit and self.auditor.n_accepted < self.plan.total:
            raise BudgetExceeded(
                f"stopped at ${self.spent:.4f} of the ${self.max_cost:.4f} budget ({self.budget_source}) with {self.auditor.n_accepted:,} of "
                f"{self.plan.total:,} examples accepted; everything is saved: re-run with a higher --max-cost to continue")
        return self.result()

    def result(self) -> RunResult:
        return RunResult(
            accepted=self.auditor.n_accepted, total=self.plan.total, rejected=self.rejected_this_run,
            cost=self.spent, calls=self.calls_this_run,
            unfillable=self.auditor.unfillable_list(),
            simulated=self.provider.simulated, lost=self.lost_this_run,
            surplus=self.surplus_this_run)

    def update_progress(self, final: bool = False) -> None:
        if self.progress:
            self.progress.update(accepted=self.auditor.n_accepted, total=self.plan.total,
                                 rejected=self.rejected_this_run, cost=self.spent, fill=self.auditor.accepted,
                                 plan=self.plan, final=final, priced=self.priced, eta=self.eta())

    def eta(self) -> float | None:
        """Seconds left at this run's measured acceptance and wall time per completed call (None until a
        few calls are done): counts the calls the rejections and the tail will still take, not the examples."""
        if self.completed_calls < 3:
            return None
        g = self.plan.generation
        per_call = (time.monotonic() - self.started) / self.completed_calls
        left = self.auditor.shortfall()
        eta = eta_seconds(left, self.acceptance(), g.examples_per_call, g.batch_size, per_call, self.parallel())
        # calls overlap, but the last one still takes a whole call's latency
        return max(eta, self.latency_sum / self.completed_calls) if left > 0 else 0.0

    @property
    def priced(self) -> bool:
        return self.prices.price(self.plan.generation.model) is not None
