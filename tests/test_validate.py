"""`datagen validate`: every kind of broken line reported with its line number, the five formats
auto-detected, the seed 003 rules, token limits, near-duplicates, long lines and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import cli
from agent.export.commands import export as export_command
from agent.export.commands import validate as validate_command
from agent.export.validate import iter_lines, validate_file

for command in (export_command, validate_command):
    if command.name not in cli.commands:
        cli.add_command(command)

SYSTEM = "You are Nimbus, the support assistant of CloudGPU."
Q1 = "How do I attach a persistent volume to a running H100 instance?"
A1 = ("Open the instance page, choose Volumes, then Attach. The volume appears as /dev/vdb; mount it with "
      "`sudo mount /dev/vdb /data`. Would you like the steps to mount it on every boot?")
Q2 = "Which regions have L40S GPUs available for on-demand rental this week?"
A2 = "L40S GPUs are available on demand in us-east and eu-west this week; the Availability page lists live stock."
Q3 = "What happens to my data on the local disk when a spot instance is reclaimed by the scheduler?"
A3 = ("The local disk is wiped when a spot instance is reclaimed. Keep checkpoints on a persistent volume or in "
      "object storage so a new instance can resume from them.")


def chat(q: str, a: str, system: str = SYSTEM) -> dict:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": q},
                         {"role": "assistant", "content": a}]}


def write_lines(path: Path, lines: list) -> Path:
    with path.open("wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else (json.dumps(line) if not isinstance(line, str) else line).encode())
            f.write(b"\n")
    return path


def codes_by_line(report) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for e in report.errors:
        out.setdefault(e.line, set()).add(e.code)
    return out


def test_each_broken_line_is_reported_with_its_line_number(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [
        chat(Q1, A1),                                                                  # 1 fine
        '{"messages": [{"role": "user", "content": "unterminated"}',                   # 2 bad JSON
        {"conversation": []},                                                           # 3 missing key
        {"messages": [{"role": "system", "content": SYSTEM}, {"role": "customer", "content": Q2},
                      {"role": "assistant", "content": A2}]},                          # 4 wrong role
        {"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": A2}]},  # 5 empty content
        {"messages": [{"role": "user", "content": Q3}, {"role": "assistant", "content": A3},
                      {"role": "user", "content": "And for on-demand instances, is the disk kept?"}]},  # 6 ends on user
        b'{"messages": "caf\xe9"}',                                                      # 7 not UTF-8
        "",                                                                             # 8 blank line
        chat(Q2, "As an AI language model, I cannot see live stock; check the Availability page."),  # 9 seed rule
        chat(Q1.replace("running", "runing"), A1),                                      # 10 near-duplicate of 1
        {"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": A1}]},  # 11 wrong type
        [1, 2, 3],                                                                      # 12 not an object
    ])
    report = validate_file(path)
    got = codes_by_line(report)
    assert report.format == "openai"
    assert 1 not in got
    assert got[2] == {"bad_json"}
    assert got[3] == {"bad_structure"} and "missing key 'messages'" in str(next(e for e in report.errors if e.line == 3))
    assert "bad_role" in got[4] or "bad_structure" in got[4]
    assert "empty_turn" in got[5]
    assert "ends_not_assistant" in got[6]
    assert got[7] == {"not_utf8"}
    assert got[8] == {"blank_line"}
    assert "as_an_ai" in got[9]
    assert got[10] == {"near_duplicate"}
    assert "near-duplicate of line 1 (ratio" in str(next(e for e in report.errors if e.line == 10))
    assert got[11] == {"bad_structure"}
    assert got[12] == {"bad_structure"}
    assert not report.ok
    assert report.lines == 11 and report.blank == 1
    assert report.error_lines == 10 and report.valid == 1
    assert all(str(e).startswith(f"line {e.line}: ") for e in report.errors)


FORMAT_LINES = {
    "openai": [chat(Q1, A1), chat(Q2, A2)],
    "sharegpt": [{"conversations": [{"from": "system", "value": SYSTEM}, {"from": "human", "value": Q1},
                                    {"from": "gpt", "value": A1}]},
                 {"conversations": [{"from": "human", "value": Q2}, {"from": "gpt", "value": A2},
                                    {"from": "human", "value": Q3}, {"from": "gpt", "value": A3}]}],
    "alpaca": [{"instruction": Q1, "input": "", "output": A1},
               {"instruction": "Summarise this status message for a customer.", "input": Q3, "output": A3}],
    "dpo": [{"prompt": Q1, "chosen": A1, "rejected": A1.replace("Would you like", "Do you want") + " Ok."},
            {"prompt": Q2, "chosen": A2, "rejected": "L40S GPUs are in stock everywhere, in every single region, always and forever, no need to check."}],
    "kto": [{"prompt": Q1, "completion": A1, "label": True},
            {"prompt": Q2, "completion": "No idea, look it up yourself somewhere on the website.", "label": False}],
}


@pytest.mark.parametrize("fmt", list(FORMAT_LINES))
def test_each_format_is_detected_and_a_good_file_passes(tmp_path, fmt):
    report = validate_file(write_lines(tmp_path / f"{fmt}.jsonl", FORMAT_LINES[fmt]))
    assert report.format == fmt
    assert report.ok, report.errors
    assert report.examples == report.valid == 2
    assert report.tokens_total > 0


def test_format_specific_rules(tmp_path):
    sharegpt = validate_file(write_lines(tmp_path / "s.jsonl", [
        FORMAT_LINES["sharegpt"][0],
        {"conversations": [{"from": "user", "value": Q2}, {"from": "gpt", "value": A2}]},
    ]))
    assert codes_by_line(sharegpt) == {2: {"bad_structure"}}
    assert "has from 'user'; allowed: system, human, gpt" in str(sharegpt.errors[0])
    kto = validate_file(write_lines(tmp_path / "k.jsonl", [
        FORMAT_LINES["kto"][0], {"prompt": Q2, "completion": A2, "label": "true"}]))
    assert codes_by_line(kto) == {2: {"bad_structure"}}
    dpo = validate_file(write_lines(tmp_path / "d.jsonl", [
        FORMAT_LINES["dpo"][0], {"prompt": Q2, "chosen": A2, "rejected": A2}]))
    assert codes_by_line(dpo) == {2: {"chosen_equals_rejected"}}
    alpaca = validate_file(write_lines(tmp_path / "a.jsonl", [{"instruction": Q1, "output": A1}]))
    assert "missing key 'input'" in str(alpaca.errors[0])
    # a forced format that does not match the lines
    forced = validate_file(write_lines(tmp_path / "f.jsonl", FORMAT_LINES["openai"]), fmt="dpo")
    assert forced.format == "dpo" and set(codes_by_line(forced)) == {1, 2}


def test_unknown_first_line_then_detection_from_the_next(tmp_path):
    report = validate_file(write_lines(tmp_path / "u.jsonl", [{"text": "hello"}, FORMAT_LINES["kto"][0]]))
    assert codes_by_line(report) == {1: {"unknown_format"}}
    assert report.format == "kto" and report.valid == 1


def test_token_limit(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [chat(Q1, A1), chat(Q2, A2 + " More detail." * 200)])
    report = validate_file(path, max_tokens=300)
    assert codes_by_line(report) == {2: {"too_many_tokens"}}
    assert report.over_limit == 1 and report.tokens_max > 300
    assert validate_file(path).ok   # the default limit is 65,536


def test_a_line_longer_than_the_cap_is_reported_and_skipped_without_reading_it_whole(tmp_path):
    long_line = json.dumps(chat(Q3, "x" * 5000))
    path = write_lines(tmp_path / "l.jsonl", [chat(Q1, A1), long_line, chat(Q2, A2)])
    report = validate_file(path, max_line_bytes=1000)
    assert codes_by_line(report) == {2: {"line_too_long"}}
    assert "line 2: longer than 1,000 bytes" in str(report.errors[0])
    assert report.valid == 2 and report.lines == 3
    with path.open("rb") as f:
        chunks = list(iter_lines(f, cap=1000))
    assert [n for n, _ in chunks] == [1, 2, 3] and chunks[1][1] is None
    assert max(len(b) for _, b in chunks if b is not None) <= 1000


def test_last_line_without_newline_and_crlf_endings(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(json.dumps(chat(Q1, A1)).encode() + b"\r\n" + json.dumps(chat(Q2, A2)).encode())
    report = validate_file(path)
    assert report.ok and report.lines == 2


def test_validate_command_exit_codes_and_output(tmp_path, run_cli):
    good = write_lines(tmp_path / "good.jsonl", FORMAT_LINES["openai"])
    r = run_cli("validate", str(good))
    assert r.code == 0 and "VALID (openai)" in r.out and "near-duplicates" in r.out
    assert "keeps every first user message and its index in memory" in r.out
    dup = write_lines(tmp_path / "dup.jsonl", [chat(Q1, A1), chat(Q1 + " ", A2)])
    assert run_cli("validate", str(dup)).code == 1
    r = run_cli("validate", str(dup), "--no-near-dups")
    assert r.code == 0 and "near-duplicates: not checked" in r.out
    bad = write_lines(tmp_path / "bad.jsonl", [chat(Q1, A1), "{nope"])
    r = run_cli("validate", str(bad))
    assert r.code == 1 and "NOT VALID" in r.out and "line 2: invalid JSON" in r.out
    r = run_cli("validate", str(tmp_path / "missing.jsonl"))
    assert r.code == 2 and "file not found" in r.err
    r = run_cli("validate", str(tmp_path))
    assert r.code == 2 and "is a folder" in r.err
    r = run_cli("validate", str(good), "--max-tokens", "10")
    assert r.code == 1 and "too_many_tokens" in r.out
    r = run_cli("validate", str(good), "--format", "alpaca")
    assert r.code == 1 and "missing key 'instruction'" in r.out
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    r = run_cli("validate", str(empty))
    assert r.code == 1 and "0 readable" in r.out
