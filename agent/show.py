"""Render plans and tables for people (rich). Data goes to stdout; nothing here computes."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from agent.plan import Plan


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
        table.add_column("what belongs here", overflow="fold", max_width=70)
        for c in dim.categories:
            table.add_row(c.name, f"{c.share:.1%}", f"{c.quota:,}", c.description)
        table.add_row("[bold]total", f"{sum(c.share for c in dim.categories):.0%}",
                      f"[bold]{sum(c.quota or 0 for c in dim.categories):,}", "")
        console.print(table)
    if plan.exclusions:
        console.print("Not drawn together where avoidable: " + "; ".join(f"{a} + {b}" for a, b in plan.exclusions))
    if plan.topics:
        n = sum(len(v) for v in plan.topics.values())
        console.print(f"Topics: {n} across {len(plan.topics)} domain categories")
