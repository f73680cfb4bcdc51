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
# provider registry (the plan's provider name is checked against it), the plain-text tables and the start-up
# helper (the collector paused). A new module on this path should be a choice, made here.
PLAN_SHOW_OWN = {"agent", "agent.cli", "agent.errors", "agent.yamlfile", "agent.plan", "agent.plan_view",
                 "agent.providers", "agent.providers.base", "agent.startup"}
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


# --- the collector paused at start-up (agent/startup.py) ------------------------------------------------------

def test_collector_paused_restores_the_collector_and_nests():
    import gc

    from agent.startup import collector_paused

    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()   # the inner block leaves the outer one's pause alone
    assert gc.isenabled()
    with pytest.raises(KeyError), collector_paused():
        raise KeyError("x")
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen   # a caller's process (this one): nothing is ever frozen


def test_in_process_commands_leave_the_collector_on_and_freeze_nothing(run_cli, tmp_path, monkeypatch):
    """The tests' own process runs commands through main(argv): the collector is on again after them, and on
    during the run's calls (a run must not grow without collection), and nothing of the caller's is frozen."""
    import gc

    import yaml

    from agent.providers.simulated import SimulatedProvider

    frozen = gc.get_freeze_count()
    assert run_cli("plan", "--show", str(EXAMPLE_PLAN)).code == 0
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    seen: list[bool] = []
    complete = SimulatedProvider.complete

    async def watched(self, request):
        seen.append(gc.isenabled())
        return await complete(self, request)

    monkeypatch.setattr(SimulatedProvider, "complete", watched)
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = 20
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("generate", "--plan", str(plan), "--outputs", str(tmp_path / "out"), "--quiet", "--no-export")
    assert r.code == 0, r.err
    assert seen and all(seen)
    assert gc.isenabled() and gc.get_freeze_count() == frozen


OWN_PROCESS = ("import gc, json, os, sys\nsys.argv = ['datagen'] + {args!r}\nfrom agent.cli import main\ntry:\n"
               "    main()\nexcept SystemExit:\n    pass\nsys.stderr.write('\\nSTATE ' + json.dumps([gc.isenabled(), "
               "gc.get_freeze_count(), os.environ.get('PYDANTIC_DISABLE_PLUGINS')]))")


def own_process_state(args: list[str], env: dict[str, str]) -> list:
    """(collector on, objects frozen, PYDANTIC_DISABLE_PLUGINS) after `datagen ARGS` run as the process's own
    command line, as the console script runs it."""
    done = subprocess.run([sys.executable, "-c", OWN_PROCESS.format(args=args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)
    assert "Plan example" in done.stdout, done.stderr
    return json.loads(done.stderr.rsplit("STATE ", 1)[-1])


def test_own_process_freezes_its_start_up_and_turns_pydantic_plugins_off_unless_asked():
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    enabled, frozen, plugins = own_process_state(["plan", "--show", str(EXAMPLE_PLAN)], env)
    assert enabled and frozen > 10_000 and plugins == "__all__"
    # a user's own setting wins: an empty value keeps pydantic's plugins on
    assert own_process_state(["plan", "--show", str(EXAMPLE_PLAN)], {**env, "PYDANTIC_DISABLE_PLUGINS": ""})[2] == ""


def test_empty_plan_defaults_are_what_the_old_factories_gave():
    """plan.py's empty lists and mappings are default values, not default_factory=list/dict (start-up cost): a plan
    that leaves them out validates, dumps and hashes as with the factories, and no two plans share one."""
    import yaml
    from pydantic import Field

    from agent.plan import Plan, SpecialFormat

    class FactoryPlan(Plan):   # the fields as they were declared before (the reference)
        special_formats: list[SpecialFormat] = Field(default_factory=list)
        guidance: list[str] = Field(default_factory=list)
        exclusions: list[tuple[str, str]] = Field(default_factory=list)
        topics: dict[str, list[str]] = Field(default_factory=dict)
        sources: list[str] = Field(default_factory=list)
        examples: list[str] = Field(default_factory=list)

    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    empty = ("special_formats", "guidance", "exclusions", "topics", "sources", "examples")
    bare = {k: v for k, v in data.items() if k not in empty}
    a, b, old = Plan.model_validate(bare), Plan.model_validate(bare), FactoryPlan.model_validate(bare)
    assert a.model_dump() == old.model_dump() and a.content_hash() == old.content_hash()
    assert a.model_fields_set == old.model_fields_set
    for name in empty:
        assert getattr(a, name) == getattr(old, name) and getattr(a, name) is not getattr(b, name)
    a.guidance.append("x")
    a.topics["d"] = ["t"]
    assert Plan.model_validate(bare).guidance == [] and Plan.model_validate(bare).topics == {}
    full = Plan.model_validate(data)
    assert full.model_dump() == FactoryPlan.model_validate(data).model_dump()


def test_the_engine_loads_rich_only_for_a_terminal():
    """A piped or --quiet run prints plain lines: the engine's modules import no rich (~0.04 s of start-up)."""
    code = ("import sys, io\nimport agent.runner, agent.generate, agent.progress\n"
            "assert agent.progress.make_progress(stream=io.StringIO()) is not None\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
