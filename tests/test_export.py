"""Export: the five trainer formats from real (simulated-provider) ledgers, the split, atomic writes,
dataset_info.txt checked against the ledger, report.html, and the `export` command."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import stat
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from agent import tokens
from agent.audit.dedup import similarity
from agent.cli import cli
from agent.errors import InputError
from agent.export import INFO, REPORT, TRAIN, VAL, export, formats
from agent.export.commands import export as export_command
from agent.export.commands import validate as validate_command
from agent.export.split import Item, split
from agent.ledger import CallRow, ExampleRow, Ledger
from agent.plan import Plan
from agent.records import user_text, user_turns
from agent.runner import GenerateOptions, run
from tests.conftest import EXAMPLE_PLAN

for command in (export_command, validate_command):
    if command.name not in cli.commands:
        cli.add_command(command)

SHAPE_FORMAT = {"chat": "openai", "preference": "dpo", "kto": "kto"}
SEED_KEYS = {  # seed 002, written out here rather than taken from formats.py
    "openai": ("messages",), "sharegpt": ("conversations",), "alpaca": ("instruction", "input", "output"),
    "dpo": ("prompt", "chosen", "rejected"), "kto": ("prompt", "completion", "label"),
}


def plan_data(shape: str, total: int = 60) -> dict:
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = total
    data["output_format"] = SHAPE_FORMAT[shape]
    if shape != "chat":
        del data["dimensions"]["turns"]  # preference and kto records are single-turn by definition
    if shape == "kto":
        data["dimensions"]["kto_label"] = {"categories": [{"name": "desirable", "share": 0.5},
                                                          {"name": "undesirable", "share": 0.5}]}
    return data


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Plan, Path]]:
    """One finished simulated run per record shape (priced, so the cost chart has something to draw)."""
    root = tmp_path_factory.mktemp("runs")
    prices = root / "prices.yaml"
    prices.write_text("models:\n  simulated-1: {input: 1.0, output: 4.0}\n")
    out = {}
    for shape in ("chat", "preference", "kto"):
        plan = Plan.model_validate(plan_data(shape))
        result = run(plan, GenerateOptions(outputs=root / shape, quiet=True, export=False, prices=prices))
        assert result.accepted == plan.total
        out[shape] = (plan, root / shape / plan.name)
    return out


def copy_run(runs, shape: str, base: Path) -> tuple[Plan, Ledger, Path]:
    """A private copy of a finished run at base/<plan name>/ (where `--outputs base` finds it)."""
    plan, folder = runs[shape]
    target = base / plan.name
    shutil.copytree(folder, target)
    return plan, Ledger(target / "ledger.sqlite"), target


def plan_file(base: Path, plan: Plan) -> Path:
    path = base / "plan.yaml"
    path.write_text(yaml.safe_dump(plan.model_dump(mode="json", exclude_none=True), sort_keys=False))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def accepted(ledger: Ledger) -> list[dict]:
    return list(ledger.iter_accepted())


# ---- formats ----------------------------------------------------------------------------------------

def expected_line(record: dict, fmt: str) -> dict | None:
    """What seed 002 says the line must be, written out independently of formats.py."""
    if fmt == "openai":
        return {"messages": record["messages"]}
    if fmt == "sharegpt":
        names = {"system": "system", "user": "human", "assistant": "gpt"}
        return {"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in record["messages"]]}
    if fmt == "alpaca":
        turns = [m for m in record["messages"] if m["role"] != "system"]
        if len(turns) != 2:
            return None
        return {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"]}
    if fmt == "dpo":
        return {k: record[k] for k in ("prompt", "chosen", "rejected")}
    return {k: record[k] for k in ("prompt", "completion", "label")}


@pytest.mark.parametrize("shape,fmt", [("chat", "openai"), ("chat", "sharegpt"), ("chat", "alpaca"),
                                       ("preference", "dpo"), ("kto", "kto")])
def test_every_format_is_exactly_the_seed_shape_and_holds_every_record(runs, tmp_path, shape, fmt):
    plan, ledger, folder = copy_run(runs, shape, tmp_path)
    result = export(plan, ledger, folder, fmt=fmt)
    lines = read_jsonl(folder / TRAIN) + read_jsonl(folder / VAL)
    wanted = [e for e in (expected_line(r["record"], fmt) for r in accepted(ledger)) if e is not None]
    key = json.dumps
    assert sorted(map(key, lines)) == sorted(map(key, wanted))     # every record, nothing more, nothing changed
    for line in lines:
        assert tuple(line) == SEED_KEYS[fmt]                      # exactly the seed's keys, in its order
        if fmt == "openai":
            roles = [m["role"] for m in line["messages"]]
            assert roles[-1] == "assistant" and set(roles) <= {"system", "user", "assistant"}
            assert all(set(m) == {"role", "content"} and m["content"].strip() for m in line["messages"])
        elif fmt == "sharegpt":
            assert line["conversations"][-1]["from"] == "gpt"
            assert all(set(t) == {"from", "value"} for t in line["conversations"])
        elif fmt == "kto":
            assert isinstance(line["label"], bool)
        else:
            assert all(isinstance(v, str) and (v.strip() or k == "input") for k, v in line.items())
    assert result.stats.total == len(lines)
    # and back: every written line converts to the canonical record it came from (system prompt aside)
    for line in lines:
        canonical = formats.to_canonical(line, fmt)
        assert formats.to_format(canonical, fmt) == line


def test_kto_keeps_both_labels_and_dpo_keeps_distinct_pairs(runs, tmp_path):
    plan, ledger, folder = copy_run(runs, "kto", tmp_path / "kto")
    export(plan, ledger, folder)
    labels = Counter(line["label"] for line in read_jsonl(folder / TRAIN) + read_jsonl(folder / VAL))
    assert labels[True] == labels[False] == plan.total // 2
    plan, ledger, folder = copy_run(runs, "preference", tmp_path / "dpo")
    export(plan, ledger, folder)
    assert all(line["chosen"] != line["rejected"] for line in read_jsonl(folder / TRAIN))


@pytest.mark.long  # importing datasets (pyarrow, pandas) alone takes seconds
def test_hugging_face_datasets_loads_every_format(runs, tmp_path):
    datasets = pytest.importorskip("datasets")
    for shape, fmt in [("chat", "openai"), ("chat", "sharegpt"), ("chat", "alpaca"), ("preference", "dpo"),
                       ("kto", "kto")]:
        plan, ledger, folder = copy_run(runs, shape, tmp_path / fmt)
        result = export(plan, ledger, folder, fmt=fmt)
        ds = datasets.load_dataset("json", data_files={"train": str(folder / TRAIN), "validation": str(folder / VAL)},
                                   cache_dir=str(tmp_path / "hf-cache"))
        assert ds["train"].column_names == list(SEED_KEYS[fmt])
        assert ds["train"].num_rows == result.stats.files[TRAIN] and ds["validation"].num_rows == result.stats.files[VAL]
        if fmt == "kto":
            assert str(ds["train"].features["label"].dtype) == "bool"


@pytest.mark.parametrize("shape,fmt", [("chat", "dpo"), ("chat", "kto"), ("preference", "openai"),
                                       ("preference", "alpaca"), ("kto", "dpo")])
def test_a_format_that_does_not_fit_the_records_is_an_input_error(runs, tmp_path, shape, fmt):
    plan, ledger, folder = copy_run(runs, shape, tmp_path)
    with pytest.raises(InputError, match=f"format {fmt} needs"):
        export(plan, ledger, folder, fmt=fmt)
    assert not (folder / TRAIN).exists()


def test_alpaca_leaves_out_multi_turn_and_says_how_many(runs, tmp_path, run_cli):
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    multi = sum(1 for r in accepted(ledger) if user_turns(r["record"]) > 1)
    assert multi > 0  # the plan asks for 10% multi-turn
    r = run_cli("export", "--plan", str(plan_file(tmp_path, plan)), "--outputs", str(tmp_path), "--format", "alpaca",
                "--out", str(tmp_path / "alpaca"))
    assert r.code == 0, r.err
    assert f"alpaca: left out {multi} of {plan.total} examples: {formats.MULTI_TURN_REASON}" in r.err
    assert f"{plan.total - multi} system prompts dropped: alpaca has no field for them" in r.err
    written = read_jsonl(tmp_path / "alpaca" / TRAIN) + read_jsonl(tmp_path / "alpaca" / VAL)
    assert len(written) == plan.total - multi
    text = (tmp_path / "alpaca" / INFO).read_text()
    assert f"Left out: {multi} examples (multi-turn conversations cannot be Alpaca records" in text
    assert f"System prompt dropped: {plan.total - multi} examples" in text
    assert "- System prompts: 0 variation(s) in the files" in text


# ---- split --------------------------------------------------------------------------------------------

WORDS = ["gpu", "spot", "volume", "invoice", "token", "region", "snapshot", "driver", "quota", "node", "cluster",
         "billing", "ssh", "port", "image", "docker", "backup", "refund", "alert", "budget", "key", "webhook", "api",
         "limit", "disk", "mount", "firewall", "vpn", "team", "role"]


def distinct_text(i: int) -> str:
    """A question no other i produces anything near (a seeded random walk over WORDS)."""
    rng = random.Random(i)
    return f"#{i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) + "?"


def test_split_is_stratified_exact_in_total_and_reproducible():
    sizes = {("factual", "standard"): 400, ("factual", "negative"): 60, ("comparative", "standard"): 230,
             ("comparative", "ambiguous"): 7, ("multi_step", "adversarial"): 3}
    items = [Item(i, stratum, distinct_text(i)) for i, stratum in enumerate(s for s, n in sizes.items() for _ in range(n))]
    result = split(items, 0.2, 0.85, seed=3)
    n = sum(sizes.values())
    assert result.n_val == len(result.validation) == round(n * 0.2)
    assert result.n_train + result.n_val == n
    for stratum, size in sizes.items():
        train, val = result.strata[stratum]
        assert train + val == size
        assert abs(val - size * 0.2) <= 1, (stratum, val)     # proportional, tiny strata get 0 or 1
    again = split(items, 0.2, 0.85, seed=3)
    assert again.validation == result.validation
    assert split(items, 0.2, 0.85, seed=4).validation != result.validation


def test_split_zero_share_keeps_everything_in_training():
    items = [Item(i, ("a", "b"), f"text {i} " * 3) for i in range(50)]
    result = split(items, 0.0, 0.85)
    assert result.validation == set() and result.n_train == 50


BASE = ("My spot instance was preempted in the middle of a long fine-tuning run and I lost two hours of "
        "progress. How can I checkpoint automatically so that a preemption only costs me a few minutes?")


def test_planted_near_duplicates_never_straddle_the_split():
    # 40 distinct questions, 8 of them with a planted near-copy; with a 50% share a random split would
    # separate about half of the pairs
    distinct = [distinct_text(i) for i in range(40)]
    assert not any(similarity(a, b) > 0.85 for k, a in enumerate(distinct) for b in distinct[:k])
    copies = [(t, t[:-1] + " please?") for t in distinct[:8]]
    for a, b in copies:
        assert similarity(b, a) > 0.85
    texts = distinct + [b for _, b in copies]
    items = [Item(i, ("s", "t"), t) for i, t in enumerate(texts)]
    for seed in range(5):
        result = split(items, 0.5, 0.85, seed=seed)
        for k in range(8):
            assert (k in result.validation) == (len(distinct) + k in result.validation)
        assert result.groups == 8 and result.grouped == 16


def test_a_text_near_two_groups_is_caught_by_the_cross_check():
    # c is near a and near b (both orders), a and b are not near each other: find() links c to a only
    # (the earliest match), so only the cross-split check can keep b on their side
    c = BASE
    a = "Yesterday our H100 got preempted" + BASE[len("My spot instance was preempted"):]
    b = BASE[:-len("only costs me a few minutes?")] + "never wipes out a whole night again?"
    assert min(similarity(c, a), similarity(c, b), similarity(b, c)) > 0.85
    assert max(similarity(b, a), similarity(a, b)) <= 0.85
    filler = [Item(10 + i, ("s", "t"), distinct_text(i)) for i in range(20)]
    items = [Item(0, ("s", "t"), a), Item(1, ("s", "t"), b), Item(2, ("s", "t"), c)] + filler
    moved = 0
    for seed in range(12):
        result = split(items, 0.5, 0.85, seed=seed)
        assert len({i in result.validation for i in (0, 1, 2)}) == 1, seed
        moved += result.moved
    assert moved > 0   # some seeds did split them at first, and the check put them back together


def test_a_near_duplicate_pair_in_the_ledger_lands_in_one_file(runs, tmp_path):
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    rows = accepted(ledger)[:12]
    planted = []
    for row in rows:   # a near-copy of 12 accepted examples, added as accepted (as if the threshold had changed)
        record = json.loads(json.dumps(row["record"]))
        first = next(m for m in record["messages"] if m["role"] == "user")
        first["content"] = first["content"] + " thx"
        assert similarity(first["content"], user_text(row["record"])) > plan.quality.dedup_threshold
        planted.append((user_text(row["record"]), first["content"]))
        ledger.record_call([CallRow(batch=99, purpose="generate", provider="simulated", model="simulated-1", status="ok")],
                           [ExampleRow(spec_id=f"copy-{row['id']}", status="accepted", requested=row["requested"],
                                       audited=row["audited"], record=record, user_text=first["content"])])
    export(plan, ledger, folder, val_split=0.5)
    train = {user_text(formats.to_canonical(x, "openai")) for x in read_jsonl(folder / TRAIN)}
    val = {user_text(formats.to_canonical(x, "openai")) for x in read_jsonl(folder / VAL)}
    for original, copy in planted:
        assert (original in train and copy in train) or (original in val and copy in val)
    text = (folder / INFO).read_text()
    assert "near-duplicate groups kept on one side: 12 (24 examples)" in text
    assert "[FAIL] No duplicate or near-duplicate examples: 12 within files, 0 between" in text


# ---- atomic writes ------------------------------------------------------------------------------------

def test_an_interrupted_export_leaves_the_previous_files_intact(runs, tmp_path, monkeypatch):
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    export(plan, ledger, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".jsonl", ".txt", ".html")}
    real = formats.to_format
    calls = {"n": 0}

    def failing(record, fmt):
        calls["n"] += 1
        if calls["n"] > 30:
            raise OSError(28, "No space left on device")
        return real(record, fmt)

    monkeypatch.setattr(formats, "to_format", failing)
    with pytest.raises(OSError):
        export(plan, ledger, folder, fmt="sharegpt")
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".jsonl", ".txt", ".html")}
    assert after == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".datagen-export")]


def four_files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in (TRAIN, VAL, INFO, REPORT) if (folder / name).exists()}


def test_a_failure_after_the_data_files_leaves_all_four_as_they_were(runs, tmp_path, monkeypatch):
    """dataset_info.txt must never describe files of another export: all four are replaced, or none."""
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    export(plan, ledger, folder)
    before = four_files(folder)
    import agent.export.pipeline

    def full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(agent.export.pipeline, "write_new", full)   # writing the report fails, after both JSONL files
    with pytest.raises(OSError):
        export(plan, ledger, folder, fmt="sharegpt")
    assert four_files(folder) == before
    assert not list(folder.glob(".datagen-export*"))   # the staging folder went with the failure


def test_no_room_for_the_swap_marker_leaves_nothing_behind(runs, tmp_path, monkeypatch):
    import agent.export.pipeline

    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    export(plan, ledger, folder)
    before = four_files(folder)
    real = agent.export.pipeline.write_new

    def full_for_the_marker(path, text):
        if path.name.startswith(agent.export.pipeline.SWAP_MARKER):
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(agent.export.pipeline, "write_new", full_for_the_marker)
    with pytest.raises(OSError):
        export(plan, ledger, folder, fmt="sharegpt")
    assert four_files(folder) == before
    assert not list(folder.glob(".datagen-export*"))


def test_export_removes_only_its_own_temporary_files(runs, tmp_path):
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    theirs = {".notes.tmp": "my own notes\n", ".training_data.jsonl.abc.tmp": "someone else's\n", "keep.tmp": "x\n"}
    for name, text in theirs.items():
        (out / name).write_text(text)
    export(plan, ledger, out)
    export(plan, ledger, out, fmt="sharegpt")
    for name, text in theirs.items():
        assert (out / name).read_text() == text
    assert not list(out.glob(".datagen-export*"))


def test_a_half_done_swap_is_finished_by_the_next_export(runs, tmp_path):
    """A kill between the renames of a swap: the marker lets the next export complete it."""
    from agent.export import STAGING_PREFIX, SWAP_MARKER, finish_swap

    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    export(plan, ledger, folder)                       # openai
    other = tmp_path / "other"
    export(plan, ledger, other, fmt="sharegpt")
    wanted = four_files(other)
    staging = folder / (STAGING_PREFIX + "killed")
    shutil.copytree(other, staging)
    (folder / SWAP_MARKER).write_text(json.dumps({"staging": staging.name, "install": [TRAIN, VAL, INFO, REPORT],
                                                  "remove": []}))
    (staging / TRAIN).replace(folder / TRAIN)         # the kill landed after the first rename
    assert four_files(folder) != wanted               # a mixed set: sharegpt training, openai validation
    finish_swap(folder)
    assert four_files(folder) == wanted
    assert not (folder / SWAP_MARKER).exists() and not staging.exists()
    # a staging folder without a marker (killed before the swap began) is removed and installs nothing
    abandoned = folder / (STAGING_PREFIX + "early")
    shutil.copytree(tmp_path / "other", abandoned)
    (abandoned / TRAIN).write_text("half a line")
    finish_swap(folder)
    assert four_files(folder) == wanted and not abandoned.exists()


def test_written_files_get_the_mode_the_umask_gives(runs, tmp_path):
    from agent.plan import save_plan

    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    old = os.umask(0o022)
    try:
        export(plan, ledger, folder)
        save_plan(plan, tmp_path / "saved.yaml")
        os.umask(0o027)
        export(plan, ledger, tmp_path / "group", fmt="sharegpt")
    finally:
        os.umask(old)
    for name in (TRAIN, VAL, INFO, REPORT):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644, name
        assert stat.S_IMODE((tmp_path / "group" / name).stat().st_mode) == 0o640, name
    assert stat.S_IMODE((tmp_path / "saved.yaml").stat().st_mode) == 0o644


def test_failed_calls_are_reported_apart_from_rejected_examples(runs, tmp_path, run_cli):
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    call = CallRow(batch=99, purpose="generate", provider="simulated", model="simulated-1", status="error")
    ledger.record_call([call], [ExampleRow(spec_id=f"f{i}", status="rejected", requested={},
                                           reason="call_failed:server") for i in range(7)]
                       + [ExampleRow(spec_id="g", status="rejected", requested={}, reason="invalid_reply")])
    ledger.record_call([call], [ExampleRow(spec_id="d", status="rejected", requested={}, reason="near_duplicate")])
    assert ledger.lost_counts() == {"call_failed:server": 7, "invalid_reply": 1}
    assert "call_failed:server" not in ledger.rejection_counts()
    export(plan, ledger, folder)
    text = (folder / INFO).read_text()
    rejections = text.split("Rejections by Reason")[1].split("Failed calls")[0]
    assert "near_duplicate" in rejections and "call_failed" not in rejections and "invalid_reply" not in rejections
    assert "Failed calls (no example was produced, so none was rejected): 8 examples lost" in text
    assert "- call_failed:server: 7" in text
    html = (folder / REPORT).read_text()
    assert "8 examples lost to failed calls" in html and 'data-chart="lost"' in html
    assert "call_failed" not in re.search(r'data-chart="rejections".*?</svg>', html, re.S).group(0)
    r = run_cli("status", "--plan", str(plan_file(tmp_path, plan)), "--outputs", str(tmp_path))
    assert r.code == 0, r.err
    rejected_line = next(line for line in r.out.splitlines() if line.startswith("rejected examples:"))
    assert "near_duplicate" in rejected_line and "call_failed" not in rejected_line
    assert "failed calls (examples lost, none produced): call_failed:server 7, invalid_reply 1" in r.out


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, timeout=20)
    return done.returncode == 0


def test_a_really_full_disk_at_export_leaves_nothing_behind(runs, tmp_path, run_cli):
    """A real full filesystem (a small tmpfs; root only): one line, no temporary file, the disk as it was."""
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "4m"):   # room for a whole export (report, card and manifest included)
        pytest.skip("needs root and a mountable tmpfs (the monkeypatched ENOSPC tests cover the rest)")
    try:
        (disk / "filler").write_bytes(b"x" * (4096 * 1024 - 32 * 1024))   # about 32 KB left: less than an export
        before = sorted(p.name for p in disk.iterdir())
        r = run_cli("export", "--plan", str(plan_file(tmp_path, plan)), "--outputs", str(tmp_path), "--out", str(disk))
        assert r.code == 2
        assert r.err.strip().splitlines() == [r.err.strip()]
        assert "the disk is full (No space left on device" in r.err and "free some space" in r.err
        assert sorted(p.name for p in disk.iterdir()) == before   # no temporary file keeps the disk full
        (disk / "filler").unlink()
        r = run_cli("export", "--plan", str(plan_file(tmp_path, plan)), "--outputs", str(tmp_path), "--out", str(disk))
        assert r.code == 0, r.err
        assert len(read_jsonl(disk / TRAIN)) + len(read_jsonl(disk / VAL)) == plan.total
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True, timeout=20)


def test_val_split_zero_removes_a_stale_validation_file(runs, tmp_path):
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    export(plan, ledger, folder)
    assert (folder / VAL).exists()
    result = export(plan, ledger, folder, val_split=0)
    assert not (folder / VAL).exists()
    assert len(read_jsonl(folder / TRAIN)) == plan.total == result.stats.files[TRAIN]
    assert "no validation_data.jsonl: validation split is 0" in (folder / INFO).read_text()


# ---- dataset_info.txt ---------------------------------------------------------------------------------

def test_dataset_info_matches_the_ledger_field_by_field(runs, tmp_path):
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    export(plan, ledger, folder)
    text = (folder / INFO).read_text()
    rows = accepted(ledger)
    n_train, n_val = len(read_jsonl(folder / TRAIN)), len(read_jsonl(folder / VAL))
    assert n_train + n_val == ledger.accepted_count() == plan.total
    assert n_val == round(plan.total * plan.validation_split)
    assert text.startswith("SIMULATED DATA — NOT FOR TRAINING")
    assert f"- training_data.jsonl ({n_train} examples)" in text
    assert f"- validation_data.jsonl ({n_val} examples)" in text
    assert f"- Total training examples: {n_train}" in text and f"- Total validation examples: {n_val}" in text
    users = [m["content"] for r in rows for m in r["record"]["messages"] if m["role"] == "user"]
    replies = [m["content"] for r in rows for m in r["record"]["messages"] if m["role"] == "assistant"]
    assert f"Average user query length: {sum(map(tokens.count, users)) / len(users):,.1f} tokens" in text
    assert f"Average assistant response length: {sum(map(tokens.count, replies)) / len(replies):,.1f} tokens" in text
    systems = {m["content"] for r in rows for m in r["record"]["messages"] if m["role"] == "system"}
    assert f"- System prompts: {len(systems)} variation(s) in the files" in text
    multi = sum(1 for r in rows if user_turns(r["record"]) > 1)
    assert f"- Multi-turn conversations: {100 * multi / len(rows):.1f}%" in text
    assert f"- Single-turn conversations: {100 * (len(rows) - multi) / len(rows):.1f}%" in text
    total_tokens = sum(tokens.count_messages(r["record"]["messages"]) for r in rows)
    assert f"- Estimated total tokens: {total_tokens:,}" in text
    for dim, dimension in plan.dimensions.items():
        counts = Counter(r["audited"][dim] for r in rows)
        block = text.split(f"\n{dim}:\n", 1)[1]
        for c in dimension.categories:
            assert f"- {c.name}: {counts[c.name]} examples ({100 * counts[c.name] / len(rows):.1f}%)" in block
            assert re.search(rf"{dim}\.{c.name}\s+{c.quota}\s+{counts[c.name]}\s+{counts[c.name]}\n", text)
    import sqlite3
    con = sqlite3.connect(folder / "ledger.sqlite")
    for reason, n in con.execute("SELECT reason, COUNT(*) FROM examples WHERE status='rejected' GROUP BY 1"):
        assert f"- {reason}: {n}" in text
    dups = con.execute("SELECT COUNT(*) FROM examples WHERE reason='near_duplicate'").fetchone()[0]
    assert f"Duplicates removed: {dups}" in text and "autojunk=False" in text
    cost, tin, tout = con.execute("SELECT SUM(cost), SUM(input_tokens), SUM(output_tokens) FROM calls").fetchone()
    assert f"- Cost: ${cost:.4f}" in text and cost > 0
    assert f"{tin:,} in" in text and f"{tout:,} out" in text
    assert "- Model(s): simulated/simulated-1" in text
    assert f"- Plan: {plan.name} (hash {plan.content_hash()}" in text
    for metric in ("mean_ttr", "ngram_overlap", "unique_verbs", "unique_topics"):
        assert re.search(rf"- {metric}: [\d.e+]+ \(needs (>=|<) [\d.]+\) (PASS|FAIL)", text)
    for item in ("All examples are valid JSON", "No duplicate or near-duplicate examples",
                 "Dataset statistics are documented", "Validation script passes"):
        assert f"- [PASS] {item}:" in text
    for item in ("User queries are natural and realistic", "Assistant responses are accurate and helpful",
                 "Multi-turn examples flow naturally", "System prompts are appropriate"):
        assert f"- [REVIEW] {item}" in text
    assert "- [PASS] Distribution across categories is balanced (or as specified)" in text
    assert "Next Steps:\n1. Review sample examples in training_data.jsonl" in text


def test_checklist_fails_when_the_written_file_breaks_a_rule(runs, tmp_path):
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    row = accepted(ledger)[0]
    record = json.loads(json.dumps(row["record"]))
    record["messages"][-1]["content"] = "As an AI language model, I cannot do that."
    record["messages"][1]["content"] = "A brand new question about quota increases for H100 nodes in Asia?"
    ledger.record_call([CallRow(batch=99, purpose="generate", provider="simulated", model="simulated-1", status="ok")],
                       [ExampleRow(spec_id="bad", status="accepted", requested=row["requested"], audited=row["audited"],
                                   record=record, user_text=record["messages"][1]["content"])])
    export(plan, ledger, folder)
    text = (folder / INFO).read_text()
    assert "- [FAIL] Validation script passes:" in text and "as_an_ai 1" in text
    assert "- [PASS] All examples are valid JSON" in text


# ---- report.html --------------------------------------------------------------------------------------

class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_report_is_self_contained_and_holds_the_charts(runs, tmp_path):
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    hostile = "<script>alert('x')</script> & co"
    ledger.record_call([CallRow(batch=99, purpose="generate", provider="simulated", model="simulated-1", status="ok")],
                       [ExampleRow(spec_id="h", status="rejected", requested={}, reason=hostile)])
    export(plan, ledger, folder)
    html = (folder / REPORT).read_text()
    parser = Tags()
    parser.feed(html)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags and "img" not in tags
    for tag, attrs in parser.tags:
        for name, value in attrs.items():
            if name != "xmlns":
                assert not re.search(r"(https?:)?//", value or ""), (tag, name, value)
    assert "url(" not in html and "@import" not in html
    charts = {attrs.get("data-chart") for tag, attrs in parser.tags if tag == "svg"}
    assert {f"target:{d}" for d in plan.dimensions} | {"query_lengths", "response_lengths", "rejections",
                                                       "diversity", "cost"} <= charts
    text = "".join(parser.text)
    assert hostile in text                       # shown as text, escaped in the source
    assert "&lt;script&gt;" in html
    for reason in ledger.rejection_counts():
        assert reason in text
    assert "SIMULATED DATA — NOT FOR TRAINING" in text
    batches = [b for b in ledger.batches() if b.cost_total is not None]
    cost_bars = re.search(r'data-chart="cost".*?</svg>', html, re.S).group(0).count("<rect")
    assert cost_bars == len(batches) > 0


# ---- the command --------------------------------------------------------------------------------------

def test_export_command_writes_into_the_run_folder_by_default(runs, tmp_path, run_cli):
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    path = plan_file(tmp_path, plan)
    r = run_cli("export", "--plan", str(path), "--outputs", str(tmp_path), "--format", "sharegpt", "--val-split", "0.2")
    assert r.code == 0, r.err
    run = tmp_path / plan.name
    assert f"{run / TRAIN}\t{int(plan.total * 0.8)} examples" in r.out
    assert f"{run / VAL}\t{int(plan.total * 0.2)} examples" in r.out
    assert "SIMULATED" in r.err and "checklist:" in r.err
    assert "conversations" in read_jsonl(run / TRAIN)[0]
    r = run_cli("validate", str(run / TRAIN))
    assert r.code == 0, r.out + r.err
    assert "VALID (sharegpt)" in r.out


def test_export_command_errors_are_one_line_and_exit_2(runs, tmp_path, run_cli):
    plan, _, _ = copy_run(runs, "chat", tmp_path)
    path = plan_file(tmp_path, plan)
    r = run_cli("export", "--plan", str(path), "--outputs", str(tmp_path / "nowhere"))
    assert r.code == 2 and "no run yet for plan" in r.err and len(r.err.strip().splitlines()) == 1
    r = run_cli("export", "--plan", str(path), "--outputs", str(tmp_path), "--format", "dpo")
    assert r.code == 2 and "format dpo needs preference records" in r.err


def test_a_batch_audit_counts_failed_calls_apart(tmp_path):
    from agent.audit.auditor import Auditor
    from agent.progress import headline
    from agent.records import Spec

    plan = Plan.model_validate(plan_data("chat", total=60))
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        auditor = Auditor(plan, ledger)
        spec = Spec(id="s1", labels={}, topic="", system_prompt="")
        for reason in ("call_failed:timeout", "call_failed:timeout", "invalid_reply", "near_duplicate"):
            auditor.reject_spec(spec, reason, "")
        summary = auditor.close_batch(1)
    finally:
        ledger.close()
    assert summary.rejected == 1 and summary.rejections == {"near_duplicate": 1}
    assert summary.failed_calls == 3 and summary.lost == {"call_failed:timeout": 2, "invalid_reply": 1}
    assert "+0 accepted, 1 rejected (near_duplicate 1), 3 lost to failed calls" in headline(summary)
