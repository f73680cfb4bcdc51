"""`make bench`: run every benchmark, keep each one's figures in bench/notes/<topic>.md, then assemble
bench/README.md from those notes. Takes ~30-40 minutes on the 2-core machine; run by hand, never in CI.

    .venv/bin/python bench/run_all.py [--only engine resume ...] [--assemble-only]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
NOTES = BENCH / "notes"
PY = sys.executable

# topic -> (command, where its figures go): "self" = the script rewrites bench/notes/<topic>.md itself;
# "notes" = its output becomes that file; "raw" = its output goes to bench/results/ (git-ignored) and the
# notes file is written by hand from it (the dedup method needs prose a script can't write)
RUNS = {
    "throughput": ([PY, "bench/bench_throughput.py"], "self"),
    "engine": ([PY, "bench/bench_engine.py"], "notes"),
    "dedup": ([PY, "bench/bench_dedup.py", "--json", "bench/results/dedup.json"], "raw"),
    "diversity": ([PY, "bench/bench_diversity.py", "--examples", "50000", "--batches", "10", "--write"], "self"),
    "audit": ([PY, "bench/bench_audit.py", "--examples", "50000"], "notes"),
    "resume": ([PY, "bench/bench_resume.py", "--examples", "100000"], "notes"),
    "export": ([PY, "bench/bench_export.py", "--sizes", "10000", "100000", "--validate-gb", "1", "--write"], "self"),
    "clean": ([PY, "bench/bench_clean.py"], "raw"),
    "grounding": ([PY, "bench/bench_grounding.py", "--write"], "self"),
    "real": ([PY, "bench/bench_real.py", "--write"], "self"),
}
ORDER = ["summary", "throughput", "engine", "dedup", "audit", "diversity", "checks_labels", "resume", "export",
         "clean", "grounding"]
TITLES = {"engine": "Engine throughput (the whole generate loop)", "audit": "Audit overhead per batch",
          "resume": "Resume time on a large ledger"}


def machine() -> str:
    cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{platform.machine()}, {cpus} cores, Python {platform.python_version()}"


def run(topic: str) -> None:
    cmd, where = RUNS[topic]
    (BENCH / "results").mkdir(exist_ok=True)
    print(f"== {topic}: {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, cwd=BENCH.parent, capture_output=True, text=True)
    sys.stdout.write(proc.stdout[-3000:])
    if proc.returncode != 0:
        sys.stdout.write(proc.stderr[-3000:])
        raise SystemExit(f"{topic} failed")
    if where == "raw":
        (BENCH / "results" / f"{topic}.txt").write_text(proc.stdout)
    if where == "notes":
        body = "\n".join(line for line in proc.stdout.splitlines() if line.strip())
        NOTES.joinpath(f"{topic}.md").write_text(
            f"## {TITLES.get(topic, topic)}\n\nCommand: `.venv/bin/python {' '.join(cmd[1:])}`. "
            f"Machine: {machine()}. Date: {dt.date.today()}.\n\n```\n{body}\n```\n")


def assemble() -> None:
    parts = ["# Benchmarks\n",
             "Produced by `make bench` (bench/run_all.py), which runs every script below and collects the\n"
             "figures each one wrote to bench/notes/. Run by hand on the project's 2-core machine; tests never\n"
             "assert times. Each section names its command, the machine and the date it was measured.\n"]
    for topic in ORDER + sorted(p.stem for p in NOTES.glob("*.md") if p.stem not in ORDER):
        note = NOTES / f"{topic}.md"
        if note.exists():
            parts.append(note.read_text().strip() + "\n")
    (BENCH / "README.md").write_text("\n".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", choices=sorted(RUNS))
    ap.add_argument("--assemble-only", action="store_true")
    args = ap.parse_args()
    if not args.assemble_only:
        for topic in args.only or list(RUNS):
            run(topic)
    assemble()
    print("wrote bench/README.md")


if __name__ == "__main__":
    main()
