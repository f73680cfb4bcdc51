"""Export: ledger -> training_data.jsonl, validation_data.jsonl, dataset_info.txt, report.html.

The pipeline is agent/export/pipeline.py; the other modules here are its parts (formats, split, validate, info,
report, samples, trainers, bundle, card, push) and the click commands (commands.py). The pipeline's names are
re-exported from here on first use, so importing a light part (formats) never loads the whole pipeline.
"""

from __future__ import annotations

from typing import Any

PIPELINE_NAMES = ("export", "export_run", "ExportResult", "finish_swap", "TRAIN", "VAL", "INFO", "REPORT",
                  "STAGING_PREFIX", "SWAP_MARKER", "FORMAT_NOTES")


def __getattr__(name: str) -> Any:
    if name in PIPELINE_NAMES:
        from agent.export import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'agent.export' has no attribute {name!r}")
