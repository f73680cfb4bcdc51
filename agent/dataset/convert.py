"""Convert rows between the trainer formats (export.formats), or render them as training text with a chat template.

Every conversion goes source row -> canonical record (formats.to_canonical) -> reshaped when the record shapes
differ (chat / preference / kto) -> target row (formats.to_format), so any format export.formats knows works
both ways without a conversion table here.

Lossless where the target can hold it: a row of the same format passes through unchanged; openai <-> sharegpt
keep everything; top-level fields a format does not own (an "id", a "source") are carried over. Where the
target cannot hold something, the row loses it and the loss is counted by kind (or, with strict=True, the
conversion stops at the first such row):

    multi_turn     a conversation that is not one user turn + one reply, to alpaca or kto: row left out
    system         a system prompt, to alpaca, dpo or kto (no field for it): prompt dropped
    rejected       a preference pair to a chat format or text: the rejected reply dropped (chosen kept)
    undesirable    a kto row labelled false to a chat format or text: row left out (SFT imitates every reply)
    unpaired       a kto row with no opposite-label row for its prompt, to dpo: row left out
    message_fields per-message fields other than role/content (OpenAI's "weight", "name"): dropped
    unreadable     a row that is not a record of the source format: left out

Notes (nothing lost): alpaca's "input" becomes part of the user turn, as trainers join them; chat rows made
into kto rows are labelled desirable (true); preference pairs made into kto rows give one row per side. A chat
row cannot become a preference row (there is no rejected reply): that conversion is refused. kto -> preference
pairs each prompt's desirable and undesirable rows in file order, so it keeps the rows in memory; every other
conversion streams.

Text: --to text renders each conversation with a chat template (ChatML, Llama 3) from templates/, written
after the templates' public definitions, into {"text": ...} rows (TRL's SFT "text" field).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from agent.dataset.io import Line
from agent.errors import InputError
from agent.export import formats
from agent.export.formats import FORMATS, KEYS, SHAPE_OF, Unconvertible

TEXT = "text"
TARGETS = (*FORMATS, TEXT)
TEMPLATES = {"chatml": {"bos_token": ""}, "llama3": {"bos_token": "<|begin_of_text|>"}}
MESSAGE_KEYS = {"openai": {"role", "content"}, "sharegpt": {"from", "value"}}
LOSSES = {
    "multi_turn": "conversations that are not one user turn and one reply: left out",
    "system": "system prompts dropped: the target has no field for them",
    "rejected": "rejected replies dropped: the target keeps one reply",
    "undesirable": "rows labelled false left out: an SFT trainer imitates every reply",
    "unpaired": "kto rows with no opposite-label row for the same prompt: left out",
    "message_fields": "per-message fields other than role/content dropped",
    "unreadable": "rows that are not records of the source format: left out",
    "extra_fields": "top-level fields that collide with the target's own fields dropped",
}
NOTES = {
    "input_joined": "alpaca input joined to the instruction in the user turn",
    "labelled_true": "chat rows labelled desirable (label true): add undesirable rows for KTO's ~50/50",
    "pairs_split": "preference pairs split into a desirable and an undesirable kto row",
}


@dataclass
class Conversion:
    """What a conversion did: rows in and out, and rows per kind of loss (see the module docstring)."""

    source: str
    target: str
    template: str | None = None
    rows_in: int = 0
    rows_out: int = 0
    losses: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    first_loss: dict[str, int] = field(default_factory=dict)   # kind -> line of the first row that had it
    message_fields: set[str] = field(default_factory=set)

    def summary(self) -> list[str]:
        to = self.target + (f" ({self.template})" if self.template else "")
        out = [f"converted {self.rows_in:,} {self.source} rows to {self.rows_out:,} {to} rows"]
        for kind, n in self.losses.most_common():
            extra = f" ({', '.join(sorted(self.message_fields))})" if kind == "message_fields" else ""
            out.append(f"lost: {n:,} {LOSSES[kind]}{extra}; first at line {self.first_loss[kind]}")
        out += [f"note: {n:,} {NOTES[kind]}" for kind, n in self.notes.most_common()]
        return out


def check_target(source: str, target: str, template: str | None) -> None:
    """InputError for a conversion that cannot be made at all."""
    if target not in TARGETS:
        raise InputError(f"unknown target format {target!r}; choose one of {', '.join(TARGETS)}")
    if source not in FORMATS:
        raise InputError(f"unknown format {source!r}; choose one of {', '.join(FORMATS)}")
    if (target == TEXT) != (template is not None):
        raise InputError("--template goes with --to text (and --to text needs one): "
                         f"--to text --template {'|'.join(TEMPLATES)}")
    if template is not None and template not in TEMPLATES:
        raise InputError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    src, dst = SHAPE_OF.get(source), SHAPE_OF.get(target, "chat")
    if src not in ("chat", "preference", "kto") or dst not in ("chat", "preference", "kto"):
        raise InputError(f"converting {source} to {target} is not supported")
    if src == "chat" and dst == "preference":
        raise InputError(f"{source} rows have no rejected reply, which every {target} row needs; convert to kto "
                         f"(rows labelled desirable) or generate preference pairs with datagen (output_format: dpo)")


class Converter:
    """Turns rows of `source` into rows of `target`; counts what was lost in `.result`."""

    def __init__(self, source: str, target: str, template: str | None = None, strict: bool = False,
                 path: str | Path = "input"):
        check_target(source, target, template)
        self.source, self.target, self.template, self.strict, self.path = source, target, template, strict, path
        self.result = Conversion(source, target, template)

    def run(self, lines: Iterable[Line]) -> Iterator[dict[str, Any]]:
        """The converted rows, in input order (kto -> dpo: in order of each prompt's first pair)."""
        if SHAPE_OF[self.source] == "kto" and SHAPE_OF.get(self.target) == "preference":
            yield from self._pairs(lines)
            return
        for line in lines:
            obj = self._read(line)
            if obj is None:
                continue
            for out in self._row(line.number, obj):
                self.result.rows_out += 1
                yield out

    def _read(self, line: Line) -> dict[str, Any] | None:
        self.result.rows_in += 1
        problem = line.error.split(": ", 1)[-1] if line.error else None
        if problem is None:
            errors = formats.structure_errors(line.obj, self.source)
            problem = "; ".join(errors) if errors else None
        if problem is None:
            return line.obj
        self._lose(line.number, "unreadable", f"not a valid {self.source} record: {problem}")
        return None

    def _lose(self, number: int, kind: str, detail: str = "") -> None:
        if self.strict:
            raise InputError(f"{self.path}:{number}: {detail or LOSSES[kind]} (converting {self.source} to "
                             f"{self.target}); --strict refuses any loss: leave it out to convert and count")
        self.result.losses[kind] += 1
        self.result.first_loss.setdefault(kind, number)

    def _row(self, number: int, obj: dict[str, Any]) -> list[dict[str, Any]]:
        """Source row -> canonical record (formats.to_canonical) -> reshaped if the shapes differ -> target."""
        if self.target == self.source:
            return [obj]
        extras = {k: v for k, v in obj.items() if k not in KEYS[self.source]}
        if self.source == "alpaca" and obj["input"].strip():
            self.result.notes["input_joined"] += 1
        if self.source in MESSAGE_KEYS:
            extra = {k for turn in obj[KEYS[self.source][0]] for k in turn if k not in MESSAGE_KEYS[self.source]}
            if extra:
                self.result.message_fields |= extra
                self._lose(number, "message_fields", f"message fields {', '.join(sorted(extra))} have no place")
        try:
            record = formats.to_canonical(obj, self.source)
        except Unconvertible as e:   # structure was checked in _read; kept for safety
            self._lose(number, "unreadable", str(e))
            return []
        rows = []
        for reshaped in self._reshape(number, record):
            out = self._write(number, reshaped, extras)
            if out is not None:
                rows.append(out)
        return rows

    def _reshape(self, number: int, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The canonical record in the target's shape (see agent.records): none, one or two records."""
        src, dst = SHAPE_OF[self.source], SHAPE_OF.get(self.target, "chat")
        if src == dst:
            return [record]
        system = [{"role": "system", "content": record["system"]}] if record.get("system") else []
        if dst == "chat":
            if src == "preference":
                self._lose(number, "rejected")
                reply = record["chosen"]
            elif record["label"] is not True:
                self._lose(number, "undesirable")
                return []
            else:
                reply = record["completion"]
            return [{"messages": system + [{"role": "user", "content": record["prompt"]},
                                           {"role": "assistant", "content": reply}]}]
        if src == "preference":     # -> kto: the pair split in two
            self.result.notes["pairs_split"] += 1
            return [{"system": record.get("system", ""), "prompt": record["prompt"], "completion": record[k],
                     "label": k == "chosen"} for k in ("chosen", "rejected")]
        # chat -> kto (chat -> preference is refused by check_target)
        messages = record["messages"]
        turns = [m for m in messages if m["role"] != "system"]
        if [m["role"] for m in turns] != ["user", "assistant"]:
            self._lose(number, "multi_turn", "a multi-turn conversation cannot be one kto row")
            return []
        self.result.notes["labelled_true"] += 1
        first_system = next((m["content"] for m in messages if m["role"] == "system"), "")
        return [{"system": first_system, "prompt": turns[0]["content"], "completion": turns[1]["content"],
                 "label": True}]

    def _write(self, number: int, record: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any] | None:
        """A canonical record of the target's shape as a target row; None (and a counted loss) if it cannot be."""
        if self.target == TEXT:
            return self._with(number, {TEXT: render(self.template, record["messages"])}, extras)  # type: ignore[arg-type]
        out = formats.to_format(record, self.target)
        if out is None:
            self._lose(number, "multi_turn", formats.MULTI_TURN_REASON)
            return None
        if formats.drops_system(record, self.target):
            self._lose(number, "system")
        return self._with(number, out, extras)

    def _with(self, number: int, out: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any]:
        clash = [k for k in extras if k in out]
        if clash:
            self._lose(number, "extra_fields", f"fields {', '.join(clash)} collide with {self.target}'s own")
        return {**out, **{k: v for k, v in extras.items() if k not in out}}

    def _pairs(self, lines: Iterable[Line]) -> Iterator[dict[str, Any]]:
        """kto -> preference: the i-th desirable and i-th undesirable row of each prompt make a pair."""
        sides: dict[tuple[str, str], dict[bool, list[tuple[int, dict[str, Any], dict[str, Any]]]]] = \
            defaultdict(lambda: {True: [], False: []})
        for line in lines:
            obj = self._read(line)
            if obj is not None:
                record = formats.to_canonical(obj, self.source)
                extras = {k: v for k, v in obj.items() if k not in KEYS[self.source]}
                sides[(record.get("system", ""), record["prompt"])][record["label"]].append((line.number, record, extras))
        for (system, prompt), side in sides.items():
            good, bad = side[True], side[False]
            for (n, chosen, extras_good), (_, rejected, extras_bad) in zip(good, bad, strict=False):
                pair = {"system": system, "prompt": prompt, "chosen": chosen["completion"],
                        "rejected": rejected["completion"]}
                out = self._write(n, pair, {**extras_bad, **extras_good})
                if out is not None:
                    self.result.rows_out += 1
                    yield out
            for n, _, _ in (good[len(bad):] or bad[len(good):]):
                self._lose(n, "unpaired")


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                              undefined=jinja2.StrictUndefined, autoescape=False)


def render(template: str, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """A conversation as one training text in the chat template's format ("chatml" or "llama3")."""
    if template not in TEMPLATES:
        raise InputError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    return _environment().get_template(f"{template}.j2").render(
        messages=messages, add_generation_prompt=add_generation_prompt, **TEMPLATES[template])
