"""The ledger's per-call write (issue 11 item 7): the same rows as before, for less CPU.

Ledger.record_call writes a call's examples with one executemany and ids it gives itself (what SQLite
would give), encodes with encoders made once, and the ledger no longer keeps the two indexes every call
paid for. The reference below is record_call as it was before (kept here, verbatim apart from taking the
ledger as an argument): both write the same inputs into two ledgers, and every table must hold the same
rows, column for column.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from agent.ledger import CallRow, ExampleRow, Ledger
from agent.plan import load_plan

PLAN = "plans/example.yaml"


def reference_record_call(self, calls, examples, faults=(), simulated=False, settles=None, state=None,
                          dedup_checked=False):
    """Ledger.record_call before this change (the reference)."""
    now = time.time()
    with self.db:
        self.db.execute("BEGIN IMMEDIATE")
        if settles is not None:
            self.db.execute("DELETE FROM calls WHERE id = ? AND status = 'pending'", (settles,))
        call_ids = []
        for call in calls:
            cur = self.db.execute(
                "INSERT INTO calls (batch, purpose, provider, model, status, kind, attempts, input_tokens,"
                " output_tokens, cached_tokens, cost, latency, mode, error, created_at, reply)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (call.batch, call.purpose, call.provider, call.model, call.status, call.kind, call.attempts,
                 call.input_tokens, call.output_tokens, call.cached_tokens, call.cost, call.latency,
                 call.mode, call.error, now, call.reply),
            )
            call_ids.append(cur.lastrowid)
        call_id = call_ids[-1] if call_ids else None
        self.db.executemany(
            "INSERT INTO faults (call_id, kind, message, latency, created_at) VALUES (?, ?, ?, ?, ?)",
            [(call_ids[0] if call_ids else None, kind, (msg or "")[:500], lat, now) for kind, msg, lat in faults],
        )
        for ex in examples:
            cur = self.db.execute(
                "INSERT INTO examples (spec_id, call_id, batch, status, reason, detail, topic, requested,"
                " audited, record, user_text, simulated, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ex.spec_id, call_id, calls[0].batch if calls else None, ex.status, ex.reason, ex.detail,
                 ex.topic, json.dumps(ex.requested), json.dumps(ex.audited) if ex.audited is not None else None,
                 json.dumps(ex.record, ensure_ascii=False) if ex.record is not None else None,
                 ex.user_text, int(simulated), now),
            )
            if ex.passage:
                self.db.execute("UPDATE examples SET passage = ? WHERE id = ?", (ex.passage, cur.lastrowid))
            if ex.status == "accepted":
                self.db.executemany(
                    "INSERT INTO labels (example_id, dimension, category) VALUES (?, ?, ?)",
                    [(cur.lastrowid, d, c) for d, c in (ex.audited or {}).items()],
                )
        for key, value in (state or {}).items():
            self.db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))
        if not dedup_checked and any(ex.status == "accepted" for ex in examples):
            proof = self.dedup_proof()
            if proof is not None and proof["exact"]:
                self.set_meta(self.DEDUP_PROOF, json.dumps({**proof, "exact": False}))
    return call_id


def call(batch: int, purpose: str = "generate", **kw) -> CallRow:
    return CallRow(**{"batch": batch, "purpose": purpose, "provider": "simulated", "model": "simulated-1",
                      "status": "ok", **kw})


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": "You help."}, {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


LABELS = {"question_type": "how_to", "behaviour": "normal", "length": "short"}


def writes():
    """A run's worth of record_call arguments: every kind of row and option the engine and import use."""
    out = []
    for n in range(12):
        rows = [ExampleRow(spec_id=f"r1b{n}-{i}", status="accepted", requested=dict(LABELS),
                           audited={**LABELS, "behaviour": "ambiguous"} if i % 2 else dict(LABELS),
                           record=chat(f"Question {n}.{i} about caf\u00e9s \u2014 \"quoted\"\n?", f"Answer {n} {i} \U0001f600"),
                           topic=f"topic {i % 3}", user_text=f"Question {n}.{i}", passage="doc.md#2" if i == 1 else "")
                for i in range(4)]
        rows.append(ExampleRow(spec_id=f"r1b{n}-9", status="rejected", requested=dict(LABELS),
                               audited={"question_type": "how_to", "length": None}, record=chat("q", "a"),
                               reason="off_spec:length", detail="fits no length category", user_text="q"))
        rows.append(ExampleRow(spec_id=f"r1b{n}-10", status="rejected", requested=dict(LABELS),
                               reason="call_failed:timeout", detail="timed out"))
        calls = [call(n, input_tokens=100 + n, output_tokens=900, cost=0.001 * n, latency=1.5, mode="json_schema")]
        if n % 3 == 0:   # a re-ask travels with its call
            calls.append(call(n, "reask", status="invalid", kind="malformed", error="bad", reply="{not json"))
        faults = [("rate_limit", "429 slow down", 0.2), ("server", None, 1.0)] if n % 4 == 1 else ()
        out.append(dict(calls=calls, examples=rows, faults=faults, simulated=n % 2 == 0, settles=True,
                        state={"categories": f'{{"n": {n}}}'.encode()} if n % 2 else None,
                        dedup_checked=n != 7))
    out.append(dict(calls=[], examples=[ExampleRow(spec_id="import-1", status="accepted", requested=dict(LABELS),
                                                   audited=dict(LABELS), record=chat("imported", "yes"))]))
    out.append(dict(calls=[call(99)], examples=[]))
    return out


