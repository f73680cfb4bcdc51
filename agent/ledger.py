"""The run ledger: one SQLite database per plan, the single source of truth of a run.

Every call, every accepted and rejected example, and every batch audit is stored here. Counts, remaining
quotas, spend and progress are derived from it, never kept anywhere else. A call's examples are written in
one transaction, so a kill -9 at any instant loses at most the calls in flight and never tears a row.

How a resume knows what remains: Ledger.run_state(plan), the one place the engine and the auditor take
their starting state from (what they hold in memory afterwards is a cache of it, owned by the auditor for
counts and categories and by the engine for spend and pacing):
- accepted per category: the labels table (an example counts under its audited labels), so what remains of
  a category is its quota in the plan being resumed minus that;
- categories given up on (unfillable) and the misses in a row behind them: state "categories", written
  in the same transaction as the call that changed them; kept while the plan is the one they were counted
  under (plan_hash), dropped for a changed plan, which deserves a new try;
- spend: the sum of every call row, a call sent and never answered counted at its worst case;
- the next batch number, topic use and the recent questions to avoid: the calls and examples tables;
- the diversity state: state "diversity" (agent/audit/state.py) plus the examples accepted after it, and
  the near-duplicate index: every accepted example's text (both rebuilt by the auditor).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from agent.errors import LedgerError, LockError, ResumeError
from agent.plan import Plan
from agent.records import BatchSummary, CategoryState, RunState

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY, batch INTEGER, purpose TEXT, provider TEXT, model TEXT,
    status TEXT NOT NULL,            -- ok | error | invalid | pending (sent, no reply yet: cost is its worst case)
    kind TEXT,                       -- the fault: rate_limit, server, overloaded, timeout, connection, malformed, ...
    attempts INTEGER DEFAULT 1, input_tokens INTEGER DEFAULT 0, output_tokens INTEGER DEFAULT 0,
    cached_tokens INTEGER DEFAULT 0, cost REAL DEFAULT 0, latency REAL DEFAULT 0, mode TEXT,
    error TEXT, created_at REAL NOT NULL,
    reply TEXT                       -- the raw text of an unusable reply, shortened, secrets redacted (schema 2)
);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY, call_id INTEGER, kind TEXT NOT NULL, message TEXT, latency REAL, created_at REAL NOT NULL
);
-- small columns first, the record last: scans that need only user_text or topic (resume) never walk
-- the record's overflow pages
CREATE TABLE IF NOT EXISTS examples (
    id INTEGER PRIMARY KEY, spec_id TEXT NOT NULL, call_id INTEGER, batch INTEGER,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason TEXT, topic TEXT, simulated INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    user_text TEXT, requested TEXT NOT NULL, audited TEXT, detail TEXT,
    passage TEXT,                    -- the source passage the example was grounded in (schema 3; a migrated
                                     -- ledger has it after record: only grounded runs read it)
    record TEXT
);
-- Indexes cost every call: each one is another b-tree whose pages a call's commit rewrites, and one keyed
-- by topic or by category takes new entries all over it (at 10k examples the two datagen had before cost
-- 0.45 ms of CPU per call, half the ledger's work). Only reads at start, resume and export used them, and
-- those scan the tables in id order instead (tens of ms at 10k examples, once each): dropped here, also
-- from ledgers made before (an older datagen recreates them: same rows, only the access path differs).
-- Rejections are few, and the export's and status's counts by reason read them: a partial index.
DROP INDEX IF EXISTS examples_status;
CREATE INDEX IF NOT EXISTS examples_rejected ON examples (reason) WHERE status = 'rejected';
CREATE TABLE IF NOT EXISTS labels (
    example_id INTEGER NOT NULL, dimension TEXT NOT NULL, category TEXT NOT NULL
);
DROP INDEX IF EXISTS labels_dim;
CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, summary TEXT NOT NULL, created_at REAL NOT NULL);
-- run state: "diversity" in agent/audit/state.py's data format (never pickle), "diversity_upto" the last
-- accepted example id it holds, "categories" the misses and unfillable categories (records.CategoryState)
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL);
-- grounding (agent/sources.py): the passages of the plan's documents as last read; removed = 1 when its
-- source no longer has it (kept: accepted examples still name it)
CREATE TABLE IF NOT EXISTS passages (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, source_hash TEXT NOT NULL, heading TEXT, category TEXT,
    hash TEXT NOT NULL, text TEXT NOT NULL, removed INTEGER NOT NULL DEFAULT 0
);
"""

