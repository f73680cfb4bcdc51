"""datagen clean / dataset.clean: a crafted file with one row per drop reason, kept rows unchanged."""

from __future__ import annotations

import json

import pytest

from agent import dataset
from agent.dataset.clean import Bounds, Rules

Q = "How do I resize the storage volume attached to my GPU instance?"
A = "Stop the instance, open the Volumes tab, choose the new size and start the instance again."


def chat(user: str = Q, reply: str = A, *more: dict) -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply},
                                    *more]}) + "\n"


# (expected code or None for a kept row, the line's text); each drop reason appears once
ROWS: list[tuple[str | None, bytes]] = [
    (None, chat().encode()),
    ("bad_json", b'{"messages": [\n'),
    ("not_utf8", b'{"messages": "\xff\xfe"}\n'),
    ("line_too_long", b'{"messages": "' + b"x" * (10 * 1024 * 1024 + 10) + b'"}\n'),
    ("bad_structure", b'{"msgs": []}\n'),
    ("empty_turn", chat(reply="   ").encode()),
    ("instruction_too_short", chat(user="Resize?").encode()),
    ("instruction_too_long", chat(user="Please explain volume resizing. " * 40).encode()),
    ("output_too_short", chat(reply="Use the dashboard.").encode()),
    ("output_too_long", chat(reply="Stop the instance first. " * 170).encode()),
    ("as_an_ai", chat(reply="As an AI language model, I would stop the instance and resize the volume.").encode()),
    ("refusal_without_help", chat(reply="I cannot share internal storage details with anyone.").encode()),
    ("pii_email", chat(reply="Send the volume id to jane.doe@gmail.com and she will resize it today.").encode()),
    ("pii_phone", chat(reply="Call our storage engineer on +1 415-555-2671 and ask for a resize.").encode()),
    ("roles_not_alternating", json.dumps({"messages": [
        {"role": "user", "content": Q}, {"role": "user", "content": "Also, is there any downtime involved?"},
        {"role": "assistant", "content": A}]}).encode() + b"\n"),
    ("ends_not_assistant", chat(Q.replace("resize", "shrink"), A, {"role": "user", "content": "And then what?"}).encode()),
    ("near_duplicate", chat(user=Q.replace("GPU instance", "GPU server")).encode()),
    (None, chat(user="Which regions offer H100 nodes with NVLink this month?",
                reply="US-East and EU-West list H100 NVLink nodes; the dashboard shows live stock per region.").encode()),
]


@pytest.fixture
def crafted(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"".join(text for _, text in ROWS))
    return path


def expected_lines() -> tuple[dict[int, str], list[bytes]]:
    drops, kept, line = {}, [], 1
    for code, text in ROWS:
        if code is None:
            kept.append(text)
        else:
            drops[line] = code
        line += text.count(b"\n")
    return drops, kept


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_every_drop_reason_is_reported_with_its_line(run_cli, crafted, tmp_path, jobs):
    out, report = tmp_path / "clean.jsonl", tmp_path / "report.txt"
    res = run_cli("clean", str(crafted), "-o", str(out), "--report", str(report), "--jobs", jobs)
    assert res.code == 0, res.err
    drops, kept = expected_lines()
    assert out.read_bytes() == b"".join(kept)          # kept rows byte for byte, in order
    listed = [row for row in report.read_text().splitlines() if not row.startswith("#")]
    found = {int(row.split(":")[0].removeprefix("line ")): row.split(": ")[1] for row in listed}
    assert found == drops
    assert [int(r.split(":")[0].removeprefix("line ")) for r in listed] == sorted(drops)   # in line order
    assert f"{len(ROWS)} read (openai), 2 kept, {len(drops)} dropped" in res.err
    assert "near-duplicate of line 1 (ratio" in report.read_text()
    assert "jane.doe@gmail.com" not in report.read_text()    # PII is masked in the report


def test_bounds_and_threshold_are_flags(run_cli, crafted, tmp_path):
    out = tmp_path / "clean.jsonl"
    res = run_cli("clean", str(crafted), "-o", str(out), "--output-chars", "10-5000", "--instruction-chars", "5-2000",
                  "--allow-pii", "--near-dups", "off")
    assert res.code == 0, res.err
    kept = out.read_text()
    for text in ("Use the dashboard.", "Resize?", "jane.doe@gmail.com", "GPU server", "Please explain volume"):
        assert text in kept
    assert "GPU server" not in run_cli("clean", str(crafted)).out
    assert "GPU server" in run_cli("clean", str(crafted), "--threshold", "0.99").out


@pytest.mark.parametrize(("args", "message"), [
    (["--instruction-chars", "50-10"], "MIN <= MAX"),
    (["--output-chars", "lots"], "is not a range MIN-MAX"),
    (["--threshold", "1.5"], "--threshold"),
    (["--near-dups", "sometimes"], "--near-dups"),
    (["--format", "csv"], "--format"),
])
def test_bad_flag_values_are_one_line_exit_2(run_cli, crafted, args, message):
    before = crafted.read_bytes()
    res = run_cli("clean", str(crafted), *args)
    assert res.code == 2 and message in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert crafted.read_bytes() == before


def test_preference_pairs_of_different_length_and_equal_pairs_are_dropped():
    good = {"prompt": "How do I free GPU memory in PyTorch?",
            "chosen": "Delete tensors you no longer need, then call torch.cuda.empty_cache().",
            "rejected": "Restart your machine whenever memory runs out; it is the only way."}
    biased = {**good, "prompt": "What does a CUDA out-of-memory error mean?",
              "chosen": good["chosen"] + " Also lower the batch size, use mixed precision and checkpoint activations."}
    same = {**good, "prompt": "Why is my training loop leaking memory?", "rejected": good["chosen"]}
    kept, report = dataset.clean([good, biased, same])
    assert list(kept) == [good]
    assert {d.line: [r.code for r in d.reasons] for d in report.drops} == {2: ["length_bias"], 3: ["chosen_equals_rejected"]}
    kept, _ = dataset.clean([good, biased], rules=Rules(preference_length_ratio=3))
    assert len(kept) == 2


