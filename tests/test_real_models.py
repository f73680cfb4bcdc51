"""What real (and weak local) models do, fixed in CI: every behaviour seen on llama-cpp-python's server is
reproduced by the loopback fake and driven through the real OpenAI SDK; servers whose replies are never
usable are stopped by the progress brake; money cannot run away; URLs, quota errors and hangs are handled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agent.errors import ProviderError
from agent.limits import Limiter
from agent.plan import load_plan
from agent.prompts import build_request, output_budget
from agent.providers.base import Completion, Request, is_local, redact_url
from agent.providers.openai import OpenAIProvider
from agent.reply import parse_reply, reply_schema
from agent.retries import Attempt, call_with_retries
from tests.conftest import EXAMPLE_PLAN, ROOT
from tests.fakeserver import FakeServer
from tests.responders import simulated_responder, small_model_responder, unusable_responder
from tests.test_generate import assert_exact

pytestmark = pytest.mark.timeout(120)
KEY = "sk-test-REALMODELS-4d1e"


def plan_for(tmp_path: Path, base_url: str, total: int = 20, **generation) -> Path:
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = total
    data["generation"].update(provider="openai", model="gpt-4o-mini", base_url=base_url, timeout_seconds=5.0,
                              **generation)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def db(out: Path) -> sqlite3.Connection:
    return sqlite3.connect(out / "example" / "ledger.sqlite")


# --- the reply schema and tolerant parsing (pure functions) ------------------------------------------------
def test_reply_schema_comes_from_the_pydantic_models_and_pins_ids_and_count():
    schema = reply_schema("chat", ["a-1", "a-2"])
    examples = schema["properties"]["examples"]
    assert examples["minItems"] == examples["maxItems"] == 2
    item = examples["items"]
    assert item["properties"]["id"] == {"type": "string", "enum": ["a-1", "a-2"]}
    assert item["required"] == ["id", "messages"] and item["additionalProperties"] is False
    message = item["properties"]["messages"]["items"]
    assert message["properties"]["role"]["enum"] == ["user", "assistant"] and "$ref" not in json.dumps(schema)
    assert set(reply_schema("preference")["properties"]["examples"]["items"]["required"]) == {
        "id", "prompt", "chosen", "rejected"}


def chat(i: str, q: str = "How do I reset my router?") -> dict:
    return {"id": i, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Hold reset."}]}


def test_invented_ids_are_matched_in_order_when_the_count_is_right_and_said_so():
    text = json.dumps({"examples": [chat("example1", "q one?"), chat("example2", "q two?")]})
    parsed = parse_reply(Completion(text=text), "chat", ["s1", "s2"])
    assert parsed.ok and parsed.items["s1"].messages[0].content == "q one?"
    assert parsed.items["s2"].messages[0].content == "q two?"
    assert "example1" in parsed.notes["s1"]


def test_extra_items_are_ignored_and_prose_around_json_is_handled():
    body = json.dumps({"examples": [chat("s2"), chat("s1"), chat("s3-extra")]})
    parsed = parse_reply(Completion(text=f"Sure! Here you go:\n{body}\nHope this helps."), "chat", ["s1", "s2"])
    assert parsed.ok and set(parsed.items) == {"s1", "s2"} and parsed.extra == 1 and not parsed.notes


def test_a_reply_cut_off_at_the_token_limit_keeps_every_complete_example():
    body = json.dumps({"examples": [chat("s1"), chat("s2"), chat("s3")]})
    cut = body[: body.index('"s3"') + 30]   # torn inside the third example
    parsed = parse_reply(Completion(text=cut, finish_reason="length"), "chat", ["s1", "s2", "s3"])
    assert parsed.ok and parsed.truncated and set(parsed.items) == {"s1", "s2"}
    fenced = "```json\n" + body[: body.index('"s2"') + 10]
    parsed = parse_reply(Completion(text=fenced, finish_reason="length"), "chat", ["s1", "s2", "s3"])
    assert set(parsed.items) == {"s1"}
    nothing = parse_reply(Completion(text='{"examples": [{"id": "s1", "mess', finish_reason="length"), "chat", ["s1"])
    assert not nothing.ok and "cut off" in nothing.errors[0]


def test_max_output_tokens_is_sized_from_the_specs_not_a_fixed_8000():
    plan = load_plan(EXAMPLE_PLAN)
    short = {d: dim.categories[0].name for d, dim in plan.dimensions.items()}
    from agent.records import Spec

    specs = [Spec(id=f"s{i}", labels=short) for i in range(2)]
    budget = output_budget(plan, specs)
    assert 256 <= budget < 2000   # two short answers
    request = build_request(plan, specs)
    assert request.max_tokens == budget and request.schema["properties"]["examples"]["maxItems"] == 2
    capped = plan.model_copy(update={"generation": plan.generation.model_copy(update={"max_output_tokens": 300})})
    assert output_budget(capped, specs * 5) == 300


def test_urls_lose_their_credentials_and_local_servers_are_recognised():
    assert redact_url("http://bob:hunter2@10.0.0.5:8000/v1?api_key=abc123&x=1") == \
        "http://***@10.0.0.5:8000/v1?api_key=***&x=1"
    assert is_local("http://127.0.0.1:8080/v1") and is_local("http://192.168.1.20/v1") and is_local("http://localhost")
    assert not is_local("https://api.openai.com/v1") and not is_local(None)


# --- llama-cpp-python's behaviours through the real SDK ---------------------------------------------------------
def test_llama_cpp_500_on_json_schema_falls_back_to_grammar_json_and_the_run_completes(tmp_path, run_cli,
                                                                                          monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer.like_llama_cpp(responder=small_model_responder(seed=2), max_requests=400,
                                   max_lifetime=100) as server:
        path = plan_for(tmp_path, server.openai_url, concurrency=4)
        out = tmp_path / "out"
        r = run_cli("generate", "--plan", str(path), "--outputs", str(out), "--quiet")
        assert r.code == 0, r.err
        outcomes = [rec.outcome for rec in server.requests]
        sent = [rec.body.get("response_format") for rec in server.requests]
    assert_exact(load_plan(path), out / "example" / "ledger.sqlite")
    # json_schema is asked by the first calls in flight (HTTP 500 naming response_format), then never again
    assert 1 <= outcomes.count("refuse_json_schema") <= 4
    served = [f for f, o in zip(sent, outcomes, strict=True) if o == "ok"]
    assert served and all(f["type"] == "json_object" and "enum" in json.dumps(f["schema"]) for f in served)
    assert "refuse_json_schema" not in outcomes[outcomes.index("ok") + 4:]
    modes = {m for m, in db(out).execute("SELECT DISTINCT mode FROM calls WHERE status != 'pending'")}
    assert modes == {"json_object+schema"}


def fill_through_json_object(tmp_path, run_cli, monkeypatch, responder) -> sqlite3.Connection:
    """A run against a server that takes only json_object, filled exactly; its ledger."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=responder, response_formats=("json_object",), max_requests=400,
                    max_lifetime=100) as server:
        path = plan_for(tmp_path, server.openai_url, concurrency=4)
        out = tmp_path / "out"
        r = run_cli("generate", "--plan", str(path), "--outputs", str(out), "--quiet")
        assert r.code == 0, r.err
    return assert_exact(load_plan(path), out / "example" / "ledger.sqlite")


