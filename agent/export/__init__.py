"""Export: ledger -> training_data.jsonl, validation_data.jsonl, dataset_info.txt, report.html.

    1. one pass over the accepted examples keeps (id, stratum, first user text) and splits (split.py)
    2. a second pass streams every record, converts it (formats.py) and writes it to a temporary file beside
       its target; both files are renamed into place only when both are complete, so an interrupted export
       leaves the previous files untouched and no temporary file behind
    3. the written files are re-read and validated (validate.py); dataset_info.txt (info.py) and report.html
       (report.py) are written from the statistics of pass 2 and those checks

Memory stays flat in the number of examples apart from what the split and the near-duplicate checks need
(ids, strata and first user texts). Files keep the ledger's order (trainers shuffle).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agent import tokens
from agent.audit.dedup import NearDupIndex
from agent.errors import DatagenError
from agent.example import user_text
from agent.export import bundle, formats, info, samples, split, trainers
from agent.export.report import render_html
from agent.export.validate import DEFAULT_MAX_TOKENS, Report, example_tokens, validate_file
from agent.ledger import Ledger
from agent.plan import Plan
from agent.yamlfile import write_atomic

log = logging.getLogger(__name__)
TRAIN, VAL = "training_data.jsonl", "validation_data.jsonl"
INFO, REPORT = "dataset_info.txt", "report.html"
FORMAT_NOTES = {
    "openai": "OpenAI chat fine-tuning / TRL SFT: {\"messages\": [{\"role\", \"content\"}, ...]}",
    "sharegpt": "ShareGPT: {\"conversations\": [{\"from\": system|human|gpt, \"value\"}, ...]}",
    "alpaca": "Alpaca: {\"instruction\", \"input\", \"output\"}; input is empty, the system prompt is not kept",
    "dpo": "TRL DPO standard form: {\"prompt\", \"chosen\", \"rejected\"}; the system prompt is not kept",
    "kto": "TRL KTO unpaired form: {\"prompt\", \"completion\", \"label\"}; the system prompt is not kept",
}


@dataclass
class ExportResult:
    out_dir: Path
    format: str
    paths: list[Path]
    stats: info.Stats
    split: split.Split
    reports: dict[str, Report] = field(default_factory=dict)
    checks: list[info.Check] = field(default_factory=list)
    simulated: bool = False
    seconds: float = 0.0


def export_run(plan: Plan, ledger: Ledger, out_dir: Path, fmt: str | None = None,
               val_split: float | None = None) -> list[Path]:
    """Write the run's files into out_dir; the paths written (the engine calls this when a run completes)."""
    return export(plan, ledger, out_dir, fmt=fmt, val_split=val_split).paths


