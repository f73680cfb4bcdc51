"""The interview driven by scripted answers: no TTY, ask/say injected, re-asks, approval, nothing half-written."""

from __future__ import annotations

import pytest
import yaml

from agent.errors import Interrupted
from agent.interview import QUESTIONS, conduct
from agent.plan import load_plan


class Script:
    """Answers questions in order; runs out -> EOFError, like a closed stdin."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.said: list[str] = []

    def ask(self, prompt, default):
        self.prompts.append(prompt)
        if not self.answers:
            raise EOFError
        answer = self.answers.pop(0)
        if answer is KeyboardInterrupt:
            raise KeyboardInterrupt
        return answer

    def say(self, text):
        self.said.append(text)


GOOD = [
    "customer support for a cloud GPU rental company",  # task
    "cloud GPU rental",                                  # domain
    "twelve",                                            # num_examples: bad -> re-ask
    "1,500",                                             # num_examples
    "",                                                  # complexity: default mixed
    "maybe",                                             # edge_cases: bad -> re-ask
    "y",                                                 # edge_cases
    "yes",                                               # phrasing
    "n",                                                 # multi_turn
    "",                                                  # typos: default yes
    "prof",                                              # tone: prefix of professional
    "concise, no emojis",                                # style notes
    "",                                                  # response length: varied
    "code, tables, yaml",                                # formats: bad (yaml) -> re-ask
    "code, tables",                                      # formats
    "billing, GPU instances, storage",                   # subject areas
    "weighted",                                          # distribution
    "billing=2, nope=1",                                 # weights: bad area -> re-ask
    "billing=2, GPU instances=1, storage=1",             # weights
    "n",                                                 # negatives
    "0.9",                                               # validation split: out of range -> re-ask
    "15%",                                               # validation split
    "sharegpt",                                          # format
    "varied",                                            # system prompt mode
    "2",                                                 # variants
    "You are Nimbus, CloudGPU's support assistant.",     # persona
    "",                                                  # sources: none
    "",                                                  # examples: none
    "",                                                  # provider: simulated
    "",                                                  # model
    "gpu-support",                                       # name
    "y",                                                 # approve
]


def test_scripted_interview_end_to_end_with_reasks(tmp_path):
    s = Script(GOOD)
    shown = []
    paths = conduct(s.ask, s.say, shown.append, out_dir=tmp_path)
    assert s.answers == []
    req_path, plan_path = paths
    assert plan_path == tmp_path / "gpu-support.yaml"
    errors = [t for t in s.said if t.startswith("  !")]
    assert len(errors) == 5
    assert "'twelve' is not a whole number" in errors[0]
    assert "answer yes or no" in errors[1]
    assert "'yaml' is not one of" in errors[2]
    assert "areas from: billing, GPU instances, storage" in errors[3]
    assert "from 0 to 0.5" in errors[4]
    assert any("Seed guidance" in t for t in s.said)  # size recommendation shown before the size question

    plan = load_plan(plan_path)
    assert shown and shown[0].name == "gpu-support"
    assert plan.total == 1500 and plan.validation_split == 0.15 and plan.output_format == "sharegpt"
    assert [c.quota for c in plan.dimensions["domain"].categories] == [750, 375, 375]
    assert plan.dimensions["behaviour"].category("negative").quota == 0
    assert plan.dimensions["turns"].category("multi_turn").quota == 0
    assert plan.dimensions["tone"].category("professional").share == pytest.approx(0.7)
    assert [c.name for c in plan.dimensions["format"].categories] == ["plain", "table"]
    assert len(plan.system_prompts) == 2 and "Nimbus" in plan.system_prompts[0]
    req = yaml.safe_load(req_path.read_text())
    assert req["area_weights"] == {"billing": 2.0, "GPU instances": 1.0, "storage": 1.0}
    assert req["style_notes"] == "concise, no emojis"


def test_declining_writes_nothing(tmp_path):
    s = Script(GOOD[:-1] + ["n"])
    assert conduct(s.ask, s.say, lambda p: None, out_dir=tmp_path) is None
    assert list(tmp_path.iterdir()) == []
    assert "Not approved: nothing was written." in s.said


@pytest.mark.parametrize("stop_at", [0, 5, len(GOOD) - 1])
def test_ctrl_c_or_eof_writes_nothing(tmp_path, stop_at):
    for ending in (KeyboardInterrupt, None):  # None: the script runs dry -> EOF
        s = Script(GOOD[:stop_at] + ([ending] if ending else []))
        with pytest.raises(Interrupted, match="nothing was written"):
            conduct(s.ask, s.say, lambda p: None, out_dir=tmp_path)
        assert list(tmp_path.iterdir()) == []


def test_endless_bad_answers_stop_after_bounded_tries(tmp_path):
    from agent.errors import InputError

    s = Script(["customer support", "gpus"] + ["many"] * 50)
    with pytest.raises(InputError, match="no valid answer to 'num_examples' after 5 tries"):
        conduct(s.ask, s.say, lambda p: None, out_dir=tmp_path)
    assert len(s.answers) == 45


def test_answers_file_runs_without_a_terminal(tmp_path, run_cli):
    answers = tmp_path / "answers.yaml"
    answers.write_text("task: technical Q&A about our API\ndomain: payments API\nnum_examples: 300\n"
                       "output_format: dpo\nnegatives: false\nname: api-dpo\n")
    r = run_cli("interview", "--answers", str(answers), "--out-dir", str(tmp_path / "plans"))
    assert r.code == 0, r.err
    plan = load_plan(tmp_path / "plans" / "api-dpo.yaml")
    assert plan.output_format == "dpo" and plan.record_shape == "preference"
    assert plan.dimensions["turns"].category("multi_turn").quota == 0  # preference pairs are single-turn
    assert "question_type" in r.out and "Estimate for simulated/simulated-1" in r.err
    # a second run refuses to overwrite, and says how to
    r2 = run_cli("interview", "--answers", str(answers), "--out-dir", str(tmp_path / "plans"))
    assert r2.code == 2 and "already exists; pass --force" in r2.err


def test_bad_answers_file(tmp_path, run_cli):
    answers = tmp_path / "answers.yaml"
    answers.write_text("task: support\ndomain: gpus\nnum_examples: 100\nvalidation_split: 0.9\n")
    r = run_cli("interview", "--answers", str(answers), "--out-dir", str(tmp_path / "plans"))
    assert r.code == 2
    assert f"{answers}:4: validation_split: Input should be less than or equal to 0.5" in r.err
    assert not (tmp_path / "plans").exists()


def test_interview_over_stdin_through_the_cli(tmp_path, run_cli):
    stdin = "\n".join(GOOD) + "\n"
    r = run_cli("interview", "--out-dir", str(tmp_path), stdin=stdin)
    assert r.code == 0, r.err
    assert (tmp_path / "gpu-support.yaml").exists()
    r = run_cli("interview", "--out-dir", str(tmp_path / "other"), stdin="customer support\n")
    assert r.code == 130 and "nothing was written" in r.err and not (tmp_path / "other").exists()


def test_every_question_has_a_default_or_is_required():
    required = {q.key for q in QUESTIONS if q.default({}) is None and q.key not in ("area_weights",)}
    assert required == {"task", "domain"}
