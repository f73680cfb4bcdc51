"""The whole `datagen generate` loop against the loopback server, beside the raw SDK ceiling, in one run.

    .venv/bin/python bench/bench_engine.py [--examples 2500] [--window 10]
    .venv/bin/python bench/bench_engine.py --cpu [--examples 10000] [--profile out.prof] [--floor | --without PARTS]

`--cpu`: the client CPU of the whole loop per accepted example, at zero latency and no rate limit, the
engine pinned to one core (the server runs in its own process). CPU = the engine process's user+system
time (its rusage, i.e. what time.process_time() would say inside it), not wall time: the machine is
shared. `--profile FILE` runs the engine under cProfile as well (a separate run: the profiler's own
overhead stays out of the figure) and prints the top functions by cumulative time. `--without PARTS` runs the
same loop with parts removed or replaced (bench/whatif.py lists them: what each decision about the 1 ms target
would buy); `--floor` is `--without dedup,tracker`, the near-duplicate index and the diversity tracker made
no-ops: what everything else costs, the least the whole loop can cost without changing those other parts.

The server (its own process) has 1 s latency and a 600 requests/min limit, and answers with the simulated
provider's examples read from each prompt, so the engine's draw, audit, ledger and export all do their
real work. First the raw AsyncOpenAI SDK at 10 and 11 workers (the best zero-failure rate is the ceiling),
then `datagen generate` as a user runs it (default plan settings: no concurrency tuning). Reported:
successful requests/min for both and their ratio (target >= 0.95), examples accepted vs the plan (target:
exact, nothing lost), 429s, and the engine's client CPU per request and per accepted example.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def bench_plan(url: str, examples: int, work: Path) -> tuple[Path, dict[str, str]]:
    """The example plan at `examples`, pointed at the loopback server, and the environment to run it in."""
    data = yaml.safe_load((ROOT / "plans" / "example.yaml").read_text())
    data["total"] = examples
    data["generation"].update(provider="openai", model="gpt-4o-mini", base_url=url + "/v1")
    plan = work / "plan.yaml"
    plan.write_text(yaml.safe_dump(data, sort_keys=False))
    return plan, {**os.environ, "OPENAI_API_KEY": "sk-bench"}


def engine_run(url: str, examples: int, work: Path) -> dict:
    plan, env = bench_plan(url, examples, work)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "agent", "generate", "--plan", str(plan), "--outputs",
                           str(work / "out"), "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    con = sqlite3.connect(work / "out" / "example" / "ledger.sqlite")
    ok_calls = con.execute("SELECT COUNT(*) FROM calls WHERE status != 'error'").fetchone()[0]
    faults = dict(con.execute("SELECT kind, COUNT(*) FROM faults GROUP BY 1").fetchall())
    accepted = con.execute("SELECT COUNT(*) FROM examples WHERE status='accepted'").fetchone()[0]
    done = [t for t, in con.execute("SELECT created_at FROM calls WHERE status != 'error' ORDER BY created_at")]
    # steady state, as the raw phases measure it: completions per minute over the middle 90% of the run
    # (the first calls wait for start-up, the last few are the exact-quota tail's single refills)
    lo, hi = int(len(done) * 0.05), int(len(done) * 0.95)
    steady = 60 * (hi - lo) / (done[hi] - done[lo])
    tail = done[-1] - done[hi]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"seconds": seconds, "ok_calls": ok_calls, "faults": faults, "accepted": accepted, "cpu": cpu,
            "steady": steady, "tail": tail}


def _pin_to_one_core() -> None:
    """In the engine's child process: run on one core (the last one; the server is left the others)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})


STALL_S = 30.0  # safety net: no new accepted example for this long means the run is stuck (see cpu_engine_run)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _accepted(ledger: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM examples WHERE status='accepted'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet, or busy
        return 0


def _near_duplicates(ledger: Path) -> tuple[int, int]:
    """(near_duplicate rejections, examples audited) in the ledger."""
    con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT COALESCE(SUM(reason = 'near_duplicate'), 0), COUNT(*) FROM examples").fetchone()
    finally:
        con.close()


