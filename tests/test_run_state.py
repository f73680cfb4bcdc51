"""Run state is data, never code (agent/audit/state.py), and the ledger's schema version and migrations."""

from __future__ import annotations

import json
import os
import pickle
import random
import sqlite3
from pathlib import Path

import pytest
import yaml

from agent.audit import state
from agent.audit.auditor import STATE_MODULES
from agent.audit.diversity import LAYOUT, DiversityTracker
from agent.errors import LedgerError
from agent.ledger import SCHEMA_VERSION, Ledger
from tests.conftest import EXAMPLE_PLAN


def examples(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(400)] + ["install the driver", "reset the password", "the GPU"] * 20
    return [{"user": "How do I " + " ".join(rng.choices(words, k=20)) + "?",
             "response": " ".join(rng.choices(words, k=rng.randint(30, 200))),
             "labels": {"tone": rng.choice(["formal", "casual"])}} for _ in range(n)]


def tracker_with(n: int) -> DiversityTracker:
    tracker = DiversityTracker({"tone": ["formal", "casual"]})
    items = examples(n, 1)
    for i in range(0, n, 50):
        tracker.add_batch(items[i:i + 50])
    return tracker


def test_a_tracker_survives_the_format_exactly():
    tracker = tracker_with(300)
    assert tracker._totals.index._bits.columns > 0   # the frequent-key bitmap is part of what is stored
    blob = state.dumps(tracker, STATE_MODULES)
    assert blob.startswith(state.MAGIC)
    loaded = state.loads(blob, STATE_MODULES)
    assert state.same_shape(loaded, DiversityTracker({"tone": ["formal"]}))
    assert loaded.metrics() == tracker.metrics()
    # and it goes on exactly as the original would: same metrics, same avoid list
    more = examples(100, 2)
    assert loaded.add_batch(more).to_dict() == tracker.add_batch(more).to_dict()
    assert loaded.common_phrases(10) == tracker.common_phrases(10)
    assert loaded.used_verbs == tracker.used_verbs


def test_plain_data_round_trips_with_shared_references():
    shared = {1: None, 2: None}
    data = {"route": [shared, shared], "mix": {5: 1, 6: __import__("numpy").arange(3, dtype="int32")},
            "words": ["a", "b"], "t": (1, 2.5, "x", None, True), "s": {3, 4}, "big": 2**70}
    back = state.loads(state.dumps(data, []), [])
    assert back["route"][0] is back["route"][1]           # one object, as before: not two copies
    assert back["mix"][5] == 1 and back["mix"][6].tolist() == [0, 1, 2] and back["mix"][6].dtype.str == "<i4"
    assert (back["words"], back["t"], back["s"], back["big"]) == (["a", "b"], (1, 2.5, "x", None, True), {3, 4}, 2**70)


class Boom:
    def __reduce__(self):
        return (os.mkdir, (str(Path(os.environ["DATAGEN_TEST_MARKER"])),))


@pytest.mark.parametrize("blob", [
    b"",
    b"\x80\x04K\x01.",                                          # a pickle
    state.MAGIC + b"\x05\x00\x00\x00\x00\x00\x00\x00{}",        # truncated header
    state.MAGIC + (7).to_bytes(8, "little") + b"garbage",
])
def test_anything_but_the_format_is_refused(blob):
    with pytest.raises(state.StateError):
        state.loads(blob, STATE_MODULES)


