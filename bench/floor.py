"""`datagen generate` with the near-duplicate index and the diversity tracker made no-ops, for
`bench_engine.py --cpu --floor`: what the rest of the loop (calls, checks, labels, ledger, export) costs
on its own. A measurement aid only: a run made this way skips two audit steps, so its data is not a dataset.

    .venv/bin/python bench/floor.py generate --plan PLAN ...   (the CLI's own arguments)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.audit.dedup import NearDupIndex  # noqa: E402
from agent.audit.diversity import DiversityTracker  # noqa: E402
from agent.cli import main  # noqa: E402

_add_batch = DiversityTracker.add_batch
NearDupIndex.find = lambda self, text: None                               # type: ignore[method-assign]
NearDupIndex.add = lambda self, key, text: None                           # type: ignore[method-assign]
DiversityTracker.add_batch = lambda self, examples: _add_batch(self, [])   # type: ignore[method-assign]

if __name__ == "__main__":
    main()
