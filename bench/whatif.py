"""`datagen generate` with parts of the loop removed or replaced, for `bench_engine.py --cpu --without PARTS`:
what the loop costs without them, i.e. what each decision about issue 11's 1 ms target would buy. A
measurement aid only: a run made this way skips or changes audit work, so its data is not a dataset.

    .venv/bin/python bench/whatif.py PARTS generate --plan PLAN ...   (PARTS: a comma list; then the CLI's own arguments)

Parts:
  dedup    the near-duplicate index finds nothing and keeps nothing (the check removed)
  tracker  the diversity tracker sees no examples (its figures and steering removed)
  lsh      the near-duplicate index takes its candidates from MinHash LSH from the first kept text ("fast"
           mode; today only past AUTO_SWITCH): the exact rule on ~0.9998 of the pairs instead of all
  nn       the tracker's exact share_nn_over_30 is not computed (every other figure is)
  tokens   token figures estimated as characters / 4 instead of counted by tiktoken (the tables still load)
`--floor` in bench_engine.py is `dedup,tracker`: everything else the loop does.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PARTS = ("dedup", "tracker", "lsh", "nn", "tokens")


def parts(text: str) -> set[str]:
    """The parts a comma list names; ValueError for one that is not in PARTS."""
    asked = set(filter(None, text.split(",")))
    if asked - set(PARTS):
        raise ValueError(f"unknown parts {sorted(asked - set(PARTS))}; choose from {', '.join(PARTS)}")
    return asked


def remove(parts: set[str]) -> None:
    """Patch this process's modules (imported here: bench_engine.py only needs PARTS and parts())."""
    import numpy as np

    from agent.audit import dedup, overlap
    from agent.audit.diversity import DiversityTracker

    if "dedup" in parts:
        dedup.NearDupIndex.find = lambda self, text: None                     # type: ignore[method-assign]
        dedup.NearDupIndex.add = lambda self, key, text: None                 # type: ignore[method-assign]
    if "tracker" in parts:
        add_batch = DiversityTracker.add_batch
        DiversityTracker.add_batch = lambda self, examples: add_batch(self, [])  # type: ignore[method-assign]
    if "lsh" in parts:
        dedup.AUTO_SWITCH = 0
    if "nn" in parts:
        overlap.OverlapIndex._flags = (                                       # type: ignore[method-assign]
            lambda self, b, nums, old, frequent, rows: np.zeros(b.m, dtype=bool))
    if "tokens" in parts:
        import tiktoken

        tiktoken.Encoding.encode_ordinary = lambda self, text: range(max(1, len(text) // 4))  # type: ignore[method-assign,assignment,return-value]


if __name__ == "__main__":
    try:
        asked = parts(sys.argv.pop(1))
    except ValueError as e:
        print(f"whatif.py: {e}", file=sys.stderr)
        sys.exit(2)
    remove(asked)
    from agent.cli import main

    main()