def _with_header(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return state.MAGIC + len(raw).to_bytes(8, "little") + raw


@pytest.mark.parametrize("root,why", [
    ({"t": "obj", "i": 0, "c": "os:_wrap_close", "a": {}}, "not allowed"),                 # a module not listed
    ({"t": "obj", "i": 0, "c": "agent.audit.diversity:np", "a": {}}, "not allowed"),       # not a class of ours
    ({"t": "obj", "i": 0, "c": "agent.audit.diversity:DiversityTracker.__init__", "a": {}}, "not allowed"),
    ({"t": "nd", "i": 0, "b": {"o": 0, "n": 8, "d": "|O", "s": [1]}}, "dtype"),            # object arrays
    ({"t": "nd", "i": 0, "b": {"o": 0, "n": 800, "d": "<i8", "s": [100]}}, "outside"),
    ({"t": "ref", "i": 3}, "unknown object"),
    ({"t": "eval", "i": 0}, "unknown node"),
])
def test_a_crafted_state_names_nothing_it_may_not(root, why):
    with pytest.raises(state.StateError, match=why):
        state.loads(_with_header({"format": state.FORMAT, "version": state.FORMAT_VERSION, "root": root}), STATE_MODULES)
    newer = _with_header({"format": state.FORMAT, "version": state.FORMAT_VERSION + 1, "root": None})
    with pytest.raises(state.StateError, match="version"):
        state.loads(newer, STATE_MODULES)


def test_a_state_of_another_layout_fails_the_shape_check():
    tracker = tracker_with(50)
    loaded = state.loads(state.dumps(tracker, STATE_MODULES), STATE_MODULES)
    del vars(loaded._totals)["verbs"]
    assert not state.same_shape(loaded, DiversityTracker())
    loaded = state.loads(state.dumps(tracker, STATE_MODULES), STATE_MODULES)
    loaded._totals.index.sizes.buf = loaded._totals.index.sizes.buf.astype("float64")
    assert not state.same_shape(loaded, DiversityTracker())


# ---- through the CLI: a planted pickle in a shared run folder ------------------------------------------------

def plan_at(root: Path, total: int) -> Path:
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["total"] = total
    path = root / "plans" / "example.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_planted_pickle_in_the_ledger_is_never_run(tmp_path, run_cli, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("DATAGEN_TEST_MARKER", str(marker))
    plan = plan_at(tmp_path, 40)
    outputs = tmp_path / "outputs"
    assert run_cli("generate", "--plan", str(plan), "--outputs", str(outputs), "--quiet", "--no-export").code == 0
    db = outputs / "example" / "ledger.sqlite"
    con = sqlite3.connect(db)
    stored = con.execute("SELECT value FROM state WHERE key = 'diversity'").fetchone()[0]
    assert stored.startswith(state.MAGIC)                         # what a run writes is the data format
    con.execute("UPDATE state SET value = ? WHERE key = 'diversity'", (pickle.dumps(Boom()),))
    con.commit()
    con.close()
    plan_at(tmp_path, 80)                                         # more to do: the resume audits batches
    r = run_cli("generate", "--plan", str(plan), "--outputs", str(outputs), "--quiet", "--no-export")
    assert r.code == 0, r.err
    assert not marker.exists()                                    # the payload never ran
    log = (outputs / "example" / "run.log").read_text()
    assert "the stored diversity state is unreadable (not a datagen state" in log
    assert "rebuilding it from the examples" in log
    ledger = Ledger(db)
    try:
        # rebuilt from the examples: the last audit counts every accepted example once
        assert ledger.batches()[-1].diversity.cumulative["examples"] == ledger.accepted_count() == 80
        assert ledger.state("diversity").startswith(state.MAGIC)
    finally:
        ledger.close()


def resumed_with_snapshot(tmp_path, run_cli, snapshot: bytes) -> tuple[Path, str]:
    """A 40-example run whose stored diversity snapshot is replaced by `snapshot`, then resumed to 60: the
    ledger's path and the run log."""
    plan = plan_at(tmp_path, 40)
    outputs = tmp_path / "outputs"
    assert run_cli("generate", "--plan", str(plan), "--outputs", str(outputs), "--quiet", "--no-export").code == 0
    db = outputs / "example" / "ledger.sqlite"
    con = sqlite3.connect(db)
    con.execute("UPDATE state SET value = ? WHERE key = 'diversity'", (snapshot,))
    con.commit()
    con.close()
    plan_at(tmp_path, 60)
    assert run_cli("generate", "--plan", str(plan), "--outputs", str(outputs), "--quiet", "--no-export").code == 0
    return db, (outputs / "example" / "run.log").read_text()


def test_a_snapshot_that_disagrees_with_the_ledger_is_rebuilt(tmp_path, run_cli):
    # a valid state of some other run
    db, log = resumed_with_snapshot(tmp_path, run_cli, state.dumps(tracker_with(10), STATE_MODULES))
    assert "it holds 10 examples, the ledger has 40" in log
    ledger = Ledger(db)
    try:
        assert ledger.batches()[-1].diversity.cumulative["examples"] == 60
    finally:
        ledger.close()


# ---- schema versions -----------------------------------------------------------------------------------

V1_CALLS = """CREATE TABLE calls (
    id INTEGER PRIMARY KEY, batch INTEGER, purpose TEXT, provider TEXT, model TEXT, status TEXT NOT NULL, kind TEXT,
    attempts INTEGER DEFAULT 1, input_tokens INTEGER DEFAULT 0, output_tokens INTEGER DEFAULT 0,
    cached_tokens INTEGER DEFAULT 0, cost REAL DEFAULT 0, latency REAL DEFAULT 0, mode TEXT,
    error TEXT, created_at REAL NOT NULL)"""


def test_a_version_1_ledger_is_migrated_forward(tmp_path):
    db = tmp_path / "ledger.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute(V1_CALLS)
    con.execute("INSERT INTO calls (status, created_at) VALUES ('ok', 1.0)")
    con.execute("INSERT INTO meta VALUES ('created_at', '1.0')")
    con.commit()
    con.close()
    ledger = Ledger(db)
    try:
        assert ledger.meta("schema_version") == str(SCHEMA_VERSION) == "3"
        columns = [r[1] for r in ledger.db.execute("PRAGMA table_info(calls)")]
        assert columns[-1] == "reply"
        assert ledger.db.execute("SELECT status, reply FROM calls").fetchall() == [("ok", None)]
    finally:
        ledger.close()
    Ledger(db).close()   # opening again is a no-op


def test_a_new_ledger_carries_the_current_version(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        assert ledger.meta("schema_version") == str(SCHEMA_VERSION)
    finally:
        ledger.close()


def test_a_newer_ledger_is_refused_untouched(tmp_path):
    db = tmp_path / "ledger.sqlite"
    ledger = Ledger(db)
    ledger.set_meta("schema_version", "7")
    ledger.close()
    before = db.read_bytes()
    with pytest.raises(LedgerError, match="newer datagen .ledger schema 7, this one reads up to 3.; upgrade datagen"):
        Ledger(db)
    assert db.read_bytes() == before


def test_an_sqlite_file_of_another_program_is_not_taken_for_a_ledger(tmp_path):
    db = tmp_path / "ledger.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE photos (id INTEGER)")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(LedgerError, match="an SQLite database without datagen's tables"):
        Ledger(db)
    assert db.read_bytes() == before


def test_a_really_full_disk_during_generate_gives_one_line_and_keeps_the_ledger(tmp_path, run_cli):
    """A real full filesystem under a resumed run (a tmpfs just larger than the run; root only)."""
    import shutil
    import subprocess

    plan = plan_at(tmp_path, 40)
    assert run_cli("generate", "--plan", str(plan), "--outputs", str(tmp_path / "made"), "--quiet").code == 0
    used = sum(p.stat().st_size for p in (tmp_path / "made").rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={used + 96 * 1024}", "tmpfs",
                                            str(disk)], capture_output=True, timeout=20).returncode != 0:
        pytest.skip("needs root and a mountable tmpfs (tests/bad_inputs covers a simulated full disk)")
    try:
        shutil.copytree(tmp_path / "made", disk, dirs_exist_ok=True)
        exported = (disk / "example" / "training_data.jsonl").read_bytes()
        plan_at(tmp_path, 5000)
        r = run_cli("generate", "--plan", str(plan), "--outputs", str(disk), "--quiet")
        assert r.code == 2, r.err
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and "the disk is full" in lines[0] and "free some space" in lines[0], r.err
        assert (disk / "example" / "training_data.jsonl").read_bytes() == exported
        con = sqlite3.connect(disk / "example" / "ledger.sqlite")
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert con.execute("SELECT COUNT(*) FROM examples WHERE status = 'accepted'").fetchone()[0] >= 40
        finally:
            con.close()
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True, timeout=20)


