"""Round 6 (issue 11 item 7, the export's CPU): every file `datagen export` writes is the same bytes as the
code at the start of the round (9590651) wrote from the same ledger, in each trainer format.

The old code runs as it was: its tree comes out of this checkout's history (`git archive`) and its own CLI
exports a copy of the same ledger, beside the current CLI. Outside a git checkout that holds the commit the
test is skipped, saying why. The only bytes allowed to differ are the export's own clock ("exported:
2026-12-02 08:00:00 UTC"), masked in both. The chat ledger also gets records the fast path must leave to
the converter (pipeline._scan: a plain chat record's stored JSON is written as it is): keys in another order,
a key the format drops, text JSON escapes, a message list that is not plain.
"""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from agent.export import export, formats
from agent.export.validate import validate_file
from agent.ledger import CallRow, ExampleRow, Ledger
from agent.records import user_text
from tests import old_code
from tests.test_export import copy_run, runs  # noqa: F401 - runs is a fixture

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "9590651"
CLOCK = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory) -> Path:
    """The code at BEFORE, unpacked from this checkout's history."""
    try:
        archive = subprocess.run(["git", "archive", BEFORE, "agent", "prompts"], cwd=ROOT, capture_output=True,
                                 check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"commit {BEFORE} is not in this checkout's history ({e})")
    tree = tmp_path_factory.mktemp("before")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def odd_chat_rows(ledger: Ledger) -> None:
    """Accepted chat records that are not plain {"role", "content"} lists, and plain ones with hard text."""
    row = next(iter(ledger.iter_accepted()))
    labels = row["audited"]
    system, user, reply = (row["record"]["messages"][i]["content"] for i in range(3))
    records = [
        {"messages": [{"content": system, "role": "system"}, {"role": "user", "content": user + " (order)"},
                      {"role": "assistant", "content": reply}]},
        {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user + " (name)",
                                                               "name": "ann"},
                      {"role": "assistant", "content": reply}]},
        {"messages": [{"role": "user", "content": user + " caf\u00e9 \u2028 \x07 \"q\" \\ \U0001f600 \u00a0end"},
                      {"role": "assistant", "content": reply + "\n\t\u0000"}]},
        {"messages": [{"role": "user", "content": user + " (extra key)"}, {"role": "assistant", "content": reply}],
         "meta": {"source": "import"}},
    ]
    assert not formats.is_plain_chat(records[0]) and not formats.is_plain_chat(records[1])
    assert formats.is_plain_chat(records[2]) and not formats.is_plain_chat(records[3])
    ledger.record_call([CallRow(batch=97, purpose="generate", provider="simulated", model="simulated-1", status="ok")],
                       [ExampleRow(spec_id=f"odd-{i}", status="accepted", requested=labels, audited=labels,
                                   record=r, user_text=user_text(r)) for i, r in enumerate(records)])


EXPORT = """
import sys
from pathlib import Path
from agent.export import export
from agent.ledger import Ledger
ledger = Ledger(Path(sys.argv[1]) / "ledger.sqlite")
export(ledger.stored_plan(), ledger, Path(sys.argv[2]), fmt=sys.argv[3])
"""


