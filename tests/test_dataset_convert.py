"""datagen convert / dataset.convert: round trips between every pair of formats, losses counted, templates."""

from __future__ import annotations

import json

import pytest

from agent import dataset
from agent.errors import InputError
from agent.export.formats import FORMATS

SYSTEM = "You are a support agent for a GPU cloud. Answer clearly."
SINGLE = [
    {"messages": [{"role": "user", "content": "How do I resize a volume on my instance?"},
                  {"role": "assistant", "content": "Stop the instance, open Volumes, pick the new size and save it."}]},
    {"messages": [{"role": "user", "content": "Which regions have H100 capacity today?"},
                  {"role": "assistant", "content": "US-East and EU-West list H100 nodes; the dashboard shows live stock."}]},
]
SYSTEMED = [{"messages": [{"role": "system", "content": SYSTEM}] + r["messages"]} for r in SINGLE]
MULTI = [
    {"messages": [{"role": "system", "content": SYSTEM},
                  {"role": "user", "content": "I can't log in to the console."},
                  {"role": "assistant", "content": "Sorry about that. What happens when you try: an error message?"},
                  {"role": "user", "content": "It says my password is invalid."},
                  {"role": "assistant", "content": "Use 'Forgot password' on the login page; the link lasts 24 hours."}]},
    {"messages": [{"role": "user", "content": "Can I pause billing on a stopped instance?"},
                  {"role": "assistant", "content": "Compute billing stops; storage is still billed. Want the rates?"},
                  {"role": "user", "content": "Yes, for a 500 GB volume please."},
                  {"role": "assistant", "content": "A 500 GB volume costs $0.10 per GB-month, so $50 a month."}]},
]
PREF = [
    {"prompt": "How do I free GPU memory in PyTorch?", "chosen": "Delete unused tensors, then call torch.cuda.empty_cache().",
     "rejected": "Restart the computer every time you run out of memory."},
    {"prompt": "What does CUDA OOM mean?", "chosen": "The GPU ran out of memory for the requested allocation.",
     "rejected": "It means your CUDA installation is broken and must be removed."},
]
KTO = [
    {"prompt": "How do I free GPU memory in PyTorch?", "completion": "Delete unused tensors, then empty the cache.", "label": True},
    {"prompt": "How do I free GPU memory in PyTorch?", "completion": "Buy a bigger GPU, nothing else helps.", "label": False},
    {"prompt": "What does CUDA OOM mean?", "completion": "The GPU ran out of memory for an allocation.", "label": True},
    {"prompt": "What does CUDA OOM mean?", "completion": "Your driver is corrupted; reinstall Windows.", "label": False},
]
# What each format can hold of each kind of data: "full", the loss kind it counts, or "refused"
CHAT_HOLDS = {"single": "full", "system": "full", "multi": "full", "pref": "rejected", "kto": "undesirable"}
HOLDS = {
    "openai": CHAT_HOLDS, "sharegpt": CHAT_HOLDS,
    "alpaca": {"single": "full", "system": "system", "multi": "multi_turn", "pref": "rejected", "kto": "undesirable"},
    "dpo": {"single": "refused", "system": "refused", "multi": "refused", "pref": "full", "kto": "full"},
    "kto": {"single": "full", "system": "system", "multi": "multi_turn", "pref": "full", "kto": "full"},
}
KINDS = {"single": ("openai", SINGLE), "system": ("openai", SYSTEMED), "multi": ("openai", MULTI),
         "pref": ("dpo", PREF), "kto": ("kto", KTO)}


def source_rows(kind: str, fmt: str) -> list[dict]:
    """The kind's data in `fmt`, made by a conversion that must lose nothing."""
    base_fmt, rows = KINDS[kind]
    if fmt == base_fmt:
        return rows
    out = dataset.convert(rows, to=fmt, strict=True)
    return list(out)


FIVE = ("openai", "alpaca", "sharegpt", "dpo", "kto")     # seed 002's formats: what each holds is spelled out
CASES = [(kind, a, b) for kind in KINDS for a in FIVE for b in FIVE if HOLDS[a][kind] == "full"]


def test_every_pair_of_formats_is_covered():
    assert {(a, b) for _, a, b in CASES} == {(a, b) for a in FIVE for b in FIVE}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_any_format_round_trips_when_no_loss_is_reported(kind, fmt):
    """For every format agent.export.formats knows (more than the five): no loss reported means none happened."""
    base, rows = KINDS[kind]
    try:
        there = dataset.convert(rows, to=fmt)
    except InputError:
        return      # refused outright (chat data to a preference format)
    if any(n.startswith("lost:") for n in there.notes):
        return      # what is lost, and how it is counted, is test_round_trip's (for the five formats)
    back = dataset.convert(there, to=base, strict=True)
    assert list(back) == rows


@pytest.mark.parametrize(("kind", "a", "b"), CASES)
def test_round_trip(kind, a, b):
    rows = source_rows(kind, a)
    holds = HOLDS[b][kind]
    if holds == "refused" and a == "kto":
        holds = "unpaired"     # chat data made into kto rows is all desirable: nothing to pair with
    if holds in ("rejected", "undesirable"):   # what a chat target loses depends on the source's shape
        holds = "rejected" if a == "dpo" else "undesirable"
    if holds == "refused":
        with pytest.raises(InputError, match="no rejected reply"):
            dataset.convert(rows, to=b)
        return
    there = dataset.convert(rows, to=b)
    assert there.format == b
    if holds == "full":
        assert not any(line.startswith("lost:") for line in there.notes), there.notes
        back = dataset.convert(there, to=a, strict=True)
        assert list(back) == rows
    else:
        lost = next(line for line in there.notes if line.startswith("lost:"))
        n = sum(1 for r in rows if r.get("label") is False) if holds == "undesirable" else len(rows)
        assert lost.startswith(f"lost: {n} "), there.notes
        with pytest.raises(InputError, match="--strict refuses"):
            dataset.convert(rows, to=b, strict=True)


