"""Diversity snapshot: agent/audit/state.py's data format against pickle (what it replaced), on a tracker
built from the diversity benchmark's synthetic examples.

    .venv/bin/python bench/bench_state.py --examples 10000
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_diversity import Texts  # noqa: E402

from agent.audit.auditor import STATE_MODULES  # noqa: E402
from agent.audit.diversity import DiversityTracker  # noqa: E402
from agent.audit.state import dumps, loads, same_shape  # noqa: E402


def best(fn, runs: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        started = time.process_time()
        out = fn()
        times.append(time.process_time() - started)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=10_000)
    args = parser.parse_args()
    texts = Texts(3)
    tracker = DiversityTracker({"tone": ["professional", "conversational", "mixed"]})
    started = time.process_time()
    for _ in range(args.examples // 100):
        tracker.add_batch([texts.example() for _ in range(100)])
    print(f"built a tracker of {args.examples:,} examples in {time.process_time() - started:.1f} s CPU")
    t_dump, blob = best(lambda: dumps(tracker, STATE_MODULES))
    t_load, back = best(lambda: loads(blob, STATE_MODULES))
    t_pdump, pblob = best(lambda: pickle.dumps(tracker))
    t_pload, _ = best(lambda: pickle.loads(pblob))  # our own blob, for the comparison only
    assert same_shape(back, DiversityTracker()) and back.metrics() == tracker.metrics()
    print(f"state format: save {t_dump:.2f} s, load {t_load:.2f} s, {len(blob) / 1e6:.1f} MB")
    print(f"pickle:       save {t_pdump:.2f} s, load {t_pload:.2f} s, {len(pblob) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