def export_files(tree: Path, run: Path, fmt: str) -> dict[str, bytes]:
    """export() of `tree`'s code on the ledger in `run`, in a process of its own: {file name: bytes}."""
    out = run / "out"
    done = subprocess.run([sys.executable, "-c", EXPORT, str(run), str(out), fmt], cwd=tree, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return {p.name: CLOCK.sub(b"<clock>", p.read_bytes()) for p in sorted(out.iterdir()) if p.is_file()}


@pytest.mark.parametrize(("shape", "fmt"), [("chat", "openai"), ("chat", "sharegpt"), ("chat", "alpaca"),
                                            ("preference", "dpo"), ("kto", "kto")])
def test_every_file_is_the_bytes_the_old_export_wrote(runs, old_tree, tmp_path, shape, fmt):  # noqa: F811
    _, ledger, folder = copy_run(runs, shape, tmp_path / "now")
    if shape == "chat":
        odd_chat_rows(ledger)
    ledger.close()
    shutil.copytree(folder, tmp_path / "before" / folder.name)
    before = export_files(old_tree, tmp_path / "before" / folder.name, fmt)
    now = export_files(ROOT, folder, fmt)
    assert {"training_data.jsonl", "validation_data.jsonl", "dataset_info.txt", "report.html"} <= set(now)
    assert list(now) == list(before)
    for name in now:
        assert now[name] == before[name], name
    if fmt == "openai":   # the odd rows are in the files, and the plain one kept its escapes as stored
        # (split on "\n" alone: str.splitlines would also cut at the U+2028 inside a line)
        lines = (now["training_data.jsonl"] + now["validation_data.jsonl"]).decode().split("\n")[:-1]
        assert sum(1 for line in lines if "(order)" in line or "(name)" in line or "(extra key)" in line) == 3
        assert sum(1 for line in lines if "caf\u00e9 \u2028 \\u0007" in line) == 1
        assert all(json.loads(line) for line in lines)


def test_validate_reads_lines_as_the_old_code_did(tmp_path):
    """validate_file takes a plain chat line as its own canonical record (no copy): every figure, error and
    message is still the old code's, on plain lines, near-plain ones and broken ones, with OpenAI's rules too."""
    old = old_code.load(BEFORE, ["formats", "validate"], folder="agent/export")["validate"]
    plain = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How do I log in?"},
                          {"role": "assistant", "content": "Open the page and press Log in."}]}
    lines = [json.dumps(plain), json.dumps({"messages": plain["messages"][1:]}),
             json.dumps({"messages": [{"content": "Hi?", "role": "user"}, {"role": "assistant", "content": "Hello."}]}),
             json.dumps({"messages": [{"role": "user", "content": "Hi?", "weight": 1},
                                      {"role": "assistant", "content": "Hello.", "weight": 0}]}),
             json.dumps({"messages": [{"role": "user", "content": "Hi?"}, {"role": "bot", "content": "Hello."}]}),
             json.dumps({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "Hello."}]}),
             json.dumps({"messages": [{"role": ["user"], "content": "Hi?"}]}),
             json.dumps({"messages": []}), json.dumps({"messages": ["Hi?"]}), json.dumps({"messages": plain["messages"],
                                                                                        "extra": 1}),
             json.dumps({"messages": [{"role": "user", "content": "Mail me at ann.lee@example.org please?"},
                                      {"role": "assistant", "content": "As an AI, I cannot."}]}),
             json.dumps({"messages": [{"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Hi?"}]}),
             "{not json", json.dumps(plain)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    for kwargs in ({}, {"fmt": "openai"}, {"rules": "openai"}, {"near_dups": False}):
        now, before = validate_file(path, **kwargs), old.validate_file(path, **kwargs)
        assert now.summary() == before.summary()
        assert [str(e) for e in now.errors] == [str(e) for e in before.errors]
        assert (now.codes, now.valid, now.examples, now.tokens_total, now.near_duplicates) == \
               (before.codes, before.valid, before.examples, before.tokens_total, before.near_duplicates)
        assert now.valid >= 1 and now.error_lines >= 8 and now.codes["bad_json"] == 1


