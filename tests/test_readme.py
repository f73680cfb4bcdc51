"""The README stays true to the CLI: every command it shows exists, and every flag it shows is accepted."""

from __future__ import annotations

import re
import shlex

import click
import pytest

from agent.cli import cli
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
CODE = "\n".join(re.findall(r"^```\n(.*?)^```", README, re.M | re.S))
COMMAND_LINES = [line.split("#")[0].strip() for line in re.findall(r"^datagen .*$", CODE, re.M)]


def test_the_readme_shows_the_main_commands():
    shown = {shlex.split(line)[1] for line in COMMAND_LINES}
    assert shown >= {"interview", "plan", "estimate", "generate", "status", "audit", "export", "validate"}
    assert "make demo" in README and "make test" in README


@pytest.mark.parametrize("line", COMMAND_LINES)
def test_every_readme_command_and_flag_exists(line):
    words = shlex.split(line)[1:]
    command = cli.get_command(None, words[0])   # export and dataset commands load on first use
    assert command is not None, f"README shows `datagen {words[0]}`, which does not exist"
    accepted = {opt for param in command.params if isinstance(param, click.Option) for opt in param.opts}
    for flag in (w for w in words[1:] if w.startswith("--")):
        assert flag in accepted, f"README shows `{flag}` for `datagen {words[0]}`; it takes {sorted(accepted)}"


def test_makefile_has_the_readme_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo:", "test:", "test-long:", "bench:"):
        assert re.search(rf"^{target}", makefile, re.M), target
    assert "make test" in (ROOT / ".ci" / "run").read_text()
