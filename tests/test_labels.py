from __future__ import annotations

import pytest

from agent.audit.labels import bucket, formats_found, has_example, measure, typo_signals, word_count
from agent.plan import Category, Dimension
from agent.planner import build_plan
from agent.requirements import Requirements

PLAN = build_plan(Requirements(task="answer questions about renting GPUs", domain="GPU cloud rental",
                               num_examples=200, special_formats=["code", "lists", "tables", "json"]))
DPO = build_plan(Requirements(task="answer questions about renting GPUs", domain="GPU cloud rental",
                              num_examples=200, output_format="dpo"))
KTO = build_plan(Requirements(task="answer questions about renting GPUs", domain="GPU cloud rental",
                              num_examples=200, output_format="kto", special_formats=["json"]))


def words(n: int, word: str = "word") -> str:
    return " ".join([word] * n)


def chat(*turns: str) -> dict:
    return {"messages": [{"role": "system", "content": "You help."}]
            + [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]}


def test_word_count():
    assert word_count("") == 0
    assert word_count("Hello,   world!\n") == 2
    assert word_count("- first item\n- second") == 3          # bullets are not words
    assert word_count("| a | b |\n|---|---|") == 2             # nor table pipes and rules
    assert word_count("Use CUDA 12.1 — it works.") == 5


@pytest.mark.parametrize("n, expected", [
    (0, None), (49, None), (50, "short"), (150, "short"), (151, "medium"), (400, "medium"),
    (401, "long"), (1200, "long"), (1201, None),
])
def test_bucket_response_length_is_inclusive(n, expected):
    assert bucket(n, PLAN.dimensions["response_length"]) == expected


def test_bucket_open_bounds_and_unbounded_categories():
    dim = Dimension(categories=[Category(name="any", share=0.5), Category(name="big", share=0.5, min_words=10)])
    assert bucket(5, dim) is None            # "any" has no range: it is never a bucket
    assert bucket(10**6, dim) == "big"


def test_measure_reports_only_measured_dimensions():
    got = measure(chat("How much is an A100 per hour?", words(100)), PLAN)
    expected = {n for n, d in PLAN.dimensions.items() if d.measure != "trusted"}
    assert set(got) == expected == {"response_length", "input_length", "examples", "turns", "typos", "format"}


def test_response_length_uses_the_last_assistant_turn():
    rec = chat("How much is an A100 per hour?", words(300), "And an H100?", words(60))
    assert measure(rec, PLAN)["response_length"] == "short"
    assert measure(chat("How much is an A100 per hour?", words(20)), PLAN)["response_length"] is None
    assert measure(chat("How much is an A100 per hour?", words(500)), PLAN)["response_length"] == "long"


def test_response_length_of_preference_and_kto_records():
    pref = {"prompt": "How much is an A100 per hour?", "chosen": words(200), "rejected": words(60)}
    assert measure(pref, DPO)["response_length"] == "medium"
    kto = {"prompt": "How much is an A100 per hour?", "completion": words(70), "label": True}
    assert measure(kto, KTO)["response_length"] == "short"


def test_input_length_uses_the_first_user_message():
    rec = chat(words(30, "please"), words(100), words(5, "ok"), words(100))
    assert measure(rec, PLAN)["input_length"] == "medium"
    assert measure(chat(words(150, "detail"), words(100)), PLAN)["input_length"] == "long"
    assert measure({"prompt": "", "chosen": words(60), "rejected": words(60)}, DPO)["input_length"] is None


def test_turns():
    assert measure(chat("How do I start?", words(60)), PLAN)["turns"] == "single_turn"
    assert measure(chat("How do I start?", words(60), "And stop?", words(60)), PLAN)["turns"] == "multi_turn"
    assert measure({"prompt": "How do I start?", "chosen": words(60), "rejected": words(60)}, DPO)["turns"] == "single_turn"


def test_turns_with_renamed_categories():
    plan = PLAN.model_copy(deep=True)
    plan.dimensions["turns"] = Dimension(measure="turns", categories=[
        Category(name="one_exchange", share=0.5), Category(name="multi_exchange", share=0.5)])
    assert measure(chat("How do I start?", words(60)), plan)["turns"] == "one_exchange"
    assert measure(chat("How do I start?", words(60), "And stop?", words(60)), plan)["turns"] == "multi_exchange"


@pytest.mark.parametrize("reply, example", [
    ("Run this:\n\n```bash\ngpucloud instances list\n```", True),
    ("Run this:\n\n    gpucloud instances list\n", True),                 # indented code block
    ("Run `gpucloud instances list --running` to see them.", True),
    ("Call `client.list()` from the SDK.", True),
    ("Set `GPU_COUNT=4` before starting.", True),
    ("For example, set the batch size to 32 on an A100.", True),
    ("You could, e.g. \"us-east-2\", pick the closest region.", True),
    ("Edit `config.yaml` and restart.", False),                           # a file name is not an example
    ("For example, think of a GPU as a factory with many small workers.", False),
    ("Spot instances are cheaper because they can be reclaimed at any time.", False),
    ("Here is no code:\n\n```\n\n```", False),
])
def test_code_examples(reply, example):
    assert has_example(reply) is example
    assert measure(chat("How do I list instances?", reply), PLAN)["examples"] == ("with_examples" if example else "conceptual")


