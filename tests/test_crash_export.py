"""kill -9 during export: every dataset file present is whole, and the next export matches the ledger."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE_PLAN


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    from agent.cli import main

    root = tmp_path_factory.mktemp("run")
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = 400
    plan = root / "plan.yaml"
    plan.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        main(["generate", "--plan", str(plan), "--outputs", str(root / "out"), "--quiet", "--no-export"])
    except SystemExit as e:
        assert e.code in (0, None)
    return plan, root / "out"


def export_cmd(plan: Path, outputs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "agent", "export", "--plan", str(plan), "--outputs", str(outputs),
            "--out", str(out), "--format", "sharegpt"]


def whole_jsonl(path: Path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"{path.name} is cut off"
    return [json.loads(line) for line in text.splitlines()]


def test_kill_9_during_export_never_leaves_a_torn_file(finished_run, tmp_path):
    plan, outputs = finished_run
    out = tmp_path / "export"
    rng = random.Random(5)
    started = time.monotonic()
    first = subprocess.run(export_cmd(plan, outputs, out), capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    killed = 0
    for i in range(4):
        proc = subprocess.Popen(export_cmd(plan, outputs, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i == 0:
            time.sleep(rng.uniform(0.2, 0.9) * took)  # somewhere inside an export's run time
        else:
            # under load a fraction of the first run's time can miss the export: wait (bounded) for its staging
            # folder, then kill at once or a moment later, while it writes or swaps its files
            deadline = time.monotonic() + 2 * took + 30
            while proc.poll() is None and time.monotonic() < deadline and not list(out.glob(".datagen-export*")):
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.1))
        proc.send_signal(signal.SIGKILL)
        killed += proc.wait(timeout=30) == -signal.SIGKILL
        for name in ("training_data.jsonl", "validation_data.jsonl"):
            # old or new, never half: the same export of the same ledger writes the same bytes
            assert (out / name).read_bytes() == before[name]
    assert killed >= 3  # the kills really landed mid-export
    again = subprocess.run(export_cmd(plan, outputs, out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert not list(out.glob(".*.tmp"))  # a killed export's temporary files are swept
    assert not list(out.glob(".datagen-export*"))  # its staging folder and swap marker too
    exported = whole_jsonl(out / "training_data.jsonl") + whole_jsonl(out / "validation_data.jsonl")
    con = sqlite3.connect(outputs / "example" / "ledger.sqlite")
    users = {u for u, in con.execute("SELECT user_text FROM examples WHERE status='accepted'")}
    got = [next(t["value"] for t in r["conversations"] if t["from"] == "human") for r in exported]
    assert sorted(got) == sorted(users)  # the export matches the ledger: every accepted example, once


def test_export_refuses_while_a_run_holds_the_lock(finished_run, run_cli, tmp_path):
    from agent.ledger import RunLock

    plan, outputs = finished_run
    with RunLock(outputs / "example"):
        r = run_cli("export", "--plan", str(plan), "--outputs", str(outputs), "--out", str(tmp_path / "x"))
    assert r.code == 2 and "another datagen process is already working on" in r.err
