"""Export and validate: throughput and peak memory (ru_maxrss of a child process).

    .venv/bin/python bench/bench_export.py                       # 10k and 100k export, 1 GB validate
    .venv/bin/python bench/bench_export.py --sizes 10000 --validate-gb 0.1 --write
    .venv/bin/python bench/bench_export.py --cpu outputs/example      # export() CPU on a copy of a run folder
    .venv/bin/python bench/bench_export.py --ledger outputs/example   # the ledger's CPU per call, replaying a run

`--cpu RUN_FOLDER`: the CPU (process_time, in-process; the cores are shared) of export() on a copy of a
finished run (its ledger and stored plan), after a warm-up, and what the checks found; `--rounds N` exports N times in the one process (round 1 is the
figure: a run exports once; later rounds run warm) and tiktoken's own CPU on the same texts is printed apart
(the floor of the token figures). `--code TREE` runs
another checkout's agent package instead (`git archive REV | tar -x -C /tmp/old`) to compare commits.
`--ledger RUN_FOLDER`: the run's calls replayed into a new ledger in-process, as the engine writes them
(add_pending, then record_call with the call's examples, its category state and settles=, record_batch
when a batch's last call is in); the CPU (process_time) of those ledger calls per call, without the
diversity snapshot (the auditor's O(examples) blob, written at most once a minute), which is timed apart.

Each measurement runs in a fresh child process (`--child ...`), so ru_maxrss is that job's peak alone (Linux
carries ru_maxrss across fork+exec, so the parent does no heavy work itself: building ledgers and the big
file happen in children too). The child also reports its peak after imports and a warm-up (tiktoken's
table, the checks' libraries): the baseline; peak - baseline is what the data cost.
Ledgers are synthetic: rows inserted straight through Ledger.record_call (500 examples per call) with
labels that fill the example plan's quotas exactly; user questions are random runs of the 5,000 most
frequent English words (pyspellchecker's list), so near-duplicates are as rare as in a real run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path("/tmp/datagen-bench-export")
PER_CALL = 500


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def warm_up() -> float:
    """Load what every run loads once (tiktoken's table, the checks' libraries); the peak after it is the baseline."""
    from agent import tokens
    from agent.audit.checks import check_record
    from agent.plan import Quality

    tokens.count("warm up")
    check_record({"messages": [{"role": "user", "content": "Call me at +1 415 555 2671 ok?"},
                               {"role": "assistant", "content": "Sure, I can help with that today."}]},
                 "chat", Quality())
    return peak_mb()


def vocabulary() -> list[str]:
    from spellchecker import SpellChecker

    freq = SpellChecker().word_frequency.dictionary
    return [w for w, _ in sorted(freq.items(), key=lambda kv: -kv[1]) if w.isalpha() and len(w) > 1][:5000]


def sentence(rng: random.Random, words: list[str], lo: int, hi: int) -> str:
    return " ".join(rng.choices(words, k=rng.randint(lo, hi))).capitalize()


def plan_for(n: int):
    import yaml

    from agent.plan import Plan

    data = yaml.safe_load((ROOT / "plans" / "example.yaml").read_text())
    data["total"] = n
    return Plan.model_validate(data)


def build_ledger(n: int, folder: Path) -> None:
    """A finished-looking run of n chat examples whose labels fill the plan's quotas exactly."""
    from agent.ledger import CallRow, ExampleRow, Ledger
    from agent.records import BatchSummary

    plan = plan_for(n)
    shutil.rmtree(folder, ignore_errors=True)
    ledger = Ledger.open(folder, plan, simulated=True)
    rng = random.Random(n)
    words = vocabulary()
    replies = [sentence(rng, words, 40, 400) + "." for _ in range(400)]
    columns = {}
    for dim, d in plan.dimensions.items():
        col = [c.name for c in d.categories for _ in range(c.quota or 0)]
        rng.shuffle(col)
        columns[dim] = col
    cost = 0.0
    for start in range(0, n, PER_CALL):
        rows = []
        for i in range(start, min(n, start + PER_CALL)):
            labels = {dim: col[i] for dim, col in columns.items()}
            question = f"{sentence(rng, words, 6, 60)}?"
            messages = [{"role": "system", "content": plan.system_prompts[i % len(plan.system_prompts)]},
                        {"role": "user", "content": question}, {"role": "assistant", "content": rng.choice(replies)}]
            if labels.get("turns") == "multi_turn":
                messages += [{"role": "user", "content": sentence(rng, words, 5, 25) + "?"},
                             {"role": "assistant", "content": rng.choice(replies)}]
            rows.append(ExampleRow(spec_id=f"s{i}", status="accepted", requested=labels, audited=labels,
                                   record={"messages": messages}, user_text=question))
        call = CallRow(batch=start // PER_CALL + 1, purpose="generate", provider="simulated", model="simulated-1",
                       status="ok", input_tokens=40_000, output_tokens=150_000, cost=0.6)
        ledger.record_call([call], rows, simulated=True)
        cost += call.cost
        ledger.record_batch(BatchSummary(batch=call.batch, accepted=len(rows), cost_total=round(cost, 6)))
    ledger.close()


