"""Resume time on a large ledger: what `datagen generate` does before its first call when a run exists.

    .venv/bin/python bench/bench_resume.py [--examples 100000]

Builds a ledger of N accepted examples (simulated text, written straight through Ledger.record_call in
calls of 5), records a batch audit with the diversity snapshot as the engine does, then times, in a fresh
process, Ledger.open (plan compatibility check) + Engine construction (label counts, near-duplicate index
rebuild, diversity state restore, topic usage) + the first draw. Target: under 2 s at 100k.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(db_dir: Path, n: int) -> None:
    from agent.draw import draw
    from agent.ledger import CallRow, ExampleRow, Ledger
    from agent.plan import load_plan
    from agent.providers import simulated_text as text

    plan = load_plan(ROOT / "plans" / "example.yaml").model_copy(update={"total": n})
    plan = type(plan).model_validate(plan.model_dump())  # recompute quotas for the new total
    ledger = Ledger.open(db_dir, plan, simulated=True)
    rng = random.Random(1)
    remaining = {d: {c.name: c.quota for c in dim.categories} for d, dim in plan.dimensions.items()}
    done = 0
    auditor_items = []
    while done < n:
        labels = draw(remaining, min(500, n - done), rng)
        rows = []
        for lab in labels:
            for d, c in lab.items():
                remaining[d][c] -= 1
            user = f"{done} " + text.user_message(rng, lab, "", 5, 40)
            reply = " ".join(text.sentence(rng) for _ in range(rng.randint(4, 12)))
            record = {"messages": [{"role": "system", "content": plan.system_prompts[0]},
                                   {"role": "user", "content": user}, {"role": "assistant", "content": reply}]}
            rows.append(ExampleRow(spec_id=f"x{done}", status="accepted", requested=lab, audited=lab, record=record,
                                   topic="t", user_text=user))
            auditor_items.append({"user": user, "response": reply, "labels": lab})
            done += 1
        for i in range(0, len(rows), 5):
            ledger.record_call([CallRow(batch=done // 100, purpose="generate", provider="simulated",
                                        model="simulated-1", status="ok")], rows[i:i + 5], simulated=True)
    # the engine's batch audit: stores the diversity snapshot that resume restores, in the ledger's state format
    # (agent/audit/state.py: a pickle is refused there, and resume would rebuild the state instead of timing it)
    from agent.audit.auditor import STATE_MODULES
    from agent.audit.diversity import DiversityTracker
    from agent.audit.state import dumps
    from agent.records import BatchSummary

    tracker = DiversityTracker(plan.structure())
    tracker.add_batch(auditor_items)
    ledger.record_batch(BatchSummary(batch=1, accepted=n),
                        {"diversity": dumps(tracker, STATE_MODULES),
                         "diversity_upto": str(ledger.last_accepted_id()).encode()})
    (db_dir / "plan.json").write_text(plan.model_dump_json())
    ledger.close()


def resume(db_dir: Path) -> dict:
    from agent.generate import Engine
    from agent.ledger import Ledger
    from agent.limits import Limiter
    from agent.plan import Plan
    from agent.providers import create
    from agent.tokens import load_prices

    plan = Plan.model_validate_json((db_dir / "plan.json").read_text())
    plan = plan.model_copy(update={"total": plan.total})
    t0 = time.perf_counter()
    ledger = Ledger.open(db_dir, plan, simulated=True)
    t1 = time.perf_counter()
    engine = Engine(plan, ledger, create("simulated", model="simulated-1"), Limiter(), load_prices())
    t2 = time.perf_counter()
    engine.draw_batch()
    t3 = time.perf_counter()
    engine.auditor.load_index()  # runs in a worker thread while the first calls are in flight
    t4 = time.perf_counter()
    restored = engine.auditor._restore() is not None   # the snapshot build() wrote was read, not rebuilt
    return {"open_s": t1 - t0, "engine_s": t2 - t1, "first_draw_s": t3 - t2, "total_s": t3 - t0,
            "index_s": t4 - t3,
            "accepted": engine.auditor.n_accepted, "restored": restored,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(resume(Path(args.child))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        build(Path(tmp), args.examples)
        print(f"built a ledger of {args.examples:,} accepted examples in {time.perf_counter() - t:.1f} s", flush=True)
        size = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        out = subprocess.run([sys.executable, __file__, "--child", tmp], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        print(f"ledger {size:.0f} MB; resume until the first calls can be sent: open+check {r['open_s']:.2f} s, "
              f"engine (counts, topics, kept texts) {r['engine_s']:.2f} s, first draw {r['first_draw_s']:.3f} s; "
              f"total {r['total_s']:.2f} s (target < 2 s). Near-duplicate index rebuilt meanwhile in a worker "
              f"thread: {r['index_s']:.2f} s (the first replies are audited after it). Peak RSS {r['peak_rss_mb']:.0f} MB; "
              f"diversity snapshot {'restored' if r['restored'] else 'NOT restored (rebuilt from the examples)'}")


if __name__ == "__main__":
    main()
