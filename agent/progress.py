"""Progress for people: a rich display on a terminal, plain periodic lines otherwise, nothing with --quiet."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from agent.records import BatchSummary

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID


def make_progress(quiet: bool = False, stream=None):
    stream = stream or sys.stderr
    if quiet:
        return None
    if stream.isatty():
        from rich.console import Console  # rich only for a terminal: a piped or --quiet run never loads it

        return RichProgress(Console(file=stream))
    return PlainProgress(stream)


def fill_line(fill: dict[str, dict[str, int]], plan, limit: int = 4) -> str:
    """The dimensions furthest from done, e.g. 'response_length 80% · behaviour 92%'."""
    parts = []
    for d, dim in plan.dimensions.items():
        target = sum(c.quota or 0 for c in dim.categories)
        got = sum(min(fill.get(d, {}).get(c.name, 0), c.quota or 0) for c in dim.categories)
        parts.append((got / target if target else 1.0, d))
    parts.sort()
    return " · ".join(f"{d} {share:.0%}" for share, d in parts[:limit])


class RichProgress:
    def __init__(self, console: Console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Progress(TextColumn("[bold]generating"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                            console=console, transient=False)
        self.task: TaskID | None = None

    def update(self, *, accepted: int, total: int, rejected: int, cost: float, fill, plan, final: bool = False,
               priced: bool = True, eta: float | None = None) -> None:
        info = f"rejected {rejected} · {money(cost, priced)} · {fill_line(fill, plan, 2)}"
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("gen", total=total, completed=accepted, info=info, eta=eta_text(eta))
        self.bar.update(self.task, completed=accepted, info=info, eta=eta_text(eta))
        if final:
            self.bar.stop()

    def batch(self, summary: BatchSummary) -> None:
        self.console.print(headline(summary))


class PlainProgress:
    """One line every few seconds: readable in CI logs and `nohup` files."""

    def __init__(self, stream, every: float = 5.0):
        self.stream = stream
        self.every = every
        self.last = 0.0

    def update(self, *, accepted: int, total: int, rejected: int, cost: float, fill, plan, final: bool = False,
               priced: bool = True, eta: float | None = None) -> None:
        now = time.monotonic()
        if final or now - self.last >= self.every:
            self.last = now
            left = "" if final or accepted >= total else f", {eta_text(eta)}"
            print(f"[datagen] {accepted}/{total} accepted, {rejected} rejected, {money(cost, priced)}{left}; "
                  f"{fill_line(fill, plan)}", file=self.stream, flush=True)

    def batch(self, summary: BatchSummary) -> None:
        print(headline(summary), file=self.stream, flush=True)


def eta_text(eta: float | None) -> str:
    """The time left as the engine measures it (calls still needed x wall time per call), not rich's guess
    from the bar's speed, which said '1 second' for a tail that took minutes."""
    if eta is None:
        return "ETA measuring"
    m, sec = divmod(int(round(eta)), 60)
    return f"ETA {m // 60}:{m % 60:02d}:{sec:02d}" if m >= 60 else f"ETA {m}:{sec:02d}"


def money(cost: float, priced: bool) -> str:
    return f"${cost:.4f}" if priced else "cost unknown (model not in the price table)"


def headline(summary: BatchSummary) -> str:
    """The audit's headline for one batch."""
    cum = summary.diversity.cumulative
    reasons = ", ".join(f"{k} {v}" for k, v in list(summary.rejections.items())[:3]) or "none"
    ttr = cum.get("mean_ttr")
    overlap = cum.get("ngram_overlap")
    bits = [f"batch {summary.batch}: +{summary.accepted} accepted, {summary.rejected} rejected ({reasons})"
            + (f", {summary.failed_calls} lost to failed calls" if summary.failed_calls else "")]
    if ttr is not None:
        bits.append(f"TTR {ttr:.2f}")
    if overlap is not None:
        bits.append(f"overlap {overlap:.0%}")
    if summary.unfillable:
        bits.append("unfillable: " + ", ".join(f"{u.dimension}.{u.category}" for u in summary.unfillable))
    return "[audit] " + "; ".join(bits)
