"""The public API as the README shows it, seed 002's sample shapes as JSON arrays, stats, and bad input."""

from __future__ import annotations

import json
import re

import pytest

from agent import dataset
from agent.errors import InputError
from tests.conftest import ROOT

# Seed 002's four sample files are JSON arrays in these shapes (its "Data Formats" section, comments removed)
SEED_002 = {
    "alpaca": [{"instruction": "Explain what gradient checkpointing trades off.", "input": "",
                "output": "It saves activation memory by recomputing activations during the backward pass."},
               {"instruction": "Summarise the passage in one sentence.",
                "input": "LoRA freezes the base weights and trains small low-rank matrices beside them.",
                "output": "LoRA fine-tunes a model cheaply by training small low-rank adapters only."}],
    "dpo": [{"prompt": "How should I pick a learning rate for LoRA?",
             "chosen": "Start near 2e-4, watch the loss for a few hundred steps, and lower it if it spikes.",
             "rejected": "Any learning rate works the same for LoRA, so just use whatever is default."}],
    "kto": [{"prompt": "What is KTO?", "completion": "A preference method that learns from single good or bad labels.",
             "label": True},
            {"prompt": "What is KTO?", "completion": "KTO is a kind of GPU that NVIDIA sells for training.",
             "label": False}],
    "sharegpt": [{"conversations": [
        {"from": "system", "value": "You are a helpful assistant for ML engineers."},
        {"from": "human", "value": "What does a warmup schedule do?"},
        {"from": "gpt", "value": "It raises the learning rate gradually over the first steps to avoid early spikes."},
        {"from": "human", "value": "How many warmup steps should I use?"},
        {"from": "gpt", "value": "Around 3-10% of the total steps is a common and safe starting point."}]}],
}


def readme_snippet() -> str:
    section = re.search(r"^## Existing data\n(.*?)^## ", (ROOT / "README.md").read_text(), re.M | re.S).group(1)
    return re.search(r"^```python\n(.*?)^```", section, re.M | re.S).group(1)


def test_the_readme_snippet_runs_as_shown(tmp_path, monkeypatch):
    (tmp_path / "data.json").write_text(json.dumps(SEED_002["alpaca"] + [
        {"instruction": "Hi", "input": "", "output": "Hello!"}], indent=2))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_snippet(), "README.md", "exec"), namespace)
    rows, clean, report = namespace["rows"], namespace["clean"], namespace["report"]
    assert rows.format == "alpaca" and len(rows) == 3
    assert list(clean) == SEED_002["alpaca"]
    assert [(d.line, sorted(r.code for r in d.reasons)) for d in report.drops] == \
        [(12, ["instruction_too_short", "output_too_short"])]
    converted = dataset.convert(rows, to="openai")
    assert converted.format == "openai" and converted[0]["messages"][0]["content"] == SEED_002["alpaca"][0]["instruction"]


@pytest.mark.parametrize("fmt", list(SEED_002))
def test_seed_002_sample_shapes_load_convert_and_clean_as_json_arrays(run_cli, tmp_path, fmt):
    path = tmp_path / f"sample_{fmt}.json"
    path.write_text(json.dumps(SEED_002[fmt], indent=4, ensure_ascii=False))
    rows = dataset.load(path)
    assert rows.format == fmt and list(rows) == SEED_002[fmt]
    out = tmp_path / "clean.json"
    res = run_cli("clean", str(path), "-o", str(out))
    assert res.code == 0, res.err
    assert json.loads(out.read_text()) == SEED_002[fmt]       # a .json output is a JSON array again
    target = "openai" if fmt != "openai" else "sharegpt"
    res = run_cli("convert", str(path), "--to", target)
    assert res.code == 0, res.err
    assert all(json.loads(line) for line in res.out.splitlines())


def test_stats_text_and_json(run_cli, tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(SEED_002["kto"] + [
        {"prompt": "How do I resize a volume?", "completion": "Stop the instance and pick a new size.", "label": True}]))
    res = run_cli("stats", str(path), "--json")
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["format"] == "kto" and report["rows"] == 3 and report["labels"] == {"true": 2, "false": 1}
    gates = {g["metric"]: g for g in report["gates"]}
    assert set(gates) == {"mean_ttr", "ngram_overlap", "unique_verbs", "unique_topics"}
    assert gates["unique_verbs"]["bound"] == 50 and gates["unique_verbs"]["ok"] is False
    assert report["metrics"]["examples"] == 3
    text = run_cli("stats", str(path))
    assert text.code == 0 and "unique_verbs" in text.out and "FAIL" in text.out and "kto labels: 2 desirable" in text.out


def test_api_stats_and_validate_agree_with_the_files(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in SEED_002["sharegpt"]))
    s = dataset.stats(path)
    assert s.format == "sharegpt" and s.turns == {2: 1} and s.system_prompts == 1
    assert dataset.validate(path).ok


@pytest.mark.parametrize(("content", "message"), [
    (None, "file not found"),
    ("", "the file has no rows"),
    ('{"question": "a", "answer": "b"}\n', "no row in a known format (found: answer, question); pass --format"),
    ('[{"instruction": "a", "output": "b"}, oops]', ":1:39: not a valid JSON array"),
    ("{broken\n", "invalid JSON"),
])
@pytest.mark.parametrize("command", [["stats"], ["convert", "--to", "openai"], ["clean"]])
def test_bad_input_is_one_line_exit_2(run_cli, tmp_path, content, message, command):
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_text(content)
    res = run_cli(command[0], str(path), *command[1:])
    assert res.code == 2, res.err
    assert message in res.err and len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    if content is not None:
        assert path.read_text() == content


def test_a_folder_and_an_unknown_target_are_refused(run_cli, tmp_path):
    res = run_cli("stats", str(tmp_path))
    assert res.code == 2 and "is a folder" in res.err
    (tmp_path / "a.jsonl").write_text(json.dumps(SEED_002["dpo"][0]) + "\n")
    res = run_cli("convert", str(tmp_path / "a.jsonl"), "--to", "csv")
    assert res.code == 2 and "--to" in res.err


def test_load_names_the_bad_line_and_clean_drops_it(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(SEED_002["dpo"][0]) + "\n{oops\n")
    with pytest.raises(InputError, match=r"data.jsonl:2: invalid JSON"):
        dataset.load(path)
    kept, report = dataset.clean(path)
    assert len(kept) == 1 and report.drops[0].line == 2 and report.drops[0].reasons[0].code == "bad_json"


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")

    def rows():
        yield SEED_002["kto"][0]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        dataset.save(rows(), path)
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    assert dataset.save(SEED_002["kto"], path) == 2
    assert dataset.load(path).rows == SEED_002["kto"]


def test_reader_handles_bom_crlf_blank_lines_and_array_line_numbers(tmp_path):
    row = SEED_002["dpo"][0]
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(row).encode() + b"\r\n\r\n" + json.dumps(row).encode() + b"\r\n")
    rows = dataset.load(path)
    assert rows.rows == [row, row] and rows.lines == [1, 3]
    array = tmp_path / "data.json"
    array.write_text("\n\n[\n" + json.dumps(row) + ",\n\n  " + json.dumps(row, indent=2) + "\n]\n")
    assert dataset.load(array).lines == [4, 6]
