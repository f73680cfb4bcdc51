"""Click commands only: parse, call one function, map errors to one stderr line and an exit code."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from agent.errors import DatagenError

log = logging.getLogger("agent")
PlanPath = click.Path(path_type=Path, dir_okay=False)


def stdout_console():
    from rich.console import Console

    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120, highlight=False)


def say(text: str) -> None:
    click.echo(text, err=True)


def tty_ask(prompt: str, default: str | None) -> str:
    suffix = f" [{default}]" if default else ""
    sys.stderr.write(f"{prompt}{suffix}: ")
    sys.stderr.flush()
    line = sys.stdin.readline()
    if line == "":
        raise EOFError
    return line.rstrip("\n")


@click.group()
@click.version_option(package_name="datagen")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def cli(verbose: bool) -> None:
    """datagen: plan, generate, audit and export synthetic fine-tuning datasets."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.option("--answers", type=PlanPath, help="YAML file of answers: run without a terminal.")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("plans"), show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing plan of the same name.")
@click.option("--yes", "approve", flag_value=True, default=None, help="Approve the plan without asking.")
def interview(answers: Path | None, out_dir: Path, force: bool, approve: bool | None) -> None:
    """Ask what dataset you need, show the plan and its cost, write it on approval."""
    from agent.interview import conduct
    from agent.show import plan_tables

    console = stdout_console()
    conduct(tty_ask, say, lambda plan: plan_tables(plan, console), answers_path=answers, out_dir=out_dir,
            force=force, approve=approve)


@cli.command()
@click.argument("source", type=PlanPath)
@click.option("-o", "--out", type=PlanPath, help="Where to write the plan (default plans/<name>.yaml).")
@click.option("--show", is_flag=True, help="SOURCE is a plan: show it as tables (quotas recomputed).")
@click.option("--force", is_flag=True, help="Overwrite an existing plan file.")
def plan(source: Path, out: Path | None, show: bool, force: bool) -> None:
    """Turn a requirements file into a plan, or --show a plan."""
    from agent.plan import load_plan, save_plan
    from agent.show import plan_tables

    if show:
        plan_tables(load_plan(source), stdout_console())
        return
    from agent.planner import build_plan
    from agent.requirements import Requirements
    from agent.yamlfile import load_model

    built = build_plan(load_model(source, Requirements, "requirements"))
    target = out or Path("plans") / f"{built.name}.yaml"
    if target.exists() and not force:
        raise click.UsageError(f"{target} already exists; pass --force to overwrite it or -o another path")
    try:
        save_plan(built, target)
    except OSError as e:
        raise DatagenError(f"cannot write {target}: {e.strerror}; choose a writable -o path") from None
    say(f"Wrote {target} ({built.total:,} examples, {len(built.dimensions)} dimensions). "
        f"Check it with: datagen plan --show {target}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: DatagenError -> one line on stderr and its exit code; no traceback unless DATAGEN_DEBUG=1."""
    debug = os.environ.get("DATAGEN_DEBUG") == "1"
    try:
        cli.main(args=argv, prog_name="datagen", standalone_mode=False)
    except click.exceptions.Abort:
        say("datagen: stopped")
        sys.exit(130)
    except click.ClickException as e:
        say(f"datagen: {e.format_message()}")
        sys.exit(2)
    except DatagenError as e:
        if debug:
            raise
        say(f"datagen: {e}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        say("datagen: interrupted; everything accepted so far is saved (re-run to resume)")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - last resort: one line, details on request
        if debug:
            raise
        say(f"datagen: internal error: {type(e).__name__}: {e} (set DATAGEN_DEBUG=1 for the traceback)")
        sys.exit(1)


if __name__ == "__main__":
    main()
