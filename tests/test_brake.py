"""The progress brake on models that trickle: stray accepts between near-duplicates, and 1 example per 20 calls.

A model out of new questions answers a re-asked spec with text it already wrote (a near-duplicate) and now and
then a new one: the in-a-row count was reset by every stray accept, so such a run spent on without end.
"""

from __future__ import annotations

import json
import sqlite3
import threading

import yaml

from agent.prompts import parse_spec_lines
from tests.conftest import EXAMPLE_PLAN
from tests.fakeserver import FakeServer
from tests.responders import simulated_responder

KEY = "sk-test-BRAKE-7c2a"


def repeating_responder(new_every: int, warm_calls: int = 4):
    """Answers like the simulated model for `warm_calls` calls; after that, one new question every `new_every`
    calls and otherwise the first question it wrote for the same input length and typos: a near-duplicate that
    still measures as asked (so no category misses it)."""
    inner = simulated_responder(seed=2)
    first: dict[tuple[str, str], str] = {}
    calls = [0]
    lock = threading.Lock()

    def respond(body):
        text = inner(body)
        user = body["messages"][-1]["content"]
        if "Your previous reply" in user:   # a re-ask: answered as the first time
            return text
        data = json.loads(text)
        labels = {s.id: s.labels for s in parse_spec_lines(user)}
        with lock:
            calls[0] += 1
            n = calls[0]
            for i, item in enumerate(data["examples"]):
                lab = labels.get(item["id"], {})
                key = (lab.get("input_length", ""), lab.get("typos", ""))
                question = item["messages"][0]["content"]
                if n <= warm_calls or key not in first:
                    first.setdefault(key, question)
                elif not (i == 0 and n % new_every == 0):
                    item["messages"][0]["content"] = first[key]
        return json.dumps(data)

    return respond


def plan_at(tmp_path, url: str, total: int, **generation) -> str:
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = total
    data["generation"].update(provider="openai", model="gpt-4o-mini", base_url=url, timeout_seconds=5.0,
                              concurrency=2, **generation)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def generate_calls(tmp_path) -> int:
    con = sqlite3.connect(tmp_path / "out" / "example" / "ledger.sqlite")
    return con.execute("SELECT COUNT(*) FROM calls WHERE purpose='generate'").fetchone()[0]


def test_stray_accepts_between_near_duplicates_do_not_keep_a_run_going(tmp_path, run_cli, monkeypatch):
    # one new question every 5th call: never 10 calls in a row without an accept, so only the yield brake
    # stops it; a budget the user chose (no acceptance-rate test) and a plan it would take ~1,000 calls to fill
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=repeating_responder(new_every=5), max_requests=400, max_lifetime=100) as server:
        path = plan_at(tmp_path, server.openai_url, total=200)
        r = run_cli("generate", "--plan", path, "--outputs", str(tmp_path / "out"), "--quiet", "--no-export",
                    "--max-cost", "50")
    assert r.code == 5, r.err
    assert "the last 30 calls accepted" in r.err and "under 5%" in r.err
    assert "rejections this run: near_duplicate" in r.err and "repeats questions it already wrote" in r.err
    # stopped once the warm calls' accepts left the 30 calls the brake looks back over (each input length and
    # typos pair's first question is new as well): not the ~1,000 calls filling the plan this way would take
    assert generate_calls(tmp_path) <= 60


def test_one_example_per_20_calls_stops_under_the_default_budget(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=repeating_responder(new_every=20), max_requests=400, max_lifetime=100) as server:
        path = plan_at(tmp_path, server.openai_url, total=200)
        r = run_cli("generate", "--plan", path, "--outputs", str(tmp_path / "out"), "--quiet", "--no-export")
    assert r.code == 5, r.err
    # 19 calls without an accept between two: the in-a-row count reaches 10 first
    assert "10 calls in a row accepted no example" in r.err and "everything is saved" in r.err
    assert generate_calls(tmp_path) <= 60


def test_a_trickle_too_dear_for_the_default_budget_is_stopped_by_the_rate_test(tmp_path, run_cli, monkeypatch):
    # one example per call asked; a new one every 8th call: 12% of specs accepted (above the 5% floor) and never
    # 10 calls in a row without one, but 8 calls per example where the estimate (the default budget's base)
    # assumed 1.25: the remaining 190-odd examples would cost ~6x the 3x-estimate budget
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=repeating_responder(new_every=8), max_requests=400, max_lifetime=100) as server:
        path = plan_at(tmp_path, server.openai_url, total=200, examples_per_call=1)
        r = run_cli("generate", "--plan", path, "--outputs", str(tmp_path / "out"), "--quiet", "--no-export")
    assert r.code == 5, r.err
    assert "at the last 20 calls' rate" in r.err and "beyond the $" in r.err and "default" in r.err
    assert generate_calls(tmp_path) <= 60


def test_a_copy_of_the_avoid_list_is_not_a_miss_of_its_category(tmp_path):
    # a small model copies the prompt's "Already covered" cues (2-4 words) as its questions: below a medium input's
    # 21 words, but the category is not unfillable for that; the same short question written freely is a miss
    from agent.audit.auditor import Auditor
    from agent.avoid import AvoidList, is_copy
    from agent.ledger import Ledger
    from agent.plan import load_plan
    from agent.records import Spec
    from agent.reply import ChatItem

    plan = load_plan(EXAMPLE_PLAN)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        auditor = Auditor(plan, ledger)
        avoid = AvoidList()
        avoid.step = 1   # the list as cues, after the first step down
        shown = avoid.shown(["How do I stop a GPU instance when training ends?"])
        assert shown == ["stop gpu instance training"]
        reply = "Use the dashboard's stop button. " * 20
        for copied, question in ((True, "stop gpu instance training"), (False, "halt my gpu box now")):
            spec = Spec(id="s", labels={"input_length": "medium", "response_length": "medium"}, topic="t")
            item = ChatItem.model_validate({"id": "s", "messages": [{"role": "user", "content": question},
                                                                     {"role": "assistant", "content": reply}]})
            row = auditor.admit(spec, item, copied=lambda text: is_copy(shown, text))
            assert row.audited["input_length"] != "medium"   # off its spec either way
            assert auditor.misses[("input_length", "medium")] == (0 if copied else 1), question
    finally:
        ledger.close()
