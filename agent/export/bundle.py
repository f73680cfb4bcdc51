"""What an export writes beside the data for the trainers and the Hub (export() calls write() last).

    manifest.json               the format of every file, the trainer, the configs written (always)
    README.md                   Hugging Face dataset card (always)
    dataset_info.json           LLaMA-Factory entries (--for llama-factory)
    axolotl_datasets.yaml       Axolotl `datasets:` block (--for axolotl)
    *_metadata.jsonl            id, topic and labels per row (--with-metadata)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.export import metadata, trainers
from agent.export.card import CARD, render_card
from agent.yamlfile import write_atomic


def write(ctx: dict[str, Any], ledger, out_dir: Path, fmt: str, validation: set[int], train: str, val: str | None,
          trainer: str | None = None, with_metadata: bool = False) -> list[Path]:
    plan, stats = ctx["plan"], ctx["stats"]
    files = {"train": train} | ({"validation": val} if val else {})
    written: list[Path] = []
    meta: dict[str, str] = {}
    for stale in out_dir.glob("*_metadata.jsonl"):
        stale.unlink()  # from an earlier export with --with-metadata: would no longer match the data
    if with_metadata:
        written += metadata.write_metadata(plan, ledger, out_dir, fmt, validation, train, val)
        meta = {s: metadata.side_name(f) for s, f in files.items()}
    tokenizer = next(iter(ctx["reports"].values())).tokenizer if ctx.get("reports") else ""
    written += trainers.write_configs(out_dir, trainer, fmt, files, plan.name, stats.files, list(meta.values()),
                                      tokenizer)
    write_atomic(out_dir / CARD, render_card(ctx, fmt, trainer, files, meta))
    return written + [out_dir / CARD]
