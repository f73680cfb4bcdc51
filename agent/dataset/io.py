"""Reading and writing dataset files a person already has: JSON arrays and JSONL, in any of the trainer formats.

Reading. The first non-blank byte decides the container: "[" is a JSON array (seed 002's sample files), anything
else is JSONL. JSONL is streamed line by line with export.validate's length cap (a huge line is reported, never
read whole); a JSON array is read whole and parsed one element at a time, so each row still knows the line it
starts on. Every row comes out as a Line: its line number and either the parsed value or why it is not one.

Format. Detected from the first rows whose keys match a format (export.formats.detect), or given.

Writing. Rows go to a temporary file beside the target, which is renamed into place only when complete (a crash
or a bad row leaves the old file, and no temporary, behind), with the mode the umask gives (mkstemp makes 0600).
A target that is one of the input files is refused. "-" or no target writes JSONL to stdout. A target ending in
".json" gets a JSON array (the container seed 002's tools read); anything else gets JSONL.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import IO, Any

from agent.errors import InputError
from agent.export.formats import FORMATS, detect
from agent.export.validate import MAX_LINE_BYTES, iter_lines
from agent.yamlfile import open_input

DETECT_WITHIN = 1000   # rows read ahead to find the first one in a known format
_SPACE = re.compile(r"[ \t\r\n]*")   # matches anywhere (all optional): .match() is never None


@dataclass
class Line:
    """One row of a file: where it starts, and its parsed JSON value or why there is none.

    A JSONL row read with parse=False holds its bytes in `raw` until parsed() (so a worker process can parse it).
    """

    number: int                 # 1-based line where the row starts
    obj: Any = None
    error: str | None = None    # "bad_json: ...", "not_utf8: ...", "line_too_long: ..."
    raw: bytes | None = None

    @property
    def code(self) -> str:
        return (self.error or "").split(":", 1)[0]

    def parsed(self) -> Line:
        return _parse(self.number, self.raw) if self.raw is not None else self


def read_lines(path: str | Path, max_line_bytes: int = MAX_LINE_BYTES, parse: bool = True) -> Iterator[Line]:
    """Every row of a JSON array or JSONL file, in order; blank JSONL lines are skipped.

    parse=False leaves JSONL rows unparsed (Line.raw; Line.parsed() parses); array rows are always parsed.

    Raises InputError when the file cannot be read at all (missing, a folder, not a JSON array although it
    starts with "[", not UTF-8 in an array); a bad JSONL line is a Line with an error instead.
    """
    path = Path(path)
    f = open_input(path, "dataset")
    with f:
        try:
            first = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
            f.seek(0)
            if first == b"[":
                yield from _array(path, f.read())
                return
            for number, raw in iter_lines(f, max_line_bytes):
                if raw is None:
                    yield Line(number, error=f"line_too_long: longer than {max_line_bytes:,} bytes; not read")
                    continue
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                if not raw.strip():
                    continue
                yield _parse(number, raw) if parse else Line(number, raw=raw)
        except IsADirectoryError:
            raise InputError(f"{path}: is a folder, expected a JSON or JSONL file") from None
        except OSError as e:
            raise InputError(f"{path}: cannot read the file: {e.strerror or e}") from None


def _parse(number: int, raw: bytes) -> Line:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Line(number, error=f"not_utf8: not valid UTF-8 (byte {e.start} of the line)")
    try:
        return Line(number, json.loads(text))
    except json.JSONDecodeError as e:
        return Line(number, error=f"bad_json: invalid JSON: {e.msg} (column {e.colno})")
    except (RecursionError, ValueError) as e:   # nesting too deep, a 5,000-digit number
        return Line(number, error=f"bad_json: JSON Python cannot hold: {type(e).__name__}")


def _array(path: Path, raw: bytes) -> Iterator[Line]:
    """The elements of a JSON array, one raw_decode at a time (each knows its starting line)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 (byte {e.start}); expected a JSON or JSONL file") from None
    decoder = json.JSONDecoder()
    pos = _SPACE.match(text).end() + 1  # type: ignore[union-attr]  # past "["
    line, counted = 1, 0

    def fail(at: int, what: str) -> InputError:
        row = text.count("\n", 0, at) + 1
        col = at - text.rfind("\n", 0, at)
        return InputError(f"{path}:{row}:{col}: not a valid JSON array: {what}; fix the file or save it as JSONL")

    pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        return
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise fail(e.pos, e.msg) from None
        except (RecursionError, ValueError) as e:
            raise fail(pos, f"a value Python cannot hold ({type(e).__name__})") from None
        yield Line(line, obj)
        pos = _SPACE.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith("]", pos):
            if text[pos + 1:].strip():
                raise fail(pos + 1, "text after the closing ']'")
            return
        if not text.startswith(",", pos):
            raise fail(pos, "expected ',' or ']' after an element")
        pos = _SPACE.match(text, pos + 1).end()  # type: ignore[union-attr]