def test_a_conversation_mixing_kinds_counts_only_what_was_lost():
    rows = SINGLE + SYSTEMED + MULTI
    out = dataset.convert(rows, to="alpaca")
    assert len(out) == 4   # the two multi-turn rows are left out
    assert out[0] == {"instruction": SINGLE[0]["messages"][0]["content"], "input": "",
                      "output": SINGLE[0]["messages"][1]["content"]}
    notes = "\n".join(out.notes)
    assert "lost: 2 conversations that are not one user turn" in notes
    assert "lost: 2 system prompts dropped" in notes


def test_fields_a_format_does_not_own_are_carried_over():
    rows = [{"id": "a1", "source": "ticket-7", **SINGLE[0]}]
    out = dataset.convert(rows, to="sharegpt")
    assert out[0]["id"] == "a1" and out[0]["source"] == "ticket-7"
    assert list(dataset.convert(out, to="openai")) == rows


def test_per_message_fields_are_counted_when_the_target_has_no_place_for_them():
    rows = [{"messages": [{"role": "user", "content": "Hello there, how are you?"},
                          {"role": "assistant", "content": "Fine, thanks for asking!", "weight": 0}]}]
    out = dataset.convert(rows, to="sharegpt")
    assert any("per-message fields" in n and "weight" in n for n in out.notes)
    assert list(dataset.convert(rows, to="openai")) == rows    # same format: untouched


def test_alpaca_input_joins_the_instruction():
    rows = [{"instruction": "Summarise the text.", "input": "The cat sat on the mat all day.",
             "output": "A cat spent its day on a mat."}]
    out = dataset.convert(rows, to="openai")
    assert out[0]["messages"][0]["content"] == "Summarise the text.\n\nThe cat sat on the mat all day."
    assert any("input joined" in n for n in out.notes)


def test_kto_rows_without_an_opposite_label_are_unpaired():
    rows = KTO + [{"prompt": "Lonely prompt here?", "completion": "Only a good answer exists.", "label": True}]
    out = dataset.convert(rows, to="dpo")
    assert list(out) == PREF_FROM_KTO
    assert any(n.startswith("lost: 1 kto rows with no opposite-label row") for n in out.notes)


PREF_FROM_KTO = [
    {"prompt": KTO[0]["prompt"], "chosen": KTO[0]["completion"], "rejected": KTO[1]["completion"]},
    {"prompt": KTO[2]["prompt"], "chosen": KTO[2]["completion"], "rejected": KTO[3]["completion"]},
]

CHATML = ("<|im_start|>system\n" + SYSTEM + "<|im_end|>\n"
          "<|im_start|>user\nHow do I resize a volume on my instance?<|im_end|>\n"
          "<|im_start|>assistant\nStop the instance, open Volumes, pick the new size and save it.<|im_end|>\n")
LLAMA3 = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + SYSTEM + "<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHow do I resize a volume on my instance?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nStop the instance, open Volumes, pick the new size and "
          "save it.<|eot_id|>")


@pytest.mark.parametrize(("template", "expected"), [("chatml", CHATML), ("llama3", LLAMA3)])
def test_chat_templates_render_the_published_format(run_cli, tmp_path, template, expected):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in SYSTEMED))
    res = run_cli("convert", str(src), "--to", "text", "--template", template)
    assert res.code == 0, res.err
    first = json.loads(res.out.splitlines()[0])
    assert first == {"text": expected}
    assert "converted 2 openai rows to 2 text" in res.err


def test_text_needs_a_template_and_a_template_needs_text(run_cli, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(SINGLE[0]) + "\n")
    for args in (["--to", "text"], ["--to", "sharegpt", "--template", "chatml"]):
        res = run_cli("convert", str(src), *args)
        assert res.code == 2 and "--template goes with --to text" in res.err
        assert len(res.err.strip().splitlines()) == 1


def test_cli_strict_refuses_and_leaves_the_old_output(run_cli, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in MULTI))
    out.write_text("old\n")
    res = run_cli("convert", str(src), "--to", "alpaca", "-o", str(out), "--strict")
    assert res.code == 2
    assert res.err.startswith(f"datagen: {src}:1: ") and "--strict refuses any loss" in res.err
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]   # no temporary left


def test_cli_writes_a_json_array_for_a_json_name_with_the_umask_mode(run_cli, tmp_path):
    import os

    src, out = tmp_path / "in.jsonl", tmp_path / "out.json"
    src.write_text("".join(json.dumps(r) + "\n" for r in SINGLE))
    old = os.umask(0o022)
    try:
        res = run_cli("convert", str(src), "--to", "sharegpt", "-o", str(out))
    finally:
        os.umask(old)
    assert res.code == 0, res.err
    rows = json.loads(out.read_text())
    assert rows[0]["conversations"][0] == {"from": "human", "value": SINGLE[0]["messages"][0]["content"]}
    assert out.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.json"]   # no temporary left


def test_cli_refuses_to_write_over_its_input(run_cli, tmp_path):
    src = tmp_path / "in.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in SINGLE)
    src.write_text(text)
    res = run_cli("convert", str(src), "--to", "sharegpt", "-o", str(src))
    assert res.code == 2 and "is the input file" in res.err
    assert src.read_text() == text


def test_chat_to_dpo_is_refused_with_what_to_do(run_cli, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(SINGLE[0]) + "\n")
    res = run_cli("convert", str(src), "--to", "dpo")
    assert res.code == 2 and "convert to kto" in res.err and len(res.err.strip().splitlines()) == 1
