"""The `convert`, `clean`, `kto` and `stats` click commands: thin wrappers over agent.dataset (registered in cli.py).

`kto` and `stats` call the public functions; `convert` and `clean` drive the same Converter and Cleaner the
functions use, streaming rows to the output instead of returning them as a list.

Rows go to -o FILE (atomically; a ".json" name gets a JSON array, anything else JSONL) or to stdout; what
happened goes to stderr, so `datagen convert a.jsonl --to text --template chatml > b.jsonl` works.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import re
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import click

from agent import dataset
from agent.dataset.clean import NEAR_DUP_MODES, Bounds, Cleaner, Drop, Rules
from agent.dataset.convert import TARGETS, TEMPLATES, Converter
from agent.dataset.feedback import KINDS
from agent.dataset.io import RowWriter, check_output, detect_format, open_atomic, read_lines
from agent.errors import InputError
from agent.export.formats import FORMATS, SHAPE_OF

log = logging.getLogger(__name__)
InPath = click.Path(path_type=Path)
OutPath = click.Path(path_type=Path, dir_okay=False)
SHOW = 20


class CharRange(click.ParamType):
    """MIN-MAX characters, e.g. 10-1000."""

    name = "MIN-MAX"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(value))
        if not m or int(m.group(1)) > int(m.group(2)):
            self.fail(f"{value!r} is not a range MIN-MAX of characters with MIN <= MAX, e.g. 10-1000", param, ctx)
        return int(m.group(1)), int(m.group(2))


def _say(lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)


@click.command()
@click.argument("file", type=InPath)
@click.option("--to", "target", type=click.Choice(TARGETS), required=True, help="Target format.")
@click.option("--template", type=click.Choice(list(TEMPLATES)), help="With --to text: the chat template.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="FILE's format (default: detected).")
@click.option("-o", "--out", type=OutPath, help="Output file (default: stdout); a .json name gets a JSON array.")
@click.option("--strict", is_flag=True, help="Refuse (exit 2) instead of dropping anything the target cannot hold.")
def convert(file: Path, target: str, template: str | None, fmt: str | None, out: Path | None, strict: bool) -> None:
    """Convert a JSON/JSONL dataset to another format, or to chat-template text; say what could not be kept."""
    check_output(out, file)
    fmt, lines = detect_format(file, read_lines(file), fmt)
    converter = Converter(fmt, target, template, strict=strict, path=file)
    with RowWriter(out) as w:
        for row in converter.run(lines):
            w.write(row)
    _say(converter.result.summary() + ([f"wrote {out}"] if out else []))


@click.command()
@click.argument("file", type=InPath)
@click.option("-o", "--out", type=OutPath, help="Kept rows (default: stdout); a .json name gets a JSON array.")
@click.option("--report", type=OutPath, help="Write every dropped row (line, reasons) and the summary here.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="FILE's format (default: detected).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=0.85, show_default=True,
              help="Near-duplicate threshold (SequenceMatcher ratio, seed 003).")
@click.option("--near-dups", type=click.Choice(NEAR_DUP_MODES), default="auto", show_default=True,
              help="auto: exact up to 20k kept rows, then MinHash LSH (recall 0.9998 measured); exact: always "
                   "exact (slow past 20k); off: no check, constant memory.")
@click.option("--instruction-chars", type=CharRange(), default="10-1000", show_default=True,
              help="Bounds for user turns, instructions and prompts (seed 002).")
@click.option("--output-chars", type=CharRange(), default="20-4000", show_default=True,
              help="Bounds for replies, outputs, chosen/rejected and completions (seed 002).")
@click.option("--length-ratio", type=click.FloatRange(min=1), default=1.5, show_default=True,
              help="Preference pairs: the longest chosen/rejected length ratio kept.")
@click.option("--allow-pii", is_flag=True, help="Keep rows with e-mail addresses, phone numbers, card numbers ...")
@click.option("--balance", is_flag=True, help="kto: leave out a random sample of the larger label's rows (50/50).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --balance's sample.")
@click.option("--jobs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes for the checks; 0: one per CPU for files over 2 MB, else 1.")
def clean(file: Path, out: Path | None, report: Path | None, fmt: str | None, threshold: float, near_dups: str,
          instruction_chars: tuple[int, int], output_chars: tuple[int, int], length_ratio: float,
          allow_pii: bool, balance: bool, seed: int, jobs: int) -> None:
    """Drop invalid, off-bounds, PII, refusal and near-duplicate rows; keep the rest unchanged and say why."""
    check_output(out, file)
    check_output(report, file)
    if out is not None and report is not None and Path(out).resolve() == Path(report).resolve():
        raise InputError(f"{report}: --report and -o name the same file; give the report its own name")
    rules = Rules(Bounds(instruction_chars, output_chars), threshold, length_ratio, allow_pii, near_dups)
    fmt, lines = detect_format(file, read_lines(file, parse=False), fmt)
    if balance and SHAPE_OF.get(fmt) != "kto":
        raise InputError(f"{file}: --balance balances kto labels, and this file is {fmt}; leave --balance out")
    if jobs == 0:
        jobs = (os.cpu_count() or 1) if file.stat().st_size > 2_000_000 else 1
    with tempfile.TemporaryFile("w+", encoding="utf-8") as body, \
            tempfile.TemporaryFile("w+", encoding="utf-8") as balanced:
        shown: list[Drop] = []
        sink = [body]    # pass 1's drops, then pass 2's (--balance): each file in line order

        def on_drop(drop: Drop) -> None:
            sink[0].write(f"{drop.line}\t{drop}\n")
            if len(shown) < SHOW:
                shown.append(drop)

        cleaner = Cleaner(fmt, rules, on_drop=on_drop, jobs=jobs)
        # both outputs are opened first: an unwritable -o or --report fails before the work, not after it
        with open_atomic(report) if report is not None else nullcontext() as rf, RowWriter(out) as w:
            kept = cleaner.select(lines)
            balancer = cleaner.balancer(seed) if balance else None
            sink[0] = balanced
            started = time.perf_counter()
            for line in read_lines(file, parse=False):     # pass 2: the kept rows, as they were
                if line.number in kept:
                    if balancer is not None and cleaner.balanced_away(balancer, line.number,
                                                                       line.parsed().obj["label"]):
                        continue
                    if line.raw is not None:
                        w.write_raw(line.raw)
                    else:
                        w.write(line.obj)
            log.debug("writing: %d rows in %.1f s", w.count, time.perf_counter() - started)
            summary = [f"{file}: {line}" if i == 0 else line for i, line in enumerate(cleaner.report.summary())]
            if rf is not None:
                body.seek(0)
                balanced.seek(0)
                checks = ((int(row.split("\t", 1)[0]), row.split("\t", 1)[1]) for row in body)
                later = ((int(row.split("\t", 1)[0]), row.split("\t", 1)[1]) for row in balanced)
                dups = ((d.line, f"{d}\n") for d in cleaner.near_dup_drops)
                rf.write("# datagen clean report\n" + "".join(f"# {line}\n" for line in summary)
                         + "# dropped rows (line N: reason: detail; ...):\n")
                # three lists, each in line order (checks, near-duplicates, balancing): merged by line
                for _, text in heapq.merge(checks, dups, later):
                    rf.write(text)
    shown = sorted(shown + cleaner.near_dup_drops[:SHOW], key=lambda d: d.line)[:SHOW]
    _say(summary)
    if report is None:
        _say([f"  {d}" for d in shown])
        if cleaner.report.dropped > len(shown):
            _say([f"  ... {cleaner.report.dropped - len(shown):,} more: --report FILE lists every dropped row"])
    else:
        _say([f"wrote {report} (every dropped row)"])
    if out:
        _say([f"wrote {out}"])


@click.command()
@click.option("--from-feedback", "logs", type=InPath, required=True,
              help="Feedback log (JSON array or JSONL): prompt, completion and a rating per row.")
@click.option("-o", "--out", type=OutPath, help="KTO rows (default: stdout); a .json name gets a JSON array.")
@click.option("--rating", "kind", type=click.Choice(KINDS), default="auto", show_default=True,
              help="How ratings read: true/false, thumbs up/down, or 1-5 stars.")
@click.option("--threshold", type=float, default=4, show_default=True, help="Stars at or above: desirable.")
@click.option("--bad-max", type=float, default=2, show_default=True,
              help="Stars at or below: undesirable (in between: ambiguous, left out).")
@click.option("--balance/--no-balance", default=True, show_default=True,
              help="Downsample the larger side to 50/50, or only report the imbalance.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the downsampling.")
@click.option("--prompt-field", help="The prompt's field (default: prompt, input, question, query, ...).")
@click.option("--completion-field", help="The completion's field (default: completion, response, output, ...).")
@click.option("--rating-field", help="The rating's field (default: label, rating, thumbs, feedback, stars, ...).")
def kto(logs: Path, out: Path | None, kind: str, threshold: float, bad_max: float, balance: bool, seed: int,
        prompt_field: str | None, completion_field: str | None, rating_field: str | None) -> None:
    """Turn feedback logs (thumbs, stars, booleans) into deduplicated, balanced KTO rows."""
    check_output(out, logs)
    rows, report = dataset.kto_from_feedback(logs, kind=kind, threshold=threshold, bad_max=bad_max,
                                     balance=balance, seed=seed, prompt_field=prompt_field,
                                     completion_field=completion_field, rating_field=rating_field)
    with RowWriter(out) as w:
        for row in rows:
            w.write(row)
    _say(report.summary() + [f"  line {n}: {why}" for n, why in report.unreadable[:SHOW]]
         + ([f"wrote {out}"] if out else []))


@click.command()
@click.argument("file", type=InPath)
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="FILE's format (default: detected).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def stats(file: Path, fmt: str | None, as_json: bool) -> None:
    """Seed 000's diversity metrics (TTR, overlap, verbs, topics, lengths) for any dataset file."""
    result = dataset.stats(file, format=fmt)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(f"{file}")
        for line in result.lines():
            click.echo(line)
