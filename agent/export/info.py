"""dataset_info.txt: seed 001's template, the run's own numbers, and the quality-control checklist.

Statistics are gathered while the files are written (Stats: constant memory apart from the set of distinct
system prompts). The checklist is marked from checks run on the WRITTEN files after they are renamed into
place (validate_file re-reads and parses every line); items only a person can judge are REVIEW.
Diversity figures are the ledger's own: the cumulative metrics of the last batch audit, which cover every
accepted example (not recomputed at export: the tracker's overlap index grows with the dataset).
"""

from __future__ import annotations

import hashlib
import time
from array import array
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agent import tokens
from agent.coverage import lines as coverage_lines
from agent.export.validate import example_tokens
from agent.plan import Plan
from agent.records import BatchSummary, ExportContext, user_turns

TOKEN_BINS = (0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
EDGE_BEHAVIOURS = ("ambiguous", "adversarial", "negative")
NEAR_DUP_RULE = ("near-duplicates: difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() > {t:g} on the "
                 "first user message (or prompt), in either argument order; the later one is rejected")


def bin_label(i: int) -> str:
    lo = TOKEN_BINS[i]
    return f"{lo}+" if i == len(TOKEN_BINS) - 1 else f"{lo}-{TOKEN_BINS[i + 1] - 1}"


def bin_of(n: int) -> int:
    return max(0, bisect_right(TOKEN_BINS, n) - 1)   # the last bin whose lower bound n reaches


@dataclass
class Stats:
    """What the written files hold, accumulated one record at a time."""

    files: dict[str, int] = field(default_factory=dict)            # file name -> examples written
    user_msgs: int = 0
    user_tokens: int = 0
    reply_msgs: int = 0
    reply_tokens: int = 0
    rejected_tokens: int = 0                                        # dpo: the rejected responses
    example_tokens: dict[str, int] = field(default_factory=dict)    # file name -> tokens (validate's count)
    line_tokens: dict[str, array[int]] = field(default_factory=dict)  # file name -> tokens of each line, in order
    multi_turn: int = 0
    single_turn: int = 0
    systems: set[bytes] = field(default_factory=set)                # digests of distinct system prompts
    no_system: int = 0
    # dimension -> category -> examples written (a defaultdict: no Counter built per label that is counted)
    labels: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    query_hist: list[int] = field(default_factory=lambda: [0] * len(TOKEN_BINS))
    reply_hist: list[int] = field(default_factory=lambda: [0] * len(TOKEN_BINS))
    left_out: int = 0                                               # records the format cannot hold
    left_out_reason: str = ""
    system_dropped: int = 0                                         # records whose system prompt has no field
    same_user_texts: bool = True    # every written line's first user message is the ledger record's (split's)

    @property
    def total(self) -> int:
        return sum(self.files.values())

    def describe(self, record: dict[str, Any], labels: Iterable[tuple[str, str]], system: str) -> int:
        """One written example, whichever file it lands in (place() says which): `record` is the canonical
        form of the written line, `labels` its (dimension, category) pairs, `system` the original's system
        prompt. Returns the line's tokens, validate.example_tokens with the default tokenizer: a chat's
        messages are counted once here for both figures."""
        if "messages" in record:
            msgs = record["messages"]
            counts = [tokens.count(str(m.get("content", ""))) for m in msgs]
            n_tokens = tokens.framed(counts)   # tokens.count_messages(msgs), from the counts kept for the figures
            users = [c for m, c in zip(msgs, counts, strict=True) if m["role"] == "user"]
            replies = [c for m, c in zip(msgs, counts, strict=True) if m["role"] == "assistant"]
        else:
            n_tokens = example_tokens(record)
            users = [tokens.count(record["prompt"])]
            replies = [tokens.count(record.get("chosen", record.get("completion", "")))]
            if "rejected" in record:
                self.rejected_tokens += tokens.count(record["rejected"])
        for n in users:
            self.user_msgs += 1
            self.user_tokens += n
            self.query_hist[bin_of(n)] += 1
        for n in replies:
            self.reply_msgs += 1
            self.reply_tokens += n
            self.reply_hist[bin_of(n)] += 1
        if user_turns(record) > 1:
            self.multi_turn += 1
        else:
            self.single_turn += 1
        if system:
            self.systems.add(hashlib.blake2b(system.encode(), digest_size=8).digest())
        else:
            self.no_system += 1
        for dim, cat in labels:
            self.labels[dim][cat] += 1
        return n_tokens

    def place(self, file: str, n_tokens: int) -> None:
        """The next line of `file` (described before) holds n_tokens."""
        self.files[file] = self.files.get(file, 0) + 1
        self.example_tokens[file] = self.example_tokens.get(file, 0) + n_tokens
        self.line_tokens.setdefault(file, array("q")).append(n_tokens)   # 8 bytes a line: validate reuses them


@dataclass
class Check:
    item: str
    status: str   # PASS | FAIL | REVIEW
    note: str


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0.0%"


def when(epoch: str | float | None) -> str:
    if epoch in (None, ""):
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(epoch)))