# The ledger's schema version, in meta "schema_version" (a ledger without one is version 1). A ledger of
# an older version is migrated forward on open, each step in one transaction; a newer one is refused.
#   1  the first schema
#   2  calls.reply: the raw reply text
#   3  examples.passage and the passages table: grounding in the plan's documents
SCHEMA_VERSION = 3
MIGRATIONS = {
    2: ["ALTER TABLE calls ADD COLUMN reply TEXT"],
    3: ["ALTER TABLE examples ADD COLUMN passage TEXT"],   # the passages table comes with SCHEMA
}
_SQLITE_MAGIC = b"SQLite format 3\x00"


# Rejection reasons that mean no example existed: the call failed, its reply was unusable, or it held no item
# for the spec. Reported as "failed calls", never as rejected examples.
LOST_REASONS = ("call_failed:", "invalid_reply", "missing_from_reply")


def is_lost(reason: str | None) -> bool:
    return (reason or "").startswith(LOST_REASONS)


# A tail copy (the last examples are drawn several times over) that found its slot already filled by another
# copy: the price of a fast tail, reported apart, never as a rejection.
SURPLUS = "surplus:"


def is_surplus(reason: str | None) -> bool:
    return (reason or "").startswith(SURPLUS)


# json.dumps builds a new encoder for every call with a keyword argument: one each, made once (same output)
_dumps = json.JSONEncoder().encode                      # json.dumps(value)
_dumps_text = json.JSONEncoder(ensure_ascii=False).encode   # json.dumps(value, ensure_ascii=False)


def _has_json1(db: sqlite3.Connection) -> bool:
    """SQLite's JSON functions are built in since 3.38; an older library may lack them."""
    try:
        return db.execute("""SELECT COUNT(*) FROM json_each('{"a": "b"}')""").fetchone()[0] == 1
    except sqlite3.OperationalError:
        return False


def _labels_json(ex: ExampleRow) -> tuple[str, str | None]:
    """The requested and audited columns; audited labels are usually the requested ones, in the same order
    (so the same text): encoded once."""
    requested = _dumps(ex.requested)
    if ex.audited is None:
        return requested, None
    same = ex.audited == ex.requested and list(ex.audited) == list(ex.requested)
    return requested, requested if same else _dumps(ex.audited)


_ADD_FAULT = "INSERT INTO faults (call_id, kind, message, latency, created_at) VALUES (?, ?, ?, ?, ?)"


def _fault_rows(call_id: int | None, faults: Sequence[tuple[str, str, float]], now: float) -> list[tuple]:
    return [(call_id, kind, (msg or "")[:500], lat, now) for kind, msg, lat in faults]


def _new_id(cur: sqlite3.Cursor) -> int:
    """The id of the row an INSERT just added (sqlite3 types lastrowid Optional: None before any INSERT)."""
    if cur.lastrowid is None:
        raise RuntimeError("an INSERT into the ledger returned no row id")
    return cur.lastrowid


@dataclass
class ExampleRow:
    spec_id: str
    status: str                       # accepted | rejected
    requested: dict[str, str]
    record: dict[str, Any] | None = None
    audited: dict[str, str | None] | None = None   # None for a dimension the example fits no category of (off_spec)
    reason: str | None = None         # rejection reason code, e.g. "near_duplicate", "check:as_an_ai"
    detail: str | None = None
    topic: str = ""
    user_text: str = ""
    passage: str = ""                 # the source passage id it was grounded in, if the plan has sources