def tables(path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(path)
    try:
        names = [n for n, in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {n: con.execute(f"SELECT rowid, * FROM {n} ORDER BY rowid").fetchall() for n in names}
    finally:
        con.close()


@pytest.mark.parametrize("json1", [True, False], ids=["labels_by_json_each", "labels_by_rows"])
def test_record_call_writes_the_same_rows_as_before(tmp_path, monkeypatch, json1):
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)   # created_at the same in both
    plan = load_plan(PLAN)
    paths = []
    for name, write in (("new", Ledger.record_call), ("old", reference_record_call)):
        ledger = Ledger.open(tmp_path / name, plan, simulated=True)
        assert ledger._json1   # this SQLite has them; the other branch is what an older one runs
        ledger._json1 = json1
        ledger.note_dedup(0.85, exact=True)
        ids = []
        for args in writes():
            if args.pop("settles", None):
                args["settles"] = ledger.add_pending(args["calls"][0].batch, "simulated", "simulated-1", 0.5)
            ids.append(write(ledger, **args))
        paths.append((ledger.path, ids))
        assert ledger.dedup_proof() == {"threshold": 0.85, "exact": False}   # n == 7 wrote unchecked rows
        ledger.close()
    (new, new_ids), (old, old_ids) = paths
    assert new_ids == old_ids
    got, want = tables(new), tables(old)
    assert got == want
    assert len(got["examples"]) == 12 * 6 + 1 and len(got["labels"]) == (12 * 4 + 1) * 3 and len(got["faults"]) == 6
    assert sum(1 for r in got["examples"] if r[-2] == "doc.md#2") == 12   # the passage column, in the same rows


def test_a_ledger_made_before_loses_the_indexes_and_counts_the_same(tmp_path):
    plan = load_plan(PLAN)
    ledger = Ledger.open(tmp_path, plan, simulated=True)
    for args in writes():
        args.pop("settles", None)
        ledger.record_call(**args)
    counts = (ledger.label_counts(), ledger.accepted_count(), ledger.topic_usage(), ledger.rejection_counts(),
              ledger.lost_counts(), [r["id"] for r in ledger.iter_accepted()], ledger.last_accepted_id())
    # the two indexes an older datagen made (and makes again if it opens this ledger)
    ledger.db.execute("CREATE INDEX examples_status ON examples (status, topic)")
    ledger.db.execute("CREATE INDEX labels_dim ON labels (dimension, category)")
    ledger.close()
    again = Ledger(ledger.path)
    indexes = {n for n, in again.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "examples_status" not in indexes and "labels_dim" not in indexes and "examples_rejected" in indexes
    assert (again.label_counts(), again.accepted_count(), again.topic_usage(), again.rejection_counts(),
            again.lost_counts(), [r["id"] for r in again.iter_accepted()], again.last_accepted_id()) == counts
    assert counts[0]["behaviour"] == {"normal": 12 * 2 + 1, "ambiguous": 12 * 2} and counts[1] == 12 * 4 + 1
    again.close()
