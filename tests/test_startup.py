"""Start-up stays light: `datagen --help` and `datagen plan --show` import neither numpy nor the export,
dataset or provider SDK code, and `plan --show` only what reading, validating and printing a plan needs
(bench/README.md 'Start-up' has the times); the lazily listed commands still load and describe themselves
truly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_PLAN

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("numpy", "tiktoken", "openai", "anthropic", "agent.export.", "agent.dataset", "agent.audit.dedup",
         "agent.generate")


def modules_after(*args: str) -> list[str]:
    """The modules a fresh interpreter holds after running `datagen ARGS` (exit status ignored)."""
    code = (f"import json, sys\nfrom agent.cli import main\ntry:\n    main({list(args)!r})\nexcept SystemExit:\n"
            "    pass\nsys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    line = done.stderr.rsplit("MODULES ", 1)[-1]
    return json.loads(line)


@pytest.mark.parametrize("args", [["--help"], ["plan", "--show", str(EXAMPLE_PLAN)]], ids=["help", "plan-show"])
def test_start_up_imports_nothing_heavy(args):
    loaded = modules_after(*args)
    assert "agent.cli" in loaded
    heavy = [m for m in loaded if m.startswith(HEAVY) or m in ("agent.export.pipeline",)]
    assert heavy == []


def test_help_excludes_the_export_package_entirely():
    loaded = modules_after("--help")
    assert not [m for m in loaded if m == "agent.export" or m.startswith(("agent.export.", "agent.plan"))]


# Everything of datagen's own that `plan --show` may import: the CLI, the YAML reader, the plan models, the
# provider registry (the plan's provider name is checked against it) and the plain-text tables. A new module
# on this path should be a choice, made here.
PLAN_SHOW_OWN = {"agent", "agent.cli", "agent.errors", "agent.yamlfile", "agent.plan", "agent.plan_view",
                 "agent.providers", "agent.providers.base"}
# what the run-time commands need and `plan --show` does not: rich (status, audit, progress), the ledger and
# its SQLite and lock file, the engine's prompts (jinja2), the audit's text tools
PLAN_SHOW_NEVER = ("rich", "sqlite3", "filelock", "jinja2", "tenacity", "rapidfuzz", "textblob", "markdown_it",
                   "spellchecker", "agent.show", "agent.ledger", "agent.coverage", "agent.audit")


def test_plan_show_imports_only_what_showing_a_plan_needs():
    loaded = modules_after("plan", "--show", str(EXAMPLE_PLAN))
    own = {m for m in loaded if m == "agent" or m.startswith("agent.")}
    assert "agent.plan_view" in own and own <= PLAN_SHOW_OWN, sorted(own - PLAN_SHOW_OWN)
    assert [m for m in loaded if m.split(".")[0] in PLAN_SHOW_NEVER or m.startswith(PLAN_SHOW_NEVER)] == []


def test_help_imports_no_validation_or_rendering_library():
    loaded = modules_after("--help")
    assert [m for m in loaded if m.split(".")[0] in ("pydantic", "yaml", "rich", "sqlite3", "jinja2")] == []


def test_lazy_commands_run_and_their_listed_help_is_their_own():
    from click.testing import CliRunner

    from agent.cli import LAZY, cli

    listed = CliRunner().invoke(cli, ["--help"]).output
    for name, (_, line) in LAZY.items():
        command = cli.get_command(None, name)
        assert command is not None and command.name == name
        assert (command.help or "").splitlines()[0] == line   # the --help line cannot drift from the docstring
        assert name in listed
    r = CliRunner().invoke(cli, ["validate", "--help"])
    assert r.exit_code == 0 and "--max-tokens" in r.output
