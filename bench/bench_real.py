"""Money and progress on real-model terms: what a run spends per accepted example, how far --max-cost can be
crossed, and how quickly the progress brake stops a hopeless run.

    .venv/bin/python bench/bench_real.py [--runs 20] [--examples 400]

1. Calls and cost per accepted example on the drifting simulated provider, priced like gpt-4o-mini.
2. Worst overshoot of --max-cost over N runs: the simulated provider priced at $1,000 per million tokens so
   each call costs dollars, budgets from $20 to $400, concurrency 4-32 (many calls in flight when the cap nears).
3. The brake: a loopback server whose replies are never usable (wrong shape), as a local server (paced from
   1 call in flight) and as a hosted one (32 in flight): calls and seconds until the run stops by itself.
Prints a Markdown section for bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.errors import BudgetExceeded, NoProgress  # noqa: E402
from agent.plan import Plan  # noqa: E402
from agent.runner import GenerateOptions, run  # noqa: E402


def plan(total: int, **generation) -> Plan:
    data = yaml.safe_load((ROOT / "plans" / "example.yaml").read_text())
    data["total"] = total
    data["generation"].update(generation)
    return Plan.model_validate(data)


def calls_and_cost(db: Path) -> tuple[int, float, int]:
    con = sqlite3.connect(db)
    calls, cost = con.execute("SELECT COUNT(*), COALESCE(SUM(cost), 0) FROM calls").fetchone()
    accepted = con.execute("SELECT COUNT(*) FROM examples WHERE status='accepted'").fetchone()[0]
    con.close()
    return calls, cost, accepted


def per_example(work: Path, examples: int) -> str:
    prices = work / "prices.yaml"
    prices.write_text("models:\n  simulated-1: {input: 0.15, output: 0.60, cached_input: 0.075}\n")
    from agent.estimate import estimate
    from agent.tokens import load_prices

    p = plan(examples)
    est = estimate(p, load_prices(prices))
    started = time.monotonic()
    run(p, GenerateOptions(quiet=True, export=False, prices=prices, outputs=work / "sim"))
    seconds = time.monotonic() - started
    calls, cost, accepted = calls_and_cost(work / "sim" / "example" / "ledger.sqlite")
    return (f"| simulated (drifting), {examples} examples, gpt-4o-mini prices | {calls} calls ({calls / accepted:.3f} "
            f"per accepted; estimate {est.calls}) | ${cost:.5f} (${cost / accepted * 1000:.4f} per 1,000 accepted) "
            f"| {seconds:.1f} s |")


def overshoot(work: Path, runs: int) -> list[str]:
    prices = work / "prices-dear.yaml"
    prices.write_text("models:\n  simulated-1: {input: 1000, output: 1000}\n")
    rows, worst = [], -1.0
    for i in range(runs):
        cap = 20.0 + 20 * i
        concurrency = (4, 8, 16, 32)[i % 4]
        p = plan(400, seed=i, concurrency=concurrency)
        out = work / f"budget{i}"
        try:
            run(p, GenerateOptions(quiet=True, export=False, prices=prices, outputs=out, max_cost=cap))
            stopped = "filled"
        except BudgetExceeded:
            stopped = "budget"
        except NoProgress:
            stopped = "brake"
        calls, spent, accepted = calls_and_cost(out / "example" / "ledger.sqlite")
        over = (spent - cap) / cap
        worst = max(worst, over)
        rows.append(f"| {i + 1} | ${cap:.0f} | {concurrency} | ${spent:.2f} | {over:+.1%} | {accepted} | {stopped} |")
    return [f"Worst overshoot over {runs} runs: **{worst:+.1%}** of the cap (negative: the cap was never crossed; "
            f"the gap is the worst case still reserved for calls that did not fit).", "",
            "| run | cap | concurrency | spent | over the cap | accepted | ended by |", "|---|---|---|---|---|---|---|",
            *rows]


def brake(work: Path) -> list[str]:
    from tests.fakeserver import FakeServer
    from tests.responders import unusable_responder

    os.environ["OPENAI_API_KEY"] = "sk-bench"
    rows = []
    for label, concurrency in (("local server (adaptive, starts at 1)", None), ("hosted-like (32 in flight)", 32)):
        with FakeServer(responder=unusable_responder("wrong_shape"), latency=0.5, max_requests=5000,
                        max_lifetime=600) as server:
            p = plan(400, provider="openai", model="gpt-4o-mini", base_url=server.openai_url,
                     concurrency=concurrency)
            started = time.monotonic()
            try:
                run(p, GenerateOptions(quiet=True, export=False, outputs=work / f"brake{concurrency}"))
                how = "did not stop!"
            except NoProgress:
                how = "brake (exit 5)"
            seconds = time.monotonic() - started
            requests = len(server.requests)
        calls, cost, _ = calls_and_cost(work / f"brake{concurrency}" / "example" / "ledger.sqlite")
        rows.append(f"| {label} | {requests} requests ({calls} ledger rows) | {seconds:.1f} s | ${cost:.5f} | {how} |")
    return ["| hopeless server (0.5 s replies, always the wrong shape) | calls until stop | seconds | spent "
            "(gpt-4o-mini prices) | stopped by |", "|---|---|---|---|---|", *rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--write", action="store_true", help="also write bench/notes/real.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lines = ["## Real models: money and progress (bench/bench_real.py)", "",
                 "| run | calls | cost | time |", "|---|---|---|---|", per_example(work, args.examples), ""]
        lines += overshoot(work, args.runs) + [""]
        lines += brake(work)
    import datetime
    import platform

    lines.insert(2, f"Command: `.venv/bin/python bench/bench_real.py --runs {args.runs} --examples {args.examples}`. "
                    f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python "
                    f"{platform.python_version()}. Date: {datetime.date.today()}.\n")
    text = "\n".join(lines)
    print(text)
    if args.write:
        (ROOT / "bench" / "notes" / "real.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
