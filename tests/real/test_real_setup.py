"""What `make test-real` relies on, checked offline: its plan loads as the real run needs it, and its figures
script reads a real ledger correctly. The real-model run itself is opt-in (scripts/test_real.sh), never here."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from agent.plan import load_plan
from tests.conftest import ROOT

PLAN = ROOT / "plans" / "real-20.yaml"


def test_the_real_plan_is_small_and_paced_for_a_local_server():
    plan = load_plan(PLAN)
    g = plan.generation
    assert plan.total == 20 and g.provider == "openai"
    # one call in flight: llama-cpp-python's server generates one reply at a time and queues the rest
    assert g.concurrency == 1 and g.examples_per_call <= 2 and g.timeout_seconds >= 300
    prices = (ROOT / "scripts" / "real-prices.yaml").read_text()
    assert g.model in prices  # the run passes --prices so the local model is priced at 0, not unknown


def test_figures_match_the_ledger(tmp_path, run_cli):
    out = tmp_path / "out"
    r = run_cli("generate", "--plan", str(PLAN), "--provider", "simulated", "--outputs", str(out), "--quiet")
    assert r.code in (0, 4), r.err
    ledger = out / "real-20" / "ledger.sqlite"
    estimate = tmp_path / "estimate.txt"
    estimate.write_text("Estimate: ~12 calls, ~1 input + ~2 output tokens, cost $0, ~1.9 min at concurrency 1.\n")
    figures = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "real_figures.py"), str(ledger), "--elapsed", "120",
         "--estimate", str(estimate)], capture_output=True, text=True, check=True).stdout
    db = sqlite3.connect(ledger)
    accepted = db.execute("SELECT count(*) FROM examples WHERE status = 'accepted'").fetchone()[0]
    calls = db.execute("SELECT count(*) FROM calls").fetchone()[0]
    reasons = db.execute("SELECT reason, count(*) FROM examples WHERE status = 'rejected' GROUP BY 1").fetchall()
    assert f"examples accepted:     {accepted}\n" in figures
    assert f"accepted per call:     {accepted / calls:.2f}\n" in figures
    for reason, n in reasons:
        assert f"{reason} {n}" in figures
    assert f"calls vs estimate:     {calls} vs ~12\n" in figures
    assert "time vs estimate:      2.0 min vs ~1.9 min" in figures