def test_a_full_disk_or_damaged_ledger_mid_command_is_one_line_not_an_internal_error():
    import errno

    from agent.errors import storage_problem

    assert "the disk is full (No space left on device writing /x/y)" in storage_problem(
        OSError(errno.ENOSPC, "No space left on device", "/x/y"))
    assert "free some space" in storage_problem(sqlite3.OperationalError("database or disk is full"))
    assert "ledger is damaged" in storage_problem(sqlite3.DatabaseError("database disk image is malformed"))
    assert storage_problem(sqlite3.IntegrityError("UNIQUE constraint failed")) is None   # a bug stays a bug
    assert storage_problem(OSError(errno.EACCES, "Permission denied")) is None


def test_categories_given_up_on_are_stored_with_the_call_that_gave_up(tmp_path):
    # the miss that makes a category unfillable is committed with its call, not at the batch's end: a kill
    # before the batch closes still leaves the resume knowing it
    from agent.audit.auditor import Auditor
    from agent.ledger import CallRow
    from agent.plan import load_plan
    from agent.records import Spec

    plan = load_plan(plan_at(tmp_path, 40))
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        auditor = Auditor(plan, ledger)
        dim = next(d for d, x in plan.dimensions.items() if x.measure != "trusted")
        cat = plan.dimensions[dim].categories[0].name
        spec = Spec(id="s", labels={dim: cat}, topic="", system_prompt="")
        for _ in range(plan.audit.max_attempts_per_category):
            assert Auditor(plan, ledger).remaining()[dim][cat] > 0     # not yet given up on
            auditor.count_failed([spec])
            row = auditor.reject_spec(spec, "invalid_item", "")
            ledger.record_call([CallRow(batch=1, purpose="generate", provider="simulated", model="m", status="ok")],
                               [row], state=auditor.category_state())
        resumed = Auditor(plan, ledger)
        assert resumed.remaining()[dim][cat] == 0 and (dim, cat) in resumed.unfillable
        assert resumed.misses[(dim, cat)] == plan.audit.max_attempts_per_category
        assert auditor.category_state() is None          # nothing changed since: nothing to write
        # the same ledger under a changed plan: every category gets a fresh try
        changed = plan.model_copy(update={"total": 60})
        assert Auditor(changed, ledger).unfillable == {}
        # a damaged entry is a fresh try too, never a crash
        ledger.save_state({"categories": b"{not json"})
        assert Auditor(plan, ledger).unfillable == {}
    finally:
        ledger.close()


