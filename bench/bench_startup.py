"""`datagen --help` and `datagen plan --show` start-up: wall and CPU time of a fresh interpreter, and what it imports.

Usage: .venv/bin/python bench/bench_startup.py [--runs N] [--instructions] [--generate] [SOURCE_DIR ...]
Each SOURCE_DIR is a checkout of the project (default: this one); its `agent` package is run with this
interpreter (cwd = SOURCE_DIR, so `-c` imports that checkout's code first). Runs are interleaved so machine
load hits every checkout alike; min and median of the runs are printed, with the load average.

Bytecode: children run without PYTHONDONTWRITEBYTECODE (one warm-up run each writes the checkout's .pyc),
as an installed datagen runs. (With the variable set and no __pycache__, every run would compile datagen's
own modules: 0.01-0.03 s more CPU for `plan --show`.)
--generate measures `datagen generate` instead: a 50-example plan (the example plan, openai provider) against the
loopback server at zero latency, with --no-export; per checkout, the CPU before the first call (the process's
first socket.connect, seen by an audit hook) and the whole process's CPU, runs alternating between checkouts.
"floor" is what no change to datagen can remove: the interpreter importing click and PyYAML and building
one pydantic model (pydantic's import and first-model work).
--instructions adds, per case, the instructions one run executes, counted by valgrind's callgrind
(PYTHONHASHSEED=0): unlike times, the count does not move with the machine's load (~12 s of CPU per case).
"""

from __future__ import annotations

import argparse
import json
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
    """`datagen ARGS` as the console script runs it: main() reads the process's own command line."""
    return (f"import sys\nsys.argv = ['datagen'] + {args!r}\nfrom agent.cli import main\ntry:\n    main()\n"
            f"except SystemExit:\n    pass\n")


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


# `datagen generate ARGS` as the console script runs it, plus the process CPU at its first socket.connect
GENERATE = (
    "import json, sys, time\nfirst = []\n"
    "def hook(event, args):\n"
    "    if event == 'socket.connect' and not first:\n        first.append(time.process_time())\n"
    "sys.addaudithook(hook)\nsys.argv = ['datagen'] + sys.argv[1:]\nfrom agent.cli import main\ntry:\n"
    "    main()\nexcept SystemExit:\n    pass\nsys.stderr.write('\\nFIRST ' + json.dumps(first[0] if first else None))\n"
)


def generate_once(url: str, source: Path, work: Path, examples: int, env: dict[str, str]) -> tuple[float, float]:
    """(CPU s before the first call, CPU s of the whole process) of one `datagen generate --no-export` run."""
    import yaml

    data = yaml.safe_load((source / "plans" / "example.yaml").read_text())
    data["total"] = examples
    data["generation"].update(provider="openai", model="gpt-4o-mini", base_url=url + "/v1")
    work.mkdir(parents=True)
    (work / "plan.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", GENERATE, "generate", "--plan", str(work / "plan.yaml"), "--outputs",
                           str(work / "out"), "--quiet", "--no-export"], cwd=source, capture_output=True, text=True,
                          env={**env, "OPENAI_API_KEY": "sk-bench"}, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{source}: generate failed: {done.stderr[-500:]}")
    first = json.loads(done.stderr.rsplit("FIRST ", 1)[-1])
    return first, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def generate_fixed(sources: list[Path], runs: int, env: dict[str, str]) -> None:
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_throughput import server_process

    results: dict[Path, list[tuple[float, float]]] = {s: [] for s in sources}
    with server_process(0.0, None, 10.0, 3600, simulated=True) as url, tempfile.TemporaryDirectory() as tmp:
        for s in sources:   # warm-up: .pyc written, page cache filled
            generate_once(url, s, Path(tmp) / f"warm-{s.name}", 50, env)
        load = os.getloadavg()[0]
        for i in range(runs):
            for k, s in enumerate(sources):
                results[s].append(generate_once(url, s, Path(tmp) / f"{i}-{k}", 50, env))
    print(f"datagen generate, 50 examples, --no-export, zero latency: {runs} runs each, load average {load:.1f} -> "
          f"{os.getloadavg()[0]:.1f}")
    for s, rows in results.items():
        first, whole = [f for f, _ in rows], [w for _, w in rows]
        print(f"{s.name:<20} CPU before the first call min {min(first):.3f} median {statistics.median(first):.3f} s"
              f"   whole process min {min(whole):.3f} median {statistics.median(whole):.3f} s")


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
    ap.add_argument("--generate", action="store_true", help="measure generate's fixed CPU instead (see above)")
    a = ap.parse_args()
    sources = [p.resolve() for p in a.sources] or [Path(__file__).resolve().parent.parent]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if a.generate:
        generate_fixed(sources, a.runs, env)
        return
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
