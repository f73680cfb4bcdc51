"""datagen kto --from-feedback: thumbs, stars and booleans -> deduplicated, balanced KTO rows."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from agent import dataset


def prompt(i: int) -> str:
    return f"Question number {i}: how do I resize volume {i} on my instance?"


def answer(i: int) -> str:
    return f"Answer {i}: stop the instance, open Volumes, pick a new size for volume {i}."


def logs(ratings: list, field: str = "rating") -> list[dict]:
    return [{"prompt": prompt(i), "response": answer(i), field: r, "user_id": f"u{i}"} for i, r in enumerate(ratings)]


def write(tmp_path, rows, name="logs.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(("ratings", "field"), [
    (["up"] * 6 + ["down"] * 3, "thumbs"),
    (["👍"] * 6 + ["👎"] * 3, "feedback"),
    ([1] * 6 + [-1] * 3, "vote"),
    ([True] * 6 + [False] * 3, "liked"),
    ([5, 4, 5, 4, 5, 4, 1, 2, 1], "stars"),
])
def test_ratings_of_every_kind_become_balanced_kto_rows(run_cli, tmp_path, ratings, field):
    src, out = write(tmp_path, logs(ratings, field)), tmp_path / "kto.jsonl"
    res = run_cli("kto", "--from-feedback", str(src), "-o", str(out))
    assert res.code == 0, res.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert Counter(r["label"] for r in rows) == {True: 3, False: 3}
    assert all(set(r) == {"prompt", "completion", "label"} for r in rows)     # no user ids carried over
    by_prompt = {r["prompt"]: r for r in rows}
    for i in range(6, 9):   # every undesirable row is kept; three desirable ones are downsampled away
        assert by_prompt[prompt(i)] == {"prompt": prompt(i), "completion": answer(i), "label": False}
    assert "balanced to 50/50: 3 desirable rows left out" in res.err
    assert [int(r["prompt"].split()[2][:-1]) for r in rows] == sorted(int(r["prompt"].split()[2][:-1]) for r in rows)


def test_stars_in_the_middle_are_ambiguous_and_the_threshold_is_a_flag(tmp_path):
    rows = logs([5, 3, 1, 4, 2])
    kto, report = dataset.kto_from_feedback(rows, balance=False)
    assert report.kind == "stars"
    assert [r["label"] for r in kto] == [True, False, True, False]
    assert report.skipped["ambiguous star ratings (between 2 and 4)"] == 1
    kto, _ = dataset.kto_from_feedback(rows, balance=False, threshold=3, bad_max=2)
    assert [r["label"] for r in kto] == [True, True, False, True, False]


def test_repeated_ratings_merge_by_majority_and_ties_are_left_out():
    base = {"prompt": prompt(1), "completion": answer(1)}
    other = {"prompt": prompt(2), "completion": answer(2)}
    rows = [{**base, "label": True}, {**base, "label": True}, {**base, "label": False},
            {**other, "label": True}, {**other, "label": False},
            {"prompt": prompt(3), "completion": answer(3), "label": False}]
    kto, report = dataset.kto_from_feedback(rows)
    assert kto.rows == [{**base, "label": True}, {"prompt": prompt(3), "completion": answer(3), "label": False}]
    assert report.duplicates == 3 and report.conflicts == 1


def test_no_balance_reports_the_imbalance(run_cli, tmp_path):
    src = write(tmp_path, logs([True] * 8 + [False] * 2, "label"))
    res = run_cli("kto", "--from-feedback", str(src), "--no-balance")
    assert res.code == 0
    assert len(res.out.splitlines()) == 10
    assert "8 desirable (80%), 2 undesirable IMBALANCED" in res.err


def test_chat_logs_and_named_fields(tmp_path):
    rows = [{"messages": [{"role": "user", "content": prompt(i)}, {"role": "assistant", "content": answer(i)}],
             "thumbs": "up" if i % 2 else "down"} for i in range(4)]
    kto, _ = dataset.kto_from_feedback(rows)
    assert [r["label"] for r in kto] == [False, True, False, True]
    odd = [{"q": prompt(i), "a": answer(i), "grade": 5 if i % 2 else 1} for i in range(4)]
    kto, report = dataset.kto_from_feedback(odd, prompt_field="q", completion_field="a", rating_field="grade")
    assert len(kto) == 4 and report.kind == "stars"


def test_rows_without_the_fields_are_counted_not_fatal(run_cli, tmp_path):
    path = tmp_path / "logs.jsonl"
    path.write_text(json.dumps(logs(["up"])[0]) + "\n{broken\n" + json.dumps({"text": "no fields"}) + "\n"
                    + json.dumps(logs(["down"])[0] | {"prompt": prompt(5)}) + "\n")
    res = run_cli("kto", "--from-feedback", str(path))
    assert res.code == 0, res.err
    assert "1 unreadable lines (bad JSON)" in res.err and "1 rows with no prompt or completion field" in res.err
    assert "line 2: unreadable lines (bad JSON)" in res.err
    assert len(res.out.splitlines()) == 2


def test_bad_kto_flags(run_cli, tmp_path):
    src = write(tmp_path, logs([5, 1]))
    res = run_cli("kto", "--from-feedback", str(src), "--threshold", "2", "--bad-max", "3")
    assert res.code == 2 and "must be below the desirable threshold" in res.err
    res = run_cli("kto", "--from-feedback", str(tmp_path / "missing.jsonl"))
    assert res.code == 2 and "file not found" in res.err
    res = run_cli("kto", "--from-feedback", str(src), "-o", str(src))
    assert res.code == 2 and "is the input file" in res.err
