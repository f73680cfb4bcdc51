from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLAN = ROOT / "plans" / "example.yaml"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run `datagen ARGS` in-process; returns exit code and captured stdout/stderr."""

    def run(*args: str, stdin: str | None = None) -> Result:
        if stdin is not None:
            import io

            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = 0
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def example_plan(tmp_path) -> Path:
    target = tmp_path / "plans" / "example.yaml"
    target.parent.mkdir()
    shutil.copy(EXAMPLE_PLAN, target)
    return target
