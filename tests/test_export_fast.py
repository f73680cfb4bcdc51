"""The export's one pass over the ledger (issue 11 item 7): the same files and figures as before.

Before, the export read the ledger three times (the split's items, the writer, report.html's word counts)
and asked SQL for each category's samples; now pipeline._scan reads it once and _place copies the staged
lines into the two files. The references below are the code as it was (kept here, verbatim apart from
names): for every format, the written files must be the same bytes, the statistics the same values in
the same order, the split the same, and report.html's samples and word counts the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent import tokens
from agent.export import TRAIN, VAL, export, formats, info, samples, split
from agent.export.pipeline import ALL, STAGING_PREFIX
from agent.export.validate import example_tokens
from agent.ledger import CallRow, ExampleRow, Ledger
from agent.plan import Plan
from agent.records import response_text, user_text, user_turns
from tests.test_export import copy_run, plan_data, runs  # noqa: F401 - runs is a fixture

# ---- the references: the code before this change --------------------------------------------------


def reference_add(stats: info.Stats, file: str, record: dict[str, Any], labels: dict[str, str], n_tokens: int,
                  system: str) -> None:
    """info.Stats.add before."""
    stats.files[file] = stats.files.get(file, 0) + 1
    stats.example_tokens[file] = stats.example_tokens.get(file, 0) + n_tokens
    stats.line_tokens.setdefault(file, info.array("q")).append(n_tokens)
    if "messages" in record:
        users = [m["content"] for m in record["messages"] if m["role"] == "user"]
        replies = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
    else:
        users = [record["prompt"]]
        replies = [record.get("chosen", record.get("completion", ""))]
        if "rejected" in record:
            stats.rejected_tokens += tokens.count(record["rejected"])
    for text in users:
        n = tokens.count(text)
        stats.user_msgs += 1
        stats.user_tokens += n
        stats.query_hist[reference_bin_of(n)] += 1
    for text in replies:
        n = tokens.count(text)
        stats.reply_msgs += 1
        stats.reply_tokens += n
        stats.reply_hist[reference_bin_of(n)] += 1
    if user_turns(record) > 1:
        stats.multi_turn += 1
    else:
        stats.single_turn += 1
    if system:
        stats.systems.add(info.hashlib.blake2b(system.encode(), digest_size=8).digest())
    else:
        stats.no_system += 1
    for dim, cat in labels.items():
        stats.labels.setdefault(dim, Counter())[cat] += 1


def reference_bin_of(n: int) -> int:
    return max(i for i, lo in enumerate(info.TOKEN_BINS) if n >= lo)


def _system(record: dict[str, Any]) -> str:
    if "messages" in record:
        return next((m["content"] for m in record["messages"] if m.get("role") == "system"), "")
    return str(record.get("system") or "")


def reference_export(plan: Plan, ledger: Ledger, out_dir: Path, fmt: str, share: float):
    """export()'s items, split and _write before: (split, stats, {file name: bytes})."""
    by = split.strata_dims(plan)

    def items():
        for row in ledger.iter_accepted():
            labels = row["audited"] or row["requested"]
            if fmt.startswith("alpaca") and formats.to_format(row["record"], fmt) is None:
                continue
            yield split.Item(row["id"], tuple(labels.get(d, "") for d in by), user_text(row["record"]))

    parts = split.split(items(), share, plan.quality.dedup_threshold, seed=plan.generation.seed, by=by,
                        known_unique=ledger.proves_unique(plan.quality.dedup_threshold))
    validation = parts.validation
    stats = info.Stats()
    files = {}
    out_dir.mkdir(parents=True)
    try:
        for name in (TRAIN, VAL) if validation else (TRAIN,):
            files[name] = open(out_dir / name, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        labels_of = set(plan.dimensions)
        for row in ledger.iter_accepted():
            record = row["record"]
            out = formats.to_format(record, fmt)
            if out is None:
                stats.left_out += 1
                stats.left_out_reason = formats.MULTI_TURN_REASON
                continue
            dropped = formats.drops_system(record, fmt)
            stats.system_dropped += dropped
            name = VAL if row["id"] in validation else TRAIN
            files[name].write(json.dumps(out, ensure_ascii=False) + "\n")
            written = formats.to_canonical(out, fmt)
            stats.same_user_texts &= user_text(written) == user_text(record)
            labels = {d: c for d, c in (row["audited"] or row["requested"]).items() if d in labels_of}
            reference_add(stats, name, written, labels, example_tokens(written), "" if dropped else _system(record))
    finally:
        for f in files.values():
            with contextlib.suppress(OSError):
                f.close()
    stats.files.setdefault(TRAIN, 0)
    return parts, stats, {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}


def reference_examples_by_category(plan: Plan, ledger: Ledger, per: int = samples.PER_CATEGORY):
    out: dict[str, dict[str, list[samples.Sample]]] = {}
    for dim, d in plan.dimensions.items():
        for cat in d.categories:
            rows = ledger.db.execute(
                f"SELECT e.id, e.spec_id, e.topic, e.record FROM labels l JOIN examples e ON e.id = l.example_id "
                f"WHERE l.dimension = ? AND l.category = ? AND e.status = 'accepted' ORDER BY {samples._ORDER} LIMIT ?",
                (dim, cat.name, per)).fetchall()
            out.setdefault(dim, {})[cat.name] = [samples.Sample(i, s, t or "", samples.turns_of(json.loads(r)))
                                                 for i, s, t, r in rows]
    return out


def reference_lengths(plan: Plan, ledger: Ledger) -> list[samples.LengthRow]:
    measured = {d: dim for d, dim in plan.dimensions.items() if dim.measure in ("response_words", "input_words")}
    rows = {(d, c.name): samples.LengthRow(d, c.name, c.min_words, c.max_words)
            for d, dim in measured.items() for c in dim.categories}
    if not rows:
        return []
    for r in ledger.iter_accepted():
        labels = r["audited"] or r["requested"]
        for d, dim in measured.items():
            row = rows.get((d, labels.get(d, "")))
            if row is not None:
                text = response_text(r["record"]) if dim.measure == "response_words" else user_text(r["record"])
                row.words.append(samples.word_count(text))
    return list(rows.values())


# ---- the comparisons ------------------------------------------------------------------------------


def orders(stats: info.Stats) -> list:
    """What dataclass equality leaves out: the order of every dict and Counter (rendering follows it)."""
    return [list(stats.files), list(stats.example_tokens), list(stats.line_tokens), list(stats.labels),
            [list(c) for c in stats.labels.values()]]


def odd_rows(ledger: Ledger, plan: Plan) -> None:
    """Accepted rows the usual run has none of: empty audited labels (the requested ones count), a label
    outside the plan, and a near-duplicate pair (the split must then search and group them)."""
    row = next(r for r in ledger.iter_accepted() if user_turns(r["record"]) == 1)   # every format keeps it
    first = dict(row["audited"])
    odd = {**first, next(iter(first)): "not_in_the_plan"}
    record = json.loads(json.dumps(row["record"]))
    for m in record.get("messages", []):
        if m["role"] == "user":
            m["content"] += "!"
            break
    else:
        record["prompt"] += "!"
    ledger.record_call([CallRow(batch=98, purpose="generate", provider="simulated", model="simulated-1", status="ok")],
                       [ExampleRow(spec_id="import-1", status="accepted", requested=first, audited={},
                                   record=row["record"], user_text=user_text(row["record"])),
                        ExampleRow(spec_id="odd-1", status="accepted", requested=first, audited=odd,
                                   record=record, user_text=user_text(record))])


CASES = [("chat", "openai", 0.25), ("chat", "sharegpt", 0.1), ("chat", "alpaca", 0.2), ("chat", "alpaca-history", 0.0),
         ("preference", "dpo", 0.2), ("preference", "openai-dpo", 0.2), ("kto", "kto", 0.3), ("kto", "kto-chat", 0.1)]


@pytest.mark.parametrize(("shape", "fmt", "share"), CASES)
@pytest.mark.parametrize("odd", [False, True], ids=["as_run", "odd_rows"])
def test_one_pass_writes_the_same_files_and_figures_as_three(runs, tmp_path, monkeypatch, shape, fmt, share, odd):  # noqa: F811
    plan, ledger, folder = copy_run(runs, shape, tmp_path)
    if odd:
        odd_rows(ledger, plan)
    collected = []
    real_collect = samples.collect
    monkeypatch.setattr(samples, "collect", lambda *a: collected.append(real_collect(*a)) or collected[-1])
    result = export(plan, ledger, folder, fmt=fmt, val_split=share)
    parts, stats, files = reference_export(plan, ledger, tmp_path / "reference", fmt, share)
    assert {p.name: p.read_bytes() for p in result.paths if p.suffix == ".jsonl"} == files
    assert result.split == parts
    assert result.stats == stats and orders(result.stats) == orders(stats)
    assert collected[0]["examples"] == reference_examples_by_category(plan, ledger)
    assert collected[0]["lengths"] == reference_lengths(plan, ledger)
    tally = samples.Tally(plan)
    for row in ledger.iter_accepted():
        tally.add(row)
    assert (tally.label_counts, tally.accepted) == (ledger.label_counts(), ledger.accepted_count())
    # the staged lines went with the staging folder
    assert not [p for p in os.listdir(folder) if p.startswith(STAGING_PREFIX) or p == ALL]
    if fmt == "alpaca":
        assert stats.left_out > 0
    if odd:
        assert not parts.unique and parts.groups == 1


def test_bin_of_is_the_last_bin_a_count_reaches():
    assert [info.bin_of(n) for n in range(10_000)] == [reference_bin_of(n) for n in range(10_000)]


def test_describe_counts_each_line_as_validate_does():
    stats = info.Stats()
    records = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi \u00e9?"},
                             {"role": "assistant", "content": "Hello!\n\n```py\nx = 1\n```"}]},
               {"system": "s", "prompt": "p?", "chosen": "yes, fully", "rejected": "no"},
               {"system": "", "prompt": "p?", "completion": "ok", "label": True}]
    assert [stats.describe(r, {}, "") for r in records] == [example_tokens(r) for r in records]


