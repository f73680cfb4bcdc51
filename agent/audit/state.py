"""Run state as data, never code: the format the diversity snapshot is stored in (replaces pickle).

A ledger travels with its run folder, so whatever it holds must be safe to load: pickle runs any code a
planted blob names. This format can only describe plain data (None, bool, int, float, str, list, tuple,
set, dict, Counter, numpy arrays of a few numeric dtypes) and objects of classes defined in the modules
the caller allows, restored by setting attributes on a bare instance (no constructor, no __setstate__).

Layout, format version 1 (FORMAT_VERSION):
    b"DGSTATE1\\n" | header length (8 bytes, little endian) | header (JSON, UTF-8) | buffer (raw arrays)
The header is {"format": "datagen-state", "version": 1, "root": NODE}. A NODE is a JSON scalar
(None/bool/int/float/str) or an object tagged "t":
    {"t": "list"|"tuple"|"set", "i": id, "v": COLUMN}      {"t": "dict"|"counter", "i": id, "k": COLUMN, "v": COLUMN}
    {"t": "nd", "i": id, "b": BLOB}                         {"t": "obj", "i": id, "c": "module:Class", "a": {name: NODE}}
    {"t": "ref", "i": id}  -- the container already decoded under that id (shared references survive)
A COLUMN is a sequence stored by kind, so millions of ints or small arrays cost one numpy buffer, not
millions of JSON nodes: {"c": "none", "n": n}, {"c": "int"|"float", "b": BLOB}, {"c": "str", "v": [...]},
{"c": "nd", "d": dtype, "b": BLOB (all items joined), "l": BLOB (their lengths)} for 1-d arrays,
{"c": "mix", "tags": BLOB (uint8: which part each item comes from), "p": [COLUMN, ...]} for a mix of
those kinds, and {"c": "any", "v": [NODE, ...]} for anything else. BLOB = {"o": offset, "n": bytes,
"d": dtype, "s": shape} in the buffer. Arrays inside an "nd" column are stored by value.

loads() checks everything it reads and raises StateError on anything else; callers rebuild instead.
"""

from __future__ import annotations

import importlib
import json
import operator
import struct
from collections import Counter
from collections.abc import Sequence
from itertools import compress, repeat
from typing import Any

import numpy as np

MAGIC = b"DGSTATE1\n"
FORMAT = "datagen-state"
FORMAT_VERSION = 1
DTYPES = {"<i8", "<i4", "<i2", "|i1", "|u1", "<u4", "<u8", "|b1", "<f8", "<f4"}
_SCALARS = (type(None), bool, int, float, str)
_COLUMN_KINDS = {type(None), int, float, str, np.ndarray}


class StateError(ValueError):
    """The blob is not a state this version can read (foreign, damaged, or from another version)."""


# ---- writing -----------------------------------------------------------------------------------------

class _Writer:
    def __init__(self, modules: Sequence[str]):
        self.modules = set(modules)
        self.memo: dict[int, int] = {}
        self.keep: list[Any] = []      # keeps memoised objects alive so their id() stays unique
        self.chunks: list[bytes] = []
        self.size = 0

    def blob(self, arr: np.ndarray) -> dict[str, Any]:
        arr = np.ascontiguousarray(arr)
        if arr.dtype.str not in DTYPES:
            raise StateError(f"cannot store arrays of dtype {arr.dtype}")
        data = arr.tobytes()
        out = {"o": self.size, "n": len(data), "d": arr.dtype.str, "s": list(arr.shape)}
        self.chunks.append(data)
        self.size += len(data)
        return out

    def node(self, v: Any) -> Any:
        if type(v) in _SCALARS:
            return v
        if isinstance(v, np.generic) and v.ndim == 0 and v.dtype.kind in "biuf":
            return v.item()  # a numpy scalar kept as a plain number
        key = id(v)
        if key in self.memo:
            return {"t": "ref", "i": self.memo[key]}
        ident = self.memo[key] = len(self.memo)
        self.keep.append(v)
        t = type(v)
        if t in (list, tuple, set, frozenset):
            return {"t": "set" if t in (set, frozenset) else t.__name__, "i": ident, "v": self.column(list(v))}
        if t in (dict, Counter):
            return {"t": "counter" if t is Counter else "dict", "i": ident,
                    "k": self.column(list(v.keys())), "v": self.column(list(v.values()))}
        if t is np.ndarray:
            return {"t": "nd", "i": ident, "b": self.blob(v)}
        if t.__module__ in self.modules and hasattr(v, "__dict__") and not hasattr(t, "__slots__"):
            return {"t": "obj", "i": ident, "c": f"{t.__module__}:{t.__qualname__}",
                    "a": {name: self.node(a) for name, a in vars(v).items()}}
        raise StateError(f"cannot store a {t.__module__}.{t.__qualname__}")

    def column(self, items: list[Any]) -> dict[str, Any]:
        # map() keeps the per-item work in C: a tracker's columns hold millions of items
        types = list(map(type, items))
        kinds = set(types)
        if not items or not kinds <= _COLUMN_KINDS:
            return {"c": "any", "v": [self.node(x) for x in items]}
        if len(kinds) == 1:
            return self._plain(kinds.pop(), items)
        order = sorted(kinds, key=lambda k: k.__name__)
        code = {k: n for n, k in enumerate(order)}
        tags = np.fromiter(map(code.__getitem__, types), dtype=np.uint8, count=len(items))
        parts = [self._plain(k, list(compress(items, map(operator.is_, types, repeat(k))))) for k in order]
        return {"c": "mix", "tags": self.blob(tags), "p": parts}

    def _plain(self, kind: type, items: list[Any]) -> dict[str, Any]:
        if kind is type(None):
            return {"c": "none", "n": len(items)}
        if kind is int:
            try:
                return {"c": "int", "b": self.blob(np.array(items, dtype=np.int64))}
            except OverflowError:  # beyond 64 bits: JSON holds any integer
                return {"c": "any", "v": items}
        if kind is float:
            return {"c": "float", "b": self.blob(np.array(items, dtype=np.float64))}
        if kind is str:
            return {"c": "str", "v": items}
        dtypes = set(map(_dtype_of, items))
        if len(dtypes) != 1 or any(a.ndim != 1 for a in items):
            return {"c": "any", "v": [self.node(a) for a in items]}
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        return {"c": "nd", "d": dtypes.pop(), "b": self.blob(np.concatenate(items)), "l": self.blob(lengths)}