def diversity_rows(batches: list[BatchSummary], accepted: int, total: int) -> list[dict[str, Any]]:
    """[{metric, value, bound, kind, ok, seed}] from the last batch's cumulative metrics; [] with no audit."""
    from agent.audit.diversity import THRESHOLDS, required

    last = next((b for b in reversed(batches) if b.diversity.cumulative), None)
    if last is None:
        return []
    metrics = last.diversity.cumulative
    rows = []
    for name, t in THRESHOLDS.items():
        if name not in metrics:
            continue
        value = float(metrics[name])
        need = required(name, accepted, total)
        ok = value >= need if t.kind == "at_least" else value < need
        rows.append({"metric": name, "value": value, "bound": need, "kind": t.kind, "ok": ok, "seed": t.seed})
    return rows


def target_rows(plan: Plan, actual: dict[str, dict[str, int]], stats: Stats) -> list[tuple[str, str, int, int, int]]:
    """(dimension, category, target, accepted in the ledger, exported) for every category of the plan."""
    rows = []
    for dim_name, dim in plan.dimensions.items():
        for c in dim.categories:
            rows.append((dim_name, c.name, c.quota or 0, actual.get(dim_name, {}).get(c.name, 0),
                         stats.labels.get(dim_name, Counter()).get(c.name, 0)))
    return rows