def test_a_small_model_without_grammar_invents_ids_adds_items_and_wraps_prose_and_still_fills(tmp_path, run_cli,
                                                                                               monkeypatch):
    con = fill_through_json_object(tmp_path, run_cli, monkeypatch, small_model_responder(seed=4))
    by_position = con.execute("SELECT COUNT(*) FROM examples WHERE status='accepted' AND detail LIKE "
                              "'%matched by position%'").fetchone()[0]
    assert by_position > 0   # none of the ids was ours: the first items were taken in order, the extra ignored
    kept = con.execute("SELECT reply FROM calls WHERE reply IS NOT NULL").fetchall()
    assert kept and "example1" in kept[0][0] and "Sure!" in kept[0][0]   # what the model said is kept


def test_invented_ids_with_the_right_count_are_accepted_in_order(tmp_path, run_cli, monkeypatch):
    con = fill_through_json_object(tmp_path, run_cli, monkeypatch, small_model_responder(seed=5, extra_item=False))
    by_position = con.execute("SELECT COUNT(*) FROM examples WHERE status='accepted' AND detail LIKE "
                              "'%matched by position%'").fetchone()[0]
    assert by_position > 0 and con.execute("SELECT COUNT(*) FROM calls WHERE status='invalid'").fetchone()[0] == 0