def test_tally_picks_and_counts_equal_a_brute_force():
    """Tally.add skips the per-label test for a row whose order key is at or above its bound (every category
    full, the largest key they hold): the picks must still be each category's `per` smallest keys, and the
    label counts every pair, in first-seen order, on rows that fill some categories late or never."""
    plan = Plan.model_validate(plan_data("chat", 60))
    rng = random.Random(5)
    dims = {d: [c.name for c in dim.categories] for d, dim in plan.dimensions.items()}
    rare = next(iter(dims))
    rows = []
    for i in rng.sample(range(1, 10**6), 3000):
        audited = {d: rng.choice(cats[1:]) if d == rare and rng.random() < 0.9 else rng.choice(cats)
                   for d, cats in dims.items() if rng.random() < 0.95}
        if rng.random() < 0.02:
            audited[rare] = "not_in_the_plan"
        rows.append({"id": i, "record": {"messages": [{"role": "user", "content": "q"},
                                                      {"role": "assistant", "content": "a b"}]},
                     "audited": audited, "requested": audited})
    tally = samples.Tally(plan)
    for row in rows:
        tally.add(row)
    assert tally.bound is not None   # the fast path was taken
    for d, cats in dims.items():
        for c in cats:
            keys = sorted((samples.order_key(r["id"]), r["id"]) for r in rows if r["audited"].get(d) == c)
            assert tally.picks[d][c] == keys[:samples.PER_CATEGORY]
    pairs: dict[str, dict[str, int]] = {}
    for r in rows:
        for d, c in r["audited"].items():
            pairs.setdefault(d, {})[c] = pairs.get(d, {}).get(c, 0) + 1
    assert tally.label_counts == pairs
    assert [list(v) for v in tally.label_counts.values()] == [list(v) for v in pairs.values()]
    assert list(tally.label_counts) == list(pairs)