def render(ctx: ExportContext) -> str:
    """The text of dataset_info.txt from the export's context (see agent.export.export)."""
    plan: Plan = ctx.plan
    stats: Stats = ctx.stats
    split = ctx.split
    usage = ctx.usage
    train, val = ctx.train_name, ctx.val_name
    n_train, n_val = stats.files.get(train, 0), stats.files.get(val, 0)
    lines: list[str] = []
    add = lines.append
    if ctx.simulated:
        add("SIMULATED DATA — NOT FOR TRAINING: every example came from datagen's simulated provider (a test")
        add("fake with canned text), not from a language model. Use it to check the pipeline, never to fine-tune.")
        add("")
    add("Generated Fine-Tuning Dataset Summary")
    add("=====================================")
    add("")
    add("Files Created:")
    add(f"- {train} ({n_train:,} examples)")
    if n_val or split.target_val:
        add(f"- {val} ({n_val:,} examples)")
    else:
        add(f"- no {val}: validation split is 0")
    add("- dataset_info.txt (metadata)")
    add("- report.html (charts: targets, lengths, rejections, diversity, cost)")
    add("")
    add(f"Format: {ctx.format} ({ctx.format_note})")
    if stats.left_out:
        add(f"Left out: {stats.left_out:,} examples ({stats.left_out_reason})")
    if stats.system_dropped:
        add(f"System prompt dropped: {stats.system_dropped:,} examples had one; the {ctx.format} format has no "
            f"field for it")
    add("")
    add("Dataset Statistics:")
    add(f"- Total training examples: {n_train:,}")
    add(f"- Total validation examples: {n_val:,}")
    add(f"- Average user query length: {stats.user_tokens / max(1, stats.user_msgs):,.1f} tokens "
        f"(over {stats.user_msgs:,} user messages)")
    add(f"- Average assistant response length: {stats.reply_tokens / max(1, stats.reply_msgs):,.1f} tokens "
        f"(over {stats.reply_msgs:,} responses{'; the chosen ones' if ctx.format == 'dpo' else ''})")
    if ctx.format == "dpo":
        add(f"- Average rejected response length: {stats.rejected_tokens / max(1, stats.total):,.1f} tokens")
    add(f"- System prompts: {len(stats.systems)} variation(s) in the files ({len(plan.system_prompts)} in the plan"
        + (f"; {stats.no_system:,} examples without one" if stats.no_system else "") + ")")
    add(f"- Multi-turn conversations: {pct(stats.multi_turn, stats.total)}")
    add(f"- Single-turn conversations: {pct(stats.single_turn, stats.total)}")
    add(f"- Estimated total tokens: {sum(stats.example_tokens.values()):,} "
        f"({train}: {stats.example_tokens.get(train, 0):,}; {val}: {stats.example_tokens.get(val, 0):,}); "
        f"cl100k_base via tiktoken, OpenAI chat framing for messages")
    add("")
    add("Category Distribution:")
    for dim_name in plan.dimensions:
        counts = stats.labels.get(dim_name, Counter())
        add(f"{dim_name}:")
        for c in plan.dimensions[dim_name].categories:
            add(f"- {c.name}: {counts.get(c.name, 0):,} examples ({pct(counts.get(c.name, 0), stats.total)})")
    add("")
    add("Target vs Actual (target = plan quota; accepted = in the ledger; exported = in the files above):")
    width = max((len(f"{d}.{c}") for d, c, *_ in ctx.targets), default=10)
    add(f"  {'category':<{width}}  {'target':>7}  {'accepted':>8}  {'exported':>8}")
    for d, cat, target, accepted, exported in ctx.targets:
        flag = "" if accepted == target else "  <- off target"
        add(f"  {d + '.' + cat:<{width}}  {target:>7,}  {accepted:>8,}  {exported:>8,}{flag}")
    add("")
    add("Train/Validation Split:")
    if split.target_val:
        add(f"- validation share {ctx.share:g}: {split.n_val:,} of {split.n_train + split.n_val:,} "
            f"(asked {split.target_val:,}), stratified by {' x '.join(split.by)} ({len(split.strata)} strata), "
            f"seed {plan.generation.seed}")
    else:
        add("- validation share 0: everything is training data")
    add(f"- near-duplicate groups kept on one side: {split.groups:,} ({split.grouped:,} examples); "
        f"groups moved to training by the cross-split check: {split.moved:,}")
    add("")
    add("Rejections by Reason (generation; examples the audit turned down):")
    rejections = ctx.rejections
    if rejections:
        for reason, n in rejections.items():
            add(f"- {reason}: {n:,}")
    else:
        add("- none")
    lost = ctx.lost
    add(f"Failed calls (no example was produced, so none was rejected): {sum(lost.values()):,} examples lost")
    for reason, n in lost.items():
        add(f"- {reason}: {n:,}")
    surplus = ctx.surplus
    if surplus:   # the last examples were drawn several times over; these copies came after their slot filled
        add(f"Surplus tail copies (not rejections; another copy filled the slot first): {sum(surplus.values()):,}")
        for reason, n in surplus.items():
            add(f"- {reason}: {n:,}")
    add(f"Duplicates removed: {rejections.get('near_duplicate', 0):,}")
    add("- " + NEAR_DUP_RULE.format(t=plan.quality.dedup_threshold))
    add("")
    add("Diversity (cumulative metrics of the last batch audit, against seed 000's thresholds):")
    if ctx.diversity:
        for r in ctx.diversity:
            side = ">=" if r["kind"] == "at_least" else "<"
            add(f"- {r['metric']}: {r['value']:.3g} (needs {side} {r['bound']:g}) {'PASS' if r['ok'] else 'FAIL'}"
                f" — {r['seed']}")
    else:
        add("- not available: the ledger holds no batch audit")
    add("")
    if ctx.coverage:
        add("Grounding (the documents the examples answer from):")
        for line in coverage_lines(ctx.coverage):
            add(line)
        add("")
    add("Generation:")
    add(f"- Plan: {plan.name} (hash {plan.content_hash()}; run started with plan hash {ctx.plan_hash or 'unknown'})")
    add(f"- Model(s): {', '.join(usage['models']) or 'none recorded'}")
    add(f"- Calls: {usage['calls']:,}; tokens: {usage['input_tokens']:,} in ({usage['cached_tokens']:,} cached), "
        f"{usage['output_tokens']:,} out")
    add(f"- Cost: ${usage['cost']:.4f}")
    if usage.get("faults"):
        add("- Provider faults: " + ", ".join(f"{k} {v}" for k, v in sorted(usage["faults"].items())))
    add(f"- Run started: {when(ctx.created_at)}; exported: {when(ctx.exported_at)}")
    add("")
    add("Quality Control Checklist:")
    for check in ctx.checks:
        add(f"- [{check.status}] {check.item}: {check.note}")
    add("")
    add("Next Steps:")
    add(f"1. Review sample examples in {train}" + (" (REVIEW items above need a person)" if any(
        c.status == "REVIEW" for c in ctx.checks) else ""))
    add("2. Load dataset into training framework")
    add("3. Adjust hyperparameters based on dataset size")
    add("4. Monitor training metrics")
    return "\n".join(lines) + "\n"


