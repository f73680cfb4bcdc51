"""The exact-quota tail on the simulated provider: calls and seconds from the moment only the last 50 examples
were left to accept until the plan filled, total calls, and `datagen estimate`'s calls for the same plan.

    python bench/bench_tail.py [--src DIR] [--total 400] [--latency 1.0] [--seed 0]

--src runs another checkout of datagen (e.g. `git archive <commit> | tar -x -C DIR`) for a before/after.
Times come from the ledger's created_at columns; the engine runs in a subprocess, as a user runs it.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TAIL = 50
CLI = "import sys; from agent.cli import main; main(sys.argv[1:])"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, default=ROOT)
    ap.add_argument("--total", type=int, default=400)
    ap.add_argument("--latency", type=float, default=1.0, help="DATAGEN_SIMULATED_LATENCY, seconds per call")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tail-"))
    data = yaml.safe_load((a.src / "plans" / "example.yaml").read_text())
    data["total"] = a.total
    data["generation"]["seed"] = a.seed
    plan = work / "plan.yaml"
    plan.write_text(yaml.safe_dump(data, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(a.src), DATAGEN_SIMULATED_LATENCY=str(a.latency))
    est = subprocess.run([sys.executable, "-c", CLI, "estimate", "--plan", str(plan), "--outputs", str(work / "none")],
                         capture_output=True, text=True, cwd=a.src, env=env).stdout.strip().splitlines()
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-c", CLI, "generate", "--plan", str(plan), "--outputs", str(work / "out"),
                        "--quiet", "--no-export"], capture_output=True, text=True, cwd=a.src, env=env)
    wall = time.monotonic() - started
    con = sqlite3.connect(work / "out" / "example" / "ledger.sqlite")
    calls = con.execute("SELECT COUNT(*) FROM calls WHERE purpose = 'generate'").fetchone()[0]
    accepted = [t for t, in con.execute("SELECT created_at FROM examples WHERE status = 'accepted' ORDER BY id")]
    print(f"src {a.src} total {a.total} seed {a.seed} latency {a.latency}: exit {r.returncode}, {wall:.1f} s, "
          f"{len(accepted)} accepted, {calls} generate calls")
    if len(accepted) >= a.total > TAIL:
        t0 = accepted[a.total - TAIL - 1]
        n = con.execute("SELECT COUNT(*) FROM calls WHERE purpose = 'generate' AND created_at > ?", (t0,)).fetchone()[0]
        print(f"tail (last {TAIL} examples): {n} calls, {accepted[-1] - t0:.1f} s")
    print("estimate:", est[0] if est else "-")


if __name__ == "__main__":
    main()