# --- the progress brake ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["empty", "refusal", "wrong_shape", "wrong_ids"])
def test_a_server_whose_replies_are_never_usable_is_stopped_by_the_brake(tmp_path, run_cli, monkeypatch, kind):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=unusable_responder(kind), max_requests=500, max_lifetime=100) as server:
        path = plan_for(tmp_path, server.openai_url, total=40, concurrency=4)
        out = tmp_path / "out"
        r = run_cli("generate", "--plan", str(path), "--outputs", str(out), "--quiet", "--max-cost", "1")
        requests = len(server.requests)
    assert r.code == 5, r.err
    assert "calls in a row accepted no example (generation.max_calls_without_progress: 10)" in r.err and "rejections this run: invalid_reply" in r.err
    assert "response mode: json_schema" in r.err and "try: a stronger model" in r.err
    # 10 completed calls (each with its re-ask) plus at most the calls then in flight
    assert requests <= 2 * (10 + 4)
    con = db(out)
    assert con.execute("SELECT SUM(cost) FROM calls").fetchone()[0] <= 1
    assert con.execute("SELECT COUNT(*) FROM calls WHERE reply IS NOT NULL").fetchone()[0] > 0
    r = run_cli("audit", "--plan", str(path), "--outputs", str(out))
    assert r.code == 0 and "Unusable replies" in r.out


