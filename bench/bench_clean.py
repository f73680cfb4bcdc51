"""`datagen clean` on 100k rows (run by hand; figures go to bench/README.md, section "Clean").

    .venv/bin/python bench/bench_clean.py                      # 100k rows, near-dups auto
    .venv/bin/python bench/bench_clean.py --rows 20000 --near-dups exact

The corpus: openai chat rows, seeded. User turns are tests/test_dedup.py's generated questions (seed 000's
length mix, ~20% near-copies of an earlier one around the 0.85 threshold); replies are 20-300 words of the
simulated provider's sentences; a third of the rows carry a system prompt, a tenth are two-turn. About 3% of
the rows are planted faults, one kind each: too short, too long, an e-mail address, "As an AI", a refusal
without help, bad JSON, wrong keys.

The command runs as a child process (`python -m agent clean FILE -o OUT --report REPORT`): the time is its
wall time from start to exit (imports included), the CPU time that of it and its workers, the memory the
peak RSS of the largest of them (ru_maxrss). On a shared machine the wall time follows the load; the CPU
time divided by the cores is what an idle machine would take at best.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.providers.simulated_text import sentence  # noqa: E402
from tests.test_dedup import make_corpus  # noqa: E402

SYSTEMS = ["You are a support agent for a GPU cloud. Answer clearly and concisely.",
           "You help customers of a GPU rental service with billing and instances."]
FAULTS = ["short", "long", "pii", "as_an_ai", "refusal", "bad_json", "wrong_keys"]


def reply(rng: random.Random) -> str:
    parts: list[str] = []
    target = rng.randint(20, 300)
    while sum(len(p.split()) for p in parts) < target:
        parts.append(sentence(rng))
    return " ".join(parts)


def make_file(path: Path, rows: int, seed: int = 1) -> dict[str, int]:
    """Write the corpus as JSONL; returns planted faults by kind."""
    rng = random.Random(seed)
    questions = make_corpus(rows, seed=seed)
    planted: dict[str, int] = {}
    with path.open("w", encoding="utf-8") as f:
        for q in questions:
            messages = [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.33 else []
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": reply(rng)}]
            if rng.random() < 0.1:
                messages += [{"role": "user", "content": "Thanks. And how do I check that it worked afterwards?"},
                             {"role": "assistant", "content": reply(rng)}]
            fault = rng.choice(FAULTS) if rng.random() < 0.03 else None
            if fault:
                planted[fault] = planted.get(fault, 0) + 1
            if fault == "short":
                messages[-1]["content"] = "Yes."
            elif fault == "long":
                messages[-1]["content"] = "word " * 1200
            elif fault == "pii":
                messages[-1]["content"] += " Write to jane.doe@gmail.com for a refund."
            elif fault == "as_an_ai":
                messages[-1]["content"] = "As an AI language model, " + messages[-1]["content"]
            elif fault == "refusal":
                messages[-1]["content"] = "I cannot do that."
            if fault == "bad_json":
                f.write('{"messages": [\n')
            elif fault == "wrong_keys":
                f.write(json.dumps({"msgs": messages}) + "\n")
            else:
                f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return planted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--near-dups", default="auto", choices=["auto", "exact", "fast", "off"])
    ap.add_argument("--keep", type=Path, help="Keep the generated files in this folder (reused if there).")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_clean."))
    folder.mkdir(parents=True, exist_ok=True)
    data, out, report = folder / "rows.jsonl", folder / "clean.jsonl", folder / "report.txt"
    if not data.exists():
        t0 = time.perf_counter()
        planted = make_file(data, args.rows)
        print(f"corpus: {args.rows:,} rows, {data.stat().st_size / 1e6:.1f} MB, made in {time.perf_counter() - t0:.1f} s; "
              f"planted faults {planted}", flush=True)
    cmd = [sys.executable, "-m", "agent", "-v", "clean", str(data), "-o", str(out), "--report", str(report),
           "--near-dups", args.near_dups]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"})
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)   # the command and its worker processes
    peak, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    print(done.stderr.strip())
    if done.returncode:
        sys.exit(f"clean failed with exit status {done.returncode}")
    print(f"clean: {args.rows:,} rows in {wall:.1f} s wall ({args.rows / wall:,.0f} rows/s), {cpu:.1f} CPU s "
          f"(all processes), peak RSS {peak:,.0f} MB (largest process), near-dups {args.near_dups}, "
          f"{os.cpu_count()} CPUs; load average at the end {os.getloadavg()[0]:.1f}")
    if not args.keep:
        for p in (data, out, report):
            p.unlink(missing_ok=True)
        folder.rmdir()


if __name__ == "__main__":
    main()
