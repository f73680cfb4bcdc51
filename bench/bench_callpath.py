"""The per-call and per-record parts of the client loop, in-process, CPU time (process_time) per part.

    .venv/bin/python bench/bench_callpath.py [--calls 400] [--rounds 3] [--wire-only]
    .venv/bin/python bench/bench_callpath.py --engine 2000 [--rounds 3] [--profile out.prof]

Runs the tree it sits in: copy it into another tree (e.g. a `git archive` of main) and run both, one after
the other, to compare. The example plan, 5 specs a call; replies from the simulated provider. Per call: the
two batch requests the engine builds (the budget check's and the sent one), their token estimates, the
OpenAI provider's own work and the SDK's request preparation up to the HTTP send and the reply read back (the
HTTP client's send is stubbed: the transport is measured below), and parsing the reply. Per record: check_record, measure (all
labels), and the typo check and has_example inside it.

Then the whole call path over HTTP, as the engine runs it from Engine.call to the Completion: the budget's
token estimate, call_with_retries (limiter slot, tenacity, timeout) and the OpenAI provider through the SDK to a
loopback server in another process (its CPU is not ours) that answers at once with the simulated provider's
replies; 8 calls in flight. Once per HTTP transport the installed SDK can use (httpx2; aiohttp with
openai[aiohttp]), alternating.

`--engine N`: the engine's own CPU per call, in-process: Engine.run over the example plan at N examples, with the
real OpenAI provider, limiter, retries, ledger (SQLite in a temporary folder) and audit, the SDK's HTTP
client's send() answering at once with the simulated provider's reply (usage and x-ratelimit-* headers as
OpenAI sends them). CPU (process_time) of the whole loop minus what is not the engine's own: the SDK's
`post` (the stubbed send and the simulated reply inside it included), `Engine.audit` and `Engine.close_batch`
(the audit's). None of them suspends, so process_time around each is its own CPU (checked: no other part of
the loop runs while one is open). Also per part: request_for, worst_cost, add_pending, record_call, the
rest of record (call_rows, tally, release), draw_batch, and the remainder (the call's coroutines: Engine.call,
call_with_retries, the limiter, the provider's glue around `post`, asyncio).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def specs_for(plan, n_calls: int, k: int = 5) -> list[list]:
    from agent.records import Spec

    rng = random.Random(1)
    calls = []
    for i in range(n_calls):
        specs = []
        for j in range(k):
            labels = {d: rng.choice([c.name for c in dim.categories if (c.quota or 0) > 0 or c.share > 0])
                      for d, dim in plan.dimensions.items()}
            topics = plan.topics.get(labels.get("domain", ""), []) or ["a topic"]
            specs.append(Spec(id=f"r1b{i}-{j}", labels=labels, topic=rng.choice(topics),
                              system_prompt=plan.system_prompts[(i * k + j) % len(plan.system_prompts)]))
        calls.append(specs)
    return calls


SERVE = """
import json, sys, itertools
sys.path.insert(0, sys.argv[2])
from tests.fakeserver import FakeServer
texts = itertools.cycle(json.load(open(sys.argv[1])))
server = FakeServer(responder=lambda body: next(texts), max_requests=100_000, max_lifetime=900).start()
print("READY", server.openai_url, flush=True)
server.wait_stopped(901)
"""


@contextlib.contextmanager
def reply_server(texts: list[str]):
    """A loopback OpenAI server in a child process, answering each call with the next of `texts`."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(texts, f)
        f.flush()
        proc = subprocess.Popen([sys.executable, "-c", SERVE, f.name, str(ROOT)], stdout=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline().split() if proc.stdout else []
            if not line or line[0] != "READY":
                raise RuntimeError("the reply server did not start")
            yield line[1]
        finally:
            proc.terminate()
            proc.wait(10)


async def wire_calls(url: str, sent: list, transport: str, in_flight: int = 8) -> float:
    """CPU seconds (process_time) of the engine's share of len(sent) calls, after one untimed warm-up call."""
    import openai

    from agent.limits import Limiter
    from agent.providers.openai import OpenAIProvider
    from agent.retries import call_with_retries, estimate_input

    provider = OpenAIProvider(model="gpt-4o-mini", api_key="sk-bench", base_url=url)
    if transport == "httpx2" and hasattr(provider, "transport"):
        provider.transport = "httpx2"
    elif transport == "aiohttp" and not hasattr(provider, "transport"):   # a tree that does not choose by itself
        client = provider._make_client()
        provider._client = client.with_options(http_client=openai.DefaultAioHttpClient())
    limiter = Limiter()
    gate = asyncio.Semaphore(in_flight)

    async def call(request):
        async with gate:
            estimate_input(request)   # Engine.worst_cost, at dispatch
            return await call_with_retries(provider, request, limiter, on_attempt=[].append)

    # every line of the batch prompts uncounted again, as in a new run: the first call (not timed) counts the
    # system prompt and the template's lines; the timed calls count their own new lines (specs, avoid list)
    from agent import retries, tokens
    for cache in (tokens._line_count, getattr(tokens, "_piece_count", None), retries._count_cached,
                  getattr(retries, "_estimate", None)):
        if cache is not None:
            cache.cache_clear()
    await call(sent[0])
    t = time.process_time()
    done = await asyncio.gather(*(call(r) for r in sent))
    cpu = time.process_time() - t
    assert all(c.text for c in done)
    await provider.aclose()
    return cpu


def engine_own(examples: int, profile: str | None = None) -> dict[str, float]:
    """One in-process engine run (see the module docstring): CPU seconds per part, and the call count."""
    import gc

    import httpx2
    import yaml

    from agent import tokens
    from agent.audit.diversity import DiversityTracker
    from agent.generate import Engine
    from agent.ledger import Ledger
    from agent.limits import Limiter
    from agent.plan import load_plan
    from agent.prompts import sample_request
    from agent.providers.base import Request
    from agent.providers.openai import OpenAIProvider
    from agent.providers.simulated import SimulatedProvider
    from agent.tokens import load_prices

    sim = SimulatedProvider(seed=1, drift=False)
    headers = {"content-type": "application/json",
               "x-ratelimit-limit-requests": "30000", "x-ratelimit-remaining-requests": "29999",
               "x-ratelimit-reset-requests": "2ms", "x-ratelimit-limit-tokens": "150000000",
               "x-ratelimit-remaining-tokens": "149990000", "x-ratelimit-reset-tokens": "4ms"}

    async def send(request, **kwargs):
        body = json.loads(request.content)
        messages = body["messages"]
        schema = body.get("response_format", {}).get("json_schema", {}).get("schema", {})
        user = messages[-1]["content"]
        c = sim.reply(Request(system=messages[0]["content"], user=user, schema=schema, seed=body.get("seed"),
                              purpose="reask" if "Your previous reply" in user else "generate"))
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini-2024-07-18",
                 "choices": [{"index": 0, "finish_reason": c.finish_reason,
                              "message": {"role": "assistant", "content": c.text, "refusal": None}}],
                 "usage": {"prompt_tokens": c.input_tokens, "completion_tokens": c.output_tokens,
                           "total_tokens": c.input_tokens + c.output_tokens,
                           "prompt_tokens_details": {"cached_tokens": 0}}}
        return httpx2.Response(200, content=json.dumps(reply).encode(), headers=headers, request=request)

    spent = {"post": 0.0, "audit": 0.0, "close_batch": 0.0, "request_for": 0.0, "worst_cost": 0.0,
             "add_pending": 0.0, "record_call": 0.0, "record_rest": 0.0, "draw_batch": 0.0,
             "save_state": 0.0, "snapshot": 0.0, "dedup": 0.0, "tracker": 0.0}
    open_part: list[str] = []
    overlaps: list[str] = []

    def timed(name: str, fn, *, inner: bool = False):
        def wrapper(*args, **kwargs):
            if open_part and not inner:
                overlaps.append(f"{name} ran while {open_part[-1]} was open")
            open_part.append(name)
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - t
                open_part.pop()
                if open_part:   # a part inside another: its time is not the outer part's
                    spent[open_part[-1]] -= time.process_time() - t
        return wrapper

    def timed_async(name: str, fn):
        async def wrapper(*args, **kwargs):
            if open_part:
                overlaps.append(f"{name} ran while {open_part[-1]} was open")
            open_part.append(name)
            t = time.process_time()
            try:
                return await fn(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - t
                open_part.pop()
        return wrapper

    gc_started = [0.0]

    def on_gc(phase: str, info: dict) -> None:   # collections that land in no timed part: the rest's share
        if phase == "start":
            gc_started[0] = time.process_time()
            return
        spent["gc_all"] += time.process_time() - gc_started[0]
        if not open_part:
            spent["gc_rest"] += time.process_time() - gc_started[0]

    spent["gc_rest"] = spent["gc_all"] = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        data = yaml.safe_load((ROOT / "plans" / "example.yaml").read_text())
        data["total"] = examples
        data["generation"].update(provider="openai", model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1")
        (Path(tmp) / "plan.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        plan = load_plan(Path(tmp) / "plan.yaml")
        ledger = Ledger.open(Path(tmp) / "out", plan, simulated=False)
        provider = OpenAIProvider(model="gpt-4o-mini", api_key="sk-bench", base_url="http://127.0.0.1:9/v1")
        engine = Engine(plan, ledger, provider, Limiter(), load_prices(), max_cost=1e6, budget_source="--max-cost")
        engine.request_for = timed("request_for", engine.request_for)
        engine.worst_cost = timed("worst_cost", engine.worst_cost)
        engine.draw_batch = timed("draw_batch", engine.draw_batch)
        engine.record = timed("record_rest", engine.record)
        ledger.add_pending = timed("add_pending", ledger.add_pending)
        # inside record: timed apart, and taken out of record's own time
        engine.audit = timed("audit", engine.audit, inner=True)
        engine.close_batch = timed("close_batch", engine.close_batch, inner=True)
        ledger.record_call = timed("record_call", ledger.record_call, inner=True)
        # the audit's state, saved once at the run's end (close_batch saves it during the run): not per call
        ledger.save_state = timed("save_state", ledger.save_state)
        engine.auditor.snapshot = timed("snapshot", engine.auditor.snapshot, inner=True)
        # inside audit and close_batch: the near-duplicate index and the diversity tracker (their own branches'
        # parts), taken out of the audit's and close_batch's time, so "loop" below is the rest of the loop
        index = engine.auditor.index
        index.find = timed("dedup", index.find, inner=True)
        index.add = timed("dedup", index.add, inner=True)
        tracked = {name: getattr(DiversityTracker, name) for name in ("add_batch", "common_phrases")}
        for name, method in tracked.items():   # on the class: an instance attribute would reach its snapshot
            setattr(DiversityTracker, name, timed("tracker", method, inner=True))

        async def run():
            client = provider._sdk()
            client._client.send = send
            # the SDK's first request works out its platform headers in a worker thread: done before timing
            await provider.complete(sample_request(plan))
            tokens.encoding()   # the tokenizer's tables, loaded once per process
            client.post = timed_async("post", client.post)
            gc.collect()
            t = time.process_time()
            gc.callbacks.append(on_gc)
            try:
                result = await engine.run()
            finally:
                gc.callbacks.remove(on_gc)
            total = time.process_time() - t
            await provider.aclose()
            return result, total

        try:
            if profile:
                import cProfile

                prof = cProfile.Profile()
                result, total = prof.runcall(asyncio.run, run())
                prof.dump_stats(profile)
            else:
                result, total = asyncio.run(run())
        finally:
            for name, method in tracked.items():
                setattr(DiversityTracker, name, method)
        calls = ledger.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        ledger.close()
    if overlaps:
        raise RuntimeError(f"{len(overlaps)} parts ran inside another, e.g. {overlaps[0]}")
    if result.accepted != examples:
        raise RuntimeError(f"the run accepted {result.accepted} of {examples}")
    spent["total"] = total
    spent["calls"] = calls
    spent["own"] = total - sum(spent[k] for k in ("post", "audit", "close_batch", "save_state", "snapshot", "dedup",
                                                   "tracker"))
    # the loop's own CPU outside the SDK's post, the near-duplicate index and the diversity tracker (round 6)
    spent["loop"] = spent["own"] + spent["audit"] + spent["close_batch"]
    spent["accepted"] = result.accepted
    return spent


def engine(args) -> None:
    from agent import retries, tokens

    for rnd in range(args.rounds):
        # every per-process cache of token counts empty, as at a run's start
        for cache in (tokens.count, tokens._line_count, getattr(tokens, "_piece_count", None), retries._count_cached,
                      getattr(retries, "_estimate", None)):
            if hasattr(cache, "cache_clear"):
                cache.cache_clear()
        s = engine_own(args.engine, args.profile if rnd == 0 else None)
        n = s["calls"]
        rest = s["own"] - sum(s[k] for k in ("request_for", "worst_cost", "add_pending", "record_call",
                                               "record_rest", "draw_batch"))
        print(f"round {rnd + 1}: {args.engine} examples, {n:.0f} calls: engine's own CPU per call "
              f"{per(s['own'], n)} (request_for {per(s['request_for'], n)}, worst_cost {per(s['worst_cost'], n)}, "
              f"add_pending {per(s['add_pending'], n)}, record_call {per(s['record_call'], n)}, rest of record "
              f"{per(s['record_rest'], n)}, draw_batch {per(s['draw_batch'], n)}, the call's coroutines and the loop "
              f"{per(rest, n)}, of it garbage collection {per(s['gc_rest'], n)} (in all parts {per(s['gc_all'], n)})); not counted: SDK post {per(s['post'], n)}, audit {per(s['audit'], n)}, close_batch "
              f"{per(s['close_batch'], n)}, dedup {per(s['dedup'], n)}, tracker {per(s['tracker'], n)}; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        print(f"  the loop outside the SDK's post, dedup and the tracker: {per(s['loop'], n)} a call, "
              f"{per(s['loop'], s['accepted'])} per accepted example", flush=True)


def per(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e3:.3f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wire-only", action="store_true", help="only the call path over HTTP")
    ap.add_argument("--engine", type=int, default=0, help="the engine's own CPU per call, Engine.run at N examples")
    ap.add_argument("--profile", help="with --engine: cProfile the first round into this file")
    args = ap.parse_args()
    if args.engine:
        return engine(args)


    from agent import prompts
    from agent.audit.auditor import to_record
    from agent.audit.checks import check_record
    from agent.audit.labels import has_example, measure, typo_signals
    from agent.plan import load_plan
    from agent.providers.openai import OpenAIProvider
    from agent.providers.simulated import SimulatedProvider
    from agent.reply import parse_reply
    from agent.retries import estimate_input

    plan = load_plan(ROOT / "plans" / "example.yaml")
    calls = specs_for(plan, args.calls)
    sim = SimulatedProvider()
    avoid: list[str] = []

    def build(specs, avoid_shown):
        keeper = getattr(prompts, "PlanPrompts", None)
        if keeper is not None:      # this tree keeps one per run, as its engine does
            kit = build.kit = getattr(build, "kit", None) or keeper(plan)
            return kit.request(specs), kit.request(specs, avoid=avoid_shown, steering={"instructions": ["x"]})
        return (prompts.build_request(plan, specs),
                prompts.build_request(plan, specs, avoid=avoid_shown, steering={"instructions": ["x"]}))

    # replies and records first (not timed), so every round times the same inputs
    requests, completions, records = [], [], []
    for specs in calls:
        shown = [q[:160] for q in avoid[:20]]   # the engine shows 20 recent questions, cut at 160 characters
        _, request = build(specs, shown)
        completion = asyncio.run(sim.complete(request))
        parsed = parse_reply(completion, plan.record_shape, [s.id for s in specs])
        recs = [(s, to_record(parsed.items[s.id], s, plan.record_shape)) for s in specs if s.id in parsed.items]
        avoid = [r["messages"][1]["content"] for _, r in recs] + avoid
        requests.append((specs, shown))
        completions.append(completion)
        records += recs

    if args.wire_only:
        return wire(args, [build(specs, shown)[1] for specs, shown in requests], [c.text for c in completions])

    # the provider and the SDK up to the socket, and the reply read back: a real AsyncOpenAI client whose HTTP
    # client's send() returns a canned reply at once (the SDK builds the request; no socket is opened)
    import httpx2

    reply = json.dumps({
        "id": "x", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": completions[0].text}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}).encode()

    async def provider_calls(sent) -> None:
        provider = OpenAIProvider(model="gpt-4o-mini", api_key="sk-bench", base_url="http://127.0.0.1:9/v1")
        client = provider._sdk()

        async def send(request, **kwargs):
            return httpx2.Response(200, content=reply, headers={"content-type": "application/json"}, request=request)

        client._client.send = send
        for r in sent:
            await provider.complete(r)

    # load the dictionary, the tokenizer and the Markdown parser before timing (one record's worth)
    measure(records[0][1], plan, requested=records[0][0].labels)
    estimate_input(build(*requests[0])[0])
    asyncio.run(provider_calls([build(*requests[0])[1]]))   # the SDK's lazy imports
    # round 1 is a run's first pass over these texts; later rounds find every per-line and per-token cache warm
    for rnd in range(args.rounds):
        t = time.process_time()
        built = [build(specs, shown) for specs, shown in requests]
        t_build = time.process_time() - t
        t = time.process_time()
        for pair in built:
            for r in pair:
                estimate_input(r)
        t_est = time.process_time() - t
        sent = [pair[1] for pair in built]
        t = time.process_time()
        asyncio.run(provider_calls(sent))
        t_provider = time.process_time() - t
        t = time.process_time()
        for specs, c in zip(calls, completions, strict=True):
            parse_reply(c, plan.record_shape, [s.id for s in specs])
        t_parse = time.process_time() - t
        t = time.process_time()
        for s, rec in records:
            check_record(rec, plan.record_shape, plan.quality, requested=s.labels)
        t_check = time.process_time() - t
        t = time.process_time()
        for s, rec in records:
            measure(rec, plan, requested=s.labels)
        t_measure = time.process_time() - t
        users = [m["content"] for _, rec in records for m in rec["messages"] if m["role"] == "user"]
        replies = [rec["messages"][-1]["content"] for _, rec in records]
        t = time.process_time()
        for u in users:
            typo_signals(u)
        t_typo = time.process_time() - t
        t = time.process_time()
        for r in replies:
            has_example(r)
        t_example = time.process_time() - t
        n, m = len(calls), len(records)
        print(f"round {rnd + 1}: per call: 2 requests {per(t_build, n)}, 2 estimates {per(t_est, n)}, "
              f"provider+SDK to the socket and back {per(t_provider, n)}, parse_reply {per(t_parse, n)}; per record ({m}): "
              f"check_record {per(t_check, m)}, measure {per(t_measure, m)}, typo_signals per user text "
              f"{per(t_typo, len(users))}, has_example {per(t_example, m)}", flush=True)
    wire(args, [pair[1] for pair in built], [c.text for c in completions])


def wire(args, sent: list, texts: list[str]) -> None:
    import importlib.util

    transports = ["httpx2"] + (["aiohttp"] if importlib.util.find_spec("aiohttp") else [])
    with reply_server(texts) as url:
        for rnd in range(args.rounds):
            figures = [f"{t} {per(asyncio.run(wire_calls(url, sent, t)), len(sent))}" for t in transports]
            print(f"round {rnd + 1}: call path over HTTP, Engine.call to Completion, per call (CPU): "
                  f"{', '.join(figures)}; load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