# --- money ------------------------------------------------------------------------------------------------------
def test_a_budget_for_a_model_with_no_price_is_refused_unless_prices_are_given(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    path = plan_for(tmp_path, "http://127.0.0.1:9/v1")
    data = yaml.safe_load(path.read_text())
    data["generation"]["model"] = "qwen2.5-1.5b-local"
    path.write_text(yaml.safe_dump(data))
    r = run_cli("generate", "--plan", str(path), "--outputs", str(tmp_path / "out"), "--max-cost", "0.01")
    assert r.code == 2 and "not in the price table" in r.err and "--prices" in r.err
    assert not (tmp_path / "out").exists()


def test_a_model_with_no_price_is_said_at_start_and_in_progress(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=simulated_responder(seed=1), max_requests=200, max_lifetime=60) as server:
        path = plan_for(tmp_path, server.openai_url, concurrency=4)
        data = yaml.safe_load(path.read_text())
        data["generation"]["model"] = "qwen2.5-1.5b-local"
        path.write_text(yaml.safe_dump(data))
        r = run_cli("generate", "--plan", str(path), "--outputs", str(tmp_path / "out"))
    assert r.code == 0, r.err
    assert "has no known price" in r.err and "cost unknown" in r.err


def test_a_priced_run_gets_a_default_budget_printed_at_start(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=simulated_responder(seed=1), max_requests=200, max_lifetime=60) as server:
        path = plan_for(tmp_path, server.openai_url, concurrency=4)
        r = run_cli("generate", "--plan", str(path), "--outputs", str(tmp_path / "out"))
    assert r.code == 0, r.err
    assert "budget: $" in r.err and "3x the estimate for the 20 examples left" in r.err


def test_a_resumed_runs_default_budget_uses_its_measured_rates(tmp_path, run_cli, monkeypatch):
    from agent.estimate import estimate, measure_run
    from agent.ledger import Ledger
    from agent.runner import DEFAULT_BUDGET_FACTOR, GenerateOptions, resolve_budget
    from agent.tokens import load_prices

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=simulated_responder(seed=1), max_requests=200, max_lifetime=60) as server:
        path = plan_for(tmp_path, server.openai_url, total=40, concurrency=2, examples_per_call=2)
        assert run_cli("generate", "--plan", str(path), "--outputs", str(tmp_path / "out")).code == 0
    ledger = Ledger(tmp_path / "out" / "example" / "ledger.sqlite")
    measured = measure_run(ledger)
    assert measured is not None and measured.calls >= 5
    # the same run asked for 40 more: what remains is costed at the measured rates, not the 80% prior
    bigger = load_plan(path).model_copy(update={"total": 80})
    prices = load_prices()
    budget, source = resolve_budget(bigger, GenerateOptions(), prices, ledger, priced=True)
    expected = estimate(bigger, prices, measured=measured, accepted=40).cost_usd
    prior = estimate(bigger, prices, accepted=40).cost_usd
    assert expected and prior and expected != prior
    assert budget == pytest.approx(ledger.spent() + DEFAULT_BUDGET_FACTOR * expected)
    assert f"measured rates over {measured.calls:,} calls" in source and "40 examples left" in source


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "-inf", "lots"])
def test_nan_infinite_and_negative_budgets_are_bad_input(tmp_path, run_cli, value):
    r = run_cli("generate", "--plan", str(EXAMPLE_PLAN), "--outputs", str(tmp_path / "out"), "--max-cost", value)
    assert r.code == 2 and "--max-cost" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def run_datagen(args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate, limit: float = 30.0) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def pending_rows(out: Path) -> int:
    path = out / "example" / "ledger.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM calls WHERE status='pending'").fetchone()[0]
    except sqlite3.Error:
        return 0


def env_for() -> dict:
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    env.pop("OPENAI_BASE_URL", None)
    return env


