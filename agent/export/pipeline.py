"""The export pipeline: ledger -> training_data.jsonl, validation_data.jsonl, dataset_info.txt, report.html.

    1. one pass over the accepted examples (_scan) converts each record (formats.py) and writes it, in ledger
       order, to one file in a staging folder of this export's own (.datagen-export-XXXX inside the target
       folder; a plain chat record exported as openai is its stored JSON text, written as it is); it keeps
       what the split needs (id, stratum, first user text), each line's figures (its tokens, info.Stats) and
       what the report shows per category (samples.Tally)
    2. the split (split.py) picks the validation lines; _place streams the staged lines into the training
       and validation files (bytes copied, nothing converted twice) and says which file each line's
       figures belong to
    3. the staged files are re-read and validated (validate.py; two results the export already holds are
       taken, not recomputed: see _check); dataset_info.txt (info.py) and report.html (report.py) are
       written beside them from the statistics of pass 1 and those checks
    4. the swap: a marker (.datagen-export.swap) lists the staged files, then each is renamed into place
       and the marker removed. The four files of one export are replaced together: a failure before the
       marker leaves the previous files as they were (the staging folder is removed), and an export killed
       during the swap is finished by the next export (finish_swap). Nothing outside the staging folders
       and the marker, which carry datagen's own prefix, is ever removed.

Memory stays flat in the number of examples apart from what the split and the near-duplicate checks need
(ids, strata and first user texts) and a few numbers per example (tokens, word counts). Files keep the
ledger's order (trainers shuffle). The ledger is read once: at 10k examples each extra pass cost about
0.03 ms per example (four JSON columns decoded per row), the same as everything else the pass does bar
token counting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agent import tokens
from agent.audit.dedup import NearDupIndex
from agent.coverage import coverage
from agent.errors import DatagenError
from agent.export import bundle, formats, info, samples, split, trainers
from agent.export.report import render_html
from agent.export.validate import DEFAULT_MAX_TOKENS, Report, validate_file
from agent.ledger import Ledger
from agent.plan import Plan
from agent.records import ExportContext, user_text

log = logging.getLogger(__name__)
TRAIN, VAL = "training_data.jsonl", "validation_data.jsonl"
INFO, REPORT = "dataset_info.txt", "report.html"
STAGING_PREFIX = ".datagen-export-"   # an export's own staging folders: the only ones it ever removes
SWAP_MARKER = ".datagen-export.swap"
ALL = ".all.jsonl"                    # the staged lines of both files, in ledger order (pass 1; never installed)
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
    finish_swap(out_dir)   # an export killed mid-swap is completed, a killed one's staging folder removed
    by = split.strata_dims(plan)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    try:
        scan = _scan(plan, ledger, staging / ALL, fmt, by)
        parts = split.split(scan.items, share, plan.quality.dedup_threshold, seed=plan.generation.seed, by=by,
                            known_unique=ledger.proves_unique(plan.quality.dedup_threshold))
        stats = _place(scan, staging, parts.validation)
        names = [TRAIN] + ([VAL] if parts.n_val else [])
        if stats.left_out:
            log.warning("%s: left out %d of %d examples: %s", fmt, stats.left_out, stats.left_out + stats.total,
                        stats.left_out_reason)
        result = ExportResult(out_dir, fmt, [staging / n for n in names], stats, parts, simulated=ledger.simulated)
        _check(plan, result, max_tokens, tokenizer)
        ctx = _context(plan, ledger, result, share, scan.tally)
        write_new(staging / INFO, info.render(ctx))
        write_new(staging / REPORT, render_html(ctx))
        names += [INFO, REPORT]
        # the trainers' configs, manifest, dataset card and metadata (bundle.py), staged with the rest
        extra, stale = bundle.write(ctx, ledger, staging, out_dir, fmt, parts.validation, TRAIN,
                                    VAL if parts.n_val else None, trainer=trainer, with_metadata=with_metadata)
        names += extra
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)   # every failure, a full disk included: no file left behind
        raise
    try:
        # a stale validation file or config from an earlier export would mislead: it goes in the same swap
        _swap(out_dir, staging, names, remove=([] if parts.n_val else [VAL]) + sorted(stale))
    except BaseException:
        if not (out_dir / SWAP_MARKER).exists():   # the swap never began (no room for the marker): undo
            shutil.rmtree(staging, ignore_errors=True)
        raise                                      # otherwise the next export finishes it
    result.paths = [out_dir / n for n in names]
    result.seconds = time.monotonic() - started
    return result


def write_new(path: Path, text: str) -> None:
    """Write a new file (mode from the umask, like any tool) and flush it to disk."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows): renames are still atomic, only their durability waits
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _swap(out_dir: Path, staging: Path, names: list[str], remove: list[str]) -> None:
    """Install the staged files together: the marker first, so a kill mid-way is finished next time."""
    marker = out_dir / SWAP_MARKER
    pending = marker.with_name(marker.name + ".new")
    try:
        write_new(pending, json.dumps({"staging": staging.name, "install": names, "remove": remove}))
        os.replace(pending, marker)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    _fsync_dir(out_dir)
    finish_swap(out_dir)


