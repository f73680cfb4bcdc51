"""The engine through the real SDKs against a loopback server: exact quotas, faults in the ledger, no key leaks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from agent.plan import load_plan
from tests.conftest import EXAMPLE_PLAN
from tests.fakeserver import FakeServer
from tests.responders import simulated_responder
from tests.test_generate import assert_exact

FAKE_KEY = "sk-test-DATAGEN-SECRET-7f3a9c"


def plan_for(tmp_path: Path, provider: str, base_url: str, total: int = 40) -> Path:
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = total
    data["generation"].update(provider=provider, model="gpt-4o-mini" if provider == "openai" else "claude-haiku-4-5",
                              base_url=base_url, timeout_seconds=1.0, concurrency=8)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def files_contain(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_generate_through_the_real_sdk_with_faults(tmp_path, run_cli, monkeypatch, provider):
    env = "OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"
    monkeypatch.setenv(env, FAKE_KEY)
    faults = {"429": 0.05, "500": 0.04, "529": 0.03, "drop": 0.03, "malformed": 0.03, "length": 0.03, "hang": 0.02}
    with FakeServer(responder=simulated_responder(seed=3), fault_rates=faults, seed=5, hang_s=2.0,
                    max_requests=2000, max_lifetime=120) as server:
        url = server.openai_url if provider == "openai" else server.anthropic_url
        path = plan_for(tmp_path, provider, url)
        out = tmp_path / "out"
        r = run_cli("generate", "--plan", str(path), "--outputs", str(out), "--quiet")
        assert r.code == 0, r.err
        served = dict(server.counts)
    db = out / "example" / "ledger.sqlite"
    con = assert_exact(load_plan(path), db)
    faults_seen = dict(con.execute("SELECT kind, COUNT(*) FROM faults GROUP BY 1"))
    # every fault the server served is visible in the ledger with its kind
    assert sum(faults_seen.values()) > 0
    assert faults_seen.get("rate_limit", 0) == served.get("429", 0)
    assert faults_seen.get("overloaded", 0) == served.get("529", 0)
    # the API key never reaches a file (ledger, log, exports) nor the output
    assert files_contain(out, FAKE_KEY) == []
    assert FAKE_KEY not in r.err and FAKE_KEY not in r.out
    # the server saw the key on the wire, so the check above is not vacuous
    assert served.get("ok", 0) > 0


def test_fault_soak_spends_at_most_1_6x_the_calls_of_a_clean_run(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)

    def requests_for(name: str, fault_rates: dict | None) -> int:
        with FakeServer(responder=simulated_responder(seed=9), fault_rates=fault_rates, seed=13, hang_s=2.0,
                        retry_after_s=0.05, max_requests=3000, max_lifetime=150) as server:
            path = plan_for(tmp_path / name, "openai", server.openai_url, total=250)  # ~50 clean calls: at ~21 the ratio swung past 1.6 by chance
            out = tmp_path / name / "out"
            r = run_cli("generate", "--plan", str(path), "--outputs", str(out), "--quiet")
            assert r.code == 0, r.err
            assert_exact(load_plan(path), out / "example" / "ledger.sqlite")
            return len(server.requests)

    (tmp_path / "clean").mkdir()
    (tmp_path / "faulty").mkdir()
    clean = requests_for("clean", None)
    faulty = requests_for("faulty", {"429": 0.06, "500": 0.06, "529": 0.04, "hang": 0.02, "drop": 0.04,
                                     "malformed": 0.04, "length": 0.04})  # 30% of calls faulted
    assert faulty <= 1.6 * clean, (faulty, clean)


def test_wrong_key_stops_at_once_with_a_message_naming_the_variable(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with FakeServer(faults=["401"] * 50, max_requests=100, max_lifetime=30) as server:
        path = plan_for(tmp_path, "openai", server.openai_url)
        r = run_cli("generate", "--plan", str(path), "--outputs", str(tmp_path / "out"), "--quiet")
        attempts = len(server.requests)
    assert r.code == 1 and "OPENAI_API_KEY" in r.err and FAKE_KEY not in r.err
    assert attempts <= 8  # not retried into a storm
    con = sqlite3.connect(tmp_path / "out" / "example" / "ledger.sqlite")
    assert con.execute("SELECT COUNT(*) FROM faults WHERE kind='auth'").fetchone()[0] >= 1