def test_a_kill_while_calls_are_in_flight_leaves_them_counted_at_their_worst_case(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  gpt-4o-mini: {input: 1.0, output: 4.0}\n")
    with FakeServer(responder=simulated_responder(seed=1), latency=3.0, max_requests=50, max_lifetime=60) as server:
        path = plan_for(tmp_path, server.openai_url, concurrency=3)
        out = tmp_path / "out"
        proc = run_datagen(["generate", "--plan", str(path), "--outputs", str(out), "--quiet", "--prices",
                            str(prices)], env_for(), tmp_path)
        try:
            assert wait_for(lambda: pending_rows(out) >= 3), "no call was ever sent"
        finally:
            proc.kill()
            proc.wait(10)
    con = db(out)
    pending, worst = con.execute("SELECT COUNT(*), SUM(cost) FROM calls WHERE status='pending'").fetchone()
    assert pending >= 3 and worst > 0
    from agent.ledger import Ledger

    ledger = Ledger(out / "example" / "ledger.sqlite")
    assert ledger.spent() >= worst and ledger.pending_calls() == (pending, worst)
    ledger.close()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_stop_generate_the_same_way(tmp_path, sig, code):
    with FakeServer(responder=simulated_responder(seed=1), latency=4.0, max_requests=50, max_lifetime=60) as server:
        path = plan_for(tmp_path, server.openai_url, concurrency=2)
        out = tmp_path / "out"
        proc = run_datagen(["generate", "--plan", str(path), "--outputs", str(out), "--quiet"], env_for(), tmp_path)
        try:
            assert wait_for(lambda: pending_rows(out) >= 2), "no call was ever sent"
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == code, err
    name = "SIGTERM" if sig == signal.SIGTERM else "SIGINT"
    assert f"stopped by {name}" in err and f"resume with: datagen generate --plan {path}" in err
    assert "Traceback" not in err
    log = (out / "example" / "run.log").read_text()
    assert "run end:" in log   # the run's cleanup ran (state, audit record, log)


def test_faults_of_calls_stopped_while_waiting_to_retry_stay_in_the_ledger(tmp_path):
    """A call stopped between a 429 and its retry (a signal; or the plan filling while it waits) is never
    recorded as a call, but the 429 the server answered it is still a fault in the ledger, on its pending row."""
    with FakeServer(responder=simulated_responder(seed=1), faults=["429", "429"], retry_after_s=30.0, max_requests=50,
                    max_lifetime=60) as server:
        path = plan_for(tmp_path, server.openai_url, concurrency=2)
        out = tmp_path / "out"
        proc = run_datagen(["generate", "--plan", str(path), "--outputs", str(out), "--quiet"], env_for(), tmp_path)
        try:
            assert wait_for(lambda: server.counts["429"] >= 2), "the server never answered the two 429s"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == 130, err
    rows = db(out).execute("SELECT f.kind, c.status FROM faults f JOIN calls c ON c.id = f.call_id").fetchall()
    assert rows == [("rate_limit", "pending")] * 2


# --- network: URLs, quota, hangs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/v1", "http://", "http://127.0.0.1:99999/v1"])
def test_a_bad_base_url_is_refused_before_any_call(tmp_path, run_cli, monkeypatch, url):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    r = run_cli("generate", "--plan", str(EXAMPLE_PLAN), "--outputs", str(tmp_path / "out"), "--provider", "openai",
                "--base-url", url)
    assert r.code == 2 and "is not a usable server URL" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_bad_base_url_in_the_environment_is_named(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:8000")
    r = run_cli("generate", "--plan", str(EXAMPLE_PLAN), "--outputs", str(tmp_path / "out"), "--provider", "openai")
    assert r.code == 2 and r.err.startswith("datagen: OPENAI_BASE_URL:")


def test_credentials_in_the_url_never_reach_a_file_or_the_output(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=simulated_responder(seed=1), max_requests=200, max_lifetime=60) as server:
        url = server.openai_url.replace("http://", "http://alice:pw-URLSECRET-1@") + "?api_key=URLSECRET-2"
        path = plan_for(tmp_path, server.openai_url, concurrency=4)
        out = tmp_path / "out"
        r = run_cli("generate", "--plan", str(path), "--outputs", str(out), "--base-url", url)
        assert r.code == 0, r.err
        assert server.requests   # the server was used through that URL
    for p in out.rglob("*"):
        if p.is_file():
            assert b"URLSECRET" not in p.read_bytes(), p
    assert "URLSECRET" not in r.err + r.out
    stored = json.loads(db(out).execute("SELECT value FROM meta WHERE key='plan'").fetchone()[0])
    assert stored["generation"]["base_url"].startswith("http://***@127.0.0.1")


def test_an_insufficient_quota_429_is_fatal_at_once(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=simulated_responder(seed=1), faults=["quota"] * 50, max_requests=100,
                    max_lifetime=60) as server:
        path = plan_for(tmp_path, server.openai_url, concurrency=1)
        r = run_cli("generate", "--plan", str(path), "--outputs", str(tmp_path / "out"), "--quiet")
        requests = len(server.requests)
    assert r.code == 1 and "out of quota or credit" in r.err and "billing" in r.err
    assert requests == 1   # not retried as if it were a rate limit


def test_a_hanging_server_cannot_hold_a_call_past_its_total_bound():
    attempts: list[Attempt] = []

    async def run():
        with FakeServer(faults=["hang"] * 20, hang_s=5.0, max_requests=50, max_lifetime=60) as server:
            provider = OpenAIProvider(model="m", api_key=KEY, base_url=server.openai_url)
            request = Request(system="s", user="u", schema={"type": "object"}, timeout=1.0, max_tokens=300)
            try:
                with pytest.raises(ProviderError) as caught:
                    await call_with_retries(provider, request, Limiter(), attempts.append, initial_wait=0.01,
                                            max_seconds=2.5)
            finally:
                await provider.aclose()
            return caught.value

    error = asyncio.run(run())
    assert error.kind == "timeout"
    # 8 attempts of a 1 s timeout were allowed; the 2.5 s bound stops after the second
    assert len(attempts) == 2 and all(a.kind == "timeout" for a in attempts)


# --- local servers ---------------------------------------------------------------------------------------------
def test_a_local_server_starts_at_one_call_in_flight_and_grows_only_while_latency_is_flat():
    limiter = Limiter(local=True)
    assert limiter.stats.concurrency == 1

    def finish(seconds_per_token: float, n: int) -> None:
        for _ in range(n):
            limiter._grow_local(seconds_per_token)

    finish(0.01, 2)
    assert limiter.stats.concurrency == 2       # flat: one more
    finish(0.01, 2)
    assert limiter.stats.concurrency == 3
    finish(0.03, 3)                              # 3x slower per token with 3 in flight: queueing
    assert limiter.stats.concurrency == 2
    finish(0.01, 10)
    assert limiter.stats.concurrency == 2       # never grows back past where it queued
    assert Limiter().stats.concurrency == 32    # a hosted API starts wide


def test_the_attempt_timeout_scales_with_the_requested_tokens_and_the_measured_speed():
    limiter = Limiter()
    assert limiter.attempt_timeout(120, 4000) == 120
    limiter._tps = 10.0   # a slow server: 4,000 tokens take 400 s
    assert limiter.attempt_timeout(120, 4000) > 400
    assert Limiter(local=True).attempt_timeout(30, 2000) > 30   # unmeasured local: assume a slow CPU model


def test_estimate_for_a_local_server_assumes_its_speed(tmp_path, run_cli):
    # --outputs: an empty folder, so a run of the example plan left in ./outputs (make demo) is not measured
    hosted = run_cli("estimate", "--plan", str(EXAMPLE_PLAN), "--provider", "openai", "--model", "gpt-4o-mini",
                     "--outputs", str(tmp_path))
    local = run_cli("estimate", "--plan", str(EXAMPLE_PLAN), "--provider", "openai", "--model", "qwen2.5",
                    "--base-url", "http://127.0.0.1:8000/v1", "--outputs", str(tmp_path))
    assert hosted.code == local.code == 0
    assert "on a local server at ~8 tokens/s, one call at a time" in local.out and "local" not in hosted.out
    minutes = [float(r.out.split(" min")[0].rsplit("~", 1)[1]) for r in (hosted, local)]
    assert minutes[1] > 50 * minutes[0]


def test_the_tail_fills_400_examples_within_1_5x_the_estimated_calls(tmp_path, run_cli):
    from agent.estimate import estimate

    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = 400
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    r = run_cli("generate", "--plan", str(path), "--outputs", str(out), "--quiet", "--no-export")
    assert r.code == 0, r.err
    con = assert_exact(load_plan(path), out / "example" / "ledger.sqlite")
    calls = con.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    assert calls < 1.5 * estimate(load_plan(path)).calls


def test_items_that_always_fail_for_one_category_make_it_unfillable(tmp_path, run_cli, monkeypatch):
    from agent.prompts import parse_spec_lines

    inner = simulated_responder(seed=6)

    def no_long_answers(body: dict) -> str:
        data = json.loads(inner(body))
        long_ids = {s.id for s in parse_spec_lines(body["messages"][-1]["content"])
                    if s.labels.get("response_length") == "long"}
        for item in data["examples"]:
            if item["id"] in long_ids:
                item["messages"] = []   # an invalid item: the model cannot write this category
        return json.dumps(data)

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=no_long_answers, max_requests=400, max_lifetime=100) as server:
        path = plan_for(tmp_path, server.openai_url, total=60, concurrency=4)
        r = run_cli("generate", "--plan", str(path), "--outputs", str(tmp_path / "out"), "--quiet")
    assert r.code == 4, r.err
    assert "unfillable: response_length.long" in r.err
    con = db(tmp_path / "out")
    assert con.execute("SELECT COUNT(*) FROM examples WHERE reason='invalid_item'").fetchone()[0] >= 6


def test_each_call_gets_its_own_seed(tmp_path, run_cli, monkeypatch):
    # one seed for every call made llama.cpp write the same question call after call
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=simulated_responder(seed=1), max_requests=200, max_lifetime=60) as server:
        path = plan_for(tmp_path, server.openai_url, concurrency=2)
        r = run_cli("generate", "--plan", str(path), "--outputs", str(tmp_path / "out"), "--quiet")
        seeds = [rec.body.get("seed") for rec in server.requests if rec.outcome == "ok"]
    assert r.code == 0, r.err
    assert len(seeds) >= 4 and None not in seeds and len(set(seeds)) == len(seeds)


