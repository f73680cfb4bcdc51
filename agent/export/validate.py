"""`datagen validate`: check any JSONL file in one of the five formats, line by line, in constant memory.

Per line: the bytes are read with a length cap (a 5 GB line never enters memory whole), decoded as UTF-8,
parsed as JSON, matched against the format (auto-detected from the first valid line, or given), turned
into the canonical record and put through every seed 003 rule (agent.audit.checks.check_record). Then:
tokens per example against a context limit, and near-duplicates of the first user message / prompt.

Memory: everything is constant in the file size except the near-duplicate check, which keeps every first
user message and NearDupIndex's index of them to compare later lines against. That grows with the number
of examples: about 2 KB per example up to dedup.AUTO_SWITCH (20,000) texts, about 10 KB per example past
it (MinHash LSH; measured: +1 GB for 100k examples, see bench/notes/export.md). The summary says so, and
near_dups=False (`--no-near-dups`) skips the check for constant memory. Stored error messages are capped
at MAX_STORED; counts per code are always complete.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from agent import tokens
from agent.audit.checks import check_record
from agent.audit.dedup import NearDupIndex
from agent.errors import InputError
from agent.export.formats import FORMATS, SHAPE_OF, Unconvertible, detect, is_plain_chat, to_canonical
from agent.plan import Quality
from agent.records import user_text
from agent.yamlfile import open_input

# OpenAI's per-example training limit for its current fine-tunable models (gpt-4o-mini / gpt-4o / gpt-4.1
# families): 65,536 tokens, as quoted from OpenAI's fine-tuning guide in
# https://community.openai.com/t/question-about-limited-time-gpt4o-free-fine-tune/884424 . It varies by
# model and changes over time: a configurable assumption (--max-tokens), not a constant of nature.
DEFAULT_MAX_TOKENS = 65_536
# OpenAI's fine-tuning file rules (platform.openai.com/docs/guides/supervised-fine-tuning and
# .../direct-preference-optimization, as of 2026): at least 10 examples; roles system/user/assistant/tool;
# at least one assistant message to learn from; `weight` (0 or 1) only on assistant messages; preference
# lines hold input.messages and exactly one assistant message in preferred_output / non_preferred_output.
OPENAI_MIN_EXAMPLES = 10
OPENAI_FORMATS = ("openai", "openai-dpo")
OPENAI_MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call"}
MAX_LINE_BYTES = 10 * 1024 * 1024
MAX_STORED = 1000
_CHUNK = 1024 * 1024


@dataclass
class LineError:
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Report:
    path: Path
    format: str | None = None
    lines: int = 0                  # non-empty lines (records) read
    blank: int = 0
    examples: int = 0               # lines that parsed into a record of the format
    valid: int = 0                  # lines with no error at all
    errors: list[LineError] = field(default_factory=list)   # the first MAX_STORED
    error_lines: int = 0            # lines with one error or more
    codes: Counter[str] = field(default_factory=Counter)
    tokens_total: int = 0
    tokens_max: int = 0
    max_tokens: int = DEFAULT_MAX_TOKENS
    over_limit: int = 0
    near_duplicates: int = 0        # lines matching an earlier line of this file
    cross_duplicates: int = 0       # lines matching a line of a file validated before (shared index)
    threshold: float = 0.85
    near_dups: bool = True          # False: the near-duplicate check was skipped
    user_chars: int = 0             # what the near-duplicate index holds
    tok: tokens.Tokenizer | None = field(default=None, repr=False)  # None: cl100k_base (tokens.count)
    rules: str | None = None        # "openai": OpenAI's fine-tuning file rules were applied too
    file_errors: list[str] = field(default_factory=list)   # rules about the whole file (too few examples)
    # What the export already knows about its own files (never set by `datagen validate FILE`; see validate_file)
    known_tokens: Sequence[int] | None = field(default=None, repr=False)
    known_unique: bool = False

    @property
    def tokenizer(self) -> str:
        """The tokenizer every token figure was counted with."""
        return self.tok.name if self.tok else "cl100k_base"

    @property
    def ok(self) -> bool:
        return self.error_lines == 0 and self.blank == 0 and self.examples > 0 and not self.file_errors

    def add(self, line: int, code: str, message: str) -> None:
        self.codes[code] += 1
        if len(self.errors) < MAX_STORED:
            self.errors.append(LineError(line, code, message))

    def summary(self) -> list[str]:
        mean = self.tokens_total / self.examples if self.examples else 0
        out = [
            f"{self.path}: {'VALID' if self.ok else 'NOT VALID'} ({self.format or 'format unknown'})",
            f"records: {self.lines:,} lines, {self.examples:,} readable as {self.format or '?'}, {self.valid:,} "
            f"without errors, {self.error_lines:,} with errors" + (f", {self.blank:,} blank" if self.blank else ""),
            f"tokens per example ({self.tokenizer}): mean {mean:,.0f}, max {self.tokens_max:,}; "
            f"{self.over_limit:,} above the {self.max_tokens:,}-token limit",
            (f"near-duplicates (SequenceMatcher ratio > {self.threshold:g} on the first user message, autojunk off, "
             f"either order): {self.near_duplicates:,}"
             + (f", {self.cross_duplicates:,} with an earlier file" if self.cross_duplicates else "")
             + f"; this check keeps every first user message and its index in memory ({self.examples:,} texts, "
             f"{self.user_chars / 1e6:,.1f} M characters; roughly 1-10 KB per example): --no-near-dups skips it"
             if self.near_dups else "near-duplicates: not checked (--no-near-dups)"),
        ]
        out += [f"file: {e}" for e in self.file_errors]
        if self.rules == "openai" and not self.file_errors:
            out.append(f"OpenAI file rules: applied (at least {OPENAI_MIN_EXAMPLES} examples, roles, weight, "
                       f"{self.max_tokens:,}-token limit)")
        if self.codes:
            out.append("errors by kind: " + ", ".join(f"{c} {n:,}" for c, n in self.codes.most_common()))
        return out


def iter_lines(f: BinaryIO, cap: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the newline); None for a line longer than `cap` (skipped in chunks)."""
    number = 0
    while True:
        raw = f.readline(cap + 1)
        if not raw:
            return
        number += 1
        if len(raw) > cap and not raw.endswith(b"\n"):
            while True:  # drain the rest of the long line without holding it
                rest = f.readline(_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, raw.rstrip(b"\r\n")


def example_tokens(record: dict[str, Any], tok: tokens.Tokenizer | None = None) -> int:
    """Tokens one example puts through the model (OpenAI's chat framing for messages; text fields otherwise)."""
    count = tok.count if tok else tokens.count
    if "messages" in record:
        return tok.count_messages(record["messages"]) if tok else tokens.count_messages(record["messages"])
    if "chosen" in record:  # DPO trains on prompt+chosen and prompt+rejected: the longer pair is the limit
        prompt = count(record.get("system", "")) + count(record["prompt"])
        return prompt + max(count(record["chosen"]), count(record["rejected"]))
    return count(record.get("system", "")) + count(record["prompt"]) + count(record["completion"])


def openai_rule_errors(obj: dict[str, Any], fmt: str) -> list[tuple[str, str]]:
    """(code, message) for each of OpenAI's per-line rules a line of `fmt` breaks (structure already checked)."""
    if fmt not in OPENAI_FORMATS:
        return [("openai_format", f"OpenAI fine-tuning takes {' or '.join(OPENAI_FORMATS)} lines, not {fmt}")]
    out = []
    msgs = obj["messages"] if fmt == "openai" else obj["input"]["messages"] + obj["preferred_output"]
    for i, m in enumerate(msgs, 1):
        extra = sorted(set(m) - OPENAI_MESSAGE_KEYS)
        if extra:
            out.append(("openai_key", f"message {i} has keys OpenAI rejects: {', '.join(extra)}"))
        if "weight" in m:
            if m.get("role") != "assistant":
                out.append(("openai_weight", f"message {i}: weight is only allowed on assistant messages"))
            elif m["weight"] not in (0, 1) or isinstance(m["weight"], bool):
                out.append(("openai_weight", f"message {i}: weight must be 0 or 1, got {m['weight']!r}"))
    if fmt == "openai":
        weights = [m.get("weight", 1) for m in msgs if m.get("role") == "assistant"]
        if not weights:
            out.append(("openai_no_assistant", "no assistant message: nothing to train on"))
        elif all(w == 0 for w in weights):
            out.append(("openai_no_assistant", "every assistant message has weight 0: nothing to train on"))
    return out


def validate_file(path: str | Path, fmt: str | None = None, max_tokens: int = DEFAULT_MAX_TOKENS,
                  threshold: float = 0.85, quality: Quality | None = None,
                  max_line_bytes: int = MAX_LINE_BYTES, index: NearDupIndex | None = None,
                  near_dups: bool = True, tokenizer: tokens.Tokenizer | None = None,
                  rules: str | None = None, known_tokens: Sequence[int] | None = None,
                  known_unique: bool = False) -> Report:
    """Check every line of a JSONL file; raises InputError only when the file cannot be read at all.

    `index`: a near-duplicate index shared with files validated before this one (training, then
    validation): a line matching one of theirs counts in `cross_duplicates`, not `near_duplicates`.
    `rules="openai"`: OpenAI's fine-tuning file rules too (counted in o200k unless a tokenizer is given).

    For the export checking the files it has just written, where two results are already known:
    `known_tokens`: the tokens of line k's example at [k - 1], counted by the writer with this tokenizer
    from the very record the line holds (the JSON round trip gives the record back unchanged), so the
    count is not repeated. `known_unique`: the writer proved that no two first user messages of its
    files are near-duplicates under this threshold (export.split: Split.unique), so every find would
    answer None; the check is reported as done, with its figures (0 and 0), without an index.
    `datagen validate FILE` passes neither: a user's file gets every check.
    """
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    quality = quality or Quality()
    if rules == "openai" and tokenizer is None:
        tokenizer = tokens.o200k()  # the tokenizer of every model OpenAI fine-tunes today (gpt-4o / 4.1 families)
    report = Report(path=path, format=fmt, max_tokens=max_tokens, threshold=threshold, near_dups=near_dups,
                    tok=tokenizer, rules=rules, known_tokens=known_tokens, known_unique=known_unique and near_dups)
    if index is None and near_dups and not report.known_unique:
        index = NearDupIndex(threshold)
    f = open_input(path, "JSONL")
    with f:
        try:
            for number, raw in iter_lines(f, max_line_bytes):
                _line(report, index, number, raw, quality, max_line_bytes)
        except IsADirectoryError:
            raise InputError(f"{path}: is a folder, expected a JSONL file") from None
        except OSError as e:
            raise InputError(f"{path}: cannot read the file: {e.strerror or e}") from None
    if rules == "openai" and report.examples < OPENAI_MIN_EXAMPLES:
        report.file_errors.append(f"{report.examples} examples; OpenAI requires at least {OPENAI_MIN_EXAMPLES}")
    return report


def _line(report: Report, index: NearDupIndex | None, number: int, raw: bytes | None, quality: Quality,
          max_line_bytes: int) -> None:
    if raw is not None and not raw.strip():
        report.blank += 1
        report.add(number, "blank_line", "blank line (JSONL needs one JSON object on every line)")
        return
    report.lines += 1
    errors_before = sum(report.codes.values())
    _check_line(report, index, number, raw, quality, max_line_bytes)
    if sum(report.codes.values()) > errors_before:
        report.error_lines += 1
    else:
        report.valid += 1


def _check_line(report: Report, index: NearDupIndex | None, number: int, raw: bytes | None, quality: Quality,
                max_line_bytes: int) -> None:
    if raw is None:
        report.add(number, "line_too_long", f"longer than {max_line_bytes:,} bytes; not read")
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        report.add(number, "not_utf8", f"not valid UTF-8 (byte {e.start} of the line)")
        return
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        report.add(number, "bad_json", f"invalid JSON: {e.msg} (column {e.colno})")
        return
    except RecursionError:  # legal JSON nested deeper than Python's parser goes
        report.add(number, "bad_json", "JSON nested too deeply to read (thousands of levels)")
        return
    except ValueError as e:  # legal JSON Python will not convert, e.g. an integer of 4,300+ digits
        report.add(number, "bad_json", f"JSON that cannot be read: {str(e).split(';')[0]}")
        return
    try:
        _check_record(report, index, number, obj, quality)
    except (RecursionError, ValueError, TypeError, OverflowError) as e:  # one strange record never stops the file
        report.add(number, "unreadable", f"record cannot be checked ({type(e).__name__}: {str(e)[:120]})")


def _check_record(report: Report, index: NearDupIndex | None, number: int, obj: Any, quality: Quality) -> None:
    if report.format is None:
        report.format = detect(obj)
        if report.format is None:
            keys = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
            report.add(number, "unknown_format", f"not a record of any known format (found: {keys}); "
                       f"pass --format to say which")
            return
    try:
        # a plain chat line is its own canonical record (formats.is_plain_chat): read as it is, not copied
        plain = report.format == "openai" and isinstance(obj, dict) and is_plain_chat(obj)
        record = obj if plain else to_canonical(obj, report.format)
    except Unconvertible as e:
        report.add(number, "bad_structure", f"not a {report.format} record: {e}")
        return
    report.examples += 1
    for issue in check_record(record, SHAPE_OF[report.format], quality):
        report.add(number, issue.code, issue.message)
    if report.rules == "openai":
        for code, message in openai_rule_errors(obj, report.format):
            report.add(number, code, message)
    known = report.known_tokens
    n = known[number - 1] if known is not None and number <= len(known) else example_tokens(record, report.tok)
    report.tokens_total += n
    report.tokens_max = max(report.tokens_max, n)
    if n > report.max_tokens:
        report.over_limit += 1
        report.add(number, "too_many_tokens", f"{n:,} tokens, above the {report.max_tokens:,}-token limit")
    if index is None and not report.known_unique:
        return
    user = user_text(record)
    hit = None if index is None else index.find(user)   # no index: known_unique, every find would be None
    if hit is None:
        if index is not None:
            index.add((report.path.name, number), user)
    elif hit[0][0] == report.path.name:  # type: ignore[index]
        report.near_duplicates += 1
        report.add(number, "near_duplicate", f"near-duplicate of line {hit[0][1]} (ratio {hit[1]:.3f})")  # type: ignore[index]
    else:
        report.cross_duplicates += 1
        report.add(number, "near_duplicate_across",
                   f"near-duplicate of {hit[0][0]} line {hit[0][1]} (ratio {hit[1]:.3f})")  # type: ignore[index]
    report.user_chars += len(user)

