"""The export re-checks its written files without redoing what it already knows (issue 11 item 7).

What is skipped and when (agent/export/pipeline.py _check, split.py): the near-duplicate re-check of the
written files when the split proved no two examples are near-duplicates (Split.unique), and the token
count of each line when the writer counted it with the same tokenizer. Each test compares the export's
own reports with a full `validate_file` of the same files (what `datagen validate` does), and shows the
work is not repeated; the cases that must not skip (a pair in the ledger, LSH mode, a trainer's own
tokenizer, a written text that differs from the split's) run the full check. The split's own search is
skipped when the ledger proves no pair exists (Ledger.proves_unique: the run's exact finds at a threshold at
or below the export's, and no accepted row written without them).
"""

from __future__ import annotations

import json

import pytest

from agent import tokens
from agent.audit import dedup
from agent.audit.dedup import NearDupIndex
from agent.export import TRAIN, VAL, export, formats, split
from agent.export import validate as validate_module
from agent.export.split import Item
from agent.export.validate import validate_file
from agent.ledger import CallRow, ExampleRow
from agent.records import user_text
from tests.test_export import accepted, copy_run, distinct_text, runs  # noqa: F401 - runs is a fixture

FIELDS = ("format", "lines", "blank", "examples", "valid", "error_lines", "codes", "tokens_total", "tokens_max",
          "over_limit", "near_duplicates", "cross_duplicates", "user_chars", "near_dups", "file_errors")


def full_reports(result, plan, tokenizer=None) -> dict:
    """What `datagen validate` finds in the written files: every check, a fresh shared index, fresh counts."""
    index = NearDupIndex(plan.quality.dedup_threshold)
    return {p.name: validate_file(p, result.format, threshold=plan.quality.dedup_threshold, quality=plan.quality,
                                  index=index, tokenizer=tokenizer)
            for p in (result.out_dir / name for name in result.reports)}


def figures(reports: dict) -> dict:
    # summary()[0] names the file's path: the export's reports were made in its staging folder
    return {name: ({f: getattr(r, f) for f in FIELDS}, [str(e) for e in r.errors], r.summary()[1:])
            for name, r in reports.items()}


def counting(monkeypatch, owner, name: str) -> list[int]:
    calls = [0]
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def test_a_run_without_near_duplicates_is_checked_once_with_the_same_reports(runs, tmp_path, monkeypatch):  # noqa: F811 - the imported fixture
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    finds = counting(monkeypatch, NearDupIndex, "find")
    counted = counting(monkeypatch, validate_module, "example_tokens")   # validate's own counting only
    ledger.set_meta(ledger.DEDUP_PROOF, json.dumps({**ledger.dedup_proof(), "exact": False}))  # split must search
    result = export(plan, ledger, folder, val_split=0.25)
    n = result.stats.total
    assert result.split.unique and result.split.n_val > 0 and result.stats.same_user_texts
    assert finds[0] == n        # the split's finds only: the written files were not searched again
    assert counted[0] == 0      # every line's tokens came from the writer
    assert figures(result.reports) == figures(full_reports(result, plan))
    assert sum(r.tokens_total for r in result.reports.values()) == sum(result.stats.example_tokens.values())


def test_a_run_whose_ledger_proves_no_near_duplicates_is_not_searched_at_all(runs, tmp_path, monkeypatch):  # noqa: F811 - the imported fixture
    # the run's own exact finds (Ledger.note_dedup, at this threshold) already prove the split's search empty
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    assert ledger.proves_unique(plan.quality.dedup_threshold)
    finds = counting(monkeypatch, NearDupIndex, "find")
    result = export(plan, ledger, folder, val_split=0.25)
    assert finds[0] == 0 and result.split.unique and result.split.n_val > 0
    assert figures(result.reports) == figures(full_reports(result, plan))   # what a full search finds: nothing
    # the same files as an export that searches (the proof voided)
    ledger.set_meta(ledger.DEDUP_PROOF, json.dumps({**ledger.dedup_proof(), "exact": False}))
    finds[0] = 0   # (full_reports above searched)
    again = export(plan, ledger, tmp_path / "searched", val_split=0.25)
    assert finds[0] == again.stats.total   # the split searched every text
    for name in (TRAIN, VAL):
        assert (result.out_dir / name).read_bytes() == (again.out_dir / name).read_bytes()


def test_a_ledger_with_near_duplicates_gets_the_full_check(runs, tmp_path, monkeypatch):  # noqa: F811 - the imported fixture
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    for row in accepted(ledger)[:6]:   # accepted near-copies, as an import or a changed threshold would leave
        record = json.loads(json.dumps(row["record"]))
        first = next(m for m in record["messages"] if m["role"] == "user")
        first["content"] += " thx"
        ledger.record_call([CallRow(batch=99, purpose="generate", provider="simulated", model="simulated-1",
                                    status="ok")],
                           [ExampleRow(spec_id=f"copy-{row['id']}", status="accepted", requested=row["requested"],
                                       audited=row["audited"], record=record, user_text=first["content"])])
    finds = counting(monkeypatch, NearDupIndex, "find")
    result = export(plan, ledger, folder, val_split=0.25)
    assert not result.split.unique and finds[0] > result.stats.total
    assert result.reports[TRAIN].near_duplicates + result.reports[VAL].near_duplicates == 6
    assert figures(result.reports) == figures(full_reports(result, plan))


