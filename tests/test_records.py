"""Typed records (agent/records.py): stored batch summaries of every shape keep loading, and what a run
stores today reads back unchanged."""

from __future__ import annotations

import json
import sqlite3

import yaml

from agent.export.info import diversity_rows
from agent.export.report import batch_costs
from agent.ledger import Ledger
from agent.plan import load_plan
from agent.progress import headline
from agent.records import BatchSummary, Steering, Unfillable
from tests.conftest import EXAMPLE_PLAN

# a batch summary as the first release wrote it: no failed_calls, lost, cost_total or run
FIRST_RELEASE = {
    "batch": 3, "processed": 10, "accepted": 7, "rejected": 3,
    "rejections": {"near_duplicate": 2, "check:as_an_ai": 1}, "duplicates": 2, "total_accepted": 21,
    "table": {"tone": {"formal": {"target": 50, "accepted": 11, "remaining": 39}}},
    "diversity": {"batch": {"mean_ttr": 0.71, "examples": 7},
                  "cumulative": {"mean_ttr": 0.66, "ngram_overlap": 0.12, "examples": 21, "label_entropy": {}}},
    "shortfalls": [], "steering": {"temperature_step": 0.1, "phrasing_instructions": ["Vary the wording."]},
    "missing": [{"dimension": "tone", "category": "formal", "misses": 2}],
    "unfillable": [{"dimension": "tone", "category": "casual", "short_by": 5}],
    "elapsed_s": 1.5, "calls_this_run": 4, "some_future_key": [1, 2],
}


def test_a_first_release_summary_parses_into_the_typed_record():
    s = BatchSummary.from_json(json.loads(json.dumps(FIRST_RELEASE)))
    assert (s.batch, s.accepted, s.rejected, s.total_accepted) == (3, 7, 3, 21)
    assert s.failed_calls == 0 and s.lost == {} and s.cost_total is None and s.run is None
    assert s.diversity.cumulative["mean_ttr"] == 0.66 and s.diversity.batch["mean_ttr"] == 0.71
    assert s.steering.temperature_step == 0.1 and s.steering.phrasing_instructions == ["Vary the wording."]
    assert s.steering.avoid_size == 20   # not steered: the default avoid list
    assert s.unfillable == [Unfillable("tone", "casual", 5)]
    assert s.missing[0].misses == 2
    # nothing stored is dropped: a key this version does not know is written back as it was
    assert s.to_json()["some_future_key"] == [1, 2]
    assert "unfillable: tone.casual" in headline(s) and "TTR 0.66" in headline(s)


def test_a_flat_diversity_dict_reads_as_the_cumulative_metrics():
    s = BatchSummary.from_json({"batch": 1, "diversity": {"mean_ttr": 0.5, "ngram_overlap": 0.2}})
    assert s.diversity.cumulative == {"mean_ttr": 0.5, "ngram_overlap": 0.2}
    rows = diversity_rows([s], accepted=10, total=100)
    assert {r["metric"] for r in rows} == {"mean_ttr", "ngram_overlap"}


def test_steering_stores_only_the_changes_that_apply():
    assert Steering.from_json({}).to_json() == {} and not Steering()
    steer = {"temperature_step": 0.1, "avoid_list_size": 15, "avoid_phrases": ["in order to"],
             "verbs_to_use": ["compare"], "prefer_least_used_topics": True, "phrasing_instructions": ["x"]}
    assert Steering.from_json(steer).to_json() == steer
    assert Steering.from_json(steer).avoid_size == 15


def test_an_old_ledgers_summaries_load_in_audit_status_and_export(tmp_path, run_cli):
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = 40
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    r = run_cli("generate", "--plan", str(plan_path), "--outputs", str(out), "--no-drift")
    assert r.code == 0, r.err
    db = out / "example" / "ledger.sqlite"
    con = sqlite3.connect(db)
    stored = [json.loads(s) for (s,) in con.execute("SELECT summary FROM batches ORDER BY id")]
    # what this version stores reads back into the record and writes out unchanged
    ledger = Ledger(db)
    assert [b.to_json() for b in ledger.batches()] == stored
    assert ledger.last_batch_total() == load_plan(plan_path).total
    ledger.close()
    # a summary of the first release's shape in the ledger: every reader takes it
    with con:
        con.execute("INSERT INTO batches (summary, created_at) VALUES (?, 0)", (json.dumps(FIRST_RELEASE),))
    con.close()
    r = run_cli("audit", "--plan", str(plan_path), "--outputs", str(out))
    assert r.code == 0, r.err
    assert "unfillable: tone.casual short by 5" in r.out
    labels, costs = batch_costs(Ledger(db).batches())
    assert labels[-1] == "3" and costs[-1] == 0.0   # no cost_total stored: no cost put on it


def old_to_json(s: BatchSummary) -> dict:
    """BatchSummary.to_json before round 6: the diversity metrics deep-copied by dataclasses.asdict."""
    from dataclasses import asdict, fields

    out = {f.name: getattr(s, f.name) for f in fields(s) if f.name != "extra"}
    out["diversity"] = asdict(s.diversity)
    out["steering"] = s.steering.to_json()
    out["missing"] = [asdict(m) for m in s.missing]
    out["unfillable"] = [asdict(u) for u in s.unfillable]
    return {**s.extra, **out}


def test_a_summary_is_stored_as_the_same_json_as_before(tmp_path, run_cli, monkeypatch):
    """to_json no longer deep-copies the diversity metrics: the text record_batch stores is the same, for a
    hand-written summary of every field and for every summary a simulated run writes."""
    summaries = [BatchSummary.from_json(json.loads(json.dumps(FIRST_RELEASE)))]
    record_batch = Ledger.record_batch

    def keep(self, summary, state=None):
        summaries.append(summary)
        return record_batch(self, summary, state)

    monkeypatch.setattr(Ledger, "record_batch", keep)
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = 60
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("generate", "--plan", str(plan_path), "--outputs", str(tmp_path / "out"))
    assert r.code == 0, r.err
    assert len(summaries) > 2 and all(s.diversity.cumulative for s in summaries[1:])
    for s in summaries:
        assert json.dumps(s.to_json()) == json.dumps(old_to_json(s))
