"""`datagen plan --show` prints every dimension as a table people can read: each category's share, exact quota,
declared measure and full description, within the output's width."""

from __future__ import annotations

import io
import os
import re

import yaml

from agent.plan import load_plan
from agent.plan_view import PIPE_WIDTH, output_width, plan_tables, table
from tests.conftest import EXAMPLE_PLAN


def tables(text: str) -> dict[str, list[list[str]]]:
    """title -> the cell texts of each table row (header included), continuation lines merged into their row."""
    out: dict[str, list[list[str]]] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("│") and title:
            cells = [c.strip() for c in line.strip("│").split("│")]
            rows = out[title]
            if rows and not cells[0] and any(cells):   # a wrapped description goes on under an empty name
                rows[-1] = [a if not b else f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
            else:
                rows.append(cells)
        elif re.match(r"^\w+ \(\w+\)$", line):
            title = line.split(" (")[0]
            out[title] = []
    return out


def test_every_category_shows_its_share_exact_quota_and_whole_description(run_cli):
    plan = load_plan(EXAMPLE_PLAN)
    r = run_cli("plan", "--show", str(EXAMPLE_PLAN))
    assert r.code == 0
    shown = tables(r.out)
    assert list(shown) == list(plan.dimensions)
    for name, dim in plan.dimensions.items():
        header, *rows, total = shown[name]
        assert header[:3] == ["category", "share", "quota"] and header[-1] == "what belongs here"
        assert [row[0] for row in rows] == [c.name for c in dim.categories]
        for row, c in zip(rows, dim.categories, strict=True):
            assert row[1] == f"{c.share:.1%}" and int(row[2].replace(",", "")) == c.quota
            assert row[-1] == " ".join(c.description.split())   # wrapped, never cut
        assert total[0] == "total" and int(total[2].replace(",", "")) == plan.total
    lines = r.out.splitlines()
    assert lines[0] == f"Plan {plan.name}: {plan.task}" and f"{plan.total:,} examples" in lines[1]
    assert f"Topics: {sum(len(v) for v in plan.topics.values())} across" in r.out


def test_measured_dimensions_show_what_each_category_declares(run_cli):
    shown = tables(run_cli("plan", "--show", str(EXAMPLE_PLAN)).out)
    assert shown["examples"][0][3] == "measured as"
    assert [row[3] for row in shown["examples"][1:3]] == ["yes", "no"]
    assert shown["turns"][1][3] == "1 turn" and shown["turns"][2][3].endswith("turns")
    assert "measured as" not in shown["question_type"][0]


def test_tables_keep_within_the_width_and_fold_long_words():
    plan = load_plan(EXAMPLE_PLAN)
    out = io.StringIO()   # no terminal: laid out in PIPE_WIDTH
    plan_tables(plan, out)
    boxed = [line for line in out.getvalue().splitlines() if line[:1] in "┌│├└"]
    assert boxed and max(len(line) for line in boxed) <= PIPE_WIDTH
    for width in (80, 60):
        for dim in plan.dimensions.values():
            lines = table(["category", "share", "quota", "what belongs here"],
                          [[c.name, "1.0%", "1", c.description] for c in dim.categories], right={1, 2}, wrap=3,
                          width=width)
            assert max(len(line) for line in lines) <= width
    word = "x" * 150
    lines = table(["name", "what"], [["a", word]], right=set(), wrap=1, width=60)
    assert max(len(line) for line in lines) <= 60
    assert "".join(line.split("│")[2].strip() for line in lines if line.startswith("│ ") and "what" not in line) == word


def test_width_is_the_terminals_only_for_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

        def fileno(self) -> int:
            return 1

    monkeypatch.setattr("os.get_terminal_size", lambda fd: os.terminal_size((73, 20)))
    assert output_width(Tty()) == 73
    assert output_width(io.StringIO()) == PIPE_WIDTH


def test_an_old_plan_is_noted_as_inferred(tmp_path, run_cli):
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    for c in data["dimensions"]["examples"]["categories"]:
        c.pop("code")
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("plan", "--show", str(tmp_path / "old.yaml"))
    assert r.code == 0
    assert tables(r.out)["examples"][0][3] == "measured as (inferred)"
    assert "Note: the measures of examples were inferred" in r.out and "--save" in r.out
