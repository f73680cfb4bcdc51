"""Record shapes passed between modules: each is defined here, once, as a dataclass.

- Spec: what one example must be: a category per dimension, a topic, a system prompt and (grounded
  runs) the passage it answers from. A record is what came back for a Spec, in its canonical shape (a plain
  dict, stored as JSON): chat {"messages": [...]}, preference {"system", "prompt", "chosen", "rejected"},
  kto {"system", "prompt", "completion", "label"}; export turns these into the trainer formats, and
  user_text / response_text / user_turns read them.
- Steering: the prompt changes the diversity audit asks of the next batches.
- Unfillable, Missing: a category given up on, and one the model keeps missing.
- BatchSummary: one batch audit, stored as JSON in the ledger's batches table and read by the engine, the
  progress line, `datagen audit` and the export's info and report.
- CategoryState: the auditor's miss counters and unfillable categories, stored in the ledger's state table.
- RunState: where a run stands, as the ledger derives it (Ledger.run_state).
- ExportContext: everything an export's dataset_info.txt, report.html and dataset card are written from.

The audit outcome of one example is agent/ledger.py's ExampleRow (status, reason, detail, audited labels):
it is the row the ledger stores, so it stays beside the code that writes it.

Stored JSON is read with from_json(), which takes every shape a released datagen wrote (missing keys get
their defaults, unknown keys are kept), so old ledgers keep loading; to_json() writes the current one.
The reply's JSON schema is not here: agent/reply.py derives it from its pydantic item models.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:   # types only: this module stays free of the export's imports
    from agent.export.info import Check, Stats
    from agent.export.split import Split
    from agent.export.validate import Report
    from agent.plan import Plan

AVOID_LIST_DEFAULT = 20   # recent accepted questions put in the prompt as "do not repeat" when not steered

Shape = Literal["chat", "preference", "kto"]


@dataclass(frozen=True)
class Spec:
    id: str                    # unique across a run's resumes: "r<run>b<batch>-<index>", e.g. "r1b3-17"
    labels: dict[str, str]     # dimension -> category
    topic: str = ""
    system_prompt: str = ""
    passage: str = ""          # grounding: the id of the source passage the example must answer from
    document: str = ""         # grounding: that passage's text, as the prompt shows it
    tail: bool = False         # one of several copies drawn for the last examples: if a sibling filled its slot
                               # first, it is surplus, not a rejection


def user_text(record: dict[str, Any]) -> str:
    """The first user message: what near-duplicate detection and input-length measure."""
    if "messages" in record:
        return next((m.get("content", "") for m in record["messages"] if m.get("role") == "user"), "")
    return str(record.get("prompt", ""))


def response_text(record: dict[str, Any]) -> str:
    """The (last) assistant reply; for preference pairs the chosen one."""
    if "messages" in record:
        replies = [m.get("content", "") for m in record["messages"] if m.get("role") == "assistant"]
        return replies[-1] if replies else ""
    return str(record.get("chosen", record.get("completion", "")))


def user_turns(record: dict[str, Any]) -> int:
    if "messages" in record:
        return sum(1 for m in record["messages"] if m.get("role") == "user")
    return 1



@dataclass
class Steering:
    """Prompt changes for the next batches; the default is no change (see audit.diversity.steering)."""
    temperature_step: float = 0.0                 # raise the sampling temperature by this (the engine caps it)
    avoid_list_size: int | None = None            # this many common phrases go in the prompt as phrases to avoid
    avoid_phrases: list[str] = field(default_factory=list)
    phrasing_instructions: list[str] = field(default_factory=list)
    verbs_to_use: list[str] = field(default_factory=list)
    prefer_least_used_topics: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Steering:
        data = data or {}
        size = data.get("avoid_list_size")
        return cls(temperature_step=float(data.get("temperature_step") or 0.0),
                   avoid_list_size=int(size) if size else None,
                   avoid_phrases=list(data.get("avoid_phrases") or []),
                   phrasing_instructions=list(data.get("phrasing_instructions") or []),
                   verbs_to_use=list(data.get("verbs_to_use") or []),
                   prefer_least_used_topics=bool(data.get("prefer_least_used_topics")))

    def to_json(self) -> dict[str, Any]:
        """Only the changes that apply (the stored shape since the first release)."""
        return {k: v for k, v in asdict(self).items() if v}

    def __bool__(self) -> bool:
        return bool(self.to_json())

    @property
    def avoid_size(self) -> int:
        return self.avoid_list_size or AVOID_LIST_DEFAULT


@dataclass(frozen=True)
class Unfillable:
    dimension: str
    category: str
    short_by: int


@dataclass(frozen=True)
class Missing:
    dimension: str
    category: str
    misses: int


@dataclass
class Diversity:
    """The diversity metrics of one batch and of everything accepted so far."""
    batch: dict[str, Any] = field(default_factory=dict)        # audit.diversity.Metrics.to_dict()
    cumulative: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Diversity:
        data = data or {}
        if "cumulative" in data or "batch" in data:
            return cls(batch=dict(data.get("batch") or {}), cumulative=dict(data.get("cumulative") or {}))
        return cls(batch=dict(data), cumulative=dict(data))   # early ledgers stored one flat, cumulative dict


@dataclass
class BatchSummary:
    """One batch audit. Counts are of this batch unless named total/cumulative."""
    batch: int
    processed: int = 0
    accepted: int = 0
    rejected: int = 0                       # examples the audit rejected (not specs lost to failed calls)
    surplus: int = 0                        # tail copies another copy beat to the slot: neither rejected nor lost
    rejections: dict[str, int] = field(default_factory=dict)    # reason -> examples, most common first
    failed_calls: int = 0                   # specs lost: no example came back for them
    lost: dict[str, int] = field(default_factory=dict)          # reason -> specs lost
    duplicates: int = 0
    total_accepted: int = 0
    table: dict[str, dict[str, dict[str, int | None]]] = field(default_factory=dict)  # dim -> cat -> target/accepted/remaining
    diversity: Diversity = field(default_factory=Diversity)
    shortfalls: list[dict[str, Any]] = field(default_factory=list)   # audit.diversity.Shortfall.to_dict()
    steering: Steering = field(default_factory=Steering)
    missing: list[Missing] = field(default_factory=list)
    unfillable: list[Unfillable] = field(default_factory=list)
    grounding: dict[str, Any] | None = None   # grounded runs: agent.audit.grounding's tally, batch and run
    # written by the engine
    cost_total: float | None = None         # spend of the whole run so far, across resumes
    calls_this_run: int = 0
    elapsed_s: float = 0.0
    run: int | None = None
    remaining_total: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)   # keys this version does not know, kept as stored

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchSummary:
        known = {f.name for f in fields(cls)} - {"extra"}
        plain = {k: v for k, v in data.items() if k in known and k not in
                 ("diversity", "steering", "missing", "unfillable")}
        return cls(**plain,
                   diversity=Diversity.from_json(data.get("diversity")),
                   steering=Steering.from_json(data.get("steering")),
                   missing=[Missing(m["dimension"], m["category"], int(m["misses"])) for m in data.get("missing") or []],
                   unfillable=[Unfillable(u["dimension"], u["category"], int(u["short_by"]))
                               for u in data.get("unfillable") or []],
                   extra={k: v for k, v in data.items() if k not in known})

    @classmethod
    def loads(cls, text: str) -> BatchSummary:
        return cls.from_json(json.loads(text))

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        # the metrics as they are, not asdict's deep copy (the summary is encoded to JSON right after; the other
        # fields were never copied either)
        out["diversity"] = {"batch": self.diversity.batch, "cumulative": self.diversity.cumulative}
        out["steering"] = self.steering.to_json()
        out["missing"] = [asdict(m) for m in self.missing]
        out["unfillable"] = [asdict(u) for u in self.unfillable]
        return {**self.extra, **out}


@dataclass
class CategoryState:
    """Per category: the misses in a row, and those given up on (unfillable: dimension, category -> short by).
    Stored in the ledger (key STATE_KEY) with the hash of the plan it was counted under: a changed plan (a
    new model, new ranges) gets a fresh try at every category."""
    STATE_KEY = "categories"
    plan_hash: str = ""
    misses: dict[tuple[str, str], int] = field(default_factory=dict)
    unfillable: dict[tuple[str, str], int] = field(default_factory=dict)

    def dumps(self) -> bytes:
        return json.dumps({"plan_hash": self.plan_hash,
                           "misses": [[d, c, n] for (d, c), n in self.misses.items() if n],
                           "unfillable": [[d, c, n] for (d, c), n in self.unfillable.items()]}).encode()

    @classmethod
    def loads(cls, blob: bytes | None) -> CategoryState:
        if not blob:
            return cls()
        data = json.loads(bytes(blob))
        return cls(plan_hash=str(data.get("plan_hash", "")),
                   misses={(d, c): int(n) for d, c, n in data.get("misses", [])},
                   unfillable={(d, c): int(n) for d, c, n in data.get("unfillable", [])})


@dataclass
class RunState:
    """Where a run stands, as Ledger.run_state() derives it from the ledger: what a run starts from."""
    accepted: dict[str, dict[str, int]]     # dimension -> category -> accepted examples (audited labels)
    n_accepted: int
    categories: CategoryState
    spent: float
    last_batch: int                         # the last batch number a call was sent for
    topic_use: dict[str, int]
    recent_questions: list[str]             # the newest accepted questions first


@dataclass
class ExportContext:
    """What an export's descriptions are written from (built by agent.export's _context)."""
    plan: Plan
    stats: Stats                     # what the written files hold
    split: Split
    usage: dict[str, Any]            # Ledger.usage(): calls, tokens, cost, models, faults
    share: float                     # the validation share
    format: str
    format_note: str
    train_name: str
    val_name: str
    simulated: bool
    targets: list[tuple[str, str, int, int, int]]   # (dimension, category, target, accepted, exported)
    rejections: dict[str, int]       # examples the audit rejected, per reason
    lost: dict[str, int]             # specs no example came back for, per reason
    surplus: dict[str, int]          # tail copies not needed (another copy filled the slot), per dimension
    batches: list[BatchSummary]
    diversity: list[dict[str, Any]]  # info.diversity_rows()
    checks: list[Check]
    reports: dict[str, Report]       # file name -> its validation report
    plan_hash: str | None            # the plan the run started with
    created_at: str | None           # when the run started (epoch seconds, as the ledger stores it)
    exported_at: float
    samples: dict[str, Any]          # report.html's examples, rejections, near-duplicate pairs, lengths
    coverage: dict[str, Any] | None = None   # grounded runs: agent.coverage.coverage()
