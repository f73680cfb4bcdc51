"""The plan as text tables for people (`datagen plan --show`, the interview): one table per dimension.

Plain text, not rich: importing rich and laying out a dozen rich Tables took 60-80 ms of CPU, a quarter of
`plan --show`'s start-up (bench/README.md 'Start-up'), while these tables need only fixed columns and one
wrapped text column, which textwrap does. The other reports (status, audit) keep rich (agent/show.py).
"""

from __future__ import annotations

import os
import textwrap
from typing import TextIO

from agent.plan import Category, Plan

DESCRIPTION_WIDTH = 70   # the widest the "what belongs here" column gets (long descriptions wrap)
PIPE_WIDTH = 120         # the width to lay tables out in when the output is not a terminal


def output_width(out: TextIO) -> int:
    """The terminal's width when `out` is one, else PIPE_WIDTH (a file or a pipe has no width)."""
    try:
        if out.isatty():
            return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, OSError, ValueError):   # a stream without a file descriptor (tests, wrappers)
        pass
    return PIPE_WIDTH


def table(headers: list[str], rows: list[list[str]], right: set[int], wrap: int | None, width: int,
          total_row: list[str] | None = None) -> list[str]:
    """Box-drawn table lines. Columns in `right` are right-aligned; column `wrap` (the last one, if any) is
    the only one that wraps: it gets at most DESCRIPTION_WIDTH and what `width` leaves after the others."""
    body = rows + ([total_row] if total_row else [])
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    if wrap is not None:
        fixed = sum(w for i, w in enumerate(widths) if i != wrap) + 3 * len(widths) + 1
        widths[wrap] = max(10, min(widths[wrap], DESCRIPTION_WIDTH, width - fixed))

    def line(cells: list[str]) -> list[str]:
        parts = [textwrap.wrap(c, widths[i], break_on_hyphens=False) or [""] if i == wrap else [c]
                 for i, c in enumerate(cells)]
        out = []
        for k in range(max(len(p) for p in parts)):
            texts = [p[k] if k < len(p) else "" for p in parts]
            out.append("│ " + " │ ".join(t.rjust(widths[i]) if i in right else t.ljust(widths[i])
                                         for i, t in enumerate(texts)) + " │")
        return out

    def rule(left: str, mid: str, right_end: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + right_end

    lines = [rule("┌", "┬", "┐"), *line(headers), rule("├", "┼", "┤")]
    for r in rows:
        lines += line(r)
    if total_row:
        lines += [rule("├", "┼", "┤"), *line(total_row)]
    return [*lines, rule("└", "┴", "┘")]


def plan_tables(plan: Plan, out: TextIO) -> None:
    g = plan.generation
    width = output_width(out)
    lines = [
        f"Plan {plan.name}: {plan.task}",
        f"{plan.total:,} examples, {plan.validation_split:.0%} validation, format {plan.output_format}, "
        f"{len(plan.system_prompts)} system prompt(s); {g.provider}/{g.model}, batches of {g.batch_size}, "
        f"{g.examples_per_call} per call; near-duplicate threshold {plan.quality.dedup_threshold}",
    ]
    for name, dim in plan.dimensions.items():
        measured = dim.measure != "trusted"
        headers = ["category", "share", "quota"]
        headers += ["measured as" + (" (inferred)" if dim.inferred else "")] if measured else []
        headers.append("what belongs here")
        rows = [[c.name, f"{c.share:.1%}", f"{c.quota:,}", *([declared(c, dim.measure)] if measured else []),
                 c.description] for c in dim.categories]
        total = ["total", f"{sum(c.share for c in dim.categories):.0%}",
                 f"{sum(c.quota or 0 for c in dim.categories):,}", *([""] if measured else []), ""]
        lines += [f"{name} ({dim.measure})",
                  *table(headers, rows, right={1, 2}, wrap=len(headers) - 1, width=width, total_row=total)]
    if plan.exclusions:
        lines.append("Not drawn together where avoidable: " + "; ".join(f"{a} + {b}" for a, b in plan.exclusions))
    if plan.topics:
        n = sum(len(v) for v in plan.topics.values())
        lines.append(f"Topics: {n} across {len(plan.topics)} domain categories")
    if plan.inferred_measures():
        lines.append(f"Note: the measures of {', '.join(plan.inferred_measures())} were inferred from category "
                     "names (a plan from before measures were declared); add --save to write them into the plan.")
    out.write("\n".join(lines) + "\n")


def declared(c: Category, measure: str) -> str:
    """What a category declares for its dimension's measure, as a person reads it."""
    if measure in ("response_words", "input_words"):
        return c.range_text("words") or "-"
    if measure == "turns":
        return c.range_text("turns")
    value = getattr(c, measure)
    return {True: "yes", False: "no"}.get(value, str(value)) if measure != "format" else str(value)