def cpu_engine_run(url: str, examples: int, work: Path, profile: Path | None = None, without: str = "") -> dict:
    """`datagen generate` on one core, its CPU and accepted count sampled once a second. The run is expected
    to finish (the simulated provider writes new text for a re-asked spec, and the progress brake stops a run
    whose calls stop yielding examples). As a safety net, a run whose accepted count stops growing for STALL_S
    is stopped and reported as STALLED (an engine bug to report): its figure is then the CPU at the sample
    where the last example was accepted, export not included."""
    work.mkdir(parents=True, exist_ok=True)
    plan, env = bench_plan(url, examples, work)
    prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    entry = [str(ROOT / "bench" / "whatif.py"), without] if without else ["-m", "agent"]
    proc = subprocess.Popen([sys.executable, *prof, *entry, "generate", "--plan", str(plan), "--outputs",
                             str(work / "out"), "--quiet"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_pin_to_one_core)
    ledger = work / "out" / "example" / "ledger.sqlite"
    last = (0, 0.0, start)  # (accepted, cpu, when) at the last sample that saw progress
    stalled = False
    while proc.poll() is None:
        time.sleep(1.0)
        try:
            cpu = _cpu_seconds(proc.pid)
        except (OSError, IndexError):
            break
        n = _accepted(ledger)
        if n > last[0]:
            last = (n, cpu, time.monotonic())
        elif n < examples and time.monotonic() - last[2] > STALL_S:  # a full plan is exporting, not stuck
            stalled = True
            proc.terminate()
            break
    _, err = proc.communicate(timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 and not stalled:
        raise RuntimeError(err)
    total_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    accepted = _accepted(ledger)
    cpu = last[1] if stalled else total_cpu
    dups, audited = _near_duplicates(ledger)
    return {"accepted": accepted, "cpu": cpu, "stalled": stalled, "near_dups": dups, "audited": audited, "seconds": time.monotonic() - start,
            "per_example_ms": 1000 * cpu / (last[0] if stalled else accepted),
            "loop_ms": 1000 * last[1] / last[0] if last[0] else 0.0}


def cpu_run(examples: int, profile: Path | None, without: str = "") -> None:
    """Client CPU per accepted example at zero latency, one core, whole loop (start-up and export included)."""
    from bench_throughput import server_process

    with server_process(0.0, None, 10.0, 3600, simulated=True) as url, tempfile.TemporaryDirectory() as tmp:
        r = cpu_engine_run(url, examples, Path(tmp) / "cpu", without=without)
        if without:
            print(f"WITHOUT {without} (bench/whatif.py): not the product's loop, a measure of what those parts cost")
        how = (f"STALLED at {r['accepted']}/{examples} (no progress for {STALL_S:.0f} s: an engine bug; CPU taken at "
               "the last accepted example, no export)") if r["stalled"] else "finished (start-up and export included)"
        print(f"datagen generate, zero latency, one core: {r['accepted']}/{examples} accepted, {how}, "
              f"{r['seconds']:.1f} s wall")
        print(f"near_duplicate rejections: {r['near_dups']:,} of {r['audited']:,} examples audited "
              f"({100 * r['near_dups'] / max(1, r['audited']):.1f}%)")
        print(f"client CPU: {r['cpu']:.1f} s = {r['per_example_ms']:.3f} ms per accepted example (whole loop, audit "
              f"included; target <= 1 ms)")
        print(f"generation loop alone (CPU sampled at the last accepted example, before any export): "
              f"{r['loop_ms']:.3f} ms per accepted example", flush=True)
        if profile:
            p = cpu_engine_run(url, examples, Path(tmp) / "prof", profile=profile, without=without)
            import pstats

            print(f"profiled run (cProfile overhead included): {p['per_example_ms']:.3f} ms per accepted example; "
                  f"profile in {profile}")
            if profile.exists():
                pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(40)


def main() -> None:
    from bench_throughput import raw_phase, server_process
    from whatif import PARTS, parts

    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=None, help="default 2500, with --cpu 10000")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--raw-seconds", type=float, default=30.0)
    ap.add_argument("--cpu", action="store_true", help="client CPU per accepted example only (see above)")
    ap.add_argument("--profile", type=Path, default=None, help="with --cpu: also a cProfile run, written here")
    ap.add_argument("--floor", action="store_true", help="with --cpu: --without dedup,tracker")
    ap.add_argument("--without", default="", help=f"with --cpu: parts to remove, comma-separated ({', '.join(PARTS)})")
    args = ap.parse_args()
    without = ",".join(filter(None, ["dedup,tracker" if args.floor else "", args.without]))
    if without and not args.cpu:
        ap.error("--floor and --without go with --cpu")
    try:
        parts(without)
    except ValueError as e:
        ap.error(f"--without: {e}")
    if args.cpu:
        cpu_run(args.examples or 10_000, args.profile, without)
        return
    args.examples = args.examples or 2500
    with server_process(1.0, 600, args.window, 900, simulated=True) as url, tempfile.TemporaryDirectory() as tmp:
        raws = []
        for workers in (10, 11):
            phase = asyncio.run(raw_phase(url, workers, args.raw_seconds))
            raws.append((workers, phase))
            print(f"raw SDK {workers} workers: {phase.ok} ok, {phase.failed} failed, {phase.per_minute:.1f}/min",
                  flush=True)
            time.sleep(args.window)  # let the sliding window empty between phases
        best = max((p for _, p in raws if p.failed == 0), key=lambda p: p.per_minute)
        r = engine_run(url, args.examples, Path(tmp))
    per_min = 60 * r["ok_calls"] / r["seconds"]
    print(f"datagen generate: {r['accepted']}/{args.examples} accepted (lost: {args.examples - r['accepted']}), "
          f"{r['ok_calls']} successful calls, faults {r['faults']}")
    print(f"while generating (middle 90% of calls): {r['steady']:.1f}/min, ratio to the raw ceiling "
          f"({best.per_minute:.1f}/min) {r['steady'] / best.per_minute:.3f} (target >= 0.95)")
    print(f"end to end {r['seconds']:.1f} s = {per_min:.1f}/min, ratio {per_min / best.per_minute:.3f}: includes "
          f"~3 s of start-up, the export, and the exact-quota tail ({r['tail']:.1f} s of last refills)")
    print(f"client CPU: {1000 * r['cpu'] / r['ok_calls']:.2f} ms per request, "
          f"{1000 * r['cpu'] / r['accepted']:.2f} ms per accepted example (audit included)")


if __name__ == "__main__":
    main()