def test_iter_accepted_rows_are_the_stored_rows_decoded(runs, tmp_path):  # noqa: F811
    """Ledger.iter_accepted decodes audited labels stored as the requested ones' text once and copies them:
    every row still equals a plain decode of its columns, and its two label dicts are its own."""
    _, ledger, _ = copy_run(runs, "chat", tmp_path)
    odd_chat_rows(ledger)
    ledger.record_call([CallRow(batch=96, purpose="generate", provider="simulated", model="simulated-1", status="ok")],
                       [ExampleRow(spec_id="relabelled", status="accepted", requested={"tone": "formal"},
                                   audited={"tone": "casual"}, record={"messages": []}, user_text="")])
    stored = ledger.db.execute("SELECT id, requested, audited, record FROM examples WHERE status = 'accepted' "
                               "ORDER BY id").fetchall()
    rows = list(ledger.iter_accepted())
    assert [(r["id"], r["requested"], r["audited"], r["record"], r["record_json"]) for r in rows] == \
           [(i, json.loads(q), json.loads(a), json.loads(rec), rec) for i, q, a, rec in stored]
    assert [list(r["audited"]) for r in rows] == [list(json.loads(a)) for _, _, a, _ in stored]
    same = [r for r, (_, q, a, _) in zip(rows, stored, strict=True) if q == a]
    assert same and len(same) < len(rows)
    for r in same:
        r["audited"]["tone"] = "changed"
        assert r["requested"].get("tone") != "changed"


def test_a_stored_line_written_wrong_is_still_caught(runs, tmp_path, monkeypatch):  # noqa: F811
    """The fast path writes the stored JSON text as the line; should that text ever differ from the record
    (here: one line's text broken, another's role changed), the re-read of the written files reports it and
    the checklist fails, as for any line the writer got wrong."""
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    real = Ledger.iter_accepted

    def broken(self, after_id=0):
        for i, row in enumerate(real(self, after_id)):
            if i == 3:
                row["record_json"] = row["record_json"][:-2]
            elif i == 7:
                row["record_json"] = row["record_json"].replace('"role": "assistant"', '"role": "bot"', 1)
            yield row

    monkeypatch.setattr(Ledger, "iter_accepted", broken)
    result = export(plan, ledger, folder, val_split=0.0)
    report = result.reports["training_data.jsonl"]
    assert report.codes["bad_json"] == 1 and report.codes["bad_structure"] == 1 and report.error_lines == 2
    assert [e.line for e in report.errors] == [4, 8]
    text = (folder / "dataset_info.txt").read_text()
    assert "- [FAIL] All examples are valid JSON" in text and "- [FAIL] Validation script passes" in text


def test_a_plain_chat_is_its_own_openai_line_and_canonical_record():
    """What _scan's fast path relies on, over many shapes near a plain chat: whenever is_plain_chat says yes,
    the converter's line is the record's own JSON text and to_canonical gives the record back; every record
    built plain says yes."""
    rng = random.Random(11)
    said_yes = said_no = 0
    for _ in range(3000):
        msgs: list = []
        for _ in range(rng.randint(0, 4)):
            role = rng.choice(["system", "user", "assistant", "assistant", "bot", 3, ["user"]])
            content = rng.choice(["Hi?", "caf\u00e9 \u2028", "", 7, None, ["x"]])
            m = {"role": role, "content": content}
            if rng.random() < 0.15:
                m = {"content": content, "role": role}
            if rng.random() < 0.1:
                m["name"] = "ann"
            if rng.random() < 0.05:
                m = rng.choice(["text", ["role", "content"], {"role": "user"}])
            msgs.append(m)
        record: dict = {"messages": msgs}
        if rng.random() < 0.05:
            record["meta"] = 1
        if rng.random() < 0.03:
            record = {"messages": "Hi?"}
        built_plain = type(record["messages"]) is list and bool(msgs) and len(record) == 1 and all(
            type(m) is dict and list(m) == ["role", "content"] and m["role"] in ("system", "user", "assistant")
            and type(m["content"]) is str for m in msgs)
        assert formats.is_plain_chat(record) == built_plain
        if built_plain:
            said_yes += 1
            text = json.dumps(record, ensure_ascii=False)
            assert json.dumps(formats.to_format(json.loads(text), "openai"), ensure_ascii=False) == text
            assert formats.to_canonical(formats.to_format(record, "openai"), "openai") == record
        else:
            said_no += 1
    assert said_yes > 100 and said_no > 1000
