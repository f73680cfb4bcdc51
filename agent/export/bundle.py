"""What an export writes beside the data for the trainers and the Hub (export() calls write() last).

    manifest.json               the format of every file, the trainer, the configs written (always)
    README.md                   Hugging Face dataset card (always)
    dataset_info.json           LLaMA-Factory entries (--for llama-factory)
    axolotl_datasets.yaml       Axolotl `datasets:` block (--for axolotl)
    *_metadata.jsonl            id, topic and labels per row (--with-metadata)
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.export import metadata, trainers
from agent.export.card import CARD, render_card
from agent.records import ExportContext
from agent.yamlfile import write_atomic

# every name an export may install: the swap marker may list only these
NAMES = frozenset({trainers.MANIFEST, trainers.LF_INFO, trainers.AXOLOTL, CARD,
                   metadata.side_name("training_data.jsonl"), metadata.side_name("validation_data.jsonl")})


def write(ctx: ExportContext, ledger, staging: Path, out_dir: Path, fmt: str, validation: set[int], train: str,
          val: str | None, trainer: str | None = None, with_metadata: bool = False) -> tuple[list[str], set[str]]:
    """Stage the bundle's files in `staging` (they are installed into `out_dir` with the data, in one swap).

    Returns the names staged and the names an earlier export wrote that describe other files now (removed
    in the same swap: only ours, as its manifest named them)."""
    plan, stats = ctx.plan, ctx.stats
    files = {"train": train} | ({"validation": val} if val else {})
    written: list[Path] = []
    meta: dict[str, str] = {}
    if with_metadata:
        written += metadata.write_metadata(plan, ledger, staging, fmt, validation, train, val)
        meta = {s: metadata.side_name(f) for s, f in files.items()}
    tokenizer = next(iter(ctx.reports.values())).tokenizer if ctx.reports else ""
    written += trainers.write_configs(staging, trainer, fmt, files, plan.name, stats.files, list(meta.values()),
                                      tokenizer, final_dir=out_dir)
    write_atomic(staging / CARD, render_card(ctx, fmt, trainer, files, meta))
    written.append(staging / CARD)
    names = [p.name for p in written]
    return names, (_earlier_files(out_dir) & NAMES) - set(names)


def _earlier_files(out_dir: Path) -> set[str]:
    try:
        manifest = json.loads((out_dir / trainers.MANIFEST).read_text(encoding="utf-8"))
        names = list(manifest.get("configs", [])) + list(manifest.get("metadata", []))
    except (OSError, ValueError, AttributeError, TypeError):
        return set()
    return {n for n in names if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")}