def test_a_trainers_own_tokenizer_counts_every_line_afresh(runs, tmp_path, monkeypatch):  # noqa: F811 - the imported fixture
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    counted = counting(monkeypatch, validate_module, "example_tokens")
    result = export(plan, ledger, folder, val_split=0.25, trainer="openai")
    assert counted[0] == result.stats.total
    assert figures(result.reports) == figures(full_reports(result, plan, tokens.o200k()))


def test_a_written_text_that_differs_from_the_splits_gets_the_full_check(runs, tmp_path, monkeypatch):  # noqa: F811 - the imported fixture
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    real = formats.to_canonical

    def edited(obj, fmt):   # as if a format rewrote the first user message on the way out
        record = real(obj, fmt)
        first = next(m for m in record["messages"] if m["role"] == "user")
        first["content"] = "x " + first["content"]
        return record

    monkeypatch.setattr(formats, "to_canonical", edited)
    finds = counting(monkeypatch, NearDupIndex, "find")
    # sharegpt: the converter's path (a plain chat exported as openai is written as stored, never converted)
    result = export(plan, ledger, folder, fmt="sharegpt", val_split=0.25)
    assert result.split.unique and not result.stats.same_user_texts
    # the split's search is proven empty by the run (Ledger.proves_unique); the written files, which differ
    # from what the run checked, are searched in full
    assert finds[0] == result.stats.total


def test_split_proves_uniqueness_only_from_exact_checks_that_found_nothing(monkeypatch):
    distinct = [Item(i, ("s", "t"), distinct_text(i)) for i in range(30)]
    copy = Item(99, ("s", "t"), distinct_text(3)[:-1] + " please?")
    crossing = counting(monkeypatch, split, "_crossing")
    unique = split.split(distinct, 0.3, 0.85, seed=1)
    assert unique.unique and unique.n_val == 9 and crossing[0] == 0   # no pair, so none can cross
    paired = split.split(distinct + [copy], 0.3, 0.85, seed=1)
    assert not paired.unique and paired.groups == 1 and crossing[0] > 0
    monkeypatch.setattr(dedup, "AUTO_SWITCH", 10)   # LSH past 10 texts: "found nothing" proves nothing
    lsh = split.split(distinct, 0.3, 0.85, seed=1)
    assert not lsh.unique and lsh.validation == unique.validation


@pytest.mark.parametrize("fmt", ["sharegpt", "alpaca"])
def test_other_formats_reuse_too_and_match_a_full_validate(runs, tmp_path, fmt):  # noqa: F811 - the imported fixture
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    result = export(plan, ledger, folder, fmt=fmt, val_split=0.25)
    assert result.split.unique and result.stats.same_user_texts
    assert figures(result.reports) == figures(full_reports(result, plan))
    assert all(user_text(formats.to_canonical(json.loads(line), fmt))
               for line in (folder / TRAIN).read_text(encoding="utf-8").splitlines())


def test_the_ledgers_near_duplicate_proof_is_earned_before_it_is_trusted(tmp_path):
    from agent.ledger import Ledger

    def accept(ledger, n, checked):
        ledger.record_call([CallRow(batch=1, purpose="generate", provider="simulated", model="m", status="ok")],
                           [ExampleRow(spec_id=f"s{n}", status="accepted", requested={}, audited={},
                                       record={"messages": []}, user_text=f"q{n}")], dedup_checked=checked)

    ledger = Ledger(tmp_path / "a.sqlite")
    assert not ledger.proves_unique(0.85)                       # nothing noted: nothing proven
    ledger.note_dedup(0.85, exact=True)
    accept(ledger, 1, checked=True)
    assert ledger.proves_unique(0.85) and ledger.proves_unique(0.9) and not ledger.proves_unique(0.8)
    ledger.note_dedup(0.9, exact=True)                           # a resume at a looser threshold
    assert not ledger.proves_unique(0.85) and ledger.proves_unique(0.9)
    ledger.note_dedup(0.85, exact=False)                         # a run whose index may go approximate
    ledger.note_dedup(0.85, exact=True)
    assert not ledger.proves_unique(0.95)                        # once unproven, for good
    ledger.close()

    voided = Ledger(tmp_path / "b.sqlite")
    voided.note_dedup(0.85, exact=True)
    accept(voided, 1, checked=False)                             # accepted rows no search vouched for
    assert not voided.proves_unique(0.85)
    voided.close()

    older = Ledger(tmp_path / "c.sqlite")
    accept(older, 1, checked=True)                               # examples from before the proof existed
    older.note_dedup(0.85, exact=True)
    assert not older.proves_unique(0.85)
    older.close()
