"""The `export` and `validate` click commands (registered in agent/cli.py with cli.add_command)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from agent.errors import DatagenError, storage_problem
from agent.export.formats import FORMATS
from agent.export.trainers import TRAINERS
from agent.export.validate import DEFAULT_MAX_TOKENS

FormatChoice = click.Choice(FORMATS)
TrainerChoice = click.Choice(list(TRAINERS))


@click.command()
@click.option("--plan", "plan_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The plan file (plans/<name>.yaml).")
@click.option("--format", "fmt", type=FormatChoice, help="Trainer format (default: the plan's output_format).")
@click.option("--val-split", type=click.FloatRange(0, 1, max_open=True),
              help="Validation share, 0 for none (default: the plan's validation_split).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the files (default: the run folder, <outputs>/<plan name>/).")
@click.option("--outputs", type=click.Path(path_type=Path, file_okay=False), default=Path("outputs"),
              show_default=True, help="Folder that holds one run folder per plan.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=DEFAULT_MAX_TOKENS, show_default=True,
              help="Per-example token limit the written files are checked against.")
@click.option("--for", "trainer", type=TrainerChoice,
              help="The trainer that will load the files: picks the format and writes its config beside the data.")
@click.option("--with-metadata", is_flag=True,
              help="Also write <split>_metadata.jsonl: id, topic and labels of every row, line for line.")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Check --max-tokens in this tokenizer.json (the student model's; default cl100k, o200k --for openai).")
def export(plan_path: Path, fmt: str | None, val_split: float | None, out: Path | None, outputs: Path,
           max_tokens: int, trainer: str | None, with_metadata: bool, tokenizer_path: Path | None) -> None:
    """Write training/validation JSONL, dataset_info.txt, report.html, a dataset card and trainer configs."""
    from agent import tokens
    from agent.export.pipeline import export as run_export
    from agent.export.trainers import choose_format
    from agent.ledger import Ledger, RunLock, check_compatible
    from agent.plan import load_plan

    plan = load_plan(plan_path)
    fmt = choose_format(trainer, fmt, plan.record_shape, plan.output_format)
    tok = tokens.from_file(tokenizer_path) if tokenizer_path else None
    db = outputs / plan.name / "ledger.sqlite"
    if not os.path.lexists(db):  # a dangling or looped symlink is the Ledger's to explain
        raise DatagenError(f"no run yet for plan {plan.name!r} in {outputs}; start one with: "
                           f"datagen generate --plan {plan_path}")
    lock = RunLock(db.parent)  # not while a generate (or another export) works on this run
    lock.__enter__()
    try:
        ledger = Ledger(db)
    except BaseException:
        lock.__exit__()
        raise
    try:
        stored = ledger.stored_plan()
        if stored is not None:  # the plan may have changed since the run: export only what it still describes
            check_compatible(stored, plan, ledger)
        if not ledger.accepted_count():
            raise DatagenError(f"the run of plan {plan.name!r} has no accepted examples yet; nothing to export")
        try:
            result = run_export(plan, ledger, out or db.parent, fmt=fmt, val_split=val_split, max_tokens=max_tokens,
                                trainer=trainer, with_metadata=with_metadata, tokenizer=tok)
        except OSError as e:
            full = storage_problem(e)  # a full disk: freeing space helps, another folder may not
            raise DatagenError(f"cannot write the export to {out or db.parent}: " + (
                full or f"{e.strerror or e}; choose a writable --out folder")) from None
    finally:
        ledger.close()
        lock.__exit__()
    stats = result.stats
    for path in result.paths:
        n = stats.files.get(path.name)
        click.echo(f"{path}" + (f"\t{n:,} examples" if n is not None else ""))
    # a left-out count is logged as a warning by export() itself (so `generate`'s automatic export shows it too)
    if stats.system_dropped:
        click.echo(f"{stats.system_dropped:,} system prompts dropped: {result.format} has no field for them", err=True)
    failed = [c.item for c in result.checks if c.status == "FAIL"]
    review = sum(c.status == "REVIEW" for c in result.checks)
    if trainer == "openai":  # OpenAI's own upload rules on the training file (the export's checks are general)
        from agent.export.validate import validate_file

        rules = validate_file(result.paths[0], result.format, max_tokens=max_tokens, near_dups=False,
                              tokenizer=tok, rules="openai")
        problems = rules.file_errors + [f"{c} x{n}" for c, n in rules.codes.items() if c.startswith("openai_")]
        click.echo("OpenAI file rules: " + ("met" if not problems else "NOT met: " + "; ".join(problems)
                                            + f" (datagen validate --for openai {result.paths[0]})"), err=True)
    report = next(iter(result.reports.values()), None)
    if report is not None:
        click.echo(f"tokens per example ({report.tokenizer}): max {max(r.tokens_max for r in result.reports.values()):,}"
                   f" of the {max_tokens:,} limit", err=True)
    click.echo(f"checklist: {len(result.checks) - len(failed) - review} PASS, {len(failed)} FAIL, {review} REVIEW"
               + (f" (FAIL: {'; '.join(failed)})" if failed else "") + "; details in dataset_info.txt", err=True)
    if result.simulated:
        click.echo("SIMULATED DATA — NOT FOR TRAINING (made by the simulated provider)", err=True)


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=FormatChoice, help="The file's format (default: detected from the first line).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=DEFAULT_MAX_TOKENS, show_default=True,
              help="Per-example token limit (OpenAI's for current fine-tunable models; set your trainer's).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=0.85, show_default=True,
              help="Near-duplicate threshold (SequenceMatcher ratio of the first user messages).")
@click.option("--no-near-dups", is_flag=True,
              help="Skip the near-duplicate check: constant memory (the check keeps every first user message).")
@click.option("--show", type=click.IntRange(min=0), default=50, show_default=True, help="Errors to list.")
@click.option("--for", "rules", type=click.Choice(["openai"]),
              help="Also apply a trainer's own file rules (openai: 10+ examples, roles, weight; counts in o200k).")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Count tokens with this tokenizer.json (the student model's) instead of cl100k/o200k.")
def validate(file: Path, fmt: str | None, max_tokens: int, threshold: float, no_near_dups: bool, show: int,
             rules: str | None, tokenizer_path: Path | None) -> None:
    """Check a JSONL file in any of the trainer formats: exit 0 valid, 1 not valid, 2 unreadable."""
    from agent import tokens
    from agent.export.validate import validate_file

    tok = tokens.from_file(tokenizer_path) if tokenizer_path else None
    report = validate_file(file, fmt, max_tokens=max_tokens, threshold=threshold, near_dups=not no_near_dups,
                           tokenizer=tok, rules=rules)
    for line in report.summary():
        click.echo(line)
    for err in report.errors[:show]:
        click.echo(f"  {err} [{err.code}]")
    hidden = sum(report.codes.values()) - min(show, len(report.errors))
    if hidden > 0:
        click.echo(f"  ... and {hidden:,} more (--show N to list more)")
    if not report.ok:
        sys.exit(1)


@click.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--repo-id", required=True, help="The Hugging Face dataset repo, owner/name (created if missing).")
@click.option("--public", is_flag=True, help="Create the repo public (default: private).")
@click.option("--endpoint", help="The Hub's URL (default: huggingface_hub's, HF_ENDPOINT or huggingface.co).")
def push(folder: Path, repo_id: str, public: bool, endpoint: str | None) -> None:
    """Upload an export folder (data, card, configs, report) to a Hugging Face dataset repo; token from HF_TOKEN."""
    from agent.export.push import push as run_push

    click.echo(run_push(folder, repo_id, private=not public, endpoint=endpoint))