def export(plan: Plan, ledger: Ledger, out_dir: Path, fmt: str | None = None, val_split: float | None = None,
           max_tokens: int = DEFAULT_MAX_TOKENS, trainer: str | None = None,
           with_metadata: bool = False, tokenizer: tokens.Tokenizer | None = None) -> ExportResult:
    """Split, write, re-read and check, then document: everything `datagen export` reports comes from here."""
    started = time.monotonic()
    fmt = fmt or plan.output_format
    if tokenizer is None and trainer == "openai":
        tokenizer = tokens.o200k()  # what OpenAI's fine-tunable models count in
    formats.check_fits(fmt, plan.record_shape)
    share = plan.validation_split if val_split is None else val_split
    if not 0 <= share < 1:
        raise DatagenError(f"validation split {share:g} must be at least 0 and below 1 (0.1 = 10%)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".*.tmp"):  # left by an export killed mid-write (kill -9 runs no cleanup)
        stale.unlink(missing_ok=True)
    by = split.strata_dims(plan)

    def items():
        for row in ledger.iter_accepted():
            labels = row["audited"] or row["requested"]
            if fmt.startswith("alpaca") and formats.to_format(row["record"], fmt) is None:
                continue  # left out of the file, so it takes no place in either side
            yield split.Item(row["id"], tuple(labels.get(d, "") for d in by), user_text(row["record"]))

    parts = split.split(items(), share, plan.quality.dedup_threshold, seed=plan.generation.seed, by=by)
    stats = _write(plan, ledger, out_dir, fmt, parts.validation)
    paths = [out_dir / TRAIN] + ([out_dir / VAL] if parts.n_val else [])
    if not parts.n_val:
        (out_dir / VAL).unlink(missing_ok=True)  # a stale one from an earlier export would mislead
    if stats.left_out:
        log.warning("%s: left out %d of %d examples: %s", fmt, stats.left_out, stats.left_out + stats.total,
                    stats.left_out_reason)
    result = ExportResult(out_dir, fmt, paths, stats, parts, simulated=ledger.simulated)
    _check(plan, result, max_tokens, tokenizer)
    ctx = _context(plan, ledger, result, share)
    write_atomic(out_dir / INFO, info.render(ctx))
    write_atomic(out_dir / REPORT, render_html(ctx))
    result.paths += [out_dir / INFO, out_dir / REPORT]
    # hook: the trainers' configs, manifest, dataset card and metadata (bundle.py)
    result.paths += bundle.write(ctx, ledger, out_dir, fmt, parts.validation, TRAIN, VAL if parts.n_val else None,
                                 trainer=trainer, with_metadata=with_metadata)
    result.seconds = time.monotonic() - started
    return result


def _write(plan: Plan, ledger: Ledger, out_dir: Path, fmt: str, validation: set[int]) -> info.Stats:
    stats = info.Stats()
    temps: dict[str, tuple[IO[str], str]] = {}
    try:
        for name in (TRAIN, VAL) if validation else (TRAIN,):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
            temps[name] = (os.fdopen(fd, "w", encoding="utf-8", newline="\n"), tmp)
        labels_of = set(plan.dimensions)
        for row in ledger.iter_accepted():
            record = row["record"]
            out = formats.to_format(record, fmt)
            if out is None:
                stats.left_out += 1
                stats.left_out_reason = formats.MULTI_TURN_REASON
                continue
            dropped = formats.drops_system(record, fmt)
            stats.system_dropped += dropped
            name = VAL if row["id"] in validation else TRAIN
            temps[name][0].write(json.dumps(out, ensure_ascii=False) + "\n")
            written = formats.to_canonical(out, fmt)
            labels = {d: c for d, c in (row["audited"] or row["requested"]).items() if d in labels_of}
            stats.add(name, written, labels, example_tokens(written), "" if dropped else _system(record))
        for f, _ in temps.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for name, (_, tmp) in temps.items():
            os.replace(tmp, out_dir / name)
    except BaseException:
        for f, tmp in temps.values():
            f.close()
            Path(tmp).unlink(missing_ok=True)
        raise
    stats.files.setdefault(TRAIN, 0)
    return stats


def _system(record: dict[str, Any]) -> str:
    if "messages" in record:
        return next((m["content"] for m in record["messages"] if m.get("role") == "system"), "")
    return str(record.get("system") or "")


def _check(plan: Plan, result: ExportResult, max_tokens: int, tokenizer: tokens.Tokenizer | None = None) -> None:
    """Re-read and validate the written files; the checklist is marked from what they really hold."""
    threshold = plan.quality.dedup_threshold
    index = NearDupIndex(threshold)  # shared: validation lines are also checked against every training line
    for path in result.paths:
        result.reports[path.name] = validate_file(path, result.format, max_tokens=max_tokens, threshold=threshold,
                                                  tokenizer=tokenizer,
                                                  quality=plan.quality, index=index)
    targets = info.target_rows(plan, {}, result.stats)
    result.checks = info.checklist(plan, result.stats, result.reports, targets)


def _context(plan: Plan, ledger: Ledger, result: ExportResult, share: float) -> dict[str, Any]:
    usage = ledger.usage()
    batches = ledger.batches()
    return {
        "plan": plan, "stats": result.stats, "split": result.split, "usage": usage, "share": share,
        "format": result.format, "format_note": FORMAT_NOTES.get(result.format) or trainers.DESCRIBE[result.format],
        "train_name": TRAIN, "val_name": VAL, "simulated": result.simulated,
        "targets": info.target_rows(plan, ledger.label_counts(), result.stats),
        "rejections": ledger.rejection_counts(), "batches": batches,
        "diversity": info.diversity_rows(batches, ledger.accepted_count(), plan.total),
        "checks": result.checks, "reports": result.reports,
        "plan_hash": ledger.meta("plan_hash"), "created_at": ledger.meta("created_at"), "exported_at": time.time(),
        "samples": samples.collect(plan, ledger),  # report.html's examples, rejections, near-dups, lengths
    }