SHARE_TOLERANCE = 0.02   # a category may sit 2 percentage points (or 1 example) off its planned share


def distribution_check(plan: Plan, stats: Stats, targets: list[tuple[str, str, int, int, int]]) -> Check:
    """Exact quotas when the files hold the plan's total; otherwise every share within SHARE_TOLERANCE."""
    item = "Distribution across categories is balanced (or as specified)"
    if all(exported == target for _, _, target, _, exported in targets):
        return Check(item, "PASS", "every category's exported count equals its plan quota")
    n = stats.total
    slack = max(SHARE_TOLERANCE, 1 / n) if n else 1.0
    off = []
    for d, c, target, _, exported in targets:
        want = target / plan.total
        got = exported / n if n else 0.0
        if abs(got - want) > slack + 1e-12:
            off.append((abs(got - want), f"{d}.{c} {got:.1%} (plan {want:.1%})"))
    if not off:
        return Check(item, "PASS", f"{n:,} of the plan's {plan.total:,} examples; every category's share is within "
                                   f"{slack:.1%} of its plan share")
    worst = [text for _, text in sorted(off, reverse=True)[:5]]
    return Check(item, "FAIL", f"{len(off)} categor{'y' if len(off) == 1 else 'ies'} more than {slack:.1%} off "
                               f"their plan share: {', '.join(worst)}")


