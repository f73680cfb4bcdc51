"""The per-call and per-record parts of the client loop, in-process, CPU time (process_time) per part.

    .venv/bin/python bench/bench_callpath.py [--calls 400] [--rounds 3] [--wire-only]

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
    for cache in (tokens._line_count, retries._count_cached, getattr(retries, "_estimate", None)):
        if cache is not None:
            cache.cache_clear()
    await call(sent[0])
    t = time.process_time()
    done = await asyncio.gather(*(call(r) for r in sent))
    cpu = time.process_time() - t
    assert all(c.text for c in done)
    await provider.aclose()
    return cpu


def per(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e3:.3f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wire-only", action="store_true", help="only the call path over HTTP")
    args = ap.parse_args()


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
