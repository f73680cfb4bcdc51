"""Plans a person edits: every bad input gives one line naming file, path and line; exit 2; nothing overwritten."""

from __future__ import annotations

import copy

import pytest
import yaml

from agent.plan import load_plan, plan_yaml, save_plan
from tests.conftest import EXAMPLE_PLAN, ROOT

BASE = yaml.safe_load(EXAMPLE_PLAN.read_text())


def edited(path, change):
    data = copy.deepcopy(BASE)
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tone_share(value):
    return lambda d: d["dimensions"]["tone"]["categories"][2].__setitem__("share", value)


CASES = [
    ("negative share", tone_share(-0.2), "dimensions.tone.categories[2].share: Input should be greater than or equal to 0"),
    ("non-numeric share", tone_share("lots"), "dimensions.tone.categories[2].share: Input should be a valid number"),
    ("shares not summing to 1", tone_share(0.3), "dimensions.tone.categories: shares sum to 1.1, they must sum to 1"),
    ("empty dimension", lambda d: d["dimensions"]["tone"].__setitem__("categories", []),
     "dimensions.tone.categories: List should have at least 1 item"),
    ("total of zero", lambda d: d.__setitem__("total", 0), "total: Input should be greater than or equal to 1"),
    ("unknown output format", lambda d: d.__setitem__("output_format", "csv"),
     "output_format: Input should be 'openai', 'alpaca', 'sharegpt', 'dpo' or 'kto'"),
    ("unknown key", lambda d: d.__setitem__("colour", "blue"), "colour: unknown key"),
    ("unknown nested key", lambda d: d["generation"].__setitem__("speed", 3), "generation.speed: unknown key"),
    ("batch size out of the seed's 50-100", lambda d: d["generation"].__setitem__("batch_size", 500),
     "generation.batch_size: Input should be less than or equal to 100"),
    ("duplicate category", lambda d: d["dimensions"]["tone"]["categories"][1].__setitem__("name", "professional"),
     "dimensions.tone.categories: category 'professional' appears twice"),
]


@pytest.mark.parametrize("label,change,message", CASES, ids=[c[0] for c in CASES])
def test_bad_plan_gives_one_line_with_path_and_line(tmp_path, run_cli, label, change, message):
    path = edited(tmp_path / "bad.yaml", change)
    r = run_cli("plan", "--show", str(path))
    assert r.code == 2
    assert r.out == ""
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith(f"datagen: {path}:")
    assert message in lines[0]
    assert "Traceback" not in r.err


def test_line_number_points_at_the_offending_value(tmp_path, run_cli):
    path = edited(tmp_path / "bad.yaml", tone_share(-0.2))
    r = run_cli("plan", "--show", str(path))
    line_no = int(r.err.split(":")[2])
    assert "share: -0.2" in path.read_text().splitlines()[line_no - 1]


