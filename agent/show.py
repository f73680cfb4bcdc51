"""Render run reports for people (rich): status, audit. Data goes to stdout; nothing here computes.
The plan's own tables are agent/plan_view.py (plain text: `plan --show` starts without rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from agent.coverage import coverage
from agent.coverage import lines as coverage_lines
from agent.plan import Plan


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
