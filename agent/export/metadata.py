"""`export --with-metadata`: one side file per data file, line N describing line N of the data file.

    training_metadata.jsonl   {"row": 0, "id": 17, "spec_id": "...", "topic": "...", "<dimension>": "<category>", ...}

A side file rather than extra columns in the data: OpenAI's upload rejects keys it does not know, and
TRL/Axolotl/LLaMA-Factory each drop or trip on unknown columns differently. "row" is the 0-based line of
the data file, so a subset is one line with `datasets`:
    ds["train"].select(meta["train"].filter(lambda m: m["behaviour"] == "adversarial")["row"])
The ledger is streamed again in the order the data files were written (the same rows left out), so
memory stays flat; both files are written to temporary names and renamed together.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO

from agent.export import formats
from agent.ledger import Ledger
from agent.plan import Plan

RESERVED = ("row", "id", "spec_id", "topic", "passage")


def side_name(data_file: str) -> str:
    return data_file.replace("_data.jsonl", "_metadata.jsonl")


def write_metadata(plan: Plan, ledger: Ledger, out_dir: Path, fmt: str, validation: set[int],
                   train: str, val: str | None) -> list[Path]:
    names = [train] + ([val] if val else [])
    temps: dict[str, tuple[IO[str], str]] = {}
    rows = dict.fromkeys(names, 0)
    try:
        for name in names:
            fd, tmp = tempfile.mkstemp(prefix=f".{side_name(name)}.", suffix=".tmp", dir=out_dir)
            os.fchmod(fd, 0o666 & ~_umask())
            temps[name] = (os.fdopen(fd, "w", encoding="utf-8", newline="\n"), tmp)
        for r in ledger.iter_accepted():
            if formats.to_format(r["record"], fmt) is None:
                continue  # left out of the data file too
            name = val if val and r["id"] in validation else train
            labels = {d: c for d, c in (r["audited"] or r["requested"]).items()
                      if d in plan.dimensions and d not in RESERVED}
            line = {"row": rows[name], "id": r["id"], "spec_id": r["spec_id"], "topic": r["topic"] or "",
                    **({"passage": r["passage"]} if r.get("passage") else {}), **labels}
            temps[name][0].write(json.dumps(line, ensure_ascii=False) + "\n")
            rows[name] += 1
        for f, _ in temps.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for name, (_, tmp) in temps.items():
            os.replace(tmp, out_dir / side_name(name))
    except BaseException:
        for f, tmp in temps.values():
            f.close()
            Path(tmp).unlink(missing_ok=True)
        raise
    return [out_dir / side_name(n) for n in names]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
