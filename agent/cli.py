"""Click commands only: parse, call one function, map errors to one stderr line and an exit code."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import click

from agent.errors import DatagenError, storage_problem

log = logging.getLogger("agent")
PlanPath = click.Path(path_type=Path, dir_okay=False)


class ProviderName(click.ParamType):
    """A name in the provider registry, read when the option is used (so a registered provider is accepted)."""

    name = "provider"

    def get_metavar(self, param, ctx=None) -> str:
        from agent import providers

        return "[" + "|".join(providers.names(installed=False)) + "]"

    def convert(self, value, param, ctx):
        from agent import providers

        if not providers.known(value):
            self.fail(providers.unknown(value), param, ctx)
        return value


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


class LazyGroup(click.Group):
    """Commands from other packages, imported only when run (or asked for their own --help): `datagen --help`
    lists them from LAZY's one-line help, so start-up does not import the export and dataset code (numpy,
    tiktoken, pydantic models). test_startup checks each line against the command's docstring."""

    def list_commands(self, ctx):
        return sorted({*self.commands, *LAZY})

    def get_command(self, ctx, name):
        if name not in self.commands and name in LAZY:
            import importlib

            module, _, attr = LAZY[name][0].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter) -> None:
        names = self.list_commands(ctx)
        shown = [n for n in names if n in LAZY and n not in self.commands or not self.commands[n].hidden]
        limit = formatter.width - 6 - max(len(n) for n in shown)
        rows = [(n, (self.commands.get(n) or click.Command(n, help=LAZY[n][1])).get_short_help_str(limit))
                for n in shown]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


LAZY = {  # name: (where the command is, the first line of its docstring)
    "export": ("agent.export.commands:export", "Write training/validation JSONL, dataset_info.txt, report.html, "
               "a dataset card and trainer configs."),
    "validate": ("agent.export.commands:validate", "Check a JSONL file in any of the trainer formats: exit 0 "
                 "valid, 1 not valid, 2 unreadable."),
    "push": ("agent.export.commands:push", "Upload an export folder (data, card, configs, report) to a Hugging "
             "Face dataset repo; token from HF_TOKEN."),
    "convert": ("agent.dataset.commands:convert", "Convert a JSON/JSONL dataset to another format, or to "
                "chat-template text; say what could not be kept."),
    "clean": ("agent.dataset.commands:clean", "Drop invalid, off-bounds, PII, refusal and near-duplicate rows; "
              "keep the rest unchanged and say why."),
    "kto": ("agent.dataset.commands:kto", "Turn feedback logs (thumbs, stars, booleans) into deduplicated, "
            "balanced KTO rows."),
    "stats": ("agent.dataset.commands:stats", "Seed 000's diversity metrics (TTR, overlap, verbs, topics, "
              "lengths) for any dataset file."),
}


