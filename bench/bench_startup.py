"""`datagen --help` and `datagen plan --show` start-up: wall and CPU time of a fresh interpreter, and what it imports.

Usage: .venv/bin/python bench/bench_startup.py [--runs N] [--instructions] [SOURCE_DIR ...]
Each SOURCE_DIR is a checkout of the project (default: this one); its `agent` package is run with this
interpreter (cwd = SOURCE_DIR, so `-c` imports that checkout's code first). Runs are interleaved so machine
load hits every checkout alike; min and median of the runs are printed, with the load average.

Bytecode: children run without PYTHONDONTWRITEBYTECODE (one warm-up run each writes the checkout's .pyc),
as an installed datagen runs. (With the variable set and no __pycache__, every run would compile datagen's
own modules: 0.01-0.03 s more CPU for `plan --show`.)
"floor" is what no change to datagen can remove: the interpreter importing click and PyYAML and building
one pydantic model (pydantic's import and first-model work).
--instructions adds, per case, the instructions one run executes, counted by valgrind's callgrind
(PYTHONHASHSEED=0): unlike times, the count does not move with the machine's load (~12 s of CPU per case).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"--help": ["--help"], "plan --show": ["plan", "--show", "plans/example.yaml"]}
FLOOR = "import click, yaml\nfrom pydantic import BaseModel\nclass A(BaseModel):\n    x: int\nA(x=1)\n"


def command_code(args: list[str]) -> str:
    return f"from agent.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass\n"


def once(code: str, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s: user + system of the child) of one fresh interpreter running `code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=cwd, stdout=subprocess.DEVNULL, env=env, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def instructions(code: str, cwd: Path, env: dict[str, str]) -> int:
    """Instructions (callgrind's Ir) one fresh interpreter executes running `code`."""
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
                           code], cwd=cwd, env={**env, "PYTHONHASHSEED": "0"}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"callgrind printed no instruction count: {done.stderr[-300:]}")
    return int(found.group(1))


def modules(source: Path, args: list[str], env: dict[str, str]) -> int:
    code = command_code(args) + "import sys\nprint(len(sys.modules), file=sys.stderr)\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, env=env,
                          check=False)
    return int(done.stderr.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sources", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--instructions", action="store_true", help="also count instructions with valgrind")
    a = ap.parse_args()
    sources = [p.resolve() for p in a.sources] or [Path(__file__).resolve().parent.parent]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    here = Path.cwd()
    cases = [("bare interpreter", "pass", here), ("floor (click, yaml, pydantic)", FLOOR, here)]
    cases += [(f"{s.name}: datagen {c}", command_code(args), s) for s in sources for c, args in COMMANDS.items()]
    for _, code, cwd in cases:   # warm-up: writes .pyc where allowed, fills the page cache
        once(code, cwd, env)
    load = os.getloadavg()[0]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in cases}
    for _ in range(a.runs):
        for name, code, cwd in cases:
            results[name].append(once(code, cwd, env))
    print(f"{a.runs} runs each, load average {load:.1f} -> "
          f"{os.getloadavg()[0]:.1f}")
    for name, code, cwd in cases:
        walls, cpus = [w for w, _ in results[name]], [c for _, c in results[name]]
        n = ""
        if "datagen" in name:
            n = f"  modules {modules(cwd, COMMANDS[name.split('datagen ', 1)[1]], env)}"
        if a.instructions:
            n += f"  instructions {instructions(code, cwd, env) / 1e6:,.0f} M"
        print(f"{name:<40} wall min {min(walls):.3f} median {statistics.median(walls):.3f} s   "
              f"CPU min {min(cpus):.3f} median {statistics.median(cpus):.3f} s{n}")


if __name__ == "__main__":
    main()