def child_export(folder: Path, write_only: bool) -> dict:
    from agent.export import split
    from agent.export.pipeline import ALL, _place, _scan, export
    from agent.ledger import Ledger

    n = int(folder.name.split("-")[-1])
    plan = plan_for(n)
    ledger = Ledger(folder / "ledger.sqlite")
    base = warm_up()
    started = time.perf_counter()
    if write_only:   # the streaming passes alone: convert, write, gather statistics
        stats = _place(_scan(plan, ledger, folder / ALL, "openai", split.strata_dims(plan)), folder, set())
        written = stats.total
    else:
        result = export(plan, ledger, folder)
        written = result.stats.total
    seconds = time.perf_counter() - started
    return {"n": n, "written": written, "seconds": seconds, "per_s": written / seconds,
            "baseline_mb": base, "peak_mb": peak_mb()}


def make_big_file(path: Path, gigabytes: float) -> dict:
    """JSONL of 5-turn chats with distinct questions; one 50 MB line in the middle tests the line cap."""
    rng = random.Random(7)
    words = vocabulary()
    replies = [sentence(rng, words, 150, 300) + "." for _ in range(300)]
    target = int(gigabytes * 1e9)
    lines = 0
    with path.open("w", encoding="utf-8") as f:
        while f.tell() < target:
            messages = [{"role": "system", "content": "You are a helpful support assistant."}]
            for _ in range(5):
                messages += [{"role": "user", "content": sentence(rng, words, 8, 40) + "?"},
                             {"role": "assistant", "content": rng.choice(replies)}]
            f.write(json.dumps({"messages": messages}) + "\n")
            lines += 1
            if lines == 1000:
                f.write(json.dumps({"messages": [{"role": "user", "content": "x" * 50_000_000}]}) + "\n")
                lines += 1
    return {"lines": lines, "bytes": path.stat().st_size}


def child_validate(path: Path, near_dups: bool) -> dict:
    from agent.export.validate import validate_file

    base = warm_up()
    started = time.perf_counter()
    report = validate_file(path, near_dups=near_dups)
    seconds = time.perf_counter() - started
    return {"lines": report.lines, "seconds": seconds, "mb_per_s": path.stat().st_size / 1e6 / seconds,
            "lines_per_s": report.lines / seconds, "baseline_mb": base, "peak_mb": peak_mb(),
            "codes": dict(report.codes.most_common(6)), "near_duplicates": report.near_duplicates}


