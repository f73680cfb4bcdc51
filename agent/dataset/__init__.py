"""datagen's tools for datasets you already have, as a small Python API (`datagen convert/clean/kto/stats` are
thin wrappers over the same code: agent/dataset/commands.py).

    from agent import dataset

    rows = dataset.load("data.json")            # JSON array or JSONL, format detected
    clean, report = dataset.clean(rows)         # drop invalid, off-bounds, PII, near-duplicate rows; say why
    sharegpt = dataset.convert(rows, to="sharegpt")
    text = dataset.convert(rows, to="text", template="chatml")
    kto, fb = dataset.kto_from_feedback("logs.jsonl")
    print("\\n".join(dataset.stats(rows).lines()))
    dataset.save(clean, "clean.jsonl")

Every function takes a Dataset (what load returns), a plain list of dicts (format detected from its rows), or
a file path (read streaming). Functions that make rows return a Dataset: a read-only sequence of dicts with
its `format` and `notes` (what was lost or changed on the way). Bad input raises agent.errors.InputError with
a message that names the file and line.

Formats: openai, sharegpt, alpaca, dpo, kto (agent.export.formats), plus "text" as a convert target.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from agent.dataset.clean import Bounds, Cleaner, CleanReport, Drop, Rules
from agent.dataset.convert import TEMPLATES, Conversion, Converter
from agent.dataset.feedback import FeedbackReport
from agent.dataset.feedback import kto_from_feedback as _kto_from_feedback
from agent.dataset.io import Line, detect_format, read_lines, write_rows
from agent.dataset.stats import DatasetStats, dataset_stats
from agent.errors import InputError
from agent.export.formats import FORMATS, SHAPE_OF, detect
from agent.export.validate import DEFAULT_MAX_TOKENS, Report, validate_file

__all__ = ["Bounds", "CleanReport", "Conversion", "Dataset", "DatasetStats", "Drop", "FORMATS", "FeedbackReport",
           "Report", "Rules", "TEMPLATES", "clean", "convert", "kto_from_feedback", "load", "save", "stats",
           "validate"]


@dataclass(frozen=True)
class Dataset(Sequence[dict[str, Any]]):
    """Rows of one format, in order. `notes`: what the step that made them lost or changed; `lines`: the line
    each row starts on in `path` (what reports name), when the rows came from a file."""

    rows: list[dict[str, Any]]
    format: str
    path: Path | None = None
    notes: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i):
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return f"<Dataset {len(self.rows):,} {self.format} rows{where}>"


def _lines(source: Any, format: str | None = None) -> tuple[str, Iterator[Line], str]:
    """(format, rows as Lines, a name for messages) for any accepted source."""
    if isinstance(source, str | Path):
        fmt, lines = detect_format(source, read_lines(source), format)
        return fmt, lines, str(source)
    if isinstance(source, Dataset):
        numbers = source.lines if len(source.lines) == len(source.rows) else range(1, len(source.rows) + 1)
        return format or source.format, (Line(n, r) for n, r in zip(numbers, source.rows, strict=True)), \
            str(source.path or "rows")
    rows = list(source)
    if format is None:
        format = next((f for f in map(detect, rows) if f), None)
        if format is None:
            raise InputError(f"rows: no row in a known format; pass format= one of {', '.join(FORMATS)}")
    elif format not in FORMATS:
        raise InputError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    return format, (Line(i, r) for i, r in enumerate(rows, 1)), "rows"


def load(path: str | Path, format: str | None = None) -> Dataset:
    """Read a JSON array or JSONL file; the format is detected from its rows unless given.

    Rows are returned as they are in the file. A line that is not JSON raises InputError (naming the line);
    `clean(path)` reads such files and reports those lines as dropped instead.
    """
    fmt, lines, name = _lines(path, format)
    rows, numbers = [], []
    for line in lines:
        if line.error is not None:
            raise InputError(f"{name}:{line.number}: {line.error.split(': ', 1)[-1]}; fix the line, or "
                             f"`datagen clean` the file to drop such lines")
        rows.append(line.obj)
        numbers.append(line.number)
    return Dataset(rows, fmt, Path(path), lines=numbers)


def save(rows: Dataset | Iterable[dict[str, Any]], path: str | Path, array: bool | None = None) -> int:
    """Write rows atomically (temporary file, then rename); JSON array for a ".json" path, else JSONL."""
    return write_rows(path, rows, array)


def convert(rows: Any, to: str, *, template: str | None = None, strict: bool = False,
            format: str | None = None) -> Dataset:
    """Rows in another format (one of FORMATS, or "text" with template "chatml" or "llama3").

    Lossless where the target can hold it; otherwise the rows lose what it cannot hold and the result's
    notes say how many lost what (strict=True raises InputError at the first such row instead).
    See agent.dataset.convert for every kind of loss.
    """
    fmt, lines, name = _lines(rows, format)
    converter = Converter(fmt, to, template, strict=strict, path=name)
    out = list(converter.run(lines))
    return Dataset(out, to, notes=converter.result.summary())


def clean(rows: Any, *, rules: Rules | None = None, format: str | None = None, balance: bool = False,
          seed: int = 0) -> tuple[Dataset, CleanReport]:
    """The rows that pass every check, and the report (every dropped row with its line and reasons).

    The checks: the auditor's rules (seed 003, refusals, PII), seed 002's length bounds, near-duplicates
    (seed 003's 0.85); `rules=Rules(...)` changes any of them. balance=True (kto): a seeded random sample of
    the larger label's kept rows is left out so the labels are 50/50. See agent.dataset.clean.
    """
    fmt, lines, name = _lines(rows, format)
    if balance and SHAPE_OF.get(fmt) != "kto":
        raise InputError(f"balance=True balances kto labels, and these rows are {fmt}")
    parsed = [line.parsed() for line in lines]
    cleaner = Cleaner(fmt, rules)
    kept = cleaner.select(parsed)
    balancer = cleaner.balancer(seed) if balance else None
    rows_kept = [line for line in parsed
                 if line.number in kept and not cleaner.balanced_away(balancer, line.number, line.obj.get("label"))]
    cleaner.report.drops.sort(key=lambda d: d.line)
    path = Path(name) if isinstance(rows, str | Path) else rows.path if isinstance(rows, Dataset) else None
    return (Dataset([line.obj for line in rows_kept], fmt, path, cleaner.report.summary(),
                    [line.number for line in rows_kept]), cleaner.report)


def stats(rows: Any, *, format: str | None = None) -> DatasetStats:
    """Seed 000's diversity metrics against its thresholds, plus lengths, turns and labels."""
    fmt, lines, _ = _lines(rows, format)
    return dataset_stats(lines, fmt)


def validate(path: str | Path, *, format: str | None = None, max_tokens: int = DEFAULT_MAX_TOKENS,
             threshold: float = 0.85, near_dups: bool = True) -> Report:
    """`datagen validate` on a JSONL file: every error with its line, without changing anything.

    For rows in memory, clean(rows) reports the same problems (report.drops).
    """
    return validate_file(path, format, max_tokens=max_tokens, threshold=threshold, near_dups=near_dups)


def kto_from_feedback(logs: Any, **options: Any) -> tuple[Dataset, FeedbackReport]:
    """Balanced KTO rows from feedback logs (thumbs up/down, 1-5 stars, booleans).

    `logs`: a path or rows. Options: kind ("auto", "bool", "thumbs", "stars"), threshold (4: stars at or
    above are desirable), bad_max (2: stars at or below are undesirable), balance (True: downsample the
    larger side to 50/50), seed, prompt_field, completion_field, rating_field. See agent.dataset.feedback.
    """
    if isinstance(logs, str | Path):
        lines: Iterable[Line] = read_lines(logs)
    else:
        lines = (Line(i, r) for i, r in enumerate(logs, 1))
    out, report = _kto_from_feedback(lines, **options)
    return Dataset(out, "kto", notes=report.summary()), report