@pytest.mark.parametrize("content,message", [
    (b"name: x\n  task: [oops\n", ":2: malformed YAML: mapping values are not allowed here"),
    (b"", "the plan file is empty"),
    (b"\xff\xfe\x00garbage\x81", "not a text file"),
    (b"- just\n- a list\n", "must be a YAML mapping"),
])
def test_unreadable_plan_files(tmp_path, run_cli, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    r = run_cli("plan", "--show", str(path))
    assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1


def test_missing_plan_file(tmp_path, run_cli):
    r = run_cli("plan", "--show", str(tmp_path / "nope.yaml"))
    assert r.code == 2 and "plan file not found" in r.err


def test_round_trip_plan_yaml_plan(tmp_path):
    plan = load_plan(EXAMPLE_PLAN)
    save_plan(plan, tmp_path / "again.yaml")
    again = load_plan(tmp_path / "again.yaml")
    assert again == plan
    assert plan_yaml(again) == plan_yaml(plan)


def test_edited_total_and_share_recompute_quotas(tmp_path, run_cli):
    def change(d):
        d["total"] = 1000
        cats = d["dimensions"]["tone"]["categories"]
        cats[0]["share"], cats[1]["share"], cats[2]["share"] = 0.5, 0.25, 0.25
        cats[0]["quota"] = 999  # a stale quota in the file is recomputed, not trusted

    plan = load_plan(edited(tmp_path / "p.yaml", change))
    assert [c.quota for c in plan.dimensions["tone"].categories] == [500, 250, 250]
    for dim in plan.dimensions.values():
        assert sum(c.quota for c in dim.categories) == 1000
    r = run_cli("plan", "--show", str(tmp_path / "p.yaml"))
    assert r.code == 0 and "1,000 examples" in r.out


def test_zero_share_gives_zero_quota(tmp_path):
    def change(d):
        cats = d["dimensions"]["behaviour"]["categories"]
        for c in cats:
            c["share"] = 0.0
        cats[0]["share"] = 1.0

    plan = load_plan(edited(tmp_path / "p.yaml", change))
    assert [c.quota for c in plan.dimensions["behaviour"].categories] == [200, 0, 0, 0]


def test_plan_command_never_overwrites(tmp_path, run_cli):
    existing = tmp_path / "out.yaml"
    existing.write_text("precious: true\n")
    req = tmp_path / "req.yaml"
    req.write_text("task: customer support\ndomain: cloud GPUs\nnum_examples: 100\n")
    r = run_cli("plan", str(req), "-o", str(existing))
    assert r.code == 2 and "already exists" in r.err and "--force" in r.err
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: customer support\ndomain: cloud GPUs\nnum_examples: -5\n")
    r = run_cli("plan", str(bad), "-o", str(existing), "--force")
    assert r.code == 2 and f"{bad}:3: num_examples" in r.err
    assert existing.read_text() == "precious: true\n"
    r = run_cli("plan", str(req), "-o", str(existing), "--force")
    assert r.code == 0 and load_plan(existing).total == 100


def test_requirements_change_defaults(tmp_path):
    from agent.planner import build_plan
    from agent.requirements import Requirements

    plan = build_plan(Requirements(task="support bot", domain="gpus", num_examples=1000, negatives=False,
                                   multi_turn=False, subject_areas=["billing", "setup"]))
    beh = {c.name: c.share for c in plan.dimensions["behaviour"].categories}
    assert beh["negative"] == 0 and abs(sum(beh.values()) - 1) < 1e-9
    assert beh["standard"] == pytest.approx(0.72 / 0.88)
    assert plan.dimensions["behaviour"].category("negative").quota == 0
    assert plan.dimensions["turns"].category("multi_turn").quota == 0
    assert [c.name for c in plan.dimensions["domain"].categories] == ["billing", "setup"]
    assert [c.quota for c in plan.dimensions["domain"].categories] == [500, 500]
    default = build_plan(Requirements(task="support bot", domain="gpus", num_examples=5000))
    assert len(default.dimensions["domain"].categories) == 8  # the seed's company-data domains
    assert default.dimensions["typos"].category("typos").quota == 250  # seed: 5% of 5,000


def _old_load_yaml(path):
    """The reader before it parsed once: compose, check duplicate keys, then load the text a second time."""
    from agent.yamlfile import FAST_LOADER, _refuse_duplicate_keys

    text = path.read_text()
    try:
        node, data = yaml.compose(text, Loader=FAST_LOADER), yaml.load(text, Loader=FAST_LOADER)  # noqa: S506
    except yaml.YAMLError:
        node, data = yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    _refuse_duplicate_keys(path, node)
    return data


MERGED = """base: &base {a: 1, b: 2}
child:
  <<: *base
  b: 3
"""


@pytest.mark.parametrize("path", sorted(ROOT.glob("plans/*.yaml")) + sorted(ROOT.glob("tests/bad_inputs/*.yaml")),
                         ids=lambda p: p.name)
def test_yaml_parsed_once_reads_what_the_two_pass_reader_read(path):
    from agent.errors import InputError
    from agent.yamlfile import load_yaml

    try:
        old = ("data", _old_load_yaml(path))
    except (InputError, yaml.YAMLError, UnicodeDecodeError) as e:
        old = ("error", "YAMLError" if isinstance(e, yaml.YAMLError) else type(e).__name__)
    try:
        new = ("data", load_yaml(path, "plan")[0])
    except InputError as e:
        new = ("error", "YAMLError" if "malformed YAML" in str(e) else type(e).__name__)
    if old[0] == "data" and not isinstance(old[1], dict):   # the reader refuses what is not a mapping
        assert new == ("error", "InputError")
    elif old[1] != "UnicodeDecodeError":                     # the reader says "not a text file" first
        assert new == old


def test_merge_keys_override_without_a_duplicate_complaint_and_duplicates_still_refused(tmp_path):
    from agent.errors import InputError
    from agent.yamlfile import load_yaml

    (tmp_path / "m.yaml").write_text(MERGED)
    data, _ = load_yaml(tmp_path / "m.yaml", "plan")
    assert data == yaml.safe_load(MERGED) == {"base": {"a": 1, "b": 2}, "child": {"a": 1, "b": 3}}
    (tmp_path / "d.yaml").write_text(MERGED + "  b: 4\n")
    with pytest.raises(InputError, match=r":5: duplicate key 'b' \(first at line 4\)"):
        load_yaml(tmp_path / "d.yaml", "plan")
