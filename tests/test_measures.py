"""Declared measures (issue 11 item 3): labels come from what the plan declares, never from category names;
plans from before declarations load with the measure inferred once; prompts carry the plan's own ranges."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from agent.audit.labels import measure
from agent.plan import load_plan, save_plan
from agent.planner import build_plan
from agent.prompts import PROMPTS_DIR, build_request, system_prompt
from agent.records import Spec
from agent.requirements import Requirements
from tests.conftest import EXAMPLE_PLAN

BASE = yaml.safe_load(EXAMPLE_PLAN.read_text())
CODE_REPLY = "Run this:\n\n```bash\ncloudgpu instances list --gpu a100\n```\n\n" + "word " * 60
PLAIN_REPLY = "Spot capacity is reclaimed when demand rises, so plan for interruptions. " + "word " * 60


def chat(user: str, *replies_and_users: str) -> dict:
    msgs = [{"role": "user", "content": user}]
    for i, text in enumerate(replies_and_users):
        msgs.append({"role": "assistant" if i % 2 == 0 else "user", "content": text})
    return {"messages": msgs}


def write(tmp_path, change, name="plan.yaml"):
    data = copy.deepcopy(BASE)
    change(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def undeclare(data):
    """The plan as written before measures were declared: no code/typos/turns/format values."""
    for dim in data["dimensions"].values():
        for c in dim["categories"]:
            for key in ("code", "typos", "min_turns", "max_turns", "format"):
                c.pop(key, None)


def rename_examples(declared: bool):
    def change(data):
        if not declared:
            undeclare(data)
        cats = data["dimensions"]["examples"]["categories"]
        cats[0]["name"], cats[1]["name"] = "practical", "theory"
    return change


def test_renamed_code_categories_measure_right_when_declared(tmp_path):
    plan = load_plan(write(tmp_path, rename_examples(declared=True)))
    assert measure(chat("How do I list instances?", CODE_REPLY), plan)["examples"] == "practical"
    assert measure(chat("How do I list instances?", PLAIN_REPLY), plan)["examples"] == "theory"


def test_renamed_undeclared_categories_are_refused_with_the_fix(tmp_path, run_cli):
    path = write(tmp_path, rename_examples(declared=False))
    r = run_cli("plan", "--show", str(path))
    assert r.code == 2 and r.out == "" and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert "dimensions.examples" in r.err and "code: true" in r.err


def test_declaration_not_name_decides(tmp_path):
    """A plan may call its categories anything, even swap the meaning the old name rules gave them."""
    def swap(data):
        cats = data["dimensions"]["typos"]["categories"]      # clean: typos false, typos: typos true
        cats[0]["typos"], cats[1]["typos"] = True, False
    plan = load_plan(write(tmp_path, swap))
    assert measure(chat("pls help, my instnace wont start adn i dont know why", PLAIN_REPLY), plan)["typos"] == "clean"

    def rename_turns(data):
        cats = data["dimensions"]["turns"]["categories"]
        cats[0]["name"], cats[1]["name"] = "one_go", "back_and_forth"
        data["dimensions"]["turns"]["categories"][1]["max_turns"] = 4
    plan = load_plan(write(tmp_path, rename_turns))
    assert measure(chat("Start?", PLAIN_REPLY), plan)["turns"] == "one_go"
    four = chat("a?", PLAIN_REPLY, "b?", PLAIN_REPLY, "c?", PLAIN_REPLY, "d?", PLAIN_REPLY)
    assert measure(four, plan)["turns"] == "back_and_forth"
    five = chat("a?", PLAIN_REPLY, "b?", PLAIN_REPLY, "c?", PLAIN_REPLY, "d?", PLAIN_REPLY, "e?", PLAIN_REPLY)
    assert measure(five, plan)["turns"] is None


def test_old_plan_infers_once_notes_it_and_save_declares(tmp_path, run_cli, caplog):
    path = write(tmp_path, undeclare, "old.yaml")
    with caplog.at_level("WARNING"):
        old = load_plan(path)
    assert sorted(old.inferred_measures()) == ["examples", "format", "turns", "typos"]
    assert "inferred from category names" in caplog.text and "--save" in caplog.text
    declared = load_plan(EXAMPLE_PLAN)
    assert declared.inferred_measures() == []
    for rec in (chat("How do I list instances?", CODE_REPLY), chat("hi?", PLAIN_REPLY, "and then?", PLAIN_REPLY)):
        assert measure(rec, old) == measure(rec, declared)

    r = run_cli("plan", "--show", str(path))
    assert r.code == 0 and "inferred" in r.out and "--save" in r.out
    assert "code:" not in path.read_text()                  # --show alone writes nothing
    r = run_cli("plan", "--show", "--save", str(path))
    assert r.code == 0 and "Saved" in r.out
    again = load_plan(path)
    assert again.inferred_measures() == []
    assert again.dimensions["examples"].categories[0].code is True
    assert again.dimensions["turns"].categories[1].min_turns == 2


@pytest.mark.parametrize("change,message", [
    (lambda d: d["dimensions"]["examples"]["categories"][1].__setitem__("code", True),
     "both declare code: true"),
    (lambda d: d["dimensions"]["tone"]["categories"][0].__setitem__("typos", True),
     "sets typos but this dimension measures trusted"),
    (lambda d: d["dimensions"]["turns"]["categories"][1].__setitem__("min_turns", 1),
     "turns ranges of 'single_turn' and 'multi_turn' overlap"),
    (lambda d: d["dimensions"]["format"]["categories"][1].pop("format"),
     "categories list declare no format"),
    (lambda d: d["dimensions"]["format"]["categories"][1].__setitem__("format", "yaml"),
     "Input should be 'plain', 'list', 'table' or 'json'"),
])
def test_bad_declarations_are_refused_on_load(tmp_path, run_cli, change, message):
    path = write(tmp_path, change)
    before = path.read_text()
    r = run_cli("plan", "--show", str(path))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and message in r.err, r.err
    assert path.read_text() == before


def test_prompts_carry_edited_ranges(tmp_path):
    def edit(data):
        dims = data["dimensions"]
        long = dims["response_length"]["categories"][2]
        long["min_words"], long["max_words"] = 333, 777
        dims["response_length"]["categories"][1]["max_words"] = 332
        dims["input_length"]["categories"][0]["min_words"] = 7
        dims["input_length"]["categories"][0]["max_words"] = 19
        dims["turns"]["categories"][1]["max_turns"] = 5
    plan = load_plan(write(tmp_path, edit))
    system = system_prompt(plan)
    assert "long (333-777 words)" in system
    assert "short (7-19 words)" in system
    assert "multi_turn (2-5 turns)" in system
    spec = Spec(id="a1", labels={"response_length": "long", "input_length": "short", "turns": "multi_turn"},
                topic="egress fees")
    req = build_request(plan, [spec])
    assert "response_length=long (333-777 words)" in req.user
    assert "input_length=short (7-19 words)" in req.user
    assert "turns=multi_turn (2-5 turns)" in req.user
    # the shipped ranges are nowhere in what this plan sends
    for stale in ("401", "1200", "800 words", "5-20", "1-20", "2-3"):
        assert stale not in req.system + req.user, stale


def test_templates_hold_no_numbers():
    """Every range and ratio comes from the plan or from code: a number in a template is one the plan can't change."""
    for template in PROMPTS_DIR.glob("*.j2"):
        text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", template.read_text(), flags=re.S)
        found = re.search(r".{0,30}\d.{0,30}", text)
        assert found is None, f"{template.name}: {found.group(0)}"


def test_planner_writes_declared_measures(tmp_path):
    req = Requirements.model_validate(yaml.safe_load((EXAMPLE_PLAN.parent / "example.requirements.yaml").read_text()))
    plan = build_plan(req)
    assert plan.inferred_measures() == []
    save_plan(plan, tmp_path / "new.yaml")
    data = yaml.safe_load((tmp_path / "new.yaml").read_text())
    cats = {d: {c["name"]: c for c in dim["categories"]} for d, dim in data["dimensions"].items()}
    assert cats["examples"]["with_examples"]["code"] is True and cats["examples"]["conceptual"]["code"] is False
    assert cats["typos"]["typos"]["typos"] is True
    assert (cats["turns"]["multi_turn"]["min_turns"], cats["turns"]["multi_turn"]["max_turns"]) == (2, 3)
    assert cats["format"]["list"]["format"] == "list"
    # a description never repeats a range: the range lives in min/max only, so an edit reaches the prompt
    for dim in data["dimensions"].values():
        for c in dim["categories"]:
            assert not re.search(r"\d+-\d+", c["description"]), c