def test_a_storage_fault_in_many_calls_at_once_leaves_no_fault_unlooked_at(tmp_path, monkeypatch):
    # a full disk fails every call at once; the run stops on the first, and asyncio has no "exception was
    # never retrieved" left to log for the others (it did, into closed streams, at interpreter shutdown)
    import asyncio
    import gc

    from agent.generate import Engine
    from agent.limits import Limiter
    from agent.plan import load_plan
    from agent.providers import create
    from agent.tokens import load_prices

    plan = load_plan(plan_at(tmp_path, 40))
    ledger = Ledger.open(tmp_path / "out", plan, simulated=True)
    try:
        engine = Engine(plan, ledger, create("simulated", model="simulated-1"), Limiter(), load_prices())

        def full(*args, **kwargs):
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(ledger, "add_pending", full)
        unlooked: list[str] = []

        async def main():
            asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: unlooked.append(ctx["message"]))
            try:
                await engine.run()
            except sqlite3.OperationalError:
                pass
            else:
                raise AssertionError("the run went on past a full disk")

        asyncio.run(main())
        gc.collect()
        assert unlooked == []
    finally:
        ledger.close()


# ---- the tracker's layout: a state written by an older layout is rebuilt, never misread --------------------

LAYOUT_1 = Path(__file__).parent / "data" / "diversity_layout1.state.gz"   # written by the layout-1 tracker


def test_a_layout_1_state_reads_but_fails_the_shape_check_and_its_rebuild_gives_its_figures():
    import gzip

    from tests.test_diversity import CATEGORIES, make_examples

    loaded = state.loads(gzip.decompress(LAYOUT_1.read_bytes()), STATE_MODULES)
    assert not state.same_shape(loaded, DiversityTracker())
    recorded = json.loads(LAYOUT_1.with_name("diversity_layout1.json").read_text())  # the old code's figures
    rebuilt = DiversityTracker.from_examples(make_examples(5, 60), CATEGORIES)
    assert rebuilt.metrics().to_dict() == recorded["metrics"]
    assert rebuilt.common_phrases(40) == recorded["common_phrases"]


LAYOUT_2 = LAYOUT_1.with_name("diversity_layout2.state.gz")   # written by the layout-2 tracker (no frequent-key bitmap)


def test_a_layout_2_state_reads_but_fails_the_shape_check_and_its_rebuild_gives_its_figures():
    import gzip

    from tests.test_diversity import CATEGORIES, make_examples

    loaded = state.loads(gzip.decompress(LAYOUT_2.read_bytes()), STATE_MODULES)
    assert loaded.layout == 2 and not state.same_shape(loaded, DiversityTracker())
    recorded = json.loads(LAYOUT_2.with_name("diversity_layout2.json").read_text())  # the old code's figures
    assert loaded.metrics().to_dict() == recorded["metrics"]
    rebuilt = DiversityTracker.from_examples(make_examples(5, 60), CATEGORIES)
    assert rebuilt.metrics().to_dict() == recorded["metrics"]
    assert rebuilt.common_phrases(40) == recorded["common_phrases"]


def test_a_state_of_another_layout_number_fails_the_shape_check():
    loaded = state.loads(state.dumps(tracker_with(20), STATE_MODULES), STATE_MODULES)
    assert state.same_shape(loaded, DiversityTracker())
    loaded.layout = 1
    assert not state.same_shape(loaded, DiversityTracker())


@pytest.mark.parametrize("old_state", [LAYOUT_1, LAYOUT_2])
def test_an_older_layout_state_in_the_ledger_is_rebuilt_from_the_examples(old_state, tmp_path, run_cli):
    import gzip

    db, log = resumed_with_snapshot(tmp_path, run_cli, gzip.decompress(old_state.read_bytes()))
    assert "its layout differs from this version's" in log
    ledger = Ledger(db)
    try:
        assert ledger.batches()[-1].diversity.cumulative["examples"] == 60
        stored = state.loads(ledger.state("diversity"), STATE_MODULES)
        assert stored.layout == LAYOUT and stored.metrics().examples == 60
    finally:
        ledger.close()
