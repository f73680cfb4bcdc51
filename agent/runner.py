"""`datagen generate`: lock the run, open its ledger, build the provider, run the engine, export."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigError
from agent.generate import Engine, RunResult
from agent.ledger import Ledger, RunLock
from agent.limits import Limiter
from agent.plan import Plan
from agent.providers import create
from agent.tokens import load_prices

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


def run_dir(plan: Plan, outputs: Path) -> Path:
    return outputs / plan.name


def with_overrides(plan: Plan, opts: GenerateOptions) -> Plan:
    """Flags win over the plan file for provider, model and base URL (and are snapshotted in the ledger)."""
    changes = {k: v for k, v in {"provider": opts.provider, "model": opts.model, "base_url": opts.base_url}.items() if v}
    if opts.provider and not opts.model and opts.provider != plan.generation.provider:
        from agent.planner import default_model

        changes["model"] = default_model(opts.provider)
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


def generate(plan: Plan, opts: GenerateOptions, progress=None) -> RunResult:
    plan = with_overrides(plan, opts)
    # everything that can be wrong with the input is checked before anything is created on disk
    g = plan.generation
    prices = load_prices(opts.prices)
    provider = create(g.provider, model=g.model, api_key=opts.api_key, base_url=g.base_url, seed=g.seed,
                      **({"drift": opts.drift} if g.provider == "simulated" else {}))
    passages, sources, references = grounding(plan)
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
            log.info("run start: plan %s (%s), provider %s/%s", plan.name, plan.content_hash(), g.provider, g.model)
            limiter = Limiter(concurrency=g.concurrency, requests_per_minute=g.requests_per_minute,
                              input_tokens_per_minute=g.input_tokens_per_minute,
                              output_tokens_per_minute=g.output_tokens_per_minute)
            engine = Engine(plan, ledger, provider, limiter, prices, max_cost=opts.max_cost, progress=progress,
                            references=references)

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
                result = asyncio.run(_run(engine, provider, ground if plan.sources else None))
            finally:
                log.info("run end: %d/%d accepted, $%.4f", engine.auditor.n_accepted, plan.total, engine.spent)
            if opts.export and (result.complete or result.unfillable):
                from agent.export import export_run

                export_run(plan, ledger, out_dir)
            return result
        finally:
            ledger.close()
            logging.getLogger("agent").removeHandler(handler)
            handler.close()


def grounding(plan: Plan):
    """The plan's documents as passages and its real examples, read before anything is written (a bad path is
    a ConfigError like any other input error)."""
    passages, sources, references = [], [], None
    if plan.sources:
        from agent.sources import load_for_plan

        sources, passages = load_for_plan(plan)
    if plan.examples:
        from agent.references import References, load

        references = References(load(plan.examples), plan.quality.dedup_threshold, plan.generation.seed)
    return passages, sources, references


async def _run(engine: Engine, provider, prepare=None) -> RunResult:
    try:
        if prepare is not None:
            await prepare()
        return await engine.run()
    finally:
        await provider.aclose()

