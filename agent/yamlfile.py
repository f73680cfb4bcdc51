"""Read and write the YAML files a person edits, with errors that name the file, the path and the line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from agent.errors import InputError

M = TypeVar("M", bound=BaseModel)


def format_loc(loc: tuple[Any, ...]) -> str:
    """('dimensions', 'tone', 'categories', 2, 'share') -> 'dimensions.tone.categories[2].share'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the composed YAML tree along a pydantic error location; the deepest node found gives the line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if str(k.value) == str(part)), None)
            if match is None:
                # an unknown key is reported at the key itself
                key = next((k for k, _ in node.value if str(k.value) == str(part)), None)
                return key.start_mark.line + 1 if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def read_text(path: Path, what: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a {what} file") from None
    except PermissionError:
        raise InputError(f"{path}: cannot read the {what} file (permission denied)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a text file (invalid UTF-8 at byte {e.start}); expected a YAML {what} file") from None
    if "\x00" in text:
        raise InputError(f"{path}: not a text file (contains NUL bytes); expected a YAML {what} file")
    if not text.strip():
        raise InputError(f"{path}: the {what} file is empty; see plans/example.yaml for a complete one")
    return text


def load_yaml(path: Path, what: str) -> tuple[dict[str, Any], yaml.Node | None]:
    text = read_text(path, what)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(f"{path}{where}: malformed YAML: {problem}; fix the syntax at that line") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the {what} file must be a YAML mapping (key: value lines), got {type(data).__name__}")
    return data, node


def validation_message(path: Path | str, err: ValidationError, node: yaml.Node | None = None) -> str:
    first = err.errors()[0]
    loc = tuple(first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check its spelling; see plans/example.yaml for the keys a plan takes)"
    line = _line_of(node, loc) if node is not None else None
    where = f"{path}:{line}" if line else f"{path}"
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {format_loc(loc)}: {msg}{tail}"


def load_model(path: Path, model: type[M], what: str) -> M:
    data, node = load_yaml(path, what)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InputError(validation_message(path, e, node)) from None


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
