"""Render plans and tables for people (rich). Data goes to stdout; nothing here computes."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from agent.coverage import coverage
from agent.coverage import lines as coverage_lines
from agent.plan import Category, Plan


def plan_tables(plan: Plan, console: Console) -> None:
    g = plan.generation
    console.print(f"[bold]Plan {plan.name}[/bold]: {plan.task}")
    console.print(
        f"{plan.total:,} examples, {plan.validation_split:.0%} validation, format {plan.output_format}, "
        f"{len(plan.system_prompts)} system prompt(s); {g.provider}/{g.model}, batches of {g.batch_size}, "
        f"{g.examples_per_call} per call; near-duplicate threshold {plan.quality.dedup_threshold}"
    )
    for name, dim in plan.dimensions.items():
        table = Table(title=f"{name} ({dim.measure})", title_justify="left", expand=False)
        table.add_column("category")
        table.add_column("share", justify="right")
        table.add_column("quota", justify="right")
        measured = dim.measure != "trusted"
        if measured:
            table.add_column("measured as" + (" (inferred)" if dim.inferred else ""))
        table.add_column("what belongs here", overflow="fold", max_width=70)
        for c in dim.categories:
            table.add_row(c.name, f"{c.share:.1%}", f"{c.quota:,}", *([declared(c, dim.measure)] if measured else []),
                          c.description)
        table.add_row("[bold]total", f"{sum(c.share for c in dim.categories):.0%}",
                      f"[bold]{sum(c.quota or 0 for c in dim.categories):,}", *([""] if measured else []), "")
        console.print(table)
    if plan.exclusions:
        console.print("Not drawn together where avoidable: " + "; ".join(f"{a} + {b}" for a, b in plan.exclusions))
    if plan.topics:
        n = sum(len(v) for v in plan.topics.values())
        console.print(f"Topics: {n} across {len(plan.topics)} domain categories")
    if plan.inferred_measures():
        console.print(f"[yellow]Note:[/yellow] the measures of {', '.join(plan.inferred_measures())} were inferred from "
                      "category names (a plan from before measures were declared); add --save to write them into the plan.")


def declared(c: Category, measure: str) -> str:
    """What a category declares for its dimension's measure, as a person reads it."""
    if measure in ("response_words", "input_words"):
        return c.range_text("words") or "-"
    if measure == "turns":
        return c.range_text("turns")
    value = getattr(c, measure)
    return {True: "yes", False: "no"}.get(value, str(value)) if measure != "format" else str(value)


def fill_tables(plan: Plan, counts: dict[str, dict[str, int]], console: Console) -> None:
    """target / accepted / remaining per category of every dimension."""
    for name, dim in plan.dimensions.items():
        table = Table(title=name, title_justify="left")
        for col in ("category", "target", "accepted", "remaining"):
            table.add_column(col, justify="left" if col == "category" else "right")
        for c in dim.categories:
            got = counts.get(name, {}).get(c.name, 0)
            table.add_row(c.name, f"{c.quota:,}", f"{got:,}", f"{max(0, (c.quota or 0) - got):,}")
        console.print(table)


def status(plan: Plan, ledger, console: Console) -> None:
    usage = ledger.usage()
    accepted = ledger.accepted_count()
    console.print(f"[bold]{plan.name}[/bold]: {accepted:,} of {plan.total:,} accepted "
                  f"({accepted / plan.total:.0%}); {usage['calls']:,} calls, "
                  f"{usage['input_tokens']:,} input + {usage['output_tokens']:,} output tokens, ${usage['cost']:.4f}"
                  + ("  [SIMULATED: not training data]" if ledger.simulated else ""))
    rejections, lost = ledger.rejection_counts(), ledger.lost_counts()
    if rejections:
        console.print("rejected examples: " + ", ".join(f"{k} {v}" for k, v in rejections.items()))
    if lost:
        console.print("failed calls (examples lost, none produced): " + ", ".join(f"{k} {v}" for k, v in lost.items()))
    if surplus := ledger.surplus_count():
        console.print(f"surplus (tail copies whose slot another copy filled first; not rejections): {surplus:,}")
    pending, worst = ledger.pending_calls()
    if pending:
        console.print(f"{pending} call(s) sent and never answered (e.g. lost to a kill), counted at their worst case "
                      f"${worst:.4f}")
    if usage["faults"]:
        console.print("provider faults (retried): " + ", ".join(f"{k} {v}" for k, v in usage["faults"].items()))
    for line in coverage_lines(coverage(ledger)):
        console.print(line, markup=False, highlight=False)
    given_up = ledger.run_state(plan).categories.unfillable
    if given_up:
        console.print("given up on after repeated misses (a resume of this plan does not retry them): "
                      + ", ".join(f"{d}.{c}" for d, c in given_up))
    fill_tables(plan, ledger.label_counts(), console)


def audit(plan: Plan, ledger, console: Console) -> None:
    batches = ledger.batches()
    if not batches:
        console.print("No batch has been audited yet.")
        return
    table = Table(title="Batches", title_justify="left")
    for col in ("batch", "accepted", "rejected", "failed calls", "duplicates", "top rejection reasons", "mean TTR", "overlap", "verbs", "topics"):
        table.add_column(col, justify="left" if "reason" in col else "right")
    for b in batches:
        cum = b.diversity.cumulative
        top = ", ".join(f"{k} {v}" for k, v in list(b.rejections.items())[:3])
        table.add_row(str(b.batch), str(b.accepted), str(b.rejected), str(b.failed_calls),
                      str(b.duplicates), top,
                      _num(cum.get("mean_ttr")), _pct(cum.get("ngram_overlap")), _num(cum.get("unique_verbs"), 0),
                      _num(cum.get("unique_topics"), 0))
    console.print(table)
    last = batches[-1]
    for s in last.shortfalls:
        console.print(f"[yellow]below threshold[/yellow]: {s}")
    for u in last.unfillable:
        console.print(f"[red]unfillable[/red]: {u.dimension}.{u.category} short by {u.short_by}")
    if last.steering:
        console.print(f"next batches steered with: {last.steering.to_json()}")
    if last.grounding:  # grounded runs: the share of answers with an unsupported claim, per category
        run = last.grounding["run"]
        console.print(f"grounding: {run['unsupported']:,} of {run['checked']:,} answers had an unsupported claim "
                      f"({run['share']:.1%}); " + ", ".join(f"{c} {t['share']:.1%}" for c, t in run["by_category"].items()),
                      markup=False, highlight=False)
    unusable_replies(ledger, console)
    fill_tables(plan, ledger.label_counts(), console)


def unusable_replies(ledger, console: Console, n: int = 3) -> None:
    """The last replies that could not be used, as the model wrote them (kept shortened and redacted)."""
    kept = ledger.unusable_replies(n)
    if not kept:
        return
    console.print(f"[bold]Unusable replies[/bold] (last {len(kept)}; all are in the ledger's calls.reply):")
    for call_id, why, text in kept:
        short = text if len(text) <= 400 else text[:400] + "…"
        console.print(f"  call {call_id} ({why}): {short!r}", markup=False)


def _num(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"