def test_kto_near_duplicates_only_within_one_label_and_balance_is_reported():
    p = "How do I free GPU memory in PyTorch when training?"
    rows = [{"prompt": p, "completion": "Delete unused tensors and call empty_cache().", "label": True},
            {"prompt": p, "completion": "Buy a bigger GPU, nothing else will ever help.", "label": False},
            {"prompt": p + " ", "completion": "Free tensors, then empty the CUDA cache.", "label": True},
            {"prompt": "What does a CUDA out-of-memory error mean?", "completion": "The GPU ran out of memory.",
             "label": True}]
    kept, report = dataset.clean(rows)
    assert [r["completion"] for r in kept] == [rows[0]["completion"], rows[1]["completion"], rows[3]["completion"]]
    assert report.drops[0].line == 3 and report.drops[0].reasons[0].code == "near_duplicate"
    assert "both labelled true" in report.drops[0].reasons[0].message
    assert report.labels[True] == 2 and report.labels[False] == 1
    assert any("IMBALANCED" in line for line in report.summary())


def test_clean_in_memory_matches_the_cli(crafted):
    rows = [json.loads(text) for code, text in ROWS if code in (None, "as_an_ai", "near_duplicate", "pii_email")]
    kept, report = dataset.clean(rows, rules=Rules(bounds=Bounds()))
    assert len(kept) == 2 and report.rows == 5
    assert sorted(report.reasons) == ["as_an_ai", "near_duplicate", "pii_email"]
    assert [d.line for d in report.drops] == sorted(d.line for d in report.drops)


def test_no_near_dups_mode_keeps_copies(crafted):
    rows = [json.loads(ROWS[0][1]), json.loads(ROWS[0][1])]
    assert len(dataset.clean(rows)[0]) == 1
    assert len(dataset.clean(rows, rules=Rules(near_dups="off"))[0]) == 2


def test_the_kept_line_bitmap_answers_like_a_set():
    import random

    from agent.dataset.clean import LineSet

    rng = random.Random(3)
    numbers = {rng.randrange(1, 200_000) for _ in range(5_000)} | {1, 7, 8, 9}
    kept = LineSet()
    for n in sorted(numbers, key=lambda _: rng.random()):
        kept.add(n)
    assert all((n in kept) == (n in numbers) for n in range(0, 200_010))
    assert -1 not in kept and "7" not in kept


def test_report_and_output_must_differ_and_unwritable_places_are_one_line(run_cli, crafted, tmp_path):
    out = tmp_path / "x.jsonl"
    res = run_cli("clean", str(crafted), "-o", str(out), "--report", str(out))
    assert res.code == 2 and "the same file" in res.err and not out.exists()
    blocked = tmp_path / "file"
    blocked.write_text("")
    res = run_cli("clean", str(crafted), "-o", str(blocked / "sub" / "x.jsonl"))
    assert res.code == 2 and "cannot write here" in res.err and len(res.err.strip().splitlines()) == 1


TOPICS = ["resize a storage volume", "rotate my API keys", "move an instance to another region",
          "read last month's invoice", "attach a second GPU", "open port 8080 to the world", "pause billing",
          "install CUDA 12 drivers"]


def kto_rows(good: int, bad: int) -> list[dict]:
    return [{"prompt": f"How do I {topic} on the console?", "completion": f"To {topic}, open the dashboard first "
             f"and follow the steps under Settings.", "label": i < good}
            for i, topic in enumerate(TOPICS[:good + bad])]


def test_balance_leaves_out_a_seeded_sample_of_the_larger_label(run_cli, tmp_path):
    src, out, report = tmp_path / "kto.jsonl", tmp_path / "out.jsonl", tmp_path / "report.txt"
    src.write_text("".join(json.dumps(r) + "\n" for r in kto_rows(6, 2)))
    res = run_cli("clean", str(src), "-o", str(out), "--report", str(report), "--balance", "--near-dups", "off")
    assert res.code == 0, res.err
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in kept].count(True) == 2 and [r["label"] for r in kept].count(False) == 2
    left_out = [row for row in report.read_text().splitlines() if "kto_balance:" in row and row.startswith("line")]
    assert len(left_out) == 4 and all(int(r.split(":")[0].removeprefix("line ")) <= 6 for r in left_out)
    assert "2 desirable (50%), 2 undesirable: balanced" in res.err
    again = tmp_path / "again.jsonl"
    run_cli("clean", str(src), "-o", str(again), "--balance", "--near-dups", "off")
    assert again.read_text() == out.read_text()                    # seeded: the same sample each time
    other = tmp_path / "other.jsonl"
    run_cli("clean", str(src), "-o", str(other), "--balance", "--seed", "5", "--near-dups", "off")
    assert len(other.read_text().splitlines()) == 4


def test_balance_in_the_api_and_only_for_kto():
    kept, report = dataset.clean(kto_rows(2, 5), balance=True)
    assert sorted(r["label"] for r in kept) == [False, False, True, True]
    assert report.reasons["kto_balance"] == 3 and report.kept == 4 and report.labels[False] == 2
    assert [d.line for d in report.drops] == sorted(d.line for d in report.drops)
    with pytest.raises(Exception, match="balances kto labels"):
        dataset.clean([json.loads(ROWS[0][1])], balance=True)
