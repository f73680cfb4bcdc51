"""`export --for TRAINER`: the shapes each trainer loads unchanged, the configs written beside them, the
dataset card, --with-metadata, and `validate --for openai` (fast; the real training steps are in
test_trainers_long.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from agent import tokens
from agent.errors import InputError
from agent.export import TRAIN, VAL, export, formats
from agent.export.card import CARD
from agent.export.trainers import AXOLOTL, LF_INFO, MANIFEST, TRAINERS, choose_format
from agent.export.validate import validate_file
from agent.records import user_turns
from tests.test_export import accepted, copy_run, plan_file, read_jsonl, runs  # noqa: F401 - the fixture

CASES = [(t, shape) for t in TRAINERS for shape in ("chat", "preference", "kto") if shape in TRAINERS[t].default]


def export_for(runs, tmp_path, trainer, shape, **kw):  # noqa: F811
    plan, ledger, folder = copy_run(runs, shape, tmp_path)
    fmt = choose_format(trainer, kw.pop("fmt", None), plan.record_shape, plan.output_format)
    result = export(plan, ledger, folder, fmt=fmt, trainer=trainer, **kw)
    return plan, ledger, folder, result


def system_of(record: dict) -> str:
    if "messages" in record:
        return next((m["content"] for m in record["messages"] if m["role"] == "system"), "")
    return record.get("system", "")


@pytest.mark.parametrize("trainer,shape", CASES)
def test_every_trainer_gets_every_record_with_its_system_prompt(runs, tmp_path, trainer, shape):  # noqa: F811
    plan, ledger, folder, result = export_for(runs, tmp_path, trainer, shape)
    manifest = json.loads((folder / MANIFEST).read_text())
    fmt = manifest["format"]
    assert fmt == TRAINERS[trainer].default[shape] and manifest["trainer"] == trainer
    assert [f["path"] for f in manifest["files"]] == [TRAIN, VAL]
    lines = read_jsonl(folder / TRAIN) + read_jsonl(folder / VAL)
    records = [r["record"] for r in accepted(ledger)]
    assert len(lines) == len(records) and result.stats.left_out == 0 and result.stats.system_dropped == 0
    assert {f["path"]: f["examples"] for f in manifest["files"]} == result.stats.files
    # every line converts back to exactly the record it came from: system prompt and every turn included
    back = sorted(json.dumps(formats.to_canonical(x, fmt), sort_keys=True) for x in lines)
    want = sorted(json.dumps(formats.to_canonical(formats.to_format(r, fmt), fmt), sort_keys=True) for r in records)
    assert back == want
    assert sum(1 for r in records if system_of(r)) > 0
    assert sorted(system_of(formats.to_canonical(x, fmt)) for x in lines) == sorted(system_of(r) for r in records)


def test_conversational_preference_shapes_are_trls_and_openais(runs, tmp_path):  # noqa: F811
    _, ledger, folder, _ = export_for(runs, tmp_path / "trl", "trl", "preference")
    record = accepted(ledger)[0]["record"]
    line = next(x for x in read_jsonl(folder / TRAIN) + read_jsonl(folder / VAL) if x["prompt"][-1]["content"] == record["prompt"])
    assert line == {"prompt": [{"role": "system", "content": record["system"]}, {"role": "user", "content": record["prompt"]}],
                    "chosen": [{"role": "assistant", "content": record["chosen"]}],
                    "rejected": [{"role": "assistant", "content": record["rejected"]}]}
    _, _, folder, _ = export_for(runs, tmp_path / "oa", "openai", "preference")
    line = read_jsonl(folder / TRAIN)[0]
    assert list(line) == ["input", "preferred_output", "non_preferred_output"]
    assert [m["role"] for m in line["input"]["messages"]][-1] == "user"
    assert [m["role"] for m in line["preferred_output"]] == ["assistant"] == [m["role"] for m in line["non_preferred_output"]]
    _, _, folder, _ = export_for(runs, tmp_path / "kto", "trl", "kto")
    labels = {x["label"] for x in read_jsonl(folder / TRAIN)}
    assert labels == {True, False}


def test_alpaca_history_keeps_multi_turn_and_the_system_prompt(runs, tmp_path):  # noqa: F811
    plan, ledger, folder, result = export_for(runs, tmp_path, "llama-factory", "chat", fmt="alpaca-history")
    lines = read_jsonl(folder / TRAIN) + read_jsonl(folder / VAL)
    multi = [r["record"] for r in accepted(ledger) if user_turns(r["record"]) > 1]
    assert multi and len(lines) == plan.total and result.stats.left_out == 0
    by_output = {x["output"]: x for x in lines}
    for record in multi:
        line = by_output[record["messages"][-1]["content"]]
        assert len(line["history"]) == user_turns(record) - 1
        assert line["system"] == system_of(record) and line["history"][0][0] == record["messages"][1]["content"]


# ---- LLaMA-Factory: its documented mapping, applied the way its loader does -------------------------------
# llamafactory pins its own torch/transformers and does not install beside them here, so this is a faithful
# re-statement of data/parser.py (DatasetAttr defaults; naming "columns" resets every unnamed column to None)
# and data/converter.py (sharegpt: a first turn with system_tag becomes the system; then user/assistant must
# alternate; alpaca: history pairs, prompt + "\n" + query; ranking: chosen/rejected; kto_tag: a bool).
LF_DEFAULTS = {"formatting": "alpaca", "ranking": False, "system": None, "chosen": None, "rejected": None,
               "kto_tag": None, "prompt": "instruction", "query": "input", "response": "output", "history": None,
               "messages": "conversations", "role_tag": "from", "content_tag": "value", "user_tag": "human",
               "assistant_tag": "gpt", "system_tag": "system"}
LF_COLUMNS = ("prompt", "query", "response", "history", "messages", "system", "chosen", "rejected", "kto_tag")
LF_TAGS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "system_tag")


def lf_attr(entry: dict) -> dict:
    attr = dict(LF_DEFAULTS, formatting=entry.get("formatting", "alpaca"), ranking=entry.get("ranking", False))
    if "columns" in entry:
        attr.update({c: entry["columns"].get(c) for c in LF_COLUMNS})
    if "tags" in entry:
        attr.update({t: entry["tags"].get(t) for t in LF_TAGS})
    return attr


def lf_convert(a: dict, ex: dict) -> dict:
    """-> {"system", "prompt": [messages], "response": [messages]} or raises on what LLaMA-Factory skips."""
    if a["formatting"] == "sharegpt":
        msgs = ex[a["messages"]]
        system = ""
        if a["system_tag"] and msgs and msgs[0][a["role_tag"]] == a["system_tag"]:
            system, msgs = msgs[0][a["content_tag"]], msgs[1:]
        roles = {a["user_tag"]: "user", a["assistant_tag"]: "assistant"}
        out = [{"role": roles[m[a["role_tag"]]], "content": m[a["content_tag"]]} for m in msgs]
        assert [m["role"] for m in out] == ["user", "assistant"] * (len(out) // 2) and len(out) % 2 == 0
        return {"system": system, "prompt": out[:-1], "response": out[-1:]}
    prompt = [m for u, r in (ex[a["history"]] if a["history"] else []) for m in
              ({"role": "user", "content": u}, {"role": "assistant", "content": r})]
    query = [ex[k] for k in (a["prompt"], a["query"]) if k and ex[k]]
    prompt.append({"role": "user", "content": "\n".join(query)})
    if a["kto_tag"]:
        assert isinstance(ex[a["kto_tag"]], bool)
        response = [{"role": "assistant", "content": ex[a["response"]]}]
    elif a["ranking"]:
        response = [{"role": "assistant", "content": ex[a["chosen"]]}, {"role": "assistant", "content": ex[a["rejected"]]}]
    else:
        response = [{"role": "assistant", "content": ex[a["response"]]}]
    return {"system": ex[a["system"]] if a["system"] else "", "prompt": prompt, "response": response}


@pytest.mark.parametrize("shape,fmt", [("chat", None), ("chat", "openai"), ("chat", "alpaca-history"),
                                       ("preference", None), ("kto", None)])
def test_llama_factory_reads_every_record_through_the_written_dataset_info(runs, tmp_path, shape, fmt):  # noqa: F811
    plan, ledger, folder, _ = export_for(runs, tmp_path, "llama-factory", shape, fmt=fmt)
    info = json.loads((folder / LF_INFO).read_text())
    assert set(info) == {f"{plan.name}_train", f"{plan.name}_validation"}
    by_prompt = {}
    for r in accepted(ledger):
        rec = r["record"]
        if "messages" in rec:
            turns = [m for m in rec["messages"] if m["role"] != "system"]
            by_prompt[json.dumps(turns[:-1])] = {"system": system_of(rec), "response": turns[-1:]}
        else:
            second = rec.get("rejected")
            resp = [{"role": "assistant", "content": rec.get("chosen", rec.get("completion"))}]
            if second is not None:
                resp.append({"role": "assistant", "content": second})
            by_prompt[json.dumps([{"role": "user", "content": rec["prompt"]}])] = {"system": rec["system"], "response": resp}
    seen = 0
    for entry in info.values():
        attr = lf_attr(entry)
        for line in read_jsonl(folder / entry["file_name"]):
            got = lf_convert(attr, line)
            assert by_prompt[json.dumps(got["prompt"])] == {"system": got["system"], "response": got["response"]}
            seen += 1
    assert seen == plan.total


def test_the_seed_dpo_strings_map_in_llama_factory_without_their_system(runs, tmp_path):  # noqa: F811
    plan, _, folder, result = export_for(runs, tmp_path, "llama-factory", "preference", fmt="dpo")
    entry = json.loads((folder / LF_INFO).read_text())[f"{plan.name}_train"]
    assert entry["ranking"] is True and "system" not in entry["columns"]
    got = lf_convert(lf_attr(entry), read_jsonl(folder / TRAIN)[0])
    assert got["prompt"][0]["role"] == "user" and len(got["response"]) == 2
    assert result.stats.system_dropped == plan.total


@pytest.mark.parametrize("shape,fmt", [("chat", None), ("chat", "sharegpt"), ("preference", None)])
def test_axolotl_block_maps_every_field_and_role_in_the_files(runs, tmp_path, shape, fmt):  # noqa: F811
    _, _, folder, _ = export_for(runs, tmp_path, "axolotl", shape, fmt=fmt)
    block = yaml.safe_load((folder / AXOLOTL).read_text())
    assert len(block["datasets"]) == 1 and len(block["test_datasets"]) == 1
    if shape == "preference":
        assert block["rl"] == "dpo" and block["datasets"][0]["type"] == "passthrough"
        assert formats.detect(read_jsonl(Path(block["datasets"][0]["path"]))[0]) == "dpo-chat"
        return
    for ds in block["datasets"] + block["test_datasets"]:
        assert ds["type"] == "chat_template" and ds["ds_type"] == "json"
        keys = ds["message_property_mappings"]
        roles = {src: target for target, srcs in ds.get("roles", {r: [r] for r in ("system", "user", "assistant")}).items()
                 for src in srcs}
        for line in read_jsonl(Path(ds["path"])):
            mapped = [roles[m[keys["role"]]] for m in line[ds["field_messages"]]]
            assert mapped[-1] == "assistant" and set(mapped) <= {"system", "user", "assistant"}


def test_a_trainer_that_cannot_load_a_shape_is_a_one_line_input_error(runs, tmp_path, run_cli):  # noqa: F811
    with pytest.raises(InputError, match="axolotl has no loader for kto"):
        choose_format("axolotl", None, "kto", "kto")
    with pytest.raises(InputError, match="--for trl cannot load --format sharegpt"):
        choose_format("trl", "sharegpt", "chat", "openai")
    plan, _, _ = copy_run(runs, "kto", tmp_path)
    r = run_cli("export", "--plan", str(plan_file(tmp_path, plan)), "--outputs", str(tmp_path), "--for", "openai")
    assert r.code == 2 and r.err.count("\n") == 1 and "openai has no loader for kto" in r.err
    assert not (tmp_path / plan.name / TRAIN).exists()


# ---- dataset card, metadata ---------------------------------------------------------------------------

def test_dataset_card_front_matter_is_what_the_hub_reads(runs, tmp_path):  # noqa: F811
    plan, _, folder, result = export_for(runs, tmp_path, "trl", "chat")
    text = (folder / CARD).read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "unknown" and "fill in" in text.split("---\n")[1]
    assert meta["size_categories"] == ["n<1K"] and meta["task_categories"] == ["text-generation"]
    assert meta["language"] == ["en"]
    files = {f["split"]: f["path"] for f in meta["configs"][0]["data_files"]}
    assert files == {"train": TRAIN, "validation": VAL} and all((folder / p).exists() for p in files.values())
    assert "SFTTrainer" in text and "SIMULATED DATA" in text
    assert f"| train | {TRAIN} | {result.stats.files[TRAIN]:,} |" in text


def test_metadata_side_files_describe_their_data_files_line_for_line(runs, tmp_path):  # noqa: F811
    plan, ledger, folder, _ = export_for(runs, tmp_path, "trl", "chat", with_metadata=True)
    by_id = {r["id"]: r for r in accepted(ledger)}
    for data, side in ((TRAIN, "training_metadata.jsonl"), (VAL, "validation_metadata.jsonl")):
        lines, meta = read_jsonl(folder / data), read_jsonl(folder / side)
        assert len(lines) == len(meta)
        for i, (line, m) in enumerate(zip(lines, meta, strict=True)):
            row = by_id[m["id"]]
            assert m["row"] == i and formats.to_format(row["record"], "openai") == line
            assert m["topic"] == row["topic"] and m["behaviour"] == (row["audited"] or row["requested"])["behaviour"]
    # a later export without the flag, for another trainer, removes them: they would no longer match the data
    export(plan, Ledger_reopen(folder), folder, fmt="sharegpt", trainer="llama-factory")
    assert not list(folder.glob("*_metadata.jsonl")) and (folder / LF_INFO).exists()
    (folder / "my_notes_metadata.jsonl").write_text("{}\n")          # not ours: left alone
    export(plan, Ledger_reopen(folder), folder, fmt="openai", trainer="axolotl")
    assert not (folder / LF_INFO).exists() and (folder / AXOLOTL).exists()
    assert (folder / "my_notes_metadata.jsonl").exists()


def Ledger_reopen(folder: Path):
    from agent.ledger import Ledger

    return Ledger(folder / "ledger.sqlite")


# ---- tokens and OpenAI's file rules -------------------------------------------------------------------

def test_o200k_is_tiktokens_own_encoding_and_refused_when_the_file_differs(monkeypatch):
    enc = tokens.o200k_encoding()
    assert enc.encode("hello world") == [24912, 2375]          # o200k_base's ids (cl100k: [15339, 1917])
    assert tokens.for_model("gpt-4o-mini-2024-07-18").name == "o200k_base"
    assert tokens.for_model("gpt-4.1").name == "o200k_base" and tokens.for_model("gpt-4-turbo").name == "cl100k_base"
    assert "estimate" in tokens.for_model("claude-sonnet-4-5").name
    monkeypatch.setattr(tokens, "O200K_SHA256", "0" * 64)
    tokens.o200k_encoding.cache_clear()
    try:
        with pytest.raises(InputError, match="not tiktoken's"):
            tokens.o200k_encoding()
    finally:
        monkeypatch.undo()
        tokens.o200k_encoding.cache_clear()


def tiny_tokenizer_json(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return path


def test_validate_counts_in_the_student_tokenizer_and_says_so(tmp_path, run_cli):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hello hello world and more words here"},
                                             {"role": "assistant", "content": "world world"}]}) + "\n")
    tok = tiny_tokenizer_json(tmp_path / "tokenizer.json")
    r = run_cli("validate", str(data), "--tokenizer", str(tok), "--no-near-dups")
    # 3 framing + (3 + 7 words) + (3 + 2 words) with one id per whitespace word
    assert f"tokens per example ({tmp_path.name}/tokenizer.json)" in r.out and "mean 18," in r.out
    r = run_cli("validate", str(data), "--tokenizer", str(tmp_path / "d.jsonl"))
    assert r.code == 2 and "not a tokenizer.json" in r.err


def openai_lines(n: int, **extra) -> list[dict]:
    return [{"messages": [{"role": "system", "content": "You are a support assistant for a GPU cloud."},
                          {"role": "user", "content": f"How do I resize instance number {i} without losing data?"},
                          {"role": "assistant", "content": f"Stop instance {i}, choose a new size, then start it again.",
                           **extra}]} for i in range(n)]


def write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_validate_for_openai_applies_openais_file_rules(tmp_path, run_cli):
    few = write_jsonl(tmp_path / "few.jsonl", openai_lines(5))
    assert validate_file(few, near_dups=False).ok                       # fine as a file in general ...
    report = validate_file(few, near_dups=False, rules="openai")
    assert not report.ok and "OpenAI requires at least 10" in report.file_errors[0]  # ... not for OpenAI
    assert report.tokenizer == "o200k_base"
    r = run_cli("validate", str(few), "--for", "openai", "--no-near-dups")
    assert r.code == 1 and "NOT VALID" in r.out and "at least 10" in r.out
    ok = write_jsonl(tmp_path / "ok.jsonl", openai_lines(12, weight=1))
    r = run_cli("validate", str(ok), "--for", "openai", "--no-near-dups")
    assert r.code == 0 and "tokens per example (o200k_base)" in r.out and "OpenAI file rules: applied" in r.out
    bad = openai_lines(12)
    bad[0]["messages"][1]["weight"] = 1                                  # weight on a user message
    bad[1]["messages"][2]["weight"] = 2
    bad[2]["messages"] = bad[2]["messages"][:2] + [{"role": "assistant", "content": "Stop it, resize it.", "weight": 0}]
    bad[3]["messages"][2]["tone"] = "friendly"
    report = validate_file(write_jsonl(tmp_path / "bad.jsonl", bad), near_dups=False, rules="openai")
    assert {(e.line, e.code) for e in report.errors} == {(1, "openai_weight"), (2, "openai_weight"),
                                                         (3, "openai_no_assistant"), (4, "openai_key")}
    kto = write_jsonl(tmp_path / "kto.jsonl", [{"prompt": f"question {i} about GPUs?", "completion": "An answer.",
                                                 "label": True} for i in range(12)])
    report = validate_file(kto, near_dups=False, rules="openai")
    assert report.codes["openai_format"] == 12


def test_the_openai_preference_export_passes_openais_rules(runs, tmp_path):  # noqa: F811
    _, _, folder, _ = export_for(runs, tmp_path, "openai", "preference")
    report = validate_file(folder / TRAIN, rules="openai")
    assert report.ok and report.format == "openai-dpo" and report.examples >= 10, report.summary()


def test_export_checks_token_limits_in_the_tokenizer_it_names(runs, tmp_path, run_cli):  # noqa: F811
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    path = plan_file(tmp_path, plan)
    r = run_cli("export", "--plan", str(path), "--outputs", str(tmp_path), "--for", "openai")
    assert r.code == 0 and "tokens per example (o200k_base)" in r.err and "OpenAI file rules: met" in r.err
    r = run_cli("export", "--plan", str(path), "--outputs", str(tmp_path), "--for", "openai", "--val-split", "0.9")
    assert "OpenAI file rules: NOT met: 6 examples; OpenAI requires at least 10" in r.err
    assert json.loads((folder / MANIFEST).read_text())["tokenizer"] == "o200k_base"
    tok = tiny_tokenizer_json(tmp_path / "tokenizer.json")
    r = run_cli("export", "--plan", str(path), "--outputs", str(tmp_path), "--tokenizer", str(tok), "--max-tokens", "20")
    assert f"tokens per example ({tmp_path.name}/tokenizer.json)" in r.err
    assert "FAIL" in r.err                       # every example is longer than 20 of the student's tokens
    r = run_cli("export", "--plan", str(path), "--outputs", str(tmp_path))
    assert "tokens per example (cl100k_base)" in r.err
