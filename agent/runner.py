"""`datagen generate`: lock the run, open its ledger, build the provider, run the engine, export.

run() is the whole command; generate.Engine is the loop of calls inside it."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent import providers
from agent.errors import ConfigError, Interrupted
from agent.generate import Engine, RunResult
from agent.ledger import Ledger, RunLock
from agent.limits import Limiter
from agent.plan import Plan
from agent.providers.base import is_local, redact_url
from agent.startup import collector_paused
from agent.tokens import PriceTable, load_prices

if TYPE_CHECKING:
    from agent.sources import Passage, Source

DEFAULT_BUDGET_FACTOR = 3.0   # with no --max-cost: 3x the estimate for what remains
SIGNALS = {signal.SIGINT: ("SIGINT", 130), signal.SIGTERM: ("SIGTERM", 143)}

log = logging.getLogger(__name__)


@dataclass
class GenerateOptions:
    provider: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    max_cost: float | None = None
    restart: bool = False
    quiet: bool = False
    drift: bool = True
    export: bool = True
    prices: Path | None = None
    outputs: Path = Path("outputs")
    plan_path: Path | None = None                    # for the resume hint
    say: Callable[[str], None] | None = None         # start-of-run notices (budget, unknown price)


def run_dir(plan: Plan, outputs: Path) -> Path:
    return outputs / plan.name


def with_overrides(plan: Plan, opts: GenerateOptions) -> Plan:
    """Flags win over the plan file for provider, model and base URL (and are snapshotted in the ledger)."""
    changes: dict[str, str | None] = {k: v for k, v in {"provider": opts.provider, "model": opts.model, "base_url": opts.base_url}.items() if v}
    if opts.provider and opts.provider != plan.generation.provider:
        if not opts.model:
            changes["model"] = providers.default_model(opts.provider)
        # the plan's options belong to the plan's provider; another provider starts with its own defaults
        changes["provider_options"] = None
    if not changes:
        return plan
    return plan.model_copy(update={"generation": plan.generation.model_copy(update=changes)})


def open_log(out_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(out_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("agent")
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    return handler


def run(plan: Plan, opts: GenerateOptions, progress=None) -> RunResult:
    plan = with_overrides(plan, opts)
    # everything that can be wrong with the input is checked before anything is created on disk
    g = plan.generation
    kind = providers.get(g.provider)
    prices = load_prices(opts.prices)
    price = kind.price(g.model, prices)
    priced = price is not None
    if price is not None and prices.price(g.model) is None:
        # a provider that knows its own model's price (simulated: free): the engine's spend counts it too
        prices = PriceTable(models={**prices.models, g.model: price})
    explicit = "--max-cost" if opts.max_cost is not None else "generation.max_cost" if g.max_cost is not None else None
    if explicit and not priced:
        raise ConfigError(f"{explicit} needs a price for model {g.model!r}, which is not in the price table: give "
                          f"its USD per million input/output tokens in a YAML file with --prices (format: "
                          f"agent/data/prices.yaml)")
    options = dict(g.provider_options or {})
    if not opts.drift and "drift" in kind.Options.model_fields:   # --no-drift: a provider that drifts on purpose
        options["drift"] = False
    provider = providers.create(g.provider, model=g.model, api_key=opts.api_key, base_url=g.base_url, seed=g.seed,
                                options=options)
    local = not kind.simulated and is_local(getattr(provider, "base_url", None))
    if g.base_url and redact_url(g.base_url) != g.base_url:
        # credentials in the URL go to the server only: the plan kept in the ledger and the log get it without
        plan = plan.model_copy(update={"generation": g.model_copy(update={"base_url": redact_url(g.base_url)})})
        g = plan.generation
    passages, sources, references = grounding(plan)
    if plan.sources:   # the document readers die in reference cycles: freed now, not frozen with the set-up below
        gc.collect()
    out_dir = run_dir(plan, opts.outputs)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the run folder {out_dir}: {e.strerror}; choose a writable --outputs folder") from None
    with RunLock(out_dir):
        handler = open_log(out_dir)
        ledger = Ledger.open(out_dir, plan, simulated=provider.simulated, restart=opts.restart)
        try:
            # the run's set-up (the tokenizer, the audit's tables and state, the engine) lives as long as the run:
            # start-up objects, built with the collector paused (agent/startup.py)
            with collector_paused():
                log.info("run start: plan %s (%s), provider %s/%s", plan.name, plan.content_hash(), g.provider,
                         g.model)
                limiter = Limiter(concurrency=g.concurrency, requests_per_minute=g.requests_per_minute,
                                  input_tokens_per_minute=g.input_tokens_per_minute,
                                  output_tokens_per_minute=g.output_tokens_per_minute, local=local)
                budget, source = resolve_budget(plan, opts, prices, ledger, priced)
                tell_capabilities(kind, g.temperature, opts)
                engine = Engine(plan, ledger, provider, limiter, prices, max_cost=budget, progress=progress,
                                budget_source=source, references=references)
                engine.auditor.temperature_adjustable = kind.capabilities.temperature

            async def ground() -> None:
                """The passages filed (by a model if the plan asks: in the run's event loop, with its
                provider and limiter), stored in the ledger with what changed since, handed to the engine."""
                filed = passages
                if plan.assign_passages == "llm":
                    from agent.assign import assign_with_llm

                    filed = await assign_with_llm(plan, passages, provider, limiter, ledger, prices)
                for note in ledger.sync_passages(sources, filed):
                    log.warning("%s", note)
                    if not opts.quiet:
                        print(f"datagen: {note}", file=sys.stderr)
                engine.use_passages(filed)

            try:
                result = asyncio.run(_under_signals(engine, provider, opts, ground if plan.sources else None))
            finally:
                log.info("run end: %d/%d accepted, $%.4f", engine.auditor.n_accepted, plan.total, engine.spent)
            if opts.export and (result.complete or result.unfillable):
                from agent.export.pipeline import export_run

                export_run(plan, ledger, out_dir)
            return result
        finally:
            ledger.close()
            logging.getLogger("agent").removeHandler(handler)
            handler.close()


def resolve_budget(plan: Plan, opts: GenerateOptions, prices: PriceTable, ledger: Ledger,
                   priced: bool) -> tuple[float | None, str]:
    """The run's money cap and where it came from: --max-cost, the plan's generation.max_cost, or by default
    3x the estimate for what remains (said at start). A model with no known price gets no cap, and a notice."""
    g = plan.generation
    tell = opts.say or (lambda line: log.info("%s", line))
    pending, lost = ledger.pending_calls()
    if pending:
        tell(f"{pending} call(s) of an earlier run were sent and never answered; counted at their worst case "
             f"(${lost:.4f})")
    if opts.max_cost is not None:
        budget, source = opts.max_cost, "--max-cost"
    elif g.max_cost is not None:
        budget, source = g.max_cost, "generation.max_cost"
    elif not priced:
        tell(f"model {g.model!r} has no known price: cost is shown as unknown and no money cap applies; give its "
             f"price with --prices FILE to have one (the progress brake still stops a run that makes no progress)")
        return None, ""
    else:
        from agent.estimate import estimate, measure_run

        accepted = ledger.accepted_count()
        left = max(0, plan.total - accepted)
        # a resumed run is costed at its own measured acceptance and tokens per call, not the priors
        measured = measure_run(ledger)
        est = estimate(plan, prices, measured=measured, accepted=accepted)
        if est.cost_usd == 0:   # a free provider (simulated) or a model priced at zero: nothing to cap
            return None, ""
        budget = ledger.spent() + DEFAULT_BUDGET_FACTOR * (est.cost_usd or 0.0)
        basis = f"this run's measured rates over {measured.calls:,} calls" if measured else "the priors"
        source = (f"default: {DEFAULT_BUDGET_FACTOR:g}x the estimate for the {left:,} examples left, at {basis}; "
                  f"set --max-cost")
    tell(f"budget: ${budget:.4f} ({source}); ${ledger.spent():.4f} spent so far")
    return budget, source


def grounding(plan: Plan):
    """The plan's documents as passages and its real examples, read before anything is written (a bad path is
    a ConfigError like any other input error)."""
    passages: list[Passage] = []
    sources: list[Source] = []
    references = None
    if plan.sources:
        from agent.sources import load_for_plan

        sources, passages = load_for_plan(plan)
    if plan.examples:
        from agent.references import References, load

        references = References(load(plan.examples), plan.quality.dedup_threshold, plan.generation.seed)
    return passages, sources, references


def tell_capabilities(kind: type[providers.Provider], temperature: float, opts: GenerateOptions) -> None:
    """Say at start what the plan asks that this provider cannot do, so nothing is silently ignored."""
    if not kind.capabilities.temperature:
        line = (f"temperature is not adjustable for provider {kind.name}: the plan's temperature ({temperature:g}) "
                f"and the judge's 0 are not sent; the diversity controller steers wording, avoid lists and "
                f"topics instead of raising the temperature")
        if opts.say:
            opts.say(line)
        log.info("%s", line)   # run.log keeps it either way


async def _under_signals(engine: Engine, provider, opts: GenerateOptions, prepare=None) -> RunResult:
    """The engine under SIGINT and SIGTERM handlers that stop it the same way: calls in flight cancelled, the
    audit record and state written (Engine.run's cleanup), a resume hint, exit 130 / 143."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:  # a coroutine always runs in a task under asyncio.run
        raise RuntimeError("_under_signals must run inside an asyncio task")
    caught: list[signal.Signals] = []

    def stop(sig: signal.Signals) -> None:
        if not caught:
            caught.append(sig)
            task.cancel()

    installed = {}
    for sig in SIGNALS:
        try:
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, stop, sig)
            installed[sig] = previous
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no such support
            pass
    try:
        if prepare is not None:
            await prepare()  # grounding: file and store the passages in the run's event loop
        return await engine.run()
    except asyncio.CancelledError:
        if not caught:
            raise
        name, code = SIGNALS[caught[0]]
        where = f" --plan {opts.plan_path}" if opts.plan_path else ""
        raise Interrupted(f"stopped by {name}: calls in flight cancelled, everything accepted so far is saved "
                          f"({engine.auditor.n_accepted:,} of {engine.plan.total:,}); resume with: datagen generate"
                          f"{where}", exit_code=code) from None
    finally:
        for sig, previous in installed.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous)   # asyncio leaves the default behind; export after the run needs ours
        await provider.aclose()