def test_a_model_that_copies_the_avoid_list_gets_a_smaller_one_and_the_run_fills(tmp_path, run_cli, monkeypatch):
    # the 0.5B model copied the "Already covered" questions as its own: 2 of 20 accepted, then the brake
    from tests.responders import avoid_copier_responder

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=avoid_copier_responder(seed=3), max_requests=300, max_lifetime=100) as server:
        # the plan's default max_attempts_per_category: the copied cues (2-4 words, below input_length.short's 5)
        # are copies of the avoid list, not misses of that category
        path = plan_for(tmp_path, server.openai_url, total=40, concurrency=1)
        r = run_cli("generate", "--plan", str(path), "--outputs", str(tmp_path / "out"), "--quiet", "--no-export")
        prompts = [rec.body["messages"][-1]["content"] for rec in server.requests if rec.outcome == "ok"]
    assert r.code == 0, r.err
    assert "Already covered: do not repeat" in prompts[1]                 # whole questions first,
    assert any("Topics already covered" in p for p in prompts)            # then short cues,
    assert "covered" not in prompts[-1]                                   # then no list at all
    log = (tmp_path / "out" / "example" / "run.log").read_text()
    assert log.count("copies the prompt's 'Already covered' list") == 2 and "list dropped" in log
    con = db(tmp_path / "out")
    assert con.execute("SELECT COUNT(*) FROM examples WHERE status='accepted'").fetchone()[0] == 40
    calls = con.execute("SELECT COUNT(*) FROM calls WHERE purpose='generate'").fetchone()[0]
    assert calls <= 20, calls   # 8 calls at 5 per call when nothing is copied


