"""README.md beside the export: a Hugging Face dataset card, so the folder uploads as it is.

The YAML front matter holds what the Hub reads (configs with their splits and files, task categories, size
category, language, tags) and a license the user fills in ("unknown" until then: a value the Hub accepts).
The body says what each file is, how to load it with `datasets`, and how to train on it with the trainer
the export was made for (TRL code; Unsloth, Axolotl, LLaMA-Factory and OpenAI pointers to the config
written beside the data).
"""

from __future__ import annotations

from typing import Any

import yaml

from agent.export.trainers import AXOLOTL, DESCRIBE, LF_INFO, TRL_TRAINER
from agent.records import ExportContext

CARD = "README.md"
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))
TAGS = {"chat": ["sft", "conversational"], "preference": ["dpo", "preference"], "kto": ["kto", "preference"]}


def size_category(n: int) -> str:
    return next((label for top, label in SIZES if n < top), "1M<n<10M")


def front_matter(name: str, shape: str, files: dict[str, str], total: int, language: str = "en") -> dict[str, Any]:
    return {
        "license": "unknown",
        "language": [language],
        "task_categories": ["text-generation"],
        "size_categories": [size_category(total)],
        "pretty_name": name,
        "tags": ["synthetic", "datagen", *TAGS[shape]],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": split, "path": file} for split, file in files.items()]}],
    }


def trl_snippet(shape: str, fmt: str, files: dict[str, str]) -> str:
    trainer = TRL_TRAINER[shape]
    config = {"SFTTrainer": "SFTConfig", "DPOTrainer": "DPOConfig", "KTOTrainer": "KTOConfig"}[trainer]
    data_files = ", ".join(f'"{s}": "{f}"' for s, f in files.items())
    # assistant_only_loss needs a chat template with {% generation %} markers, which many models lack: a comment
    extra = ")  # SFTConfig(..., assistant_only_loss=True) trains on replies only, if the template marks them" \
        if shape == "chat" else ")"
    return f"""```python
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import {config}, {trainer}

ds = load_dataset("json", data_files={{{data_files}}})
model = AutoModelForCausalLM.from_pretrained("YOUR_MODEL")
tokenizer = AutoTokenizer.from_pretrained("YOUR_MODEL")   # its chat template renders the messages
args = {config}(output_dir="out"{extra}
trainer = {trainer}(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds.get("validation"),
                    processing_class=tokenizer)
trainer.train()
```"""


def render_card(ctx: ExportContext, fmt: str, trainer: str | None, files: dict[str, str],
                metadata: dict[str, str]) -> str:
    plan, stats = ctx.plan, ctx.stats
    shape = plan.record_shape
    head = yaml.safe_dump(front_matter(plan.name, shape, files, stats.total), sort_keys=False, allow_unicode=True)
    head = head.replace("license: unknown", "license: unknown  # fill in (e.g. apache-2.0, cc-by-4.0) before you publish", 1)
    out = [f"---\n{head}---\n", f"# {plan.name}\n"]
    if ctx.simulated:
        out.append("> **SIMULATED DATA - NOT FOR TRAINING.** Every example came from datagen's simulated provider.\n")
    out.append(f"Synthetic {shape} data for: {plan.task}. Made with datagen "
               f"(plan hash `{ctx.plan_hash or 'unknown'}`); dataset_info.txt and report.html hold the audit.\n")
    out.append(f"## Files\n\nFormat `{fmt}`: {DESCRIBE[fmt]}.\n")
    out.append("| split | file | examples |\n|---|---|---|")
    for split, file in files.items():
        out.append(f"| {split} | {file} | {stats.files.get(file, 0):,} |")
    if stats.left_out:
        out.append(f"\n{stats.left_out:,} examples were left out: {stats.left_out_reason}.")
    if stats.system_dropped:
        out.append(f"\n{stats.system_dropped:,} system prompts were dropped: `{fmt}` has no field for them.")
    if ctx.coverage:  # grounded runs: which documents the answers come from
        cov = ctx.coverage
        out.append(f"\n## Sources\n\nEvery answer was generated from one passage of these documents and checked "
                   f"against it ({cov['used']} of {cov['passages']} passages used):\n")
        out += [f"- {s['source']} (sha256 `{s['hash']}`): {s['examples']:,} examples" for s in cov["sources"]]
    out.append("\n## Categories\n")
    for dim, counts in stats.labels.items():
        out.append(f"- **{dim}**: " + ", ".join(f"{c} {n:,}" for c, n in counts.most_common()))
    out.append("\n## Load\n")
    data_files = ", ".join(f'"{s}": "{f}"' for s, f in files.items())
    out.append(f'```python\nfrom datasets import load_dataset\nds = load_dataset("json", data_files={{{data_files}}})\n```')
    if metadata:
        meta_files = ", ".join(f'"{s}": "{f}"' for s, f in metadata.items())
        dim = next(iter(plan.dimensions))
        cat = plan.dimensions[dim].categories[0].name
        out.append(f"\nLine N of each `*_metadata.jsonl` describes line N of its data file (id, topic, the "
                   f"category on every dimension). A subset in one line:\n\n```python\n"
                   f'meta = load_dataset("json", data_files={{{meta_files}}})\n'
                   f'subset = ds["train"].select(meta["train"].filter(lambda m: m["{dim}"] == "{cat}")["row"])\n```')
    out.append("\n## Train\n")
    if trainer in (None, "trl", "unsloth") and fmt in ("openai", "dpo-chat", "kto-chat", "dpo", "kto"):
        if trainer == "unsloth":
            out.append("Unsloth trains through TRL's trainers: load the model with "
                       "`FastLanguageModel.from_pretrained`, then the TRL code below is unchanged.\n")
        out.append(trl_snippet(shape, fmt, files))
    if trainer == "axolotl":
        out.append(f"Paste `{AXOLOTL}` (written beside the data) into your Axolotl config.")
    if trainer == "llama-factory":
        out.append(f"Copy the entries of `{LF_INFO}` into your LLaMA-Factory `data/dataset_info.json` (or point "
                   f"`dataset_dir` at this folder) and train with `dataset: {plan.name}_train`, "
                   f"`eval_dataset: {plan.name}_validation`.")
    if trainer == "openai":
        out.append("Upload the training file (and validation file) with `purpose=\"fine-tune\"`; "
                   + ("`method: {type: dpo}` for preference fine-tuning." if fmt == "openai-dpo" else
                      "supervised fine-tuning is the default method.")
                   + " Check it first with `datagen validate --for openai FILE`.")
    return "\n".join(out) + "\n"
