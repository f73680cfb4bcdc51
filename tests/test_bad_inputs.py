"""The bad-input corpus: every broken input gets one line that names what to fix, its exit status, no
traceback, and leaves everything already written exactly as it was."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE_PLAN

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "manifest.yaml").read_text())


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A work folder with a plan and a finished run in outputs/: what the bad input must not damage."""
    from agent.cli import main

    root = tmp_path_factory.mktemp("work")
    (root / "plans").mkdir()
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = 40
    (root / "plans" / "example.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        try:
            main(["generate", "--plan", "plans/example.yaml", "--quiet"])
        except SystemExit as done:
            assert done.code in (0, None)
        assert (root / "outputs" / "example" / "ledger.sqlite").exists()
    finally:
        os.chdir(cwd)
    return root


def prepare(work: Path, setup: str | None, monkeypatch) -> None:
    if setup == "no_keys":
        for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
            monkeypatch.delenv(var, raising=False)
    elif setup == "fake_keys":
        monkeypatch.setenv("OPENAI_API_KEY", "sk-bad-inputs")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-bad-inputs")
    elif setup == "outputs_is_a_file":
        (work / "blocked").write_text("a file where a folder should be\n")
    elif setup == "dimension_removed_since_run":
        plan = work / "plans" / "example.yaml"
        data = yaml.safe_load(plan.read_text())
        del data["dimensions"]["typos"]
        plan.write_text(yaml.safe_dump(data, sort_keys=False))
    elif setup and setup.startswith("ledger_"):
        damage_ledger(work / "outputs" / "example" / "ledger.sqlite", setup.removeprefix("ledger_"))
    elif setup in ("total_lowered", "disk_full_generate"):
        plan = work / "plans" / "example.yaml"
        data = yaml.safe_load(plan.read_text())
        data["total"] = 20 if setup == "total_lowered" else 80
        plan.write_text(yaml.safe_dump(data, sort_keys=False))
        if setup == "disk_full_generate":
            def full(*args, **kwargs):
                raise sqlite3.OperationalError("database or disk is full")
            monkeypatch.setattr("agent.ledger.Ledger.record_call", full)
    elif setup == "disk_full_export":
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr("agent.export.pipeline.write_new", full)


def damage_ledger(db: Path, how: str) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if how == "empty":
        db.write_bytes(b"")
    elif how == "truncated":
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        db.write_bytes(bytes(range(256)) * 64)
    elif how in ("newer", "plan_invalid"):
        con = sqlite3.connect(db)
        if how == "newer":
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '99')")
        else:
            con.execute("UPDATE meta SET value = '{\"name\": \"example\"}' WHERE key = 'plan'")
        con.commit()
        con.close()
    elif how == "folder":
        db.unlink()
        db.mkdir()
        (db / "keep.txt").write_text("not a ledger\n")
    elif how == "symlink_loop":
        db.unlink()
        db.symlink_to(db.name)
    else:
        raise ValueError(how)


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 40
    files = {c["file"] for c in CASES if "file" in c}
    assert files == {p.name for p in CORPUS.iterdir() if p.name != "manifest.yaml"}  # every file is used


@pytest.mark.parametrize("case", CASES, ids=[c.get("file") or " ".join(c["args"])[:60] for c in CASES])
def test_bad_input(case, finished_run, tmp_path, monkeypatch, run_cli):
    work = tmp_path / "work"
    shutil.copytree(finished_run, work)
    prepare(work, case.get("setup"), monkeypatch)
    args = list(case["args"])
    if "file" in case:
        shutil.copy(CORPUS / case["file"], work / case["file"])
        args = [case["file"] if a == "FILE" else a for a in args]
    before = snapshot(work)
    monkeypatch.chdir(work)
    r = run_cli(*args)
    assert r.code == case["exit"], r.err
    if "stdout" in case:  # a report on stdout (validate): every fragment there, nothing on stderr
        assert r.err == ""
        for fragment in case["stdout"]:
            assert fragment in r.out
    else:
        lines = r.err.strip().splitlines()
        assert len(lines) == 1, r.err
        assert lines[0].startswith("datagen: ")
        assert case["message"] in lines[0]
    assert "Traceback" not in r.err
    after = snapshot(work)
    allowed = set(case.get("may_change", []))  # a resume that stops on a full disk has written to its ledger
    assert {k: v for k, v in after.items() if k in before and k not in allowed} == {
        k: v for k, v in before.items() if k not in allowed}  # nothing already written changed
    assert not [p for p in work.rglob(".datagen-export-*")]  # no staging folder left behind
    assert not (work / "out.yaml").exists()
