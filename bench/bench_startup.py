"""`datagen --help` and `datagen plan --show` start-up: wall time of a fresh interpreter, and what it imports.

Usage: .venv/bin/python bench/bench_startup.py [SOURCE_DIR ...]
Each SOURCE_DIR is a checkout of the project (default: this one); its `agent` package is run with this
interpreter (cwd = SOURCE_DIR, so `-c` imports that checkout's code first). Runs are interleaved so machine
load hits every checkout alike; min and median of RUNS are printed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
COMMANDS = {"--help": ["--help"], "plan --show": ["plan", "--show", "plans/example.yaml"]}


def once(source: Path, args: list[str]) -> float:
    code = f"from agent.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=source, stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def heavy(source: Path, args: list[str]) -> int:
    code = (f"import sys\nfrom agent.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "print(len(sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, check=False)
    return int(done.stderr.strip().splitlines()[-1])


def main() -> None:
    sources = [Path(p).resolve() for p in sys.argv[1:]] or [Path(__file__).resolve().parent.parent]
    times: dict[tuple[Path, str], list[float]] = {(s, c): [] for s in sources for c in COMMANDS}
    for _ in range(RUNS):
        for s in sources:
            for c, args in COMMANDS.items():
                times[(s, c)].append(once(s, args))
    empty = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=False)
        empty.append(time.perf_counter() - started)
    print(f"bare interpreter: min {min(empty):.3f} s, median {statistics.median(empty):.3f} s")
    for (s, c), ts in times.items():
        print(f"{s.name:>20}  datagen {c:<12} min {min(ts):.3f} s  median {statistics.median(ts):.3f} s  "
              f"modules {heavy(s, COMMANDS[c])}")


if __name__ == "__main__":
    main()