def finish_swap(out_dir: Path) -> None:
    """Complete a swap a killed export left half done, then remove staging folders no swap needs."""
    marker = out_dir / SWAP_MARKER
    (out_dir / (SWAP_MARKER + ".new")).unlink(missing_ok=True)   # a marker never completed: no swap began
    job = None
    if marker.is_file():
        try:
            job = json.loads(marker.read_text(encoding="utf-8"))
            known = {TRAIN, VAL, INFO, REPORT} | bundle.NAMES
            ok = (isinstance(job, dict) and str(job.get("staging", "")).startswith(STAGING_PREFIX)
                  and "/" not in job["staging"] and set(job.get("install", [])) <= known
                  and set(job.get("remove", [])) <= known)
        except (ValueError, OSError):
            ok = False
        if not ok:
            log.warning("%s: not an export marker datagen wrote; left as is", marker)
            job = None
    if job is not None:
        staging = out_dir / job["staging"]
        for name in job["install"]:
            if (staging / name).is_file():
                os.replace(staging / name, out_dir / name)
        for name in job["remove"]:
            (out_dir / name).unlink(missing_ok=True)
        _fsync_dir(out_dir)
        marker.unlink()
    for stale in out_dir.glob(STAGING_PREFIX + "*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


@dataclass
class Scan:
    """What the one pass over the ledger gathered (_scan)."""
    path: Path                                     # every written line, in ledger order
    tally: samples.Tally                           # report.html's samples and word counts
    items: list[split.Item] = field(default_factory=list)   # one per line: what the split needs
    tokens: array[int] = field(default_factory=lambda: array("q"))   # each line's tokens
    stats: info.Stats = field(default_factory=info.Stats)   # all but the per-file figures (_place adds them)


def _scan(plan: Plan, ledger: Ledger, path: Path, fmt: str, by: tuple[str, ...]) -> Scan:
    """Pass 1: every accepted example read once, converted, written to `path` and described.

    A plain chat record (formats.is_plain_chat) exported as openai is its own line: the ledger stored it as
    json.dumps(record, ensure_ascii=False), the very bytes json.dumps(to_format(record)) would give, and
    to_canonical of that line is the record itself; so the stored text is written as it is (no convert, no
    dump, no second parse). Any other record or format is converted and dumped."""
    scan = Scan(path, samples.Tally(plan))
    stats, tally = scan.stats, scan.tally
    labels_of = set(plan.dimensions)
    plain = fmt == "openai"
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in ledger.iter_accepted():
            tally.add(row)   # every accepted example, the ones the format leaves out too
            record = row["record"]
            if plain and formats.is_plain_chat(record):
                line, written = row["record_json"], record
            else:
                out = formats.to_format(record, fmt)
                if out is None:
                    stats.left_out += 1
                    stats.left_out_reason = formats.MULTI_TURN_REASON
                    continue   # left out of the file, so it takes no place in either side
                line, written = json.dumps(out, ensure_ascii=False), formats.to_canonical(out, fmt)
                stats.same_user_texts &= user_text(written) == user_text(record)   # what the split checked
            labels = row["audited"] or row["requested"]
            scan.items.append(split.Item(row["id"], tuple([labels.get(d, "") for d in by]), user_text(record)))
            dropped = formats.drops_system(record, fmt)
            stats.system_dropped += dropped
            f.write(line)
            f.write("\n")
            scan.tokens.append(stats.describe(written, [(d, c) for d, c in labels.items() if d in labels_of],
                                              "" if dropped else _system(record)))
    return scan


def _place(scan: Scan, out_dir: Path, validation: set[int]) -> info.Stats:
    """Pass 2: the staged lines into the training and validation files (their bytes as staged), fsynced;
    the staged file is removed. Returns the statistics with the per-file figures, in file order."""
    stats = scan.stats
    files: dict[str, IO[bytes]] = {}
    try:
        for name in (TRAIN, VAL) if validation else (TRAIN,):
            files[name] = open(out_dir / name, "wb")  # noqa: SIM115 - closed below
        with open(scan.path, "rb") as staged:
            for item, n_tokens, line in zip(scan.items, scan.tokens, staged, strict=True):
                name = VAL if item.id in validation else TRAIN
                files[name].write(line)
                stats.place(name, n_tokens)
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())
    finally:
        for f in files.values():
            with contextlib.suppress(OSError):  # flushed above; on a failure the caller removes the staging folder
                f.close()
    scan.path.unlink()
    stats.files.setdefault(TRAIN, 0)
    return stats


