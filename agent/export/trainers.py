"""`export --for TRAINER`: which format each trainer loads unchanged, and the config it needs beside the data.

    trl, unsloth    messages / dpo-chat / kto-chat: TRL's conversational forms, so SFTTrainer, DPOTrainer and
                    KTOTrainer apply the model's chat template (system prompt included) and
                    assistant_only_loss works. Unsloth trains through TRL's trainers. Config: a snippet in
                    the dataset card.
    axolotl         messages (type chat_template) or sharegpt with the human/gpt role mapping; DPO as
                    dpo-chat through `type: passthrough` (TRL applies the chat template). Axolotl has no
                    KTO loader for chat messages, only ChatML/Llama-3 string templates: KTO is refused.
                    Config: axolotl_datasets.yaml (a `datasets:` / `test_datasets:` block to paste).
    llama-factory   sharegpt (system prompt as the first turn, which its converter lifts out), or
                    alpaca-history; DPO/KTO as dpo-system / kto-system through its alpaca converter with
                    ranking / kto_tag. Config: dataset_info.json, one entry per file.
    openai          messages; preference pairs as OpenAI's preference fine-tuning shape. OpenAI has no KTO.

Every export also writes manifest.json: the format of each file, the trainer, the configs written.
Facts about each trainer were checked against its source: TRL's data_utils (is_conversational keys),
LLaMA-Factory's data/parser.py (DatasetAttr: when "columns" is given every unnamed column becomes None)
and data/converter.py (sharegpt role alternation, system lifted from the first turn), Axolotl's
prompt_strategies (chat_template's field_messages / message_property_mappings / roles; dpo.passthrough).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.errors import InputError


@dataclass(frozen=True)
class Trainer:
    name: str
    default: dict[str, str]          # record shape -> the format written when --format is not given
    formats: tuple[str, ...]         # every format it loads unchanged (with the config written here)


TRAINERS = {
    "trl": Trainer("trl", {"chat": "openai", "preference": "dpo-chat", "kto": "kto-chat"},
                   ("openai", "dpo-chat", "kto-chat", "dpo", "kto")),
    "unsloth": Trainer("unsloth", {"chat": "openai", "preference": "dpo-chat", "kto": "kto-chat"},
                       ("openai", "dpo-chat", "kto-chat", "dpo", "kto")),
    "axolotl": Trainer("axolotl", {"chat": "openai", "preference": "dpo-chat"}, ("openai", "sharegpt", "dpo-chat")),
    "llama-factory": Trainer("llama-factory", {"chat": "sharegpt", "preference": "dpo-system", "kto": "kto-system"},
                             ("sharegpt", "openai", "alpaca-history", "alpaca", "dpo-system", "kto-system",
                              "dpo", "kto")),
    "openai": Trainer("openai", {"chat": "openai", "preference": "openai-dpo"}, ("openai", "openai-dpo")),
}
MANIFEST, LF_INFO, AXOLOTL = "manifest.json", "dataset_info.json", "axolotl_datasets.yaml"

# what each format is, for the manifest and the card
DESCRIBE = {
    "openai": "chat messages [{role: system|user|assistant, content}] (TRL/OpenAI conversational SFT)",
    "sharegpt": "ShareGPT conversations [{from: system|human|gpt, value}] (seed 002)",
    "alpaca": "Alpaca {instruction, input, output}; single-turn only, no system prompt (seed 002)",
    "alpaca-history": "Alpaca {instruction, input, output, system, history} (LLaMA-Factory columns)",
    "dpo": "DPO strings {prompt, chosen, rejected}; no system prompt (seed 002, TRL standard form)",
    "kto": "KTO strings {prompt, completion, label}; no system prompt (seed 002, TRL standard form)",
    "dpo-chat": "DPO conversational {prompt: [system, user], chosen: [assistant], rejected: [assistant]} (TRL)",
    "kto-chat": "KTO conversational {prompt: [system, user], completion: [assistant], label} (TRL)",
    "openai-dpo": "OpenAI preference fine-tuning {input: {messages}, preferred_output, non_preferred_output}",
    "dpo-system": "DPO strings with the system prompt {system, prompt, chosen, rejected}",
    "kto-system": "KTO strings with the system prompt {system, prompt, completion, label}",
}
TRL_TRAINER = {"chat": "SFTTrainer", "preference": "DPOTrainer", "kto": "KTOTrainer"}


def choose_format(trainer: str | None, fmt: str | None, shape: str, plan_format: str) -> str:
    """The format to write: --format if given (checked against --for), else the trainer's, else the plan's."""
    if trainer is None:
        return fmt or plan_format
    t = TRAINERS[trainer]
    if fmt is None:
        if shape not in t.default:
            others = [n for n, o in TRAINERS.items() if shape in o.default]
            raise InputError(f"{trainer} has no loader for {shape} records that keeps them intact; "
                             f"export them --for {' or --for '.join(others)}")
        return t.default[shape]
    if fmt not in t.formats:
        raise InputError(f"--for {trainer} cannot load --format {fmt} unchanged; it takes {', '.join(t.formats)}")
    return fmt


def llama_factory_entry(fmt: str, file_name: str) -> dict[str, Any]:
    """One dataset_info.json entry (LLaMA-Factory data/README.md): formatting, columns and tags for `fmt`."""
    entry: dict[str, Any] = {"file_name": file_name}
    if fmt == "sharegpt":
        entry |= {"formatting": "sharegpt", "columns": {"messages": "conversations"},
                  "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                           "assistant_tag": "gpt", "system_tag": "system"}}
    elif fmt == "openai":
        entry |= {"formatting": "sharegpt", "columns": {"messages": "messages"},
                  "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                           "assistant_tag": "assistant", "system_tag": "system"}}
    elif fmt in ("alpaca", "alpaca-history"):
        columns = {"prompt": "instruction", "query": "input", "response": "output"}
        if fmt == "alpaca-history":
            columns |= {"system": "system", "history": "history"}
        entry |= {"formatting": "alpaca", "columns": columns}
    elif fmt in ("dpo", "dpo-system"):
        columns = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
        entry |= {"formatting": "alpaca", "ranking": True,
                  "columns": columns | ({"system": "system"} if fmt == "dpo-system" else {})}
    elif fmt in ("kto", "kto-system"):
        columns = {"prompt": "prompt", "response": "completion", "kto_tag": "label"}
        entry |= {"formatting": "alpaca", "columns": columns | ({"system": "system"} if fmt == "kto-system" else {})}
    else:
        raise InputError(f"LLaMA-Factory has no mapping for {fmt}")
    return entry


def axolotl_block(fmt: str, path: str) -> dict[str, Any]:
    """One entry of Axolotl's `datasets:` list for a local JSONL file of `fmt`."""
    base = {"path": path, "ds_type": "json", "split": "train"}
    if fmt == "openai":
        return base | {"type": "chat_template", "field_messages": "messages",
                       "message_property_mappings": {"role": "role", "content": "content"}}
    if fmt == "sharegpt":
        return base | {"type": "chat_template", "field_messages": "conversations",
                       "message_property_mappings": {"role": "from", "content": "value"},
                       "roles": {"system": ["system"], "user": ["human"], "assistant": ["gpt"]}}
    if fmt == "dpo-chat":
        return base | {"type": "passthrough"}
    raise InputError(f"Axolotl has no mapping for {fmt}")


