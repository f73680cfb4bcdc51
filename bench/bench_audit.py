"""Audit overhead per batch: 100 new examples audited and committed on a ledger that already holds N.

    .venv/bin/python bench/bench_audit.py [--examples 50000]

Per example: checks, measured labels, near-duplicate check against all N kept, room; then the call's
ledger transaction (20 calls of 5); then the batch audit (diversity update, summary, snapshot). Target:
under 1 s per batch of 100 at N = 50k. The first batch audit after a resume also restores the diversity
state (reported separately: it happens once per run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=50_000)
    args = ap.parse_args()
    import bench_resume

    from agent.generate import Engine
    from agent.ledger import CallRow, Ledger
    from agent.limits import Limiter
    from agent.plan import Plan
    from agent.prompts import build_request
    from agent.providers import create
    from agent.providers.simulated import SimulatedProvider
    from agent.reply import parse_reply
    from agent.tokens import load_prices

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        bench_resume.build(d, args.examples)
        print(f"built a ledger of {args.examples:,} in {time.perf_counter() - t:.0f} s", flush=True)
        plan = Plan.model_validate_json((d / "plan.json").read_text())
        data = plan.model_dump()
        data["generation"]["batch_size"] = 100
        plan = Plan.model_validate({**data, "total": args.examples + 1000})
        ledger = Ledger.open(d, plan, simulated=True)
        engine = Engine(plan, ledger, create("simulated", model="simulated-1"), Limiter(), load_prices())
        engine.auditor.load_index()
        t = time.perf_counter()
        _ = engine.auditor.tracker  # the once-per-run restore
        restore = time.perf_counter() - t
        writer = SimulatedProvider(seed=5, drift=False)
        timings = []
        for batch in range(3):
            calls = engine.draw_batch()[:20]
            replies = []
            for specs in calls:  # generation is the provider's time, not the audit's: done before timing
                request = build_request(plan, specs)
                replies.append((specs, parse_reply(writer.reply(request), "chat", [s.id for s in specs])))
            t = time.perf_counter()
            for specs, parsed in replies:
                for s in specs:
                    for dname, c in s.labels.items():
                        engine.reserved[dname][c] -= 1
                rows = [engine.auditor.admit(s, parsed.items[s.id]) for s in specs if s.id in parsed.items]
                ledger.record_call([CallRow(batch=engine.batch_no, purpose="generate", provider="simulated",
                                            model="simulated-1", status="ok")], rows, simulated=True)
            summary = engine.auditor.close_batch(engine.batch_no)
            ledger.record_batch(summary)
            timings.append(time.perf_counter() - t)
            n = sum(len(s) for s, _ in replies)
            print(f"batch {batch + 1}: {n} examples audited and committed in {timings[-1]:.3f} s "
                  f"({summary.accepted} accepted)", flush=True)
        t = time.perf_counter()
        ledger.save_state(engine.auditor.snapshot(ledger.last_accepted_id()))
        snap = time.perf_counter() - t
        print(f"diversity snapshot (at most once a minute and at the end of a run): {snap:.2f} s", flush=True)
        print(f"audit overhead per batch of 100 on a ledger of {args.examples:,}: best {min(timings):.3f} s, "
              f"worst {max(timings):.3f} s (target < 1 s); one-time diversity restore after resume {restore:.2f} s")


if __name__ == "__main__":
    main()