@dataclass
class CallRow:
    batch: int
    purpose: str
    provider: str
    model: str
    status: str
    kind: str | None = None
    attempts: int = 1
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0
    latency: float = 0.0
    mode: str | None = None
    error: str | None = None
    reply: str | None = None          # raw reply text, kept when the reply was unusable


class Ledger:
    def __init__(self, path: Path):
        """Open the ledger at path (created if missing). A file that is not a ledger this version can use
        is refused with a LedgerError before anything is written to it."""
        self.path = path
        check_file(path)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise LedgerError(_damaged(path, str(e))) from None
        try:
            version = self._version()
            if version > SCHEMA_VERSION:
                raise LedgerError(f"{path}: written by a newer datagen (ledger schema {version}, this one reads up "
                                  f"to {SCHEMA_VERSION}); upgrade datagen to resume or export this run")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL+NORMAL: durable across process kills
            self._json1 = _has_json1(self.db)
            self.db.executescript(SCHEMA)
            self._migrate(version)
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise LedgerError(_damaged(path, str(e))) from None
        except LedgerError:
            self.db.close()
            raise

    def _version(self) -> int:
        """The schema version of an existing ledger (1 when unmarked); SCHEMA_VERSION for a new one."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return SCHEMA_VERSION
        if "meta" not in tables:
            raise LedgerError(_damaged(self.path, "an SQLite database without datagen's tables"))
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0]) if row else 1
        except ValueError:
            raise LedgerError(_damaged(self.path, f"schema_version {row[0]!r} is not a number")) from None

    def _migrate(self, version: int) -> None:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                for sql in MIGRATIONS.get(target, []):
                    # a column the SCHEMA script (or another build's ad-hoc change) already added stays as is
                    words = sql.split()
                    if sql.startswith("ALTER TABLE") and words[5] in {
                            r[1] for r in self.db.execute(f"PRAGMA table_info({words[2]})")}:
                        continue
                    self.db.execute(sql)
                self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(target),))
        if version == SCHEMA_VERSION and self.meta("schema_version") is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, out_dir: Path, plan: Plan, *, simulated: bool, restart: bool = False) -> Ledger:
        """Open (or create) the ledger of `plan` in out_dir, checking the plan still fits the run."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "ledger.sqlite"
        if restart and os.path.lexists(path) and not os.path.isdir(path):  # a folder is never deleted
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        ledger = cls(path)
        try:
            old = ledger.stored_plan()
            if old is None:
                ledger.set_meta("created_at", str(time.time()))
            else:
                check_compatible(old, plan, ledger)
        except BaseException:
            ledger.close()
            raise
        ledger.set_meta("plan", plan.model_dump_json())
        ledger.set_meta("plan_hash", plan.content_hash())
        if simulated:
            ledger.set_meta("simulated", "1")
        return ledger

    def close(self) -> None:
        self.db.close()

    def stored_plan(self) -> Plan | None:
        """The plan the run was started (or last resumed) with; LedgerError if it no longer validates."""
        raw = self.meta("plan")
        if raw is None:
            return None
        try:
            return Plan.model_validate_json(raw)
        except ValueError as e:
            first = str(e).splitlines()[1:2] or [str(e)]
            raise LedgerError(f"{self.path}: the plan stored in this ledger no longer validates ({first[0].strip()}); "
                              f"export it with the datagen that made it, or pass --restart to start over") from None

    # -- meta and state ---------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- the near-duplicate proof ------------------------------------------------------------------
    # Every accepted example was found (Auditor.admit) against every earlier accepted one, with the plan's
    # threshold. While that search is exact, no two accepted first user messages are near-duplicates at the
    # highest threshold any run used, and an export at that threshold or above need not search them again.
    DEDUP_PROOF = "dedup_proof"

    def note_dedup(self, threshold: float, exact: bool) -> None:
        """Before a run accepts anything: the threshold it checks at, and whether its search stays exact (an
        index that may switch to its approximate mode, past dedup.AUTO_SWITCH texts, is not). Pessimistic
        and written before the run's first acceptance, so a crash never leaves a proof it did not earn.
        Examples accepted before this record existed (an older datagen) are unproven."""
        old = self.dedup_proof()
        if old is None and self.accepted_count():
            old = {"threshold": threshold, "exact": False}
        merged = {"threshold": max(threshold, old["threshold"]) if old else threshold,
                  "exact": exact and (old["exact"] if old else True)}
        with self.db:
            self.set_meta(self.DEDUP_PROOF, json.dumps(merged))

    def dedup_proof(self) -> dict[str, Any] | None:
        raw = self.meta(self.DEDUP_PROOF)
        return json.loads(raw) if raw else None

    def proves_unique(self, threshold: float) -> bool:
        """No two accepted first user messages are near-duplicates at `threshold` (see note_dedup)."""
        proof = self.dedup_proof()
        return bool(proof and proof["exact"] and proof["threshold"] <= threshold)

    def state(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def simulated(self) -> bool:
        return self.meta("simulated") == "1"

    # -- writing ------------------------------------------------------------------------------------
    def add_pending(self, batch: int, provider: str, model: str, worst_cost: float) -> int:
        """A call about to be sent, counted at its worst-case cost until record_call(settles=id) replaces it:
        a call lost to a kill stays counted (spent() sums every row)."""
        cur = self.db.execute(
            "INSERT INTO calls (batch, purpose, provider, model, status, cost, created_at)"
            " VALUES (?, 'generate', ?, ?, 'pending', ?, ?)", (batch, provider, model, worst_cost, time.time()))
        return _new_id(cur)

    def drop_pending(self, call_ids: Sequence[int]) -> None:
        """Pending rows of calls that were never sent (dispatched, then cancelled before their task ran)."""
        with self.db:
            self.db.executemany("DELETE FROM calls WHERE id = ? AND status = 'pending'", [(i,) for i in call_ids])

    def record_faults(self, call_id: int, faults: Sequence[tuple[str, str, float]]) -> None:
        """The faults of a call cancelled before it ended (the plan filled, a signal): its pending row stays,
        and what the server answered it (a 429 before the retry it was waiting for) is kept with it."""
        if faults:
            with self.db:
                self.db.executemany(_ADD_FAULT, _fault_rows(call_id, faults, time.time()))

    def pending_calls(self) -> tuple[int, float]:
        """(count, worst-case cost) of calls sent and never answered, e.g. lost to a kill."""
        row = self.db.execute("SELECT COUNT(*), COALESCE(SUM(cost), 0) FROM calls WHERE status = 'pending'").fetchone()
        return row[0], row[1]

    def unusable_replies(self, n: int = 5) -> list[tuple[int, str, str]]:
        """The last n unusable replies kept: (call id, why, reply text)."""
        rows = self.db.execute("SELECT id, COALESCE(kind, status), reply FROM calls WHERE reply IS NOT NULL"
                               " ORDER BY id DESC LIMIT ?", (n,))
        return rows.fetchall()

    def record_call(self, calls: list[CallRow], examples: list[ExampleRow],
                    faults: Sequence[tuple[str, str, float]] = (), simulated: bool = False,
                    settles: int | None = None, state: dict[str, bytes] | None = None,
                    dedup_checked: bool = False) -> int | None:
        """One transaction: a call (and its re-ask), its faults, and all its examples with their labels.
        `settles`: the pending row (add_pending) this call replaces; `state`: run state the call changed.
        `dedup_checked`: every accepted example was found against all earlier ones (Auditor.admit); accepted
        rows written without it void the near-duplicate proof (note_dedup), in the same transaction.
        Returns the last call's id (None when `calls` is empty)."""
        now = time.time()
        batch = calls[0].batch if calls else None
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if settles is not None:
                self.db.execute("DELETE FROM calls WHERE id = ? AND status = 'pending'", (settles,))
            call_ids = [_new_id(self.db.execute(
                "INSERT INTO calls (batch, purpose, provider, model, status, kind, attempts, input_tokens,"
                " output_tokens, cached_tokens, cost, latency, mode, error, created_at, reply)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (call.batch, call.purpose, call.provider, call.model, call.status, call.kind, call.attempts,
                 call.input_tokens, call.output_tokens, call.cached_tokens, call.cost, call.latency,
                 call.mode, call.error, now, call.reply))) for call in calls]
            call_id = call_ids[-1] if call_ids else None
            if faults:
                self.db.executemany(_ADD_FAULT, _fault_rows(call_ids[0] if call_ids else None, faults, now))
            if examples:
                # One statement for all the rows, so their ids are given, not read back one by one: the ids
                # SQLite would give (an INTEGER PRIMARY KEY without AUTOINCREMENT takes the largest id + 1),
                # read inside this write transaction, where no other writer can take one.
                first = self.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM examples").fetchone()[0]
                rows = [(first + i, ex.spec_id, call_id, batch, ex.status, ex.reason, ex.detail, ex.topic,
                         *_labels_json(ex), _dumps_text(ex.record) if ex.record is not None else None, ex.user_text,
                         int(simulated), now, ex.passage or None) for i, ex in enumerate(examples)]
                self.db.executemany(
                    "INSERT INTO examples (id, spec_id, call_id, batch, status, reason, detail, topic, requested,"
                    " audited, record, user_text, simulated, created_at, passage)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                accepted = [(row[0], row[9]) for row, ex in zip(rows, examples, strict=True)
                            if ex.status == "accepted" and ex.audited is not None]
                if self._json1:   # the labels from the audited text just encoded: one statement per example
                    self.db.executemany("INSERT INTO labels (example_id, dimension, category)"
                                        " SELECT ?, key, value FROM json_each(?)", accepted)
                else:
                    self.db.executemany(
                        "INSERT INTO labels (example_id, dimension, category) VALUES (?, ?, ?)",
                        [(first + i, d, c) for i, ex in enumerate(examples) if ex.status == "accepted"
                         for d, c in (ex.audited or {}).items()])
            if state:
                self.db.executemany("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", state.items())
            if not dedup_checked and any(ex.status == "accepted" for ex in examples):
                proof = self.dedup_proof()
                if proof is not None and proof["exact"]:
                    self.set_meta(self.DEDUP_PROOF, json.dumps({**proof, "exact": False}))
        return call_id

    def last_accepted_id(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(id), 0) FROM examples WHERE status = 'accepted'").fetchone()[0]

    def next_run_number(self) -> int:
        n = int(self.meta("runs") or 0) + 1
        self.set_meta("runs", str(n))
        return n

    def record_batch(self, summary: BatchSummary, state: dict[str, bytes] | None = None) -> int:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            cur = self.db.execute("INSERT INTO batches (summary, created_at) VALUES (?, ?)",
                                  (json.dumps(summary.to_json()), time.time()))
            for key, value in (state or {}).items():  # the same transaction: a snapshot never outlives its batch
                self.db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))
        return _new_id(cur)

    def save_state(self, state: dict[str, bytes]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for key, value in state.items():
                self.db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))

    # -- reading (everything derived) -------------------------------------------------------------
    def run_state(self, plan: Plan) -> RunState:
        """Where a run stands, from the ledger alone: what a new or resumed run starts from (see the module
        docstring)."""
        try:
            categories = CategoryState.loads(self.state(CategoryState.STATE_KEY))
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # damaged: a fresh try, nothing worse
            log.warning("%s: the stored category state is unreadable (%s); every category will be tried again",
                        self.path, e)
            categories = CategoryState()
        if categories.plan_hash != plan.content_hash():
            categories = CategoryState(plan_hash=plan.content_hash())
        return RunState(accepted=self.label_counts(), n_accepted=self.accepted_count(), categories=categories,
                        spent=self.spent(), last_batch=self.last_call_batch(), topic_use=self.topic_usage(),
                        recent_questions=self.recent_user_texts(20))

    def label_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for dim, cat, n in self.db.execute("SELECT dimension, category, COUNT(*) FROM labels GROUP BY 1, 2"):
            counts.setdefault(dim, {})[cat] = n
        return counts

    def accepted_count(self, upto: int | None = None) -> int:
        """Accepted examples (with an id up to `upto` if given)."""
        if upto is not None:
            return self.db.execute("SELECT COUNT(*) FROM examples WHERE status = 'accepted' AND id <= ?",
                                   (upto,)).fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM examples WHERE status = 'accepted'").fetchone()[0]

    def rejection_counts(self) -> dict[str, int]:
        """Examples rejected by the audit, per reason (specs lost with no example are in lost_counts())."""
        return {r: n for r, n in self._rejected_rows() if not is_lost(r) and not is_surplus(r)}

    def surplus_counts(self) -> dict[str, int]:
        """Tail copies whose slot another copy filled first (not rejections), per reason."""
        return {r: n for r, n in self._rejected_rows() if is_surplus(r)}

    def surplus_count(self) -> int:
        return sum(self.surplus_counts().values())

    def lost_counts(self) -> dict[str, int]:
        """Specs that never became an example (a failed call, or a reply with no usable item for them)."""
        return {r: n for r, n in self._rejected_rows() if is_lost(r)}

    def _rejected_rows(self) -> list[tuple[str, int]]:
        rows = self.db.execute("SELECT reason, COUNT(*) FROM examples WHERE status = 'rejected' GROUP BY 1 ORDER BY 2 DESC")
        return [(reason or "unknown", n) for reason, n in rows]

    def usage(self) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(input_tokens),0), COALESCE(SUM(output_tokens),0),"
            " COALESCE(SUM(cached_tokens),0), COALESCE(SUM(cost),0), COALESCE(SUM(attempts),0) FROM calls"
        ).fetchone()
        models = [r[0] for r in self.db.execute("SELECT DISTINCT provider || '/' || model FROM calls")]
        faults = dict(self.db.execute("SELECT kind, COUNT(*) FROM faults GROUP BY 1").fetchall())
        return {"calls": row[0], "input_tokens": row[1], "output_tokens": row[2], "cached_tokens": row[3],
                "cost": row[4], "attempts": row[5], "models": models, "faults": faults}

    def spent(self) -> float:
        return self.db.execute("SELECT COALESCE(SUM(cost), 0) FROM calls").fetchone()[0]

    def topic_usage(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT topic, COUNT(*) FROM examples WHERE status='accepted' GROUP BY 1"))

    def accepted_texts(self) -> list[tuple[str, str]]:
        return self.db.execute("SELECT spec_id, user_text FROM examples WHERE status = 'accepted' ORDER BY id").fetchall()

    def iter_accepted(self, after_id: int = 0) -> Iterator[dict[str, Any]]:
        """Accepted examples in insertion order, streamed (constant memory). "record_json" is the record as
        stored: json.dumps(record, ensure_ascii=False)'s text (the export writes it as it is, see _scan)."""
        cur = self.db.execute(
            "SELECT id, spec_id, batch, topic, requested, audited, record, user_text, passage FROM examples"
            " WHERE status = 'accepted' AND id > ? ORDER BY id", (after_id,))
        for row in cur:
            requested = json.loads(row[4])
            # audited labels are mostly the requested ones, stored as the same text (_labels_json): decoded once
            audited = requested.copy() if row[5] == row[4] and type(requested) is dict else json.loads(row[5])
            yield {"id": row[0], "spec_id": row[1], "batch": row[2], "topic": row[3],
                   "requested": requested, "audited": audited,
                   "record": json.loads(row[6]), "user_text": row[7], "passage": row[8], "record_json": row[6]}

    def batches(self) -> list[BatchSummary]:
        return [BatchSummary.loads(s) for (s,) in self.db.execute("SELECT summary FROM batches ORDER BY id")]

    def last_batch_total(self) -> int | None:
        """Accepted examples as of the last batch audit (None before the first)."""
        row = self.db.execute("SELECT summary FROM batches ORDER BY id DESC LIMIT 1").fetchone()
        return BatchSummary.loads(row[0]).total_accepted if row else None

    def last_call_batch(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(batch), 0) FROM calls").fetchone()[0]

    # -- grounding passages (agent/sources.py) --------------------------------------------------------
    def sync_passages(self, sources, passages) -> list[str]:
        """Store the passages as read now; return what changed since the ledger last saw the sources, one
        line each (a new, changed or removed source; what the run does about it)."""
        old_sources = dict(self.db.execute("SELECT source, MIN(source_hash) FROM passages WHERE removed = 0 GROUP BY 1"))
        old = {r[0]: r[1] for r in self.db.execute("SELECT id, hash FROM passages WHERE removed = 0")}
        used = self.passage_usage()
        notes = []
        now = {s.path: s.hash for s in sources}
        for path, h in old_sources.items():
            if path not in now:
                n = sum(used.get(pid, 0) for pid, in self.db.execute("SELECT id FROM passages WHERE source = ?", (path,)))
                notes.append(f"source {path} was removed: its passages are no longer drawn ({n} accepted examples "
                             f"grounded in them are kept)")
            elif now[path] != h:
                ids = {p.id: p.hash for p in passages if p.source == path}
                changed = [pid for pid, ph in ids.items() if pid in old and old[pid] != ph]
                gone = [pid for pid, in self.db.execute("SELECT id FROM passages WHERE source = ? AND removed = 0",
                                                        (path,)) if pid not in ids]
                new = [pid for pid in ids if pid not in old]
                notes.append(f"source {path} changed: {len(changed)} passages changed, {len(new)} new, {len(gone)} "
                             f"removed; new examples use the new text ({sum(used.get(p, 0) for p in changed + gone)} "
                             f"accepted examples were grounded in the old text and are kept)")
        for path in now:
            if old_sources and path not in old_sources:
                notes.append(f"source {path} is new: its passages join the rotation")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE passages SET removed = 1")
            self.db.executemany(
                "INSERT OR REPLACE INTO passages (id, source, source_hash, heading, category, hash, text, removed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                [(p.id, p.source, now[p.source], p.heading, p.category, p.hash, p.text) for p in passages])
        return notes

    def passage_usage(self) -> dict[str, int]:
        """Accepted examples per passage id."""
        return dict(self.db.execute("SELECT passage, COUNT(*) FROM examples WHERE status = 'accepted' AND passage"
                                    " IS NOT NULL GROUP BY 1"))

    def passage_rows(self) -> list[dict[str, Any]]:
        """Every passage the run has seen (removed ones too), with its accepted examples."""
        rows = self.db.execute("SELECT id, source, source_hash, heading, category, hash, removed FROM passages"
                               " ORDER BY rowid").fetchall()
        used = self.passage_usage() if rows else {}  # a run without sources never scans the examples for it
        return [{"id": r[0], "source": r[1], "source_hash": r[2], "heading": r[3], "category": r[4], "hash": r[5],
                 "removed": bool(r[6]), "examples": used.get(r[0], 0)} for r in rows]

    def recent_user_texts(self, n: int) -> list[str]:
        rows = self.db.execute("SELECT user_text FROM examples WHERE status='accepted' ORDER BY id DESC LIMIT ?", (n,))
        return [r[0] for r in rows]


def _damaged(path: Path, what: str) -> str:
    return (f"{path}: not a usable ledger ({what}); move it aside to keep it (mv {path} {path}.bad), "
            f"or pass --restart to discard it and start the run over")


def check_file(path: Path) -> None:
    """Refuse a ledger path that is not a regular, complete SQLite file before SQLite touches it: SQLite
    would treat an empty file as a new database (and the run would start over), and reports a folder or
    a symlink loop only as "unable to open"."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise LedgerError(f"{path}: a symlink to a missing file; remove the link or point it at the ledger") from None
        return  # a new run
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LedgerError(f"{path}: a symlink loop, not a ledger; remove the link (rm {path}) or point it "
                              f"at the run's ledger") from None
        raise LedgerError(f"{path}: cannot read the ledger ({e.strerror}); check its permissions") from None
    if os.path.isdir(path):
        raise LedgerError(f"{path}: is a folder, not a ledger; move it aside (mv {path} {path}.bad) and run again")
    if st.st_size == 0:
        raise LedgerError(_damaged(path, "the file is empty (0 bytes)"))
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError as e:
        raise LedgerError(f"{path}: cannot read the ledger ({e.strerror}); check its permissions") from None
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        raise LedgerError(_damaged(path, "not an SQLite database"))
    page_size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages, changes, valid_for = struct.unpack(">I", head[28:32])[0], head[24:28], head[92:96]
    # the header's page count is trustworthy when its change counter matches "version valid for"; with a
    # non-empty write-ahead log beside it (a kill during a checkpoint) the missing pages may be in the log
    wal = Path(f"{path}-wal")
    in_log = wal.exists() and wal.stat().st_size > 0
    if changes == valid_for and pages and not in_log and st.st_size < pages * page_size:
        raise LedgerError(_damaged(path, f"truncated: {st.st_size:,} bytes of {pages * page_size:,}"))


def check_compatible(old: Plan, new: Plan, ledger: Ledger) -> None:
    """A resumed run may change totals and shares, not the names its rows are filed under."""
    old_s, new_s = old.structure(), new.structure()
    for dim, cats in old_s.items():
        if dim not in new_s:
            raise ResumeError(f"dimension {dim!r} was removed or renamed since this run began; put it back, "
                              f"or pass --restart to discard the run and start over")
        for cat in cats:
            if cat not in new_s[dim]:
                raise ResumeError(f"category {dim}.{cat} was removed or renamed since this run began; put it "
                                  f"back, or pass --restart to discard the run and start over")
    added = [d for d in new_s if d not in old_s]
    if added and ledger.accepted_count():
        raise ResumeError(f"dimension {added[0]!r} was added since this run began, and accepted examples have no "
                          f"label for it; pass --restart to start over with it")
    counts = ledger.label_counts()
    for dim, d in new.dimensions.items():
        for c in d.categories:
            have = counts.get(dim, {}).get(c.name, 0)
            if have > (c.quota or 0):
                raise ResumeError(f"{dim}.{c.name} already has {have} accepted examples, more than its new quota "
                                  f"{c.quota}; raise the total or that share, or pass --restart")
    if old.record_shape != new.record_shape:
        raise ResumeError(f"output_format changed from {old.output_format} to {new.output_format}, which needs "
                          f"different records; export to another format with `datagen export --format`, or --restart")


class RunLock:
    """One generate per run at a time: a lock file beside the ledger (released on any exit, even kill -9)."""

    def __init__(self, out_dir: Path):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / ".lock"
        self.lock = FileLock(self.path)

    def __enter__(self) -> RunLock:
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise LockError(f"another datagen process is already working on {self.path.parent}; wait for it to "
                            f"finish (or stop it) and run again") from None
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()