def write_configs(out_dir: Path, trainer: str | None, fmt: str, files: dict[str, str], name: str,
                  counts: dict[str, int], metadata: list[str] | None = None, tokenizer: str = "",
                  final_dir: Path | None = None) -> list[Path]:
    """Write manifest.json and the trainer's config beside the data; `files`: split -> file name.

    `final_dir`: where the files will live (an export writes into a staging folder first); the Axolotl
    block names absolute paths there."""
    final_dir = final_dir or out_dir
    from agent.yamlfile import write_atomic

    written: list[Path] = []
    configs: list[str] = []
    if trainer == "llama-factory":
        info = {f"{name}_{split}": llama_factory_entry(fmt, file) for split, file in files.items()}
        write_atomic(out_dir / LF_INFO, json.dumps(info, indent=2) + "\n")
        configs.append(LF_INFO)
    elif trainer == "axolotl":
        block: dict[str, Any] = {}
        if fmt == "dpo-chat":
            block["rl"] = "dpo"
        block["datasets"] = [axolotl_block(fmt, str((final_dir / files["train"]).resolve()))]
        if "validation" in files:
            block["test_datasets"] = [axolotl_block(fmt, str((final_dir / files["validation"]).resolve()))]
        text = (f"# Paste into your Axolotl config (written by datagen for {fmt} files).\n"
                "# The paths are where the files were written: change them if you move the folder.\n"
                + yaml.safe_dump(block, sort_keys=False))
        write_atomic(out_dir / AXOLOTL, text)
        configs.append(AXOLOTL)
    manifest = {
        "trainer": trainer, "format": fmt, "shape": DESCRIBE[fmt],
        "files": [{"path": file, "split": split, "format": fmt, "examples": counts.get(file, 0)}
                  for split, file in files.items()],
        "configs": configs,
        "metadata": metadata or [],
        "tokenizer": tokenizer,
    }
    write_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    written += [out_dir / c for c in configs] + [out_dir / MANIFEST]
    return written