@click.group(cls=LazyGroup)
@click.version_option(package_name="datagen")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def cli(verbose: bool) -> None:
    """datagen: plan, generate, audit and export synthetic fine-tuning datasets."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.DEBUG if verbose else logging.WARNING)  # the run log file gets INFO
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler], force=True)
    for noisy in ("openai", "anthropic", "httpx", "httpx2", "httpcore"):
        # their debug logs can carry request headers: keep them out, whatever -v says
        logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.command()
@click.option("--answers", type=PlanPath, help="YAML file of answers: run without a terminal.")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("plans"), show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing plan of the same name.")
@click.option("--yes", "approve", flag_value=True, default=None, help="Approve the plan without asking.")
def interview(answers: Path | None, out_dir: Path, force: bool, approve: bool | None) -> None:
    """Ask what dataset you need, show the plan and its cost, write it on approval."""
    from agent.interview import conduct
    from agent.plan_view import plan_tables

    conduct(tty_ask, say, lambda plan: plan_tables(plan, sys.stdout), answers_path=answers, out_dir=out_dir,
            force=force, approve=approve)


@cli.command()
@click.argument("source", type=PlanPath)
@click.option("-o", "--out", type=PlanPath, help="Where to write the plan (default plans/<name>.yaml).")
@click.option("--show", is_flag=True, help="SOURCE is a plan: show it as tables (quotas recomputed).")
@click.option("--save", is_flag=True, help="With --show: write the plan back with its measures declared.")
@click.option("--force", is_flag=True, help="Overwrite an existing plan file.")
@click.option("--brainstorm", is_flag=True, help="SOURCE is a plan: ask its provider for topics per domain category.")
@click.option("--per-category", type=click.IntRange(1, 500), help="Topics to ask for per category (default: 120 in all).")
@click.option("--provider", type=ProviderName(), help="With --brainstorm.")
@click.option("--model", help="With --brainstorm.")
@click.option("--api-key", help="With --brainstorm (better: the provider's environment variable).")
def plan(source: Path, out: Path | None, show: bool, save: bool, force: bool, brainstorm: bool, per_category,
         provider, model, api_key) -> None:
    """Turn a requirements file into a plan, --show a plan, or --brainstorm its topics."""
    from agent.startup import collector_paused

    with collector_paused():   # imports and pydantic's plan models: start-up objects (agent/startup.py)
        from agent.plan import load_plan, save_plan

        if show:
            from agent.plan_view import plan_tables

            shown = load_plan(source)
            plan_tables(shown, sys.stdout)
    if show:
        if save and shown.inferred_measures():
            save_plan(shown, out or source)
            click.echo(f"Saved {out or source} with the measures of {', '.join(shown.inferred_measures())} declared.")
        return
    if brainstorm:
        import asyncio

        from agent.brainstorm import brainstorm as run_brainstorm
        from agent.brainstorm import per_category_default
        from agent.providers import create
        from agent.runner import GenerateOptions, with_overrides

        loaded = with_overrides(load_plan(source), GenerateOptions(provider=provider, model=model))
        g = loaded.generation
        llm = create(g.provider, model=g.model, api_key=api_key, base_url=g.base_url, seed=g.seed,
                     options=g.provider_options)
        before = sum(len(v) for v in loaded.topics.values())
        topics = asyncio.run(run_brainstorm(loaded, llm, per_category or per_category_default(loaded)))
        original = load_plan(source)  # provider overrides are for this call only, not saved
        save_plan(original.model_copy(update={"topics": topics}), out or source)
        total = sum(len(v) for v in topics.values())
        say(f"{total - before} new topics ({total} in all across {len(topics)} categories) written to {out or source}")
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


class Budget(click.ParamType):
    """A USD amount: a finite number, zero or more (NaN would disable every comparison, inf the cap)."""

    name = "usd"

    def convert(self, value, param, ctx):
        import math

        try:
            amount = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of USD", param, ctx)
        if not math.isfinite(amount) or amount < 0:
            self.fail(f"{value!r} is not a usable budget: give a finite amount of USD, 0 or more", param, ctx)
        return amount


def run_options(f):
    for option in reversed([
        click.option("--plan", "plan_path", type=PlanPath, required=True, help="The plan file (plans/<name>.yaml)."),
        click.option("--outputs", type=click.Path(path_type=Path, file_okay=False), default=Path("outputs"),
                     show_default=True, help="Folder that holds one run folder per plan."),
    ]):
        f = option(f)
    return f


def open_run(plan_path: Path, outputs: Path):
    """The plan and its existing ledger (read-only use); a clear error when there is no run yet."""
    from agent.ledger import Ledger
    from agent.plan import load_plan

    loaded = load_plan(plan_path)
    db = outputs / loaded.name / "ledger.sqlite"
    if not os.path.lexists(db):  # a dangling or looped symlink is the Ledger's to explain
        raise DatagenError(f"no run yet for plan {loaded.name!r} in {outputs}; start one with: "
                           f"datagen generate --plan {plan_path}")
    return loaded, Ledger(db)


@cli.command()
@run_options
@click.option("--provider", type=ProviderName(), help="Override the plan's provider.")
@click.option("--model", help="Override the plan's model.")
@click.option("--base-url", help="OpenAI-compatible server URL (vLLM, Ollama, llama.cpp, LM Studio).")
@click.option("--api-key", help="API key (better: OPENAI_API_KEY / ANTHROPIC_API_KEY). Never written anywhere.")
@click.option("--max-cost", type=Budget(), help="Spend at most this many USD (default: 3x the estimate for what remains).")
@click.option("--restart", is_flag=True, help="Discard this plan's run and start over.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--no-drift", is_flag=True, help="Simulated provider only: follow every spec exactly.")
@click.option("--no-export", is_flag=True, help="Do not export when the plan is filled.")
@click.option("--prices", type=PlanPath, help="YAML price table merged over the built-in one.")
def generate(plan_path: Path, outputs: Path, provider, model, base_url, api_key, max_cost, restart, quiet,
             no_drift, no_export, prices) -> None:
    """Fill the plan's quotas (re-running resumes); export when done."""
    from agent.startup import collector_paused

    with collector_paused():   # imports and the plan: start-up objects (agent/startup.py); the run sets up in run()
        from agent.plan import load_plan
        from agent.progress import make_progress
        from agent.runner import GenerateOptions
        from agent.runner import run as run_plan

        loaded = load_plan(plan_path)
    opts = GenerateOptions(provider=provider, model=model, base_url=base_url, api_key=api_key, max_cost=max_cost,
                           restart=restart, quiet=quiet, drift=not no_drift, export=not no_export, prices=prices,
                           outputs=outputs, plan_path=plan_path, say=None if quiet else say)
    result = run_plan(loaded, opts, make_progress(quiet))
    tag = " (SIMULATED provider: not training data)" if result.simulated else ""
    lost = f" ({result.lost:,} more lost to failed calls)" if result.lost else ""
    lost += f" ({result.surplus:,} surplus tail copies)" if result.surplus else ""
    say(f"{result.accepted:,}/{result.total:,} examples accepted, {result.rejected:,} rejected this run{lost}, "
        f"{result.calls:,} calls, ${result.cost:.4f} spent{tag}")
    for u in result.unfillable:
        say(f"unfillable: {u.dimension}.{u.category} short by {u.short_by} after repeated misses")
    if not result.complete:
        sys.exit(4)


