"""kill -9 at seeded moments, then resume: exactly the plan's quotas, no example twice, no torn row."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agent.plan import load_plan
from tests.conftest import EXAMPLE_PLAN


def plan_file(tmp_path: Path, total: int) -> Path:
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = total
    data["generation"]["concurrency"] = 4
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def start(plan: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "DATAGEN_SIMULATED_LATENCY": "0.05"}
    return subprocess.Popen([sys.executable, "-m", "agent", "generate", "--plan", str(plan), "--outputs", str(out),
                             "--quiet", "--no-export"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def check_ledger(db: Path, plan) -> None:
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute("SELECT id, spec_id, audited, record, user_text FROM examples WHERE status='accepted'").fetchall()
    assert len(rows) == plan.total
    assert len({r[1] for r in rows}) == plan.total          # no spec accepted twice
    assert len({r[4] for r in rows}) == plan.total          # no example text twice
    counts: dict[str, dict[str, int]] = {}
    for _, _, audited, record, _ in rows:
        assert json.loads(record)["messages"][-1]["role"] == "assistant"  # whole records only
        for d, c in json.loads(audited).items():
            counts.setdefault(d, {}).setdefault(c, 0)
            counts[d][c] += 1
    for name, dim in plan.dimensions.items():
        assert {c.name: counts[name].get(c.name, 0) for c in dim.categories} == {c.name: c.quota for c in dim.categories}
    # the diversity state survived every kill: the last audit counts each accepted example exactly once
    last = json.loads(con.execute("SELECT summary FROM batches ORDER BY id DESC LIMIT 1").fetchone()[0])
    assert last["diversity"]["cumulative"]["examples"] == plan.total
    labels = dict(con.execute("SELECT example_id, COUNT(*) FROM labels GROUP BY 1").fetchall())
    assert set(labels) == {r[0] for r in rows} and set(labels.values()) == {len(plan.dimensions)}


def kill_and_resume(tmp_path: Path, kills: int, seed: int, total: int) -> None:
    plan = plan_file(tmp_path, total)
    out = tmp_path / "out"
    rng = random.Random(seed)
    killed = 0
    for _ in range(kills):
        proc = start(plan, out)
        time.sleep(rng.uniform(0.4, 2.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=30)
    proc = start(plan, out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert killed >= 1  # the plan is big enough that the run was really interrupted
    check_ledger(out / "example" / "ledger.sqlite", load_plan(plan))


def test_kill_9_at_three_seeded_moments_then_resume(tmp_path):
    kill_and_resume(tmp_path, kills=3, seed=7, total=150)


@pytest.mark.long
def test_kill_9_at_twenty_seeded_moments_then_resume(tmp_path):
    kill_and_resume(tmp_path, kills=20, seed=11, total=600)