def _system(record: dict[str, Any]) -> str:
    if "messages" in record:
        return next((m["content"] for m in record["messages"] if m.get("role") == "system"), "")
    return str(record.get("system") or "")


def _check(plan: Plan, result: ExportResult, max_tokens: int, tokenizer: tokens.Tokenizer | None = None) -> None:
    """Re-read and validate the written files; the checklist is marked from what they really hold.

    Every line is re-read, parsed and put through every rule. Two results are already known and not
    computed twice: the token count of each line when _write counted it with the same tokenizer (the
    default cl100k; a trainer's own tokenizer counts afresh), and the near-duplicate check when the split
    proved that no two of these first user messages are near-duplicates (Split.unique: exact finds of
    every text against all earlier ones, same rule and threshold, none matched) and the written files
    hold exactly those texts (Stats.same_user_texts). Any other export (a changed threshold, an imported
    or cleaned dataset with near-duplicates in it, past dedup.AUTO_SWITCH texts) runs the full check.
    """
    threshold = plan.quality.dedup_threshold
    unique = result.split.unique and result.stats.same_user_texts
    # shared: validation lines are also checked against every training line
    index = None if unique else NearDupIndex(threshold)
    for path in result.paths:
        result.reports[path.name] = validate_file(
            path, result.format, max_tokens=max_tokens, threshold=threshold, tokenizer=tokenizer,
            quality=plan.quality, index=index, known_unique=unique,
            known_tokens=result.stats.line_tokens.get(path.name) if tokenizer is None else None)
    targets = info.target_rows(plan, {}, result.stats)
    result.checks = info.checklist(plan, result.stats, result.reports, targets)


def _context(plan: Plan, ledger: Ledger, result: ExportResult, share: float, tally: samples.Tally) -> ExportContext:
    """What dataset_info.txt, report.html and the card are written from; the counts of accepted examples and
    their labels are the scan's (tally: every accepted row, so the ledger's counts), not another read."""
    batches = ledger.batches()
    return ExportContext(
        plan=plan, stats=result.stats, split=result.split, usage=ledger.usage(), share=share,
        format=result.format, format_note=FORMAT_NOTES.get(result.format) or trainers.DESCRIBE[result.format],
        train_name=TRAIN, val_name=VAL, simulated=result.simulated,
        targets=info.target_rows(plan, tally.label_counts, result.stats),
        rejections=ledger.rejection_counts(), lost=ledger.lost_counts(), surplus=ledger.surplus_counts(),
        batches=batches,
        diversity=info.diversity_rows(batches, tally.accepted, plan.total),
        checks=result.checks, reports=result.reports,
        plan_hash=ledger.meta("plan_hash"), created_at=ledger.meta("created_at"), exported_at=time.time(),
        samples=samples.collect(plan, ledger, tally),  # report.html's examples, rejections, near-dups, lengths
        coverage=coverage(ledger),  # grounded runs: sources, passages used, the grounding check's share
    )