@cli.command()
@click.option("--plan", "plan_path", type=PlanPath, required=True)
@click.option("--provider", type=ProviderName())
@click.option("--model")
@click.option("--base-url", help="The server the run will use: a local one (127.0.0.1, private address) is slower.")
@click.option("--outputs", type=click.Path(path_type=Path, file_okay=False), default=Path("outputs"), show_default=True,
              help="Where this plan's run is, if one was started: the estimate is then for what remains, at the "
                   "run's measured acceptance, latency and tokens/s.")
@click.option("--prices", type=PlanPath, help="YAML price table merged over the built-in one (as for generate).")
def estimate(plan_path: Path, provider, model, base_url, outputs: Path, prices: Path | None) -> None:
    """Tokens, cost and time for the plan (or what remains of its run), rejections included."""
    from agent.estimate import estimate_lines
    from agent.plan import load_plan
    from agent.providers.base import check_base_url, is_local
    from agent.runner import GenerateOptions, with_overrides
    from agent.tokens import load_prices

    table = load_prices(prices)  # a bad price file fails here, before anything is read or spent
    loaded = with_overrides(load_plan(plan_path), GenerateOptions(provider=provider, model=model, base_url=base_url))
    url = loaded.generation.base_url
    local = is_local(check_base_url(url, "--base-url" if base_url else "generation.base_url")) if url else False
    ledger = None
    if (outputs / loaded.name / "ledger.sqlite").is_file():
        from agent.ledger import Ledger

        ledger = Ledger(outputs / loaded.name / "ledger.sqlite")
    for line in estimate_lines(loaded, local=local, ledger=ledger, prices=table):
        click.echo(line)


@cli.command()
@run_options
def status(plan_path: Path, outputs: Path) -> None:
    """Quotas filled and remaining, rejections and cost so far."""
    from agent.show import status as show_status

    loaded, ledger = open_run(plan_path, outputs)
    show_status(loaded, ledger, stdout_console())


@cli.command()
@run_options
def audit(plan_path: Path, outputs: Path) -> None:
    """The audit of everything accepted so far: per batch, diversity, rebalancing."""
    from agent.show import audit as show_audit

    loaded, ledger = open_run(plan_path, outputs)
    show_audit(loaded, ledger, stdout_console())


def main(argv: list[str] | None = None) -> None:
    """Entry point: DatagenError -> one line on stderr and its exit code; no traceback unless DATAGEN_DEBUG=1.
    argv None: the process's own command line (the console script, `python -m agent`), which ends with this call;
    a list: a caller's (the tests), whose process goes on."""
    debug = os.environ.get("DATAGEN_DEBUG") == "1"
    if argv is None:
        from agent import startup

        startup.own_process()
    import signal

    from agent.errors import Interrupted

    def terminated(signum, frame):
        # SIGTERM (timeout, docker, Kubernetes) stops any command the way Ctrl-C does; `generate` replaces this
        # with its own handler while calls are in flight
        raise Interrupted("stopped by SIGTERM; re-run the command to continue", 143)

    with contextlib.suppress(ValueError):   # not the main thread (an embedding program): leave signals alone
        signal.signal(signal.SIGTERM, terminated)
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
        if (line := storage_problem(e)) is not None:  # a full disk or a damaged ledger: say what to do
            say(f"datagen: {line}")
            sys.exit(2)
        say(f"datagen: internal error: {type(e).__name__}: {e} (set DATAGEN_DEBUG=1 for the traceback)")
        sys.exit(1)


if __name__ == "__main__":
    main()