def _dtype_of(a: np.ndarray) -> str:
    return a.dtype.str


def dumps(obj: Any, modules: Sequence[str]) -> bytes:
    """Encode obj; objects must be of classes defined in `modules` (others raise StateError)."""
    w = _Writer(modules)
    root = w.node(obj)
    header = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "root": root},
                        separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<Q", len(header)), header, *w.chunks])


# ---- reading -----------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, buffer: memoryview, modules: Sequence[str]):
        self.buffer = buffer
        self.modules = set(modules)
        self.memo: dict[int, Any] = {}

    def blob(self, b: Any, dtype: str | None = None) -> np.ndarray:
        if not isinstance(b, dict) or set(b) != {"o", "n", "d", "s"}:
            raise StateError("bad array reference")
        o, n, d, s = b["o"], b["n"], b["d"], b["s"]
        if d not in DTYPES or (dtype is not None and d != dtype):
            raise StateError(f"array of dtype {d!r} not allowed here")
        if not (isinstance(o, int) and isinstance(n, int) and o >= 0 and n >= 0 and o + n <= len(self.buffer)):
            raise StateError("array outside the buffer")
        if not (isinstance(s, list) and all(isinstance(x, int) and x >= 0 for x in s)):
            raise StateError("bad array shape")
        dt = np.dtype(d)
        if int(np.prod(s, dtype=np.int64)) * dt.itemsize != n:
            raise StateError("array size does not match its shape")
        return np.frombuffer(self.buffer[o:o + n], dtype=dt).reshape(s).copy()  # writable, owns its memory

    def _remember(self, n: dict[str, Any], value: Any) -> Any:
        ident = n.get("i")
        if not isinstance(ident, int) or ident in self.memo:
            raise StateError("bad or repeated object id")
        self.memo[ident] = value
        return value

    def node(self, n: Any) -> Any:
        if n is None or type(n) in (bool, int, float, str):
            return n
        if not isinstance(n, dict):
            raise StateError("bad node")
        t = n.get("t")
        if t == "ref":
            if n.get("i") not in self.memo:
                raise StateError("reference to an unknown object")
            return self.memo[n["i"]]
        if t in ("list", "set", "tuple"):
            if t == "list":
                out = self._remember(n, [])
                out.extend(self.column(n.get("v")))
                return out
            made = tuple(self.column(n.get("v"))) if t == "tuple" else set(self.column(n.get("v")))
            return self._remember(n, made)
        if t in ("dict", "counter"):
            out = self._remember(n, Counter() if t == "counter" else {})
            keys, values = self.column(n.get("k")), self.column(n.get("v"))
            if len(keys) != len(values):
                raise StateError("dict keys and values differ in number")
            try:
                dict.update(out, zip(keys, values, strict=True))  # Counter.update would count the pairs
            except TypeError:  # an unhashable key
                raise StateError("bad dict key") from None
            return out
        if t == "nd":
            return self._remember(n, self.blob(n.get("b")))
        if t == "obj":
            return self._object(n)
        raise StateError(f"unknown node type {t!r}")

    def _object(self, n: dict[str, Any]) -> Any:
        module_name, _, name = str(n.get("c", "")).partition(":")
        if module_name not in self.modules or not name.isidentifier():
            raise StateError(f"class {n.get('c')!r} is not allowed")
        cls = getattr(importlib.import_module(module_name), name, None)
        if not isinstance(cls, type) or cls.__module__ != module_name or cls.__new__ is not object.__new__:
            raise StateError(f"class {n.get('c')!r} is not allowed")
        obj = self._remember(n, object.__new__(cls))
        attrs = n.get("a")
        if not isinstance(attrs, dict):
            raise StateError("bad object attributes")
        vars(obj).update({str(k): self.node(v) for k, v in attrs.items()})
        return obj

    def column(self, c: Any) -> list[Any]:
        if not isinstance(c, dict):
            raise StateError("bad column")
        kind = c.get("c")
        if kind == "none":
            if not isinstance(c.get("n"), int) or c["n"] < 0 or c["n"] > len(self.buffer) + 10**7:
                raise StateError("bad column length")
            return [None] * c["n"]
        if kind == "int":
            return self.blob(c.get("b"), "<i8").tolist()
        if kind == "float":
            return self.blob(c.get("b"), "<f8").tolist()
        if kind == "str":
            v = c.get("v")
            if not isinstance(v, list) or not all(type(x) is str for x in v):
                raise StateError("bad string column")
            return v
        if kind == "any":
            if not isinstance(c.get("v"), list):
                raise StateError("bad column")
            return [self.node(x) for x in c["v"]]
        if kind == "nd":
            data, lengths = self.blob(c.get("b"), c.get("d")), self.blob(c.get("l"), "<i8")
            if data.ndim != 1 or (lengths < 0).any() or int(lengths.sum()) != len(data):
                raise StateError("bad array column")
            return np.split(data, np.cumsum(lengths)[:-1]) if len(lengths) else []
        if kind == "mix":
            tags, parts = self.blob(c.get("tags"), "|u1"), c.get("p")
            if not isinstance(parts, list):
                raise StateError("bad mixed column")
            decoded = [iter(self.column(p)) for p in parts]
            counts = np.bincount(tags, minlength=len(parts)) if len(tags) else np.zeros(len(parts), dtype=np.int64)
            if len(counts) != len(parts):
                raise StateError("bad mixed column tags")
            out = [next(decoded[t]) for t in tags.tolist()] if len(tags) else []
            if any(next(d, _END) is not _END for d in decoded):
                raise StateError("mixed column parts differ from their tags")
            return out
        raise StateError(f"unknown column kind {kind!r}")