def checklist(plan: Plan, stats: Stats, reports: dict[str, Any],
              targets: list[tuple[str, str, int, int, int]]) -> list[Check]:
    """Seed 001's quality-control checklist (plus two of seed 003's), each item from a real check."""
    codes: Counter[str] = Counter()
    for r in reports.values():
        codes.update(r.codes)
    checks: list[Check] = []

    broken = sum(codes[c] for c in ("bad_json", "not_utf8", "line_too_long", "blank_line"))
    counted = {name: r.lines for name, r in reports.items()}
    same = all(counted.get(name) == n for name, n in stats.files.items())
    checks.append(Check("All examples are valid JSON", "PASS" if not broken and same else "FAIL",
                        f"re-read {sum(counted.values()):,} lines of {', '.join(reports)}: {broken:,} unparsable"
                        + ("" if same else f"; line counts {counted} differ from those written {stats.files}")))

    within = sum(r.near_duplicates for r in reports.values())
    cross_dups = sum(r.cross_duplicates for r in reports.values())
    checks.append(Check("No duplicate or near-duplicate examples", "PASS" if not within and not cross_dups else "FAIL",
                        f"{within:,} within files, {cross_dups:,} between validation and training "
                        f"(ratio > {plan.quality.dedup_threshold:g} on the first user message, in the written files)"))

    planned = {hashlib.blake2b(p.encode(), digest_size=8).digest() for p in plan.system_prompts}
    foreign = len(stats.systems - planned)
    checks.append(Check("System prompts are appropriate and consistent (or intentionally varied)", "REVIEW",
                        (f"{len(stats.systems)} variation(s), "
                         + ("all from the plan's list" if not foreign else f"{foreign} NOT in the plan's list")
                         if stats.systems else "no system prompt in the files")
                        + "; whether they are appropriate needs a person"))
    checks.append(Check("User queries are natural and realistic", "REVIEW",
                        "needs a person: read a random sample of 20+ examples"))
    rule_errors = sum(n for c, n in codes.items() if c not in ("bad_json", "not_utf8", "line_too_long", "blank_line",
                                                                "near_duplicate", "near_duplicate_across",
                                                                "too_many_tokens"))
    checks.append(Check("Assistant responses are accurate and helpful", "REVIEW",
                        f"seed 003's automatic rules (structure, lengths, 'As an AI', refusals without help, PII) "
                        f"found {rule_errors:,} problem(s); accuracy needs a person"))

    checks.append(distribution_check(plan, stats, targets))

    behaviour = plan.dimensions.get("behaviour") or plan.dimensions.get("behavior")
    if behaviour is None:
        checks.append(Check("Edge cases and error scenarios are included", "REVIEW",
                            "the plan has no behaviour dimension to count them by; needs a person"))
    else:
        dim_name = "behaviour" if "behaviour" in plan.dimensions else "behavior"
        edge = [c.name for c in behaviour.categories if c.name in EDGE_BEHAVIOURS]
        have = {c: stats.labels.get(dim_name, Counter()).get(c, 0) for c in edge}
        missing = [c for c, n in have.items() if n == 0]
        checks.append(Check("Edge cases and error scenarios are included", "PASS" if edge and not missing else "FAIL",
                            ", ".join(f"{c} {n:,}" for c, n in have.items()) if edge else
                            f"the plan has none of the edge-case categories {', '.join(EDGE_BEHAVIOURS)}"))
    checks.append(Check("Multi-turn examples flow naturally", "REVIEW",
                        f"{stats.multi_turn:,} multi-turn example(s); roles alternate and end with the assistant on "
                        f"every line that passed validation; whether they flow needs a person"))
    same_counts = all(reports[name].lines == n and reports[name].examples == n for name, n in stats.files.items())
    checks.append(Check("Dataset statistics are documented", "PASS" if same_counts else "FAIL",
                        "dataset_info.txt; its example counts match the lines re-read from the written files"
                        if same_counts else "the counts documented here differ from the lines in the written files"))
    bad = [name for name, r in reports.items() if not r.ok]
    checks.append(Check("Validation script passes", "PASS" if not bad else "FAIL",
                        f"datagen validate on {', '.join(reports)}: "
                        + ("no errors" if not bad else "; ".join(
                            f"{name}: {reports[name].error_lines:,} line(s) with errors "
                            f"({', '.join(f'{c} {n}' for c, n in reports[name].codes.most_common(4))})" for name in bad))))
    over = sum(r.over_limit for r in reports.values())
    limit = next(iter(reports.values())).max_tokens if reports else 0
    checks.append(Check("Under token limits per example (seed 003)", "PASS" if not over else "FAIL",
                        f"{over:,} example(s) above {limit:,} tokens"))
    pii = sum(n for c, n in codes.items() if c.startswith("pii_"))
    if plan.quality.allow_pii:
        checks.append(Check("No personally identifiable information (seed 003)", "REVIEW",
                            "not checked: the plan sets quality.allow_pii"))
    else:
        checks.append(Check("No personally identifiable information (seed 003)", "PASS" if not pii else "FAIL",
                            f"{pii:,} finding(s) by the PII patterns (e-mail, phone, card, SSN, IBAN)"))
    return checks