@pytest.mark.parametrize("reply, found", [
    ("- one\n- two", ["list"]),
    ("1. Stop it\n2. Resize it", ["list"]),
    ("- only one item", []),
    ("| GPU | Price |\n|---|---|\n| A100 | 1.10 |", ["table"]),
    ("| GPU | Price |\n| A100 | 1.10 |", []),                                    # no separator row
    ("```json\n{\"gpu\": \"A100\"}\n```", ["json"]),
    ("```\n[1, 2, 3]\n```", ["json"]),
    ("```json\n{gpu: A100}\n```", []),                                           # does not parse
    ("```bash\n42\n```", []),                                                    # a scalar in a shell block
    ("```text\n- a\n- b\n```", []),                                              # a list inside a fence
    ("Plain words only, nothing else.", []),
    ("- a\n- b\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n```json\n{\"a\": 1}\n```", ["json", "table", "list"]),
])
def test_formats_found(reply, found):
    assert formats_found(reply) == found


def test_format_measure_prefers_the_requested_format():
    both = "| x | y |\n|---|---|\n| 1 | 2 |\n\nSteps:\n\n- a\n- b"
    rec = chat("Compare the GPUs.", both)
    assert measure(rec, PLAN)["format"] == "table"
    assert measure(rec, PLAN, requested={"format": "list"})["format"] == "list"
    assert measure(rec, PLAN, requested={"format": "json"})["format"] == "table"
    assert measure(chat("Compare the GPUs.", "Only prose here."), PLAN, requested={"format": "list"})["format"] == "plain"


def test_format_outside_the_plan_fits_no_category():
    plan = build_plan(Requirements(task="answer questions", domain="GPU cloud", num_examples=50, special_formats=["lists"]))
    assert [c.name for c in plan.dimensions["format"].categories] == ["plain", "list"]
    table = chat("Compare the GPUs.", "| x | y |\n|---|---|\n| 1 | 2 |")
    assert measure(table, plan)["format"] is None
    assert measure(chat("Compare the GPUs.", "- a\n- b"), plan)["format"] == "list"


# --- typos ----------------------------------------------------------------------------------------

CLEAN = [
    "How do I attach a second NVMe volume to my A100 80GB instance and mount it at /data?",
    "What is the hourly price of an H100 SXM5 node, and is there a discount for reserved capacity?",
    "My PyTorch training job crashes with CUDA out of memory on 8 GPUs. The batch size is 64 and I use mixed "
    "precision with bf16. What should I change first?",
    "Can I run vLLM with tensor parallelism across two nodes connected by InfiniBand?",
    "Which regions support spot instances, and what happens to my data when a spot instance is preempted?",
    "I set up SSH keys, but `ssh -i ~/.ssh/id_ed25519 ubuntu@203.0.113.7` still asks for a password. How can I fix it?",
    "Is it better to fine-tune Llama 3 with LoRA or full fine-tuning when I have 4 x A6000 cards?",
    "Our team needs a Kubernetes cluster with autoscaling GPU nodes. Which instance types do you recommend?",
    "How do I export my billing history as a CSV file for the last quarter?",
    "After upgrading to driver 535.104.05, nvidia-smi shows no devices. The kernel is 6.5 on Ubuntu 22.04. "
    "What logs should I check, e.g. the output of journalctl?",
    "Does the API return a webhook event when a job finishes, and how do I verify the signature?",
    "Please explain the difference between persistent storage and ephemeral storage on your platform.",
    "We want to optimise throughput for our Triton inference server; which metrics in Grafana should we watch?",
    "I'm seeing `RuntimeError: NCCL error` with torch.distributed on multi-gpu runs. Is my network config wrong?",
]
INFORMAL = [
    "how do i reset my pasword",
    "pls help my instance wont start",
    "thx, but it still dont work after the reboot",
    "why is teh gpu so slow?? its like half the speed",
    "idk what happened but my jupyter notebook is gone",
    "can u tell me how much an a100 costs per hour",
    "i wanna run stable diffusion on ur cloud, is that posible",
    "My job keeps failing and I dont know why. Any ideas?",
    "hey, how do I recieve the invoice for last month",
    "the ssh conection keeps dropping. what shoud I do",
    "Im trying to install cuda but it says something about incompatable driver",
    "where can i find my api key",
]


@pytest.mark.parametrize("text", CLEAN)
def test_clean_technical_texts_have_no_typos(text):
    sig = typo_signals(text)
    assert not sig.has_typos, (sig.informal, sig.unknown, sig.lowercase_starts)
    assert measure(chat(text, words(60)), PLAN)["typos"] == "clean"


@pytest.mark.parametrize("text", INFORMAL)
def test_informal_texts_are_detected(text):
    assert typo_signals(text).has_typos
    assert measure(chat(text, words(60)), PLAN)["typos"] == "typos"


def test_typo_signals_name_what_they_found():
    sig = typo_signals("why is teh gpu so slow?? thx")
    assert sig.informal == ["??", "thx"]
    assert sig.unknown == ["teh"]
    assert sig.lowercase_starts == 1


def test_one_unknown_word_alone_is_tolerated_but_two_are_not():
    assert not typo_signals("How do I configure the frobnicator on my instance?").has_typos
    assert typo_signals("How do I configure the frobnicator on my instanse?").has_typos


def test_abbreviations_do_not_start_sentences_and_british_spelling_is_fine():
    assert typo_signals("Pick a region, e.g. the closest one. Then start it.").lowercase_starts == 0
    assert not typo_signals("We optimised the behaviour of our colour pipeline; it is organised by team.").has_typos


def test_typos_are_measured_over_all_user_turns_only():
    rec = chat("How do I start an instance?", words(60), "thx, and how do i stop it", words(60))
    assert measure(rec, PLAN)["typos"] == "typos"
    sloppy_reply = chat("How do I start an instance?", "pls use teh dashboard, u click start " + words(60))
    assert measure(sloppy_reply, PLAN)["typos"] == "clean"
    kto = {"prompt": "pls help, my job wont start", "completion": words(60), "label": True}
    assert measure(kto, KTO)["typos"] == "typos"