def export_cpu(run_folder: Path, rounds: int = 1) -> None:
    from agent.export.pipeline import export
    from agent.ledger import Ledger

    work = Path(tempfile.mkdtemp(prefix="bench-export-cpu-"))
    try:
        shutil.copytree(run_folder, work / "run")
        ledger = Ledger(work / "run" / "ledger.sqlite")
        plan = ledger.stored_plan()
        assert plan is not None, f"{run_folder}: no plan stored in the ledger"
        warm_up()
        cpus = []
        for i in range(rounds):   # round 1 is what a run's one export costs; later ones run warm
            out = work / f"out{i}"
            c0 = time.process_time()
            result = export(plan, ledger, out)
            cpus.append(time.process_time() - c0)
            shutil.rmtree(out)
        cpu = cpus[0]
        found = {name: (r.valid, r.near_duplicates, r.cross_duplicates, r.tokens_total, dict(r.codes))
                 for name, r in result.reports.items()}
        import agent

        n = max(1, result.stats.total)
        print(json.dumps({"code": str(Path(agent.__file__).parent.parent), "examples": result.stats.total,
                          "cpu_s": round(cpu, 3), "ms_per_example": round(cpu / n * 1000, 3),
                          "rounds_ms_per_example": [round(c / n * 1000, 3) for c in cpus],
                          "tiktoken_ms_per_example": round(tiktoken_cpu(ledger) / n * 1000, 3),
                          "load": os.getloadavg()[0], "reports": found}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def tiktoken_cpu(ledger) -> float:
    """The CPU of tiktoken alone on what the export counts: each distinct message text of the accepted
    records once (the export's counts are cached per text, so the few system prompts cost once)."""
    from agent import tokens

    encode = tokens.encoding().encode_ordinary
    texts = {m["content"] for row in ledger.iter_accepted() for m in row["record"].get("messages", [])}
    c0 = time.process_time()
    for text in texts:
        encode(text)
    return time.process_time() - c0


def ledger_cpu(run_folder: Path) -> None:
    """The ledger's own CPU per call (see the module docstring), replaying run_folder's ledger."""
    import sqlite3

    from agent.ledger import CallRow, ExampleRow, Ledger
    from agent.records import BatchSummary

    src = sqlite3.connect(f"file:{run_folder / 'ledger.sqlite'}?mode=ro", uri=True)
    plan_json = src.execute("SELECT value FROM meta WHERE key = 'plan'").fetchone()[0]
    categories = (src.execute("SELECT value FROM state WHERE key = 'categories'").fetchone() or [b""])[0]
    snapshot = (src.execute("SELECT value FROM state WHERE key = 'diversity'").fetchone() or [b""])[0]
    examples: dict[int, list[ExampleRow]] = {}
    for (call_id, spec_id, status, reason, detail, topic, requested, audited, record, user_text,
         passage) in src.execute("SELECT call_id, spec_id, status, reason, detail, topic, requested, audited, record,"
                                 " user_text, passage FROM examples ORDER BY id"):
        examples.setdefault(call_id, []).append(ExampleRow(
            spec_id=spec_id, status=status, requested=json.loads(requested),
            audited=json.loads(audited) if audited else None, record=json.loads(record) if record else None,
            reason=reason, detail=detail, topic=topic or "", user_text=user_text or "", passage=passage or ""))
    groups: list[list[CallRow]] = []   # one record_call each: a call and its re-ask
    for (batch, purpose, provider, model, status, kind, attempts, tin, tout, cached, cost, latency, mode, error,
         reply, call_id) in src.execute(
            "SELECT batch, purpose, provider, model, status, kind, attempts, input_tokens, output_tokens,"
            " cached_tokens, cost, latency, mode, error, reply, id FROM calls WHERE status != 'pending' ORDER BY id"):
        row = CallRow(batch=batch, purpose=purpose, provider=provider, model=model, status=status, kind=kind,
                      attempts=attempts, input_tokens=tin, output_tokens=tout, cached_tokens=cached, cost=cost,
                      latency=latency, mode=mode, error=error, reply=reply)
        row.id = call_id  # type: ignore[attr-defined]  # where its examples are
        if purpose == "reask" and groups:
            groups[-1].append(row)
        else:
            groups.append([row])
    summaries = {json.loads(s)["batch"]: BatchSummary.loads(s) for (s,) in src.execute("SELECT summary FROM batches")}
    last_of = {g[0].batch: i for i, g in enumerate(groups)}
    work = Path(tempfile.mkdtemp(prefix="bench-ledger-cpu-"))
    try:
        from agent.plan import Plan

        ledger = Ledger.open(work, Plan.model_validate_json(plan_json), simulated=True)
        ledger.note_dedup(0.85, exact=True)
        cpu = 0.0
        for i, calls in enumerate(groups):
            rows = examples.get(calls[-1].id, [])  # type: ignore[attr-defined]
            c0 = time.process_time()
            pending = ledger.add_pending(calls[0].batch, calls[0].provider, calls[0].model, 0.01)
            ledger.record_call(calls, rows, simulated=True, settles=pending, state={"categories": categories},
                               dedup_checked=True)
            if last_of.get(calls[0].batch) == i and calls[0].batch in summaries:
                ledger.record_batch(summaries[calls[0].batch])
            cpu += time.process_time() - c0
        c0 = time.process_time()
        ledger.save_state({"diversity": snapshot, "diversity_upto": b"1"})
        snap = time.process_time() - c0
        n_examples = sum(len(v) for v in examples.values())
        import agent

        print(json.dumps({"code": str(Path(agent.__file__).parent.parent), "calls": len(groups),
                          "examples": n_examples, "cpu_s": round(cpu, 3),
                          "ms_per_call": round(cpu / max(1, len(groups)) * 1000, 3),
                          "snapshot_mb": round(len(snapshot) / 1e6, 1), "snapshot_ms": round(snap * 1000, 1),
                          "load": os.getloadavg()[0]}))
        ledger.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    p.add_argument("--validate-gb", type=float, default=1.0)
    p.add_argument("--write", action="store_true", help="write bench/notes/export.md")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=Path, metavar="RUN_FOLDER", help="only export()'s CPU on a copy of this run")
    p.add_argument("--ledger", type=Path, metavar="RUN_FOLDER", help="only the ledger's CPU per call, replaying this run")
    p.add_argument("--code", type=Path, metavar="TREE", help="with --cpu/--ledger: import agent from this checkout")
    p.add_argument("--rounds", type=int, default=1, help="with --cpu: export this many times in the one process")
    a = p.parse_args()
    if a.code:
        sys.path.insert(0, str(a.code.resolve()))
    if a.cpu:
        return export_cpu(a.cpu, a.rounds)
    if a.ledger:
        return ledger_cpu(a.ledger)
    if a.child:
        kind, target = a.child[0], Path(a.child[1])
        result = {"build": lambda: build_ledger(int(target.name.split("-")[-1]), target) or {},
                  "bigfile": lambda: make_big_file(target, float(a.child[2])),
                  "export": lambda: child_export(target, False), "write": lambda: child_export(target, True),
                  "validate": lambda: child_validate(target, a.child[2] == "1")}[kind]()
        print(json.dumps(result))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in a.sizes:
        folder = WORK / f"run-{n}"
        t = time.perf_counter()
        run_child("build", str(folder))
        print(f"built {n:,} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        write = run_child("write", str(folder))
        print(f"write-only {n:,}: {write}", file=sys.stderr)
        full = run_child("export", str(folder))
        print(f"export {n:,}: {full}", file=sys.stderr)
        rows.append((n, write, full))
        shutil.rmtree(folder, ignore_errors=True)
    val = None
    if a.validate_gb > 0:
        big = WORK / "big.jsonl"
        made = run_child("bigfile", str(big), str(a.validate_gb))  # in a child: the parent stays small
        print(f"file: {made}", file=sys.stderr)
        val = {}
        try:
            for near_dups in ("1", "0"):
                val[near_dups] = {**run_child("validate", str(big), near_dups), **made}
                print(f"validate (near-dups {near_dups}): {val[near_dups]}", file=sys.stderr)
        finally:
            big.unlink(missing_ok=True)
    text = notes(rows, val, a)
    print(text)
    if a.write:
        (ROOT / "bench" / "notes" / "export.md").write_text(text)


def notes(rows, val, a) -> str:
    cmd = "python bench/bench_export.py " + " ".join(
        [f"--sizes {' '.join(map(str, a.sizes))}", f"--validate-gb {a.validate_gb:g}", "--write"])
    out = ["## Export and validate", "",
           f"Measured {time.strftime('%Y-%m-%d')} on this machine ({os.cpu_count()} cores), one child process per "
           f"figure; peak = ru_maxrss of that child, baseline = its peak right after imports.",
           f"Command: `.venv/bin/{cmd}`", "",
           "| examples | pass | seconds | examples/s | baseline MB | peak MB | peak - baseline MB |",
           "|---:|---|---:|---:|---:|---:|---:|"]
    for n, write, full in rows:
        for name, r in (("write only (convert + write + stats)", write), ("full export", full)):
            out.append(f"| {n:,} | {name} | {r['seconds']:.1f} | {r['per_s']:,.0f} | {r['baseline_mb']:.0f} | "
                       f"{r['peak_mb']:.0f} | {r['peak_mb'] - r['baseline_mb']:.0f} |")
    if val:
        first = next(iter(val.values()))
        out += ["", f"Validate: {first['bytes'] / 1e9:.2f} GB, {first['lines']:,} lines (5-turn chats, one 50 MB "
                    "line that the 10 MB cap must skip):", "",
                "| near-duplicate check | seconds | MB/s | lines/s | baseline MB | peak MB | errors found |",
                "|---|---:|---:|---:|---:|---:|---|"]
        for key, v in val.items():
            out.append(f"| {'on' if key == '1' else 'off (--no-near-dups)'} | {v['seconds']:.0f} | "
                       f"{v['mb_per_s']:.1f} | {v['lines_per_s']:,.0f} | {v['baseline_mb']:.0f} | {v['peak_mb']:.0f} | "
                       f"{v['codes']} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
