"""report.html: one self-contained page (inline CSS and SVG drawn here; no script, font or request).

Charts: target vs actual per dimension, query and response length histograms (tokens), rejections by
reason, diversity metrics against their thresholds, and cost per batch. The page is rendered with jinja2's
autoescape; the SVG is built here with markupsafe.escape on every piece of text that came from a plan or
a ledger, so a category or a rejection reason can never inject markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jinja2 import Environment
from markupsafe import Markup, escape

from agent.export.info import TOKEN_BINS, Stats, bin_label, pct, when
from agent.export.samples import LengthRow
from agent.records import BatchSummary, ExportContext

BLUE, GREY, GREEN, RED, AMBER = "#3b6fd8", "#b9c0cc", "#2e9d5b", "#d0453b", "#c98a13"
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"


def _num(v: float) -> str:
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:,.1f}"


def label_width(labels: list[str]) -> int:
    return min(260, 12 + 7 * max((len(s) for s in labels), default=4))


def hbars(title: str, rows: list[tuple[str, list[float]]], series: list[tuple[str, str]], chart: str,
          width: int = 760, label_w: int | None = None) -> Markup:
    """Horizontal grouped bars: one row per label, one bar per series (name, colour)."""
    label_w = label_w or label_width([r[0] for r in rows])
    bar_h, gap = 12, 8
    row_h = bar_h * len(series) + gap
    top = 46
    height = top + row_h * max(1, len(rows)) + 10
    plot_w = width - label_w - 70
    peak = max((v for _, vals in rows for v in vals), default=0) or 1
    out = [f'<svg class="chart" data-chart="{escape(chart)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<text x="0" y="16" class="t">{escape(title)}</text>']
    x = label_w
    for name, colour in series:
        out.append(f'<rect x="{x}" y="26" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{x + 14}" y="35" class="s">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    for i, (label, vals) in enumerate(rows):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + row_h / 2}" class="l" text-anchor="end">{escape(label)}</text>')
        for j, ((_, colour), v) in enumerate(zip(series, vals, strict=True)):
            w = plot_w * v / peak
            by = y + j * bar_h
            out.append(f'<rect x="{label_w}" y="{by}" width="{w:.1f}" height="{bar_h - 2}" fill="{colour}">'
                       f'<title>{escape(label)}: {_num(v)}</title></rect>'
                       f'<text x="{label_w + w + 4:.1f}" y="{by + bar_h - 4}" class="v">{_num(v)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def vbars(title: str, labels: list[str], values: Sequence[float], chart: str, colour: str = BLUE,
          width: int = 760, fmt=_num) -> Markup:
    """Vertical bars (histograms, cost per batch), labels under the axis."""
    height, top, bottom, left = 274, 44, 52, 10
    n = max(1, len(values))
    slot = (width - left - 10) / n
    plot_h = height - top - bottom
    peak = max(values, default=0) or 1
    every = max(1, n // 24)  # thin the axis labels when there are many bars
    out = [f'<svg class="chart" data-chart="{escape(chart)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<text x="0" y="16" class="t">{escape(title)}</text>',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#888"/>']
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * v / peak
        x = left + i * slot
        out.append(f'<rect x="{x + slot * 0.1:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.8:.1f}" '
                   f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {fmt(v)}</title></rect>')
        if n <= 24:
            out.append(f'<text x="{x + slot / 2:.1f}" y="{top + plot_h - h - 4:.1f}" class="v" '
                       f'text-anchor="middle">{fmt(v)}</text>')
        if i % every == 0:
            out.append(f'<text x="{x + slot / 2:.1f}" y="{top + plot_h + 16}" class="s" '
                       f'text-anchor="middle">{escape(label)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def gauges(rows: list[dict[str, Any]], width: int = 760) -> Markup:
    """Each diversity metric as a bar with its threshold marked; green when on the right side of it."""
    row_h, top, label_w = 44, 30, 170
    height = top + row_h * max(1, len(rows))
    plot_w = width - label_w - 150
    out = [f'<svg class="chart" data-chart="diversity" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="diversity against thresholds">',
           '<text x="0" y="16" class="t">Diversity against seed 000 thresholds (| marks the threshold)</text>']
    for i, r in enumerate(rows):
        y = top + i * row_h
        scale = max(r["value"], r["bound"]) * 1.25 or 1
        w, tx = plot_w * r["value"] / scale, label_w + plot_w * r["bound"] / scale
        side = "≥" if r["kind"] == "at_least" else "<"
        colour = GREEN if r["ok"] else RED
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" class="l" text-anchor="end">{escape(r["metric"])}</text>'
                   f'<rect x="{label_w}" y="{y + 4}" width="{plot_w}" height="14" fill="#eef0f4"/>'
                   f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="14" fill="{colour}"/>'
                   f'<line x1="{tx:.1f}" y1="{y}" x2="{tx:.1f}" y2="{y + 22}" stroke="#222" stroke-width="2"/>'
                   f'<text x="{label_w + plot_w + 8}" y="{y + 15}" class="v">{_num(r["value"])} '
                   f'(needs {side} {_num(r["bound"])}) {"PASS" if r["ok"] else "FAIL"}</text>'
                   f'<text x="{label_w}" y="{y + 34}" class="s">{escape(r["seed"])}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def batch_costs(batches: list[BatchSummary]) -> tuple[list[str], list[float]]:
    """Cost of each batch from the ledger's running total (cost_total is cumulative across runs)."""
    labels, costs, before = [], [], 0.0
    for b in batches:
        total = float(b.cost_total if b.cost_total is not None else before)
        labels.append(str(b.batch))
        costs.append(max(0.0, total - before))
        before = total
    return labels, costs


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>datagen report: {{ plan.name }}</title>
<style>
body { {{ font }}; margin: 24px auto; max-width: 800px; color: #1d2330; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #dde; }
.banner { background: #fbe3e1; border: 2px solid #d0453b; color: #8c1d15; padding: 10px 14px; font-weight: 700;
  margin-bottom: 16px; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
td, th { border-bottom: 1px solid #e4e6ec; padding: 4px 6px; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.PASS { color: #1e7a44; font-weight: 700; } .FAIL { color: #b3261e; font-weight: 700; }
.REVIEW { color: #9a6700; font-weight: 700; }
.muted { color: #5b6475; font-size: 13px; }
svg.chart { display: block; margin: 10px 0 18px; max-width: 100%; height: auto; }
svg .t { font: 600 14px sans-serif; fill: #1d2330; } svg .l { font: 12px sans-serif; fill: #1d2330; }
svg .s { font: 11px sans-serif; fill: #5b6475; } svg .v { font: 11px sans-serif; fill: #1d2330; }
details { margin: 4px 0; } details > summary { cursor: pointer; padding: 3px 0; }
details.dim > summary { font-weight: 600; } details.cat { margin-left: 16px; }
.ex { border-left: 3px solid #dde; margin: 6px 0 10px 16px; padding: 2px 10px; }
.turn { margin: 4px 0; } .role { font: 600 11px sans-serif; color: #5b6475; text-transform: uppercase; }
.turn pre { white-space: pre-wrap; word-wrap: break-word; margin: 2px 0; font: 13px/1.4 ui-monospace, Menlo, monospace;
  background: #f6f7f9; padding: 6px 8px; }
.why { color: #b3261e; font-size: 13px; } .pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
</style></head><body>
{% if simulated %}<div class="banner">SIMULATED DATA — NOT FOR TRAINING: every example came from datagen's
simulated provider, not from a language model.</div>{% endif %}
<h1>{{ plan.name }}</h1>
<p class="muted">{{ plan.task }} · format {{ format }} · plan hash {{ plan_hash }} · run started {{ started }} ·
exported {{ exported }}</p>
<table>
<tr><th>File</th><th class="n">Examples</th><th class="n">Tokens</th></tr>
{% for name, n in stats.files.items() %}<tr><td>{{ name }}</td><td class="n">{{ "{:,}".format(n) }}</td>
<td class="n">{{ "{:,}".format(stats.example_tokens.get(name, 0)) }}</td></tr>{% endfor %}
</table>
{% if stats.left_out %}<p><b>Left out:</b> {{ "{:,}".format(stats.left_out) }} examples ({{ stats.left_out_reason }}).</p>{% endif %}
{% if stats.system_dropped %}<p><b>System prompt dropped:</b> {{ "{:,}".format(stats.system_dropped) }} examples had one;
the {{ format }} format has no field for it.</p>{% endif %}
<p class="muted">Model(s) {{ usage.models | join(", ") or "none" }} · {{ "{:,}".format(usage.calls) }} calls ·
{{ "{:,}".format(usage.input_tokens) }} input / {{ "{:,}".format(usage.output_tokens) }} output tokens ·
${{ "%.4f" | format(usage.cost) }} · multi-turn {{ multi }}</p>

<h2>Quality control checklist</h2>
<table>{% for c in checks %}<tr><td class="{{ c.status }}">{{ c.status }}</td><td>{{ c.item }}</td>
<td class="muted">{{ c.note }}</td></tr>{% endfor %}</table>

<h2>Target vs actual</h2>
{% for chart in target_charts %}{{ chart }}{% endfor %}

<h2>Lengths</h2>
{{ query_hist }}
{{ reply_hist }}

<h2>Lengths per category against the target range</h2>
{% if length_charts %}{% for chart in length_charts %}{{ chart }}{% endfor %}{% else %}<p>No category of this plan
has a word range.</p>{% endif %}

<h2>Examples by category</h2>
<p class="muted">A few accepted examples of every category (the same ones on every export: picked by a hash of
their id). Read them: seed 001 asks for a review of 20+ samples.</p>
{% for dim, cats in samples.examples.items() %}<details class="dim"><summary>{{ dim }}</summary>
{% for cat, exs in cats.items() %}<details class="cat"><summary>{{ cat }} ({{ exs | length }} shown)</summary>
{% for ex in exs %}{{ example(ex) }}{% endfor %}</details>
{% endfor %}</details>
{% endfor %}

<h2>Rejections by reason</h2>
{% if rejections %}{{ rejections }}{% else %}<p>No rejections.</p>{% endif %}
{% if lost %}{{ lost }}{% else %}<p>No failed calls: every requested example came back from the model.</p>{% endif %}
{% if samples.rejected %}<details><summary>{{ samples.rejected | length }} rejected examples with their reasons
</summary>{% for ex in samples.rejected %}{{ example(ex) }}{% endfor %}</details>{% endif %}

<h2>Closest near-duplicates rejected</h2>
{% if samples.near_pairs %}{% for ratio, rejected, kept in samples.near_pairs %}<details class="near">
<summary>ratio {{ "%.3f" | format(ratio) }}: {{ rejected.spec_id }} (rejected) vs {{ kept.spec_id }} (kept)</summary>
<div class="pair"><div><span class="role">rejected</span><pre>{{ rejected.turns[0].text }}</pre></div>
<div><span class="role">kept</span><pre>{{ kept.turns[0].text }}</pre></div></div></details>
{% endfor %}{% else %}<p>No near-duplicate was rejected.</p>{% endif %}

<h2>Diversity</h2>
{% if diversity %}{{ diversity }}{% else %}<p>No batch audit in the ledger: diversity metrics are not available.</p>{% endif %}

{% if coverage %}<h2>Grounding: documents and coverage</h2>
<table><tr><th>source</th><th>sha256</th><th>passages used</th><th>examples</th></tr>
{% for s in coverage.sources %}<tr><td>{{ s.source }}{% if s.removed %} (removed){% endif %}</td><td><code>{{ s.hash }}</code></td><td>{{ s.used }}/{{ s.passages }}</td><td>{{ s.examples }}</td></tr>
{% endfor %}</table>
<p>{{ coverage.used }} of {{ coverage.passages }} passages used{% if coverage.unused %}; unused: {{ coverage.unused[:20]|join(", ") }}{% endif %}.</p>
{% if coverage.grounding %}<p>Grounding check: {{ coverage.grounding.unsupported }} of {{ coverage.grounding.checked }} answers stated a claim their passage does not support (rejected).</p>
<table><tr><th>category</th><th>unsupported</th><th>checked</th><th>share</th></tr>
{% for c, t in coverage.grounding.by_category.items() %}<tr><td>{{ c }}</td><td>{{ t.unsupported }}</td><td>{{ t.checked }}</td><td>{{ "%.1f%%"|format(100 * t.share) }}</td></tr>
{% endfor %}</table>{% endif %}{% endif %}
<h2>Cost per batch</h2>
{% if cost %}{{ cost }}{% elif batches %}<p>{{ batches }} batches, all at $0 (the provider reported no cost: the
simulated provider, or a model missing from the price table).</p>{% else %}<p>No batches recorded.</p>{% endif %}
</body></html>
"""


EXAMPLE = """{% macro example(ex) %}<div class="ex"><div class="muted">#{{ ex.id }} · {{ ex.spec_id }}
{%- if ex.topic %} · {{ ex.topic }}{% endif %}</div>{% if ex.note %}<div class="why">{{ ex.note }}</div>{% endif %}
{% for t in ex.turns %}<div class="turn"><span class="role">{{ t.role }}</span><pre>{{ t.text }}</pre></div>{% endfor %}
</div>{% endmacro %}"""


def range_hist(row: LengthRow, width: int = 760) -> Markup:
    """Words per example of one category: the target range shaded; in each bar the examples inside the range
    green, those outside red (a bar that straddles a bound can hold both)."""
    high = row.high or max(row.words, default=1)
    top = max(max(row.words, default=0), int(high * 1.25), 10)
    n_bins = 20
    step = max(1, -(-(top + 1) // n_bins))
    inside_at, outside_at = [0] * n_bins, [0] * n_bins
    lo = row.low or 0
    for w in row.words:
        ok = w >= lo and (row.high is None or w <= row.high)
        (inside_at if ok else outside_at)[min(n_bins - 1, w // step)] += 1
    height, plot_top, bottom, left = 150, 40, 30, 10
    plot_h = height - plot_top - bottom
    slot = (width - left - 10) / n_bins
    peak = max(a + b for a, b in zip(inside_at, outside_at, strict=True)) or 1
    x_of = lambda words: left + (words / step) * slot  # noqa: E731 - a scale, used twice
    inside = row.inside
    title = (f"{row.dimension} = {row.category}: {len(row.words):,} examples, target {lo}-{row.high or '∞'} words, "
             f"{inside:,} inside ({inside / len(row.words):.0%})" if row.words else
             f"{row.dimension} = {row.category}: 0 examples")
    out = [f'<svg class="chart" data-chart="length:{escape(row.dimension)}:{escape(row.category)}" '
           f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{escape(title)}">', f'<text x="0" y="16" class="t">{escape(title)}</text>',
           f'<rect x="{x_of(lo):.1f}" y="{plot_top}" width="{max(0.0, x_of((row.high or top) + 1) - x_of(lo)):.1f}" '
           f'height="{plot_h}" fill="#e7f4ec"><title>target range</title></rect>',
           f'<line x1="{left}" y1="{plot_top + plot_h}" x2="{width - 10}" y2="{plot_top + plot_h}" stroke="#888"/>']
    for i, (good, bad) in enumerate(zip(inside_at, outside_at, strict=True)):
        x = left + i * slot + slot * 0.1
        y: float = plot_top + plot_h
        for n, colour, what in ((good, GREEN, "inside"), (bad, RED, "outside")):
            if n:
                h = plot_h * n / peak
                y -= h
                out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" height="{h:.1f}" fill="{colour}">'
                           f'<title>{i * step}-{(i + 1) * step - 1} words: {n:,} {what} the range</title></rect>')
        if i % 4 == 0:
            out.append(f'<text x="{left + i * slot:.1f}" y="{plot_top + plot_h + 14}" class="s">{i * step}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def render_html(ctx: ExportContext) -> str:
    stats: Stats = ctx.stats
    target_charts = []
    dims: dict[str, list[tuple[str, list[float]]]] = {}
    for d, c, target, accepted, exported in ctx.targets:
        dims.setdefault(d, []).append((c, [target, accepted, exported]))
    same_w = label_width([c for _, c, *_ in ctx.targets])  # one plot edge for every dimension's chart
    for d, rows in dims.items():
        target_charts.append(hbars(d, rows, [("target", GREY), ("accepted", AMBER), ("exported", BLUE)],
                                   f"target:{d}", label_w=same_w))
    bins = [bin_label(i) for i in range(len(TOKEN_BINS))]
    rejections = ctx.rejections
    labels, costs = batch_costs(ctx.batches)
    env = Environment(autoescape=True)
    samples = ctx.samples or {"examples": {}, "rejected": [], "near_pairs": [], "lengths": []}
    return env.from_string(EXAMPLE + PAGE).render(
        samples=samples, length_charts=[range_hist(r) for r in samples["lengths"]],
        plan=ctx.plan, format=ctx.format, plan_hash=ctx.plan_hash or "unknown", simulated=ctx.simulated,
        started=when(ctx.created_at), exported=when(ctx.exported_at), stats=stats, usage=ctx.usage,
        multi=pct(stats.multi_turn, stats.total), checks=ctx.checks, font=Markup(FONT),
        target_charts=target_charts,
        query_hist=vbars("User query length (tokens per user message)", bins, stats.query_hist, "query_lengths"),
        reply_hist=vbars("Assistant response length (tokens per response)", bins, stats.reply_hist,
                         "response_lengths", colour=GREEN),
        rejections=hbars(f"{sum(rejections.values()):,} examples rejected during generation",
                         [(r, [n]) for r, n in rejections.items()], [("rejected", RED)], "rejections")
        if rejections else None,
        lost=hbars(f"{sum(ctx.lost.values()):,} examples lost to failed calls (no example existed)",
                   [(r, [n]) for r, n in ctx.lost.items()], [("lost", GREY)], "lost")
        if ctx.lost else None,
        diversity=gauges(ctx.diversity) if ctx.diversity else None,
        cost=vbars("Cost per batch (USD)", labels, costs, "cost", colour=AMBER, fmt=lambda v: f"${v:.4f}")
        if any(costs) else None, batches=len(labels), coverage=ctx.coverage,
    )
