"""Read and write the YAML files a person edits, with errors that name the file, the path and the line."""

from __future__ import annotations

import os
import re
import tempfile
import types
import typing
from pathlib import Path
from typing import Annotated, Any, BinaryIO, TypeVar, Union

import yaml
from pydantic import BaseModel, ValidationError, ValidationInfo, field_validator

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


def open_input(path: Path, what: str) -> BinaryIO:
    """Open a file a person named, in binary; a missing or unreadable one is an InputError that says so."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a {what} file") from None
    except PermissionError:
        raise InputError(f"{path}: cannot read the {what} file (permission denied)") from None
    if path.is_dir():  # some platforms open folders without complaint
        f.close()
        raise InputError(f"{path}: is a folder, expected a {what} file")
    return f


def read_text(path: Path, what: str) -> str:
    with open_input(path, what) as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a text file (invalid UTF-8 at byte {e.start}); expected a YAML {what} file") from None
    if "\x00" in text:
        raise InputError(f"{path}: not a text file (contains NUL bytes); expected a YAML {what} file")
    if not text.strip():
        raise InputError(f"{path}: the {what} file is empty; see plans/example.yaml for a complete one")
    return text


# libyaml's safe loader parses a plan ~20x faster than the pure-Python one (0.4 s -> 0.02 s for
# plans/example.yaml: most of `datagen plan --show`); the same safe constructors either way
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(path: Path, text: str, loader_class: Any) -> tuple[Any, yaml.Node | None]:
    """Parse once: compose the node tree (for line numbers and the duplicate-key check, made before
    constructing, which rewrites merge keys in the tree), then build the data from that same tree.
    What yaml.compose followed by yaml.load did, at half the parsing (bench/README.md 'Start-up')."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        _refuse_duplicate_keys(path, node)
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def load_yaml(path: Path, what: str) -> tuple[dict[str, Any], yaml.Node | None]:
    text = read_text(path, what)
    try:
        try:
            data, node = _parse(path, text, FAST_LOADER)   # a safe loader (libyaml's when built in)
        except yaml.YAMLError:  # the pure-Python parser says what is wrong in plainer words: ask it
            data, node = _parse(path, text, yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(f"{path}{where}: malformed YAML: {problem}; fix the syntax at that line") from None
    if data is None:
        raise InputError(f"{path}: the {what} file has no settings (only comments or blank lines)")
    if not isinstance(data, dict):
        raise InputError(f"{path}: the {what} file must be a YAML mapping (key: value lines), got a {type(data).__name__}")
    return data, node


def _refuse_duplicate_keys(path: Path, node: yaml.Node | None) -> None:
    """YAML says keys are unique, PyYAML silently keeps the last one: a person's second value would hide
    the first without a word. Walks the composed tree (iteratively: a deep file cannot overflow the stack)."""
    stack = [node] if node is not None else []
    seen: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen:  # an alias repeats a node
            continue
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in n.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in first:
                        raise InputError(f"{path}:{line}: duplicate key {key.value!r} (first at line "
                                         f"{first[key.value]}); keep one of them")
                    first[key.value] = line
                stack += [key, value]
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value


def _scalar_kinds(annotation: Any) -> set[type]:
    """The plain scalar types (bool, int, float) a field's annotation admits, through Optional/Annotated."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return set().union(*(_scalar_kinds(a) for a in typing.get_args(annotation)))
    if origin is Annotated:
        return _scalar_kinds(typing.get_args(annotation)[0])
    return {annotation} if annotation in (bool, int, float) else set()


class StrictScalars(BaseModel):
    """A model whose numbers and yes/no fields take only what YAML reads as such: pydantic would take
    `total: true` as 1, `total: "50"` as 50 and `allow_pii: 1` as true."""

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        kinds = _scalar_kinds(field.annotation) if field is not None else set()
        if not kinds or value is None:
            return value
        if bool in kinds and not (kinds - {bool}):
            if not isinstance(value, bool):
                raise ValueError("Input should be a valid boolean: write true or false")
        elif isinstance(value, bool):
            raise ValueError(f"{str(value).lower()} is a yes/no value, not a number; write a number")
        elif isinstance(value, str) and _is_number(value):
            raise ValueError(f"{value!r} is quoted text, not a number; write the number without quotes")
        return value  # anything else gets pydantic's own message ("Input should be a valid number")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


KEY_HINTS = {
    "plan": "see plans/example.yaml for the keys a plan takes",
    "requirements": "see the README's list of requirement keys",
    "answers": "see the README's list of requirement keys",
    "prices": "a price takes input, output, cached_input and batch_discount",
}
FRIENDLY = {
    "string_pattern_mismatch": "use only letters, digits, '_', '-' and '.' (no spaces), starting with a letter or digit",
    "missing": "this required key is missing; add it",
}
_PATH_IN_MESSAGE = re.compile(r"^([A-Za-z_][\w.]*(?:\[\d+\])*(?:\.[\w]+)*): ")


def _parse_path(text: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", text))


def validation_message(path: Path | str, err: ValidationError, node: yaml.Node | None = None,
                       what: str = "plan") -> str:
    first = err.errors()[0]
    loc = tuple(first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = f"unknown key (check its spelling; {KEY_HINTS.get(what, KEY_HINTS['plan'])})"
    msg = FRIENDLY.get(first["type"], msg)
    found = _PATH_IN_MESSAGE.match(msg) if not loc else None
    if found:  # a whole-file rule names its own path, e.g. "exclusions[0]: ..."
        loc, msg = _parse_path(found.group(1)), msg[found.end():]
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
        raise InputError(validation_message(path, e, node, what)) from None


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask can only set it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~current_umask())  # mkstemp makes 0600; give what any tool would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
