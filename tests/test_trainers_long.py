"""Every trainer's export loads with `datasets`, passes TRL's data utilities and trains one step of the matching
TRL trainer (SFT / DPO / KTO) on a tiny randomly initialised model built here, offline: a byte-level BPE
tokenizer trained on the exported text with a ChatML chat template, and a 1-layer Llama. `make test-long`
(the `trainers` extra installs datasets, trl, transformers and torch)."""

from __future__ import annotations

import copy
import functools
import json

import pytest

from agent.export import TRAIN, VAL, export
from agent.export.trainers import MANIFEST, TRAINERS, choose_format
from tests.test_export import copy_run, read_jsonl, runs  # noqa: F401 - the fixture

pytestmark = pytest.mark.long

# ChatML; assistant turns wrapped in {% generation %} so TRL can train on the assistant tokens only
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
          "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
          "{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def texts(line) -> list[str]:
    if isinstance(line, dict):
        return [t for v in line.values() for t in texts(v)]
    if isinstance(line, list):
        return [t for v in line for t in texts(v)]
    return [line] if isinstance(line, str) else []


def tiny_model(corpus: list[str]):
    """A tokenizer trained on `corpus` and a random 1-layer Llama sized to it: nothing downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config), tokenizer


def load(folder, tmp_path):
    import datasets

    return datasets.load_dataset("json", data_files={"train": str(folder / TRAIN), "validation": str(folder / VAL)},
                                 cache_dir=str(tmp_path / "hf-cache"))


@pytest.mark.parametrize("trainer,shape", [(t, s) for t in TRAINERS for s in ("chat", "preference", "kto")
                                           if s in TRAINERS[t].default])
def test_every_trainer_export_loads_and_is_conversational(runs, tmp_path, trainer, shape):  # noqa: F811
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    plan, ledger, folder = copy_run(runs, shape, tmp_path)
    fmt = choose_format(trainer, None, shape, plan.output_format)
    result = export(plan, ledger, folder, fmt=fmt, trainer=trainer)
    ds = load(folder, tmp_path)
    assert ds["train"].num_rows == result.stats.files[TRAIN] and ds["validation"].num_rows == result.stats.files[VAL]
    assert json.loads((folder / MANIFEST).read_text())["format"] == fmt
    if fmt == "openai-dpo":
        return  # OpenAI's own shape: checked against OpenAI's rules in test_trainers.py, not TRL's
    if fmt in ("sharegpt", "dpo-system", "kto-system", "alpaca-history"):
        return  # LLaMA-Factory's shapes: read through its converter rules in test_trainers.py
    row = ds["train"][0]
    assert is_conversational(row)
    _, tokenizer = tiny_model(["hello"])
    rendered = maybe_apply_chat_template(row, tokenizer)
    prompt = rendered.get("prompt", rendered.get("text", ""))
    assert prompt.startswith("<|im_start|>system\n") and "<|im_start|>user\n" in prompt
    assert "<|im_start|>human" not in json.dumps(rendered)


def config_kwargs(tmp_path) -> dict:
    return {"output_dir": str(tmp_path / "out"), "max_steps": 1, "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1, "report_to": [], "save_strategy": "no", "logging_steps": 1,
            "use_cpu": True, "dataloader_num_workers": 0, "seed": 0}


@pytest.mark.parametrize("shape", ["chat", "preference", "kto"])
def test_one_training_step_of_the_matching_trl_trainer(runs, tmp_path, shape):  # noqa: F811
    import torch
    import trl

    plan, ledger, folder = copy_run(runs, shape, tmp_path)
    fmt = choose_format("trl", None, shape, plan.output_format)
    export(plan, ledger, folder, fmt=fmt, trainer="trl")
    ds = load(folder, tmp_path)
    train = ds["train"].select(range(8 if shape == "kto" else 4))
    model, tokenizer = tiny_model([t for line in read_jsonl(folder / TRAIN) for t in texts(line)])
    before = [p.detach().clone() for p in model.parameters()]
    kw = config_kwargs(tmp_path)
    if shape == "chat":
        args = trl.SFTConfig(**kw, max_length=512, assistant_only_loss=True)
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
        labels = trainer.train_dataset[0]["labels"]
        trained = sum(1 for x in labels if x != -100)
        assert 0 < trained < len(labels)   # the loss is on the assistant's tokens only, and there are some
    elif shape == "preference":
        args = trl.DPOConfig(**kw, max_length=512)
        trainer = trl.DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=train,
                                 processing_class=tokenizer)  # a ref model given: TRL would load it from a hub id
    else:
        kw["per_device_train_batch_size"] = 4  # KTO estimates its KL term from mismatched pairs within a batch
        args = trl.KTOConfig(**kw, max_length=512)
        trainer = trl.KTOTrainer(model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=train,
                                 processing_class=tokenizer)
    out = trainer.train()
    assert out.global_step == 1 and torch.isfinite(torch.tensor(out.training_loss))
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True))


@functools.cache
def llama_factory():
    """LLaMA-Factory's own parser and converter modules, imported without its package __init__ (which pulls in
    torchaudio, peft and the rest of its trainer). `make test-long` installs it with --no-deps."""
    import importlib
    import importlib.util
    import sys
    import types
    from pathlib import Path

    spec = importlib.util.find_spec("llamafactory")
    if spec is None:
        pytest.skip("llamafactory is not installed (make test-long installs it with --no-deps)")
    root = Path(spec.submodule_search_locations[0])
    for name, path in (("llamafactory", root), ("llamafactory.data", root / "data"), ("llamafactory.extras", root / "extras")):
        package = types.ModuleType(name)  # a bare package: its submodules import, its __init__ does not run
        package.__path__ = [str(path)]
        sys.modules[name] = package
    return importlib.import_module("llamafactory.data.parser"), importlib.import_module("llamafactory.data.converter")


@pytest.mark.parametrize("shape,fmt", [("chat", "sharegpt"), ("chat", "openai"), ("chat", "alpaca-history"),
                                       ("preference", "dpo-system"), ("kto", "kto-system"), ("preference", "dpo"),
                                       ("kto", "kto")])
def test_llama_factorys_own_converter_reads_the_written_dataset_info(runs, tmp_path, shape, fmt):  # noqa: F811
    from types import SimpleNamespace

    import datasets

    from agent.export import formats

    parser, converter = llama_factory()
    plan, ledger, folder = copy_run(runs, shape, tmp_path)
    export(plan, ledger, folder, fmt=fmt, trainer="llama-factory")
    data_args = SimpleNamespace(streaming=False, preprocessing_num_workers=None, overwrite_cache=True,
                                media_dir=str(folder))
    training_args = SimpleNamespace(local_process_index=0)
    for split, file in (("train", TRAIN), ("validation", VAL)):
        (attr,) = parser.get_dataset_list([f"{plan.name}_{split}"], str(folder))
        raw = datasets.load_dataset("json", data_files=str(folder / file), cache_dir=str(tmp_path / "hf"))["train"]
        aligned = converter.align_dataset(raw, attr, data_args, training_args)
        assert aligned.num_rows == raw.num_rows
        for line, row in zip(read_jsonl(folder / file), aligned, strict=True):
            record = formats.to_canonical(line, fmt)
            assert row["_prompt"] and row["_response"], row          # LLaMA-Factory empties what it cannot read
            assert row["_prompt"][-1]["role"] == "user"
            if "messages" in record:
                turns = [m for m in record["messages"] if m["role"] != "system"]
                assert row["_prompt"] + row["_response"] == turns
            else:
                assert row["_prompt"] == [{"role": "user", "content": record["prompt"]}]
                if shape == "preference":
                    assert [m["content"] for m in row["_response"]] == [record["chosen"], record["rejected"]]
                else:  # kto: the completion, and an empty turn placed after it (desirable) or before it
                    contents = [m["content"] for m in row["_response"]]
                    assert contents == ([record["completion"], ""] if record["label"] else ["", record["completion"]])
            system = next((m["content"] for m in record.get("messages", []) if m["role"] == "system"),
                          record.get("system", ""))
            assert row["_system"] == system


@pytest.mark.parametrize("trainer,shape", [("trl", "chat"), ("trl", "preference"), ("unsloth", "kto")])
def test_the_cards_training_code_runs_as_written(runs, tmp_path, monkeypatch, trainer, shape):  # noqa: F811
    """The TRL code in README.md, run as a user would from the export folder: only the model name (a tiny
    random model saved locally) and the step budget are filled in."""
    import re
    import subprocess
    import sys

    plan, ledger, folder = copy_run(runs, shape, tmp_path)
    export(plan, ledger, folder, fmt=choose_format(trainer, None, shape, plan.output_format), trainer=trainer)
    card = (folder / "README.md").read_text()
    code = re.search(r"```python\n(from datasets import load_dataset\nfrom transformers.*?)```", card, re.S).group(1)
    model, tokenizer = tiny_model([t for line in read_jsonl(folder / TRAIN) for t in texts(line)])
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    assert code.count('"YOUR_MODEL"') == 2 and code.count('output_dir="out"') == 1
    code = code.replace('"YOUR_MODEL"', repr(str(tmp_path / "tiny"))).replace(
        'output_dir="out"', f'output_dir={str(tmp_path / "out")!r}, max_steps=1, report_to=[], use_cpu=True, '
                            'save_strategy="no", per_device_train_batch_size=4, max_length=512')
    code += "\nassert trainer.state.global_step == 1\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
