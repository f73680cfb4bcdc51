"""The Plan: what to generate, in which exact proportions. Loaded from and saved to plans/<name>.yaml.

Quotas are derived, never trusted from the file: every load recomputes them from the shares and the
total (largest remainder method), so a person can edit a share or the total by hand.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from agent.yamlfile import StrictScalars, dump_yaml, load_model, write_atomic

OutputFormat = Literal["openai", "alpaca", "sharegpt", "dpo", "kto"]
SpecialFormat = Literal["code", "lists", "tables", "json"]
# How the auditor decides which category an example really belongs to ("trusted": it takes the label as asked).
Measure = Literal["trusted", "response_words", "input_words", "turns", "code", "typos", "format"]
FormatName = Literal["plain", "list", "table", "json"]
# the Category fields each measure reads: a category declares its value there, and only there
MEASURE_FIELDS: dict[str, tuple[str, ...]] = {
    "trusted": (), "response_words": ("min_words", "max_words"), "input_words": ("min_words", "max_words"),
    "turns": ("min_turns", "max_turns"), "code": ("code",), "typos": ("typos",), "format": ("format",),
}
# a word range may sit on any dimension (it is told to the model and sizes the output budget); the other
# values mean nothing but to their measure, so setting one elsewhere is a mistake to report
MEASURE_ONLY_FIELDS = ("min_turns", "max_turns", "code", "typos", "format")

log = logging.getLogger(__name__)

SHARE_TOLERANCE = 1e-6
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Strict(StrictScalars):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class Category(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    share: float = Field(ge=0, le=1)
    quota: int | None = Field(default=None, description="derived from share and total on every load")
    description: str = ""
    # What the dimension's measure expects of this category (a value of another measure is refused on load):
    # response_words / input_words: an inclusive word range (a missing bound is open; allowed on any
    # dimension, where it only reaches the prompt and the output budget)
    min_words: int | None = Field(default=None, ge=0)
    max_words: int | None = Field(default=None, ge=1)
    # turns: how many user turns, inclusive (the planner's single turn: 1-1, multi-turn: 2-3)
    min_turns: int | None = Field(default=None, ge=1)
    max_turns: int | None = Field(default=None, ge=1)
    # code: whether the reply holds code or a worked example; typos: whether the user writes with typos
    code: bool | None = None
    typos: bool | None = None
    # format: what the reply is laid out as
    format: FormatName | None = None

    @model_validator(mode="after")
    def _ranges(self) -> Category:
        for unit in ("words", "turns"):
            lo, hi = getattr(self, f"min_{unit}"), getattr(self, f"max_{unit}")
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"min_{unit} {lo} is above max_{unit} {hi}")
        return self

    def range_text(self, unit: str) -> str:
        """'50-150 words', '2+ turns', 'up to 20 words'; '' when the category declares no such range."""
        lo, hi = getattr(self, f"min_{unit}"), getattr(self, f"max_{unit}")
        if lo is None and hi is None:
            return ""
        if hi is None:
            return f"{lo}+ {unit}"
        if lo is None:
            return f"up to {hi} {unit}"
        if lo == hi:
            return f"{lo} {unit.removesuffix('s') if lo == 1 else unit}"
        return f"{lo}-{hi} {unit}"


class Dimension(Strict):
    description: str = ""
    measure: Measure = "trusted"
    categories: list[Category] = Field(min_length=1)

    @field_validator("categories")
    @classmethod
    def _shares(cls, cats: list[Category]) -> list[Category]:
        names = [c.name for c in cats]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise ValueError(f"category {dup!r} appears twice")
        total = math.fsum(c.share for c in cats)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"shares sum to {total:.6g}, they must sum to 1 (change a share so they do)")
        return cats

    # set when this load had to infer the measure's per-category values from the category names
    _inferred: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _declared(self) -> Dimension:
        own = MEASURE_FIELDS[self.measure]
        for c in self.categories:
            stray = [f for f in MEASURE_ONLY_FIELDS if f not in own and getattr(c, f) is not None]
            if stray:
                raise ValueError(f"category {c.name!r} sets {', '.join(stray)} but this dimension measures "
                                 f"{self.measure}: remove {'them' if len(stray) > 1 else 'it'} or change the measure")
        if self.measure in ("code", "typos", "turns", "format") and any(
                all(getattr(c, f) is None for f in own) for c in self.categories):
            if any(getattr(c, f) is not None for c in self.categories for f in own):
                missing = [c.name for c in self.categories if all(getattr(c, f) is None for f in own)]
                raise ValueError(f"measure {self.measure}: categories {', '.join(missing)} declare no "
                                 f"{' / '.join(own)} (every category of a measured dimension needs one)")
            _infer(self)
            self._inferred = True
        _check_distinct(self)
        return self

    @property
    def inferred(self) -> bool:
        return self._inferred

    def category(self, name: str) -> Category | None:
        return next((c for c in self.categories if c.name == name), None)


# The name rules plans used before measures were declared; applied once at load to a plan that declares none.
_LEGACY_PATTERNS = {"code": r"^(?!without|no_).*(?:with|example|code)", "typos": r"typo|informal|noisy|misspel",
                    "turns": r"multi"}
_HOW_TO_DECLARE = {
    "code": "code: true on the category whose replies hold code or a worked example, code: false on the other",
    "typos": "typos: true on the category whose users write with typos, typos: false on the other",
    "turns": "min_turns: 1 and max_turns: 1 on the single-turn category, min_turns: 2 on the multi-turn one",
    "format": "format: plain, list, table or json on every category",
}


def _infer(dim: Dimension) -> None:
    cats = dim.categories
    if dim.measure == "format":
        names = {c.name: c.name.lower().removesuffix("s") for c in cats}
        if not all(n in ("plain", "list", "table", "json") for n in names.values()):
            raise ValueError(f"measure format: declare {_HOW_TO_DECLARE['format']} (the names don't say which)")
        for c in cats:
            c.format = names[c.name]  # type: ignore[assignment]
        return
    positive = [bool(re.search(_LEGACY_PATTERNS[dim.measure], c.name, re.I)) for c in cats]
    if positive.count(True) != 1 or positive.count(False) != 1:
        raise ValueError(f"measure {dim.measure}: the category names don't say which is which; declare "
                         f"{_HOW_TO_DECLARE[dim.measure]}")
    for c, flag in zip(cats, positive, strict=True):
        if dim.measure == "turns":
            c.min_turns, c.max_turns = (2, None) if flag else (1, 1)
        else:
            setattr(c, dim.measure, flag)


def _check_distinct(dim: Dimension) -> None:
    """Every category of a measured dimension can be told apart from the others by its measure."""
    own = MEASURE_FIELDS[dim.measure]
    if dim.measure in ("code", "typos", "format"):
        seen: dict[object, str] = {}
        for c in dim.categories:
            value = getattr(c, own[0])
            if value is None:
                raise ValueError(f"measure {dim.measure}: category {c.name!r} declares no {own[0]}")
            if value in seen:
                import json  # only for this message: `plan --show` does not import json otherwise

                raise ValueError(f"measure {dim.measure}: categories {seen[value]!r} and {c.name!r} both declare "
                                 f"{own[0]}: {json.dumps(value)}, so no measurement can tell them apart")
            seen[value] = c.name
    elif dim.measure != "trusted":
        unit = own[0].removeprefix("min_")
        spans = []
        for c in dim.categories:
            lo, hi = getattr(c, f"min_{unit}"), getattr(c, f"max_{unit}")
            if lo is None and hi is None:
                raise ValueError(f"measure {dim.measure}: category {c.name!r} declares no min_{unit} / max_{unit}")
            spans.append((lo or 0, math.inf if hi is None else hi, c.name))
        spans.sort()
        for (_, hi, a), (lo, _, b) in itertools.pairwise(spans):
            if lo <= hi:
                raise ValueError(f"measure {dim.measure}: the {unit} ranges of {a!r} and {b!r} overlap, so a "
                                 f"measurement can't tell them apart")


class Generation(Strict):
    provider: str = "simulated"   # a name in the provider registry (agent/providers)
    # the provider's own options, checked by its Options model (e.g. openai: extra_body); None: none given
    provider_options: dict[str, Any] | None = None
    model: str = "simulated-1"
    base_url: str | None = None
    temperature: float = Field(default=0.8, ge=0, le=2)
    batch_size: int = Field(default=50, ge=50, le=100)
    examples_per_call: int = Field(default=5, ge=1, le=20)
    # None: adaptive (starts at 32, grows with the rate limits the provider reports, shrinks on 429s);
    # a number is a hard cap
    concurrency: int | None = Field(default=None, ge=1, le=1024)
    requests_per_minute: int | None = Field(default=None, ge=1)
    input_tokens_per_minute: int | None = Field(default=None, ge=1)
    output_tokens_per_minute: int | None = Field(default=None, ge=1)
    timeout_seconds: float = Field(default=120, gt=0)
    # the most one call may take in all, retries and their waits included: a hanging server gives up here
    max_call_seconds: float = Field(default=600, gt=0, allow_inf_nan=False)
    # None: sized per call from its specs (examples x word ranges + JSON); a number caps it
    max_output_tokens: int | None = Field(default=None, ge=256)
    # stop (exit 5) after this many completed calls in a row that accepted nothing
    max_calls_without_progress: int = Field(default=10, ge=1)
    # USD; --max-cost wins. None: 3x the estimate for what remains (printed at start)
    max_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    seed: int = 0

    @field_validator("provider")
    @classmethod
    def _provider(cls, name: str) -> str:
        from agent import providers

        return providers.checked_name(name)

    @model_validator(mode="after")
    def _provider_options(self) -> Generation:
        from pydantic import ValidationError

        from agent import providers

        if not self.provider_options or not providers.known(self.provider):
            return self   # nothing to check (the provider file is not imported), or reported by _provider
        try:
            providers.check_options(self.provider, self.provider_options)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            fields = ", ".join(providers.get(self.provider).Options.model_fields) or "none"
            raise ValueError(f"provider_options{'.' + where if where else ''}: {first['msg']} (options of "
                             f"{self.provider}: {fields})") from None
        return self


class Quality(Strict):
    dedup_threshold: float = Field(default=0.85, gt=0, le=1)
    allow_pii: bool = False
    preference_length_ratio: float = Field(default=1.5, ge=1)
    min_chars: int = Field(default=10, ge=0)
    max_chars: int = Field(default=10000, ge=1)


class Audit(Strict):
    judge: bool = False
    max_attempts_per_category: int = Field(default=6, ge=1, description="misses in a row before a category is reported unfillable")


class Plan(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    task: str = Field(min_length=1)
    domain: str = ""
    persona: str = ""
    system_prompts: list[str] = Field(min_length=1)
    total: int = Field(ge=1, le=10_000_000)
    validation_split: float = Field(default=0.1, ge=0, le=0.5)
    output_format: OutputFormat = "openai"
    # empty defaults as values, not default_factory=list/dict: pydantic gives each plan its own copy either way, but
    # reads a factory's signature when it builds the model, which for a builtin means parsing its text signature
    # (~2 % of `plan --show`, tests/test_startup.py checks the two agree)
    special_formats: list[SpecialFormat] = Field(default=[])
    guidance: list[str] = Field(default=[], description="extra rules for every example, from the interview")
    generation: Generation = Field(default_factory=Generation)
    quality: Quality = Field(default_factory=Quality)
    audit: Audit = Field(default_factory=Audit)
    # pairs "dimension=category" that should not be drawn together (a 600-word refusal, say)
    exclusions: list[tuple[str, str]] = Field(default=[])
    topics: dict[str, list[str]] = Field(default={}, description="domain category -> concrete topics")
    # grounding (agent/sources.py, agent/references.py): paths are read from the folder datagen runs in
    sources: list[str] = Field(default=[], description="documents to ground answers in: files and folders")
    examples: list[str] = Field(default=[], description="files of real examples: style references")
    # how passages are filed under domain categories: keywords (free) or one cached LLM call per passage
    assign_passages: Literal["keywords", "llm"] = "keywords"
    dimensions: dict[str, Dimension] = Field(min_length=1)

    @model_validator(mode="after")
    def _derive(self) -> Plan:
        for dim in self.dimensions.values():
            for cat, q in zip(dim.categories, quotas([c.share for c in dim.categories], self.total), strict=True):
                cat.quota = q
        for i, pair in enumerate(self.exclusions):
            for item in pair:
                dim_name, _, cat_name = item.partition("=")
                named = self.dimensions.get(dim_name)
                if named is None or named.category(cat_name) is None:
                    raise ValueError(f"exclusions[{i}]: {item!r} names no dimension=category of this plan")
        return self

    def inferred_measures(self) -> list[str]:
        """Dimensions whose measure values this load inferred from category names (a plan from before
        measures were declared): saving the plan writes them down."""
        return [d for d, dim in self.dimensions.items() if dim.inferred]

    @property
    def record_shape(self) -> Literal["chat", "preference", "kto"]:
        return {"dpo": "preference", "kto": "kto"}.get(self.output_format, "chat")  # type: ignore[return-value]

    def quota_table(self) -> dict[str, dict[str, int]]:
        return {d: {c.name: c.quota or 0 for c in dim.categories} for d, dim in self.dimensions.items()}

    def structure(self) -> dict[str, list[str]]:
        """The names a run's ledger depends on: renaming or removing one breaks resume."""
        return {d: [c.name for c in dim.categories] for d, dim in self.dimensions.items()}

    def content_hash(self) -> str:
        import json

        data = self.model_dump(mode="json")
        if data["generation"]["provider_options"] is None:  # plans written before options existed hash as before
            del data["generation"]["provider_options"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def quotas(shares: list[float], total: int) -> list[int]:
    """Integer quotas summing exactly to `total`, by the largest remainder method.

    Deterministic: ties go to the earlier category. A zero share always gets zero.
    Shares are normalised by their sum first, so the 1e-6 tolerance never loses or adds an example.
    """
    s = math.fsum(shares)
    if total <= 0 or s <= 0:
        return [0] * len(shares)
    exact = [round(share / s * total, 9) for share in shares]
    base = [math.floor(x) for x in exact]
    left = total - sum(base)
    order = sorted(
        (i for i, share in enumerate(shares) if share > 0),
        key=lambda i: (-(exact[i] - base[i]), i),
    )
    for i in order[:left]:
        base[i] += 1
    return base


def load_plan(path: str | Path) -> Plan:
    plan = load_model(Path(path), Plan, "plan")
    inferred = plan.inferred_measures()
    if inferred:
        log.warning("%s: the measures of %s were inferred from category names; save them in the plan with "
                    "`datagen plan --show --save %s`", path, ", ".join(inferred), path)
    return plan


def plan_yaml(plan: Plan) -> str:
    header = (
        f"# datagen plan '{plan.name}'. Edit shares or the total freely: quotas are recomputed on every load.\n"
        "# Check it with: datagen plan --show <this file>\n"
    )
    return header + dump_yaml(plan.model_dump(mode="json", exclude_none=True))


def save_plan(plan: Plan, path: str | Path) -> None:
    write_atomic(Path(path), plan_yaml(plan))
