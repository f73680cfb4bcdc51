"""The tail of a run (the last examples) and the figures that predict it: tail copies, surplus, the simulated
provider's per-call seed, the measured estimate and ETA."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from agent.estimate import PRIOR_ACCEPTANCE, calls_needed, eta_seconds, tail_copies
from agent.plan import load_plan
from agent.progress import eta_text
from agent.prompts import build_request
from agent.providers.simulated import SimulatedProvider
from agent.records import Spec
from tests.conftest import EXAMPLE_PLAN
from tests.test_generate import assert_exact

pytestmark = pytest.mark.timeout(180)


def plan_file(tmp_path, total: int, **generation) -> str:
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = total
    data["generation"].update(generation)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_the_simulated_provider_varies_with_the_per_call_seed():
    # a re-asked spec came back with the same text (a near-duplicate) forever: 9,803 of 10,000 filled
    plan = load_plan(EXAMPLE_PLAN)
    labels = {d: dim.categories[0].name for d, dim in plan.dimensions.items()}
    request = build_request(plan, [Spec(id="r1b9-0", labels=labels, topic="spot instance preemption")])
    provider = SimulatedProvider(drift=False)

    def question(seed):
        body = provider.reply(request.__class__(**{**request.__dict__, "seed": seed})).text
        return json.loads(body)["examples"][0]["messages"][0]["content"]

    assert question(11) == question(11)                       # reproducible for one seed
    assert len({question(s) for s in range(8)}) >= 6         # and new text for a new seed


def test_the_example_plan_fills_to_the_last_example_on_the_simulated_provider(tmp_path, run_cli):
    path = plan_file(tmp_path, 300)
    out = tmp_path / "out"
    r = run_cli("generate", "--plan", path, "--outputs", str(out), "--quiet", "--no-export")
    assert r.code == 0, r.err
    assert_exact(load_plan(path), out / "example" / "ledger.sqlite")


def test_tail_copies_are_surplus_not_rejections(tmp_path, run_cli):
    path = plan_file(tmp_path, 120)
    out = tmp_path / "out"
    r = run_cli("generate", "--plan", path, "--outputs", str(out), "--quiet", "--no-export")
    assert r.code == 0, r.err
    con = sqlite3.connect(out / "example" / "ledger.sqlite")
    surplus = con.execute("SELECT COUNT(*) FROM examples WHERE reason LIKE 'surplus:%'").fetchone()[0]
    rejected = con.execute("SELECT COUNT(*) FROM examples WHERE status='rejected' AND reason NOT LIKE 'surplus:%' "
                           "AND reason NOT IN ('invalid_reply', 'missing_from_reply')").fetchone()[0]
    assert surplus > 0   # the last 50 were drawn twice over: some copies came too late
    assert f"{rejected:,} rejected this run" in r.err and f"{surplus:,} surplus tail copies" in r.err
    summaries = [json.loads(s) for s, in con.execute("SELECT summary FROM batches")]
    assert sum(s.get("surplus", 0) for s in summaries) == surplus
    assert not any(k.startswith("surplus:") for s in summaries for k in s["rejections"])
    status = run_cli("status", "--plan", path, "--outputs", str(out))
    assert f"surplus (tail copies whose slot another copy filled first; not rejections): {surplus:,}" in status.out
    assert "surplus:" not in status.out.split("rejected examples:")[-1].split("\n")[0]


def test_tail_copies_follow_the_acceptance_rate():
    assert tail_copies(0.95) == 2 and tail_copies(0.5) == 2 and tail_copies(0.4) == 3 and tail_copies(0.05) == 4


def test_the_estimate_counts_rejections_and_tail_surplus():
    calls, rejections, surplus = calls_needed(400, 0.8, 5, 50)
    assert rejections == 100 and surplus == 30 and calls == 106
    assert calls_needed(0, 0.8, 5, 50) == (0, 0, 0)
    assert calls_needed(400, 0.5, 5, 50)[0] > 1.5 * calls   # a lower rate costs more calls
    # the ETA counts the calls still needed, not the examples: a tail is never "1 second"
    assert eta_seconds(1, 0.5, 5, 50, seconds_per_call=10.0) == 10.0
    assert eta_text(None) == "ETA measuring" and eta_text(75) == "ETA 1:15" and eta_text(3725) == "ETA 1:02:05"


def test_estimate_uses_the_runs_measured_rates(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("DATAGEN_SIMULATED_LATENCY", "0.05")
    path = plan_file(tmp_path, 100)
    out = tmp_path / "out"
    before = run_cli("estimate", "--plan", path, "--outputs", str(out))
    assert before.code == 0 and f"assumes {PRIOR_ACCEPTANCE:.0%} of examples accepted" in before.out
    assert "~125 rejected" not in before.out and "~25 rejected examples" in before.out
    r = run_cli("generate", "--plan", path, "--outputs", str(out), "--quiet", "--no-export")
    assert r.code == 0, r.err
    data = yaml.safe_load(Path(path).read_text())
    data["total"] = 200                     # raise the total: the estimate is for the 100 left
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
    after = run_cli("estimate", "--plan", path, "--outputs", str(out))
    assert after.code == 0, after.err
    assert "the 100 examples left" in after.out and "measured over" in after.out
    assert "s per call" in after.out and "tokens/s" in after.out


def test_a_tail_copy_that_came_out_as_another_full_category_is_no_room_not_surplus(tmp_path):
    # surplus means "another copy of this spec filled its slot": the extra draw, not a fault. A copy the model
    # wrote as a different category (short instead of medium) missed, and that category being full is no_room.
    from agent.audit.auditor import Auditor
    from agent.ledger import Ledger
    from agent.plan import load_plan
    from agent.records import Spec
    from agent.reply import ChatItem

    plan = load_plan(EXAMPLE_PLAN)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        auditor = Auditor(plan, ledger)
        for c in ("short", "medium"):
            auditor.accepted["input_length"][c] = auditor.quota("input_length", c)   # both already full
        reply = "Open Settings, then Billing, and choose the plan you want to keep paying for. " * 4
        medium = ("How do I change the billing plan on my account when the current one no longer fits my team's "
                  "usage and we need more seats for the new hires starting next month?")
        for n, (question, reason) in enumerate((("How do I change my plan?", "no_room:input_length"),
                                                (medium, "surplus:input_length"))):
            spec = Spec(id=f"s{n}", labels={"input_length": "medium"}, topic="billing", tail=True)
            item = ChatItem.model_validate({"id": f"s{n}", "messages": [
                {"role": "user", "content": question}, {"role": "assistant", "content": reply}]})
            row = auditor.admit(spec, item)
            assert (row.status, row.reason) == ("rejected", reason), (question, row.detail)
    finally:
        ledger.close()