def test_a_strong_model_keeps_the_whole_avoid_list(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeServer(responder=simulated_responder(seed=3, drift=True), max_requests=300, max_lifetime=100) as server:
        path = plan_for(tmp_path, server.openai_url, total=60, concurrency=2)
        r = run_cli("generate", "--plan", str(path), "--outputs", str(tmp_path / "out"), "--quiet", "--no-export")
        prompts = [rec.body["messages"][-1]["content"] for rec in server.requests if rec.outcome == "ok"]
    assert r.code == 0, r.err
    assert "Already covered: do not repeat" in prompts[-1] and not any("Topics already covered" in p for p in prompts)


def test_estimate_prices_an_unlisted_model_from_a_prices_file(tmp_path, run_cli):
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  my-local-model: {input: 1.0, output: 2.0}\n")
    args = ["estimate", "--plan", str(EXAMPLE_PLAN), "--provider", "openai", "--model", "my-local-model",
            "--outputs", str(tmp_path)]
    unpriced, priced = run_cli(*args), run_cli(*args, "--prices", str(prices))
    assert unpriced.code == priced.code == 0
    assert "unknown (model not in the price table)" in unpriced.out
    cost = [line for line in priced.out.splitlines() if "$" in line]
    assert cost and "unknown" not in priced.out, priced.out
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  my-local-model: {input: cheap}\n")
    broken = run_cli(*args, "--prices", str(bad))
    assert broken.code == 2 and "bad.yaml" in broken.err and "Traceback" not in broken.err