_END = object()


def loads(blob: bytes, modules: Sequence[str]) -> Any:
    """Decode a dumps() blob; StateError if it is not one (pickle, another version, damaged)."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise StateError("not a binary state")
    view = memoryview(blob)
    if bytes(view[:len(MAGIC)]) != MAGIC:
        raise StateError("not a datagen state (an older or foreign format)")
    start = len(MAGIC) + 8
    if len(view) < start:
        raise StateError("truncated state")
    (size,) = struct.unpack("<Q", view[len(MAGIC):start])
    if start + size > len(view):
        raise StateError("truncated state")
    try:
        header = json.loads(bytes(view[start:start + size]))
    except (ValueError, RecursionError):
        raise StateError("damaged state header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StateError("not a datagen state")
    if header.get("version") != FORMAT_VERSION:
        raise StateError(f"state format version {header.get('version')!r}, this datagen reads {FORMAT_VERSION}")
    try:
        return _Reader(view[start + size:], modules).node(header.get("root"))
    except (RecursionError, StopIteration, IndexError, OverflowError, MemoryError):
        raise StateError("damaged state") from None


def same_shape(loaded: Any, fresh: Any, _seen: set[int] | None = None) -> bool:
    """True if `loaded` has the classes, attribute names, attribute types and array dtypes of `fresh` (a
    newly built instance), down through its objects: a decoded state is checked before it is trusted. An
    attribute named `layout` must also have fresh's value: a class bumps it when the meaning of its
    attributes changes (a state of another layout is rebuilt by the caller, never misread)."""
    seen = _seen if _seen is not None else set()
    if type(loaded) is not type(fresh):
        return False
    if id(loaded) in seen:
        return True
    seen.add(id(loaded))
    va, vf = vars(loaded), vars(fresh)
    if va.keys() != vf.keys():
        return False
    if "layout" in vf and va["layout"] != vf["layout"]:
        return False
    for name, f in vf.items():
        x = va[name]
        if isinstance(f, np.ndarray):
            ok = isinstance(x, np.ndarray) and x.dtype == f.dtype
        elif hasattr(f, "__dict__") and type(f).__module__ != "builtins":
            ok = same_shape(x, f, seen)
        else:
            ok = type(x) is type(f) or (type(x) in (int, float) and type(f) in (int, float))
        if not ok:
            return False
    return True