def detect_format(path: str | Path, lines: Iterable[Line], fmt: str | None = None) -> tuple[str, Iterator[Line]]:
    """The file's format (given, or that of the first row in a known format) and the rows, none consumed."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt, iter(lines)
    it = iter(lines)
    ahead: list[Line] = []
    for line in it:
        line = line.parsed()
        ahead.append(line)
        found = detect(line.obj) if line.error is None else None
        if found:
            return found, chain(ahead, it)
        if len(ahead) >= DETECT_WITHIN:
            break
    if not ahead:
        raise InputError(f"{path}: the file has no rows; expected a JSON array or JSONL of records")
    first = next((x for x in ahead if x.error is None), None)
    if first is None:
        raise InputError(f"{path}:{ahead[0].number}: {ahead[0].error.split(': ', 1)[-1]}; "  # type: ignore[union-attr]
                         f"expected a JSON array or JSONL of records")
    keys = ", ".join(sorted(map(str, first.obj))) if isinstance(first.obj, dict) else type(first.obj).__name__
    raise InputError(f"{path}:{first.number}: no row in a known format (found: {keys}); "
                     f"pass --format {'|'.join(FORMATS)}")


def umask_mode() -> int:
    """The mode a new file gets from the umask (0666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_output(out: str | Path | None, *inputs: str | Path) -> None:
    """InputError when `out` would overwrite one of the inputs (the rows are still being read from it)."""
    if out is None or str(out) == "-":
        return
    for path in inputs:
        if same_file(out, path):
            raise InputError(f"{out}: is the input file; write to another file (-o) and rename it afterwards")
    if Path(out).is_dir():
        raise InputError(f"{out}: is a folder; give a file name for -o")


@contextmanager
def open_atomic(path: str | Path | None) -> Iterator[IO[str]]:
    """A text file that appears at `path` only when the block completes; stdout for None or "-".

    On any exception the temporary file is removed and an existing file at `path` is left as it was; an
    OSError (a full disk, a vanished folder) becomes one InputError line.
    """
    if path is None or str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise InputError(f"{path}: cannot write here: {e.strerror or e}; choose another output file") from None
    f = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except OSError as e:
        _discard(f, tmp)
        raise InputError(f"{path}: cannot write: {e.strerror or e}; nothing was changed there") from None
    except BaseException:
        _discard(f, tmp)
        raise


def _discard(f: IO[str], tmp: str) -> None:
    with suppress(OSError):
        f.close()
    Path(tmp).unlink(missing_ok=True)


class RowWriter:
    """Writes rows as JSONL or a JSON array through open_atomic: nothing appears at `path` until the block ends.

    Use as a context manager; an exception inside the block leaves any existing file at `path` untouched.
    """

    def __init__(self, path: str | Path | None, array: bool | None = None):
        self.path = None if path is None or str(path) == "-" else Path(path)
        self.array = (self.path is not None and self.path.suffix.lower() == ".json") if array is None else array
        self.count = 0
        self._cm = open_atomic(self.path)
        self._f: IO[str]

    def __enter__(self) -> RowWriter:
        self._f = self._cm.__enter__()
        if self.array:
            self._f.write("[")
        return self

    def write_raw(self, line: bytes) -> None:
        """A JSONL row as it was read (bytes of one line, no newline): kept byte for byte."""
        if self.array:
            self.write(json.loads(line))
        else:
            self._f.write(line.decode("utf-8") + "\n")
            self.count += 1

    def write(self, row: Any) -> None:
        text = json.dumps(row, ensure_ascii=False)
        if self.array:
            self._f.write(("," if self.count else "") + "\n  " + text)
        else:
            self._f.write(text + "\n")
        self.count += 1

    def __exit__(self, kind, value, tb) -> bool | None:
        if kind is None and self.array:
            self._f.write(("\n" if self.count else "") + "]\n")
        return self._cm.__exit__(kind, value, tb)


def write_rows(path: str | Path | None, rows: Iterable[Any], array: bool | None = None) -> int:
    """Write all rows atomically (see RowWriter); the number written."""
    with RowWriter(path, array) as w:
        for row in rows:
            w.write(row)
    return w.count
