"""Audit overhead per batch: 100 new examples audited and committed on a ledger that already holds N.

    .venv/bin/python bench/bench_audit.py [--examples 50000]
    .venv/bin/python bench/bench_audit.py --labels [--rounds 6] [--code /path/to/other/checkout]
    .venv/bin/python bench/bench_audit.py --startup [--rounds 6] [--code /path/to/other/checkout]

Per example: checks, measured labels, near-duplicate check against all N kept, room; then the call's
ledger transaction (20 calls of 5); then the batch audit (diversity update, summary, snapshot). Target:
under 1 s per batch of 100 at N = 50k. The first batch audit after a resume also restores the diversity
state (reported separately: it happens once per run).

`--labels`: the CPU (time.process_time, in-process) of admit's per-record checks and measured labels alone
(checks.check_record + labels.measure) over 1,000 simulated records of plans/example.yaml, as the auditor
calls them, and of Auditor.admit as a whole on the same items with the near-duplicate search left out (a
stub index: dedup.py's part, bench_dedup.py's figure), in alternating rounds of this checkout's agent/ and
`--code`'s (e.g. main's): before/after on the same records, the same machine load. admit minus the two is
admit's own work (records, rows, label merging, misses, room).

`--compare --code OTHER`: the same issues and labels as OTHER on 8,000 cases (simulated records, with noise).

`--startup`: the fixed CPU of these modules in a fresh process (import, first check_record, first measure, the
first token count), alternating checkouts the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def labels_records(n: int) -> list[tuple[dict, dict[str, str], Any]]:
    """n (record, requested labels, spec) as the auditor sees them: specs drawn by the engine for
    plans/example.yaml, written by the simulated provider, parsed, turned into records."""
    from agent.audit.auditor import to_record
    from agent.generate import Engine
    from agent.ledger import Ledger
    from agent.limits import Limiter
    from agent.plan import load_plan
    from agent.prompts import build_request
    from agent.providers import create
    from agent.providers.simulated import SimulatedProvider
    from agent.reply import parse_reply
    from agent.tokens import load_prices

    plan = load_plan(ROOT / "plans" / "example.yaml")
    out: list[tuple[dict, dict[str, str], Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(Path(tmp), plan, simulated=True)
        engine = Engine(plan, ledger, create("simulated", model="simulated-1"), Limiter(), load_prices())
        writer = SimulatedProvider(seed=5, drift=False)
        while len(out) < n:
            calls = engine.draw_batch()
            if not calls:
                raise RuntimeError("the plan ran out of specs to draw")
            for specs in calls:
                for s in specs:     # nothing is admitted: hand the reservations back, as the audit would
                    for dname, c in s.labels.items():
                        engine.reserved[dname][c] -= 1
                parsed = parse_reply(writer.reply(build_request(plan, specs)), "chat", [s.id for s in specs])
                out += [(to_record(parsed.items[s.id], s, "chat"), s.labels, s) for s in specs if s.id in parsed.items]
        ledger.close()
    return out[:n]


class NoIndex:
    """A near-duplicate index that finds nothing: admit timed without dedup.py's search."""

    def find(self, text: str) -> None:
        return None

    def add(self, key: str, text: str) -> None:
        pass


def labels_child(code: Path, records_file: Path, reps: int) -> None:
    """One round: time check_record + measure, then admit, from `code`'s agent/ over the pickled records."""
    import pickle
    from types import SimpleNamespace

    sys.path.insert(0, str(code))
    from agent.audit.auditor import Auditor
    from agent.audit.checks import check_record
    from agent.audit.labels import measure
    from agent.ledger import Ledger
    from agent.plan import load_plan

    plan = load_plan(ROOT / "plans" / "example.yaml")
    records = pickle.loads(records_file.read_bytes())
    import agent
    print(f"agent from {Path(agent.__file__).parent}", file=sys.stderr)
    for record, requested, _ in records[:50]:     # warm: the dictionary and the parsers load once per run
        check_record(record, "chat", plan.quality, requested)
        measure(record, plan, requested)
    t = time.process_time()
    for _ in range(reps):
        for record, requested, _ in records:
            check_record(record, "chat", plan.quality, requested)
    checks = time.process_time() - t
    t = time.process_time()
    for _ in range(reps):
        for record, requested, _ in records:
            measure(record, plan, requested)
    labels = time.process_time() - t
    # the reply items the records came from (to_record reads .messages[i].role / .content)
    items = [SimpleNamespace(messages=[SimpleNamespace(**m) for m in record["messages"] if m["role"] != "system"])
             for record, _, _ in records]
    found = {spec.id: (check_record(record, "chat", plan.quality, requested), measure(record, plan, requested))
             for record, requested, spec in records}

    def admit_pass(ledger: Ledger) -> float:
        auditor = Auditor(plan, ledger)
        auditor.index = NoIndex()
        auditor._quotas = dict.fromkeys(auditor._quotas, 10**9)   # room everywhere, as in a run's first examples
        t = time.process_time()
        for (_, _, spec), item in zip(records, items, strict=True):
            auditor.admit(spec, item)
        return time.process_time() - t

    import agent.audit.auditor as auditor_module
    admit = own = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(Path(tmp), plan, simulated=True)
        for _ in range(reps):
            admit += admit_pass(ledger)
        # admit's own work: the same pass with the checks and labels looked up (what they found above)
        auditor_module.check_record = lambda record, shape, quality, requested=None: found[current[0]][0]
        auditor_module.measure = lambda record, plan, requested=None: found[current[0]][1]
        auditor_module.to_record = _tracking(auditor_module.to_record, current := [""])
        for _ in range(reps):
            own += admit_pass(ledger)
        ledger.close()
    print(" ".join(f"{x / (reps * len(records)) * 1e3:.4f}" for x in (checks, labels, admit, own)))


def _tracking(to_record: Any, current: list[str]) -> Any:
    """to_record that notes which spec is being admitted (for the looked-up checks and labels)."""
    def wrapped(item: Any, spec: Any, shape: str) -> dict:
        current[0] = spec.id
        return to_record(item, spec, shape)
    return wrapped


def labels_bench(other: Path | None, rounds: int) -> None:
    import os
    import pickle
    import subprocess

    records = labels_records(1000)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "records.pickle"
        f.write_bytes(pickle.dumps(records))
        codes = [ROOT] + ([other] if other else [])
        got: dict[Path, list[tuple[float, ...]]] = {c: [] for c in codes}
        for r in range(rounds):
            for code in codes if r % 2 == 0 else codes[::-1]:     # alternate which goes first
                # a fresh process per round and per checkout: caches start cold the same way for both
                out = subprocess.run([sys.executable, __file__, "--labels-child", str(code), str(f)],
                                     capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(code)})
                checks, labels, admit, own = map(float, out.stdout.split()[-4:])
                got[code].append((checks, labels, admit, own))
        for code, runs in got.items():
            def fig(ms: list[float]) -> str:
                return f"{min(ms):.3f} best / {sorted(ms)[len(ms) // 2]:.3f} median"
            print(f"{code}: ms per record over {len(runs)} rounds (one pass over 1,000 records each): check_record "
                  f"{fig([r[0] for r in runs])}, measure {fig([r[1] for r in runs])}, both {fig([r[0] + r[1] for r in runs])}; "
                  f"admit without the near-duplicate search {fig([r[2] for r in runs])}, its own work (checks and labels "
                  f"looked up) {fig([r[3] for r in runs])}; checks + labels + own work {fig([sum(r[:2]) + r[3] for r in runs])}")
        print(f"load average {os.getloadavg()[0]:.2f}")


STARTUP_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import agent.plan   # the plan models load with every command: not this part's cost
plan = agent.plan.load_plan(Path(sys.argv[2]))
record = {"messages": [{"role": "system", "content": "You are Nimbus, the support assistant of CloudGPU."},
                      {"role": "user", "content": "How do I resize my instance without losing the attached volume?"},
                      {"role": "assistant", "content": "Stop the instance, pick the new size, then start it again. "
                       "The volume stays attached; for example, an A100 node keeps its 500 GB disk."}]}
t0 = time.process_time()
from agent.audit.checks import check_record
from agent.audit.labels import measure
t1 = time.process_time()
check_record(record, "chat", plan.quality, {})
t2 = time.process_time()
measure(record, plan, {})
t3 = time.process_time()
import agent.tokens
agent.tokens.count("warm")
t4 = time.process_time()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def startup_bench(other: Path | None, rounds: int) -> None:
    """CPU of importing checks and labels, the first check_record, the first measure (word list, tables) and
    the first token count (tiktoken's BPE), in fresh processes, alternating checkouts."""
    import os
    import subprocess

    codes = [ROOT] + ([other] if other else [])
    got: dict[Path, list[list[float]]] = {c: [] for c in codes}
    for r in range(rounds):
        for code in codes if r % 2 == 0 else codes[::-1]:
            out = subprocess.run([sys.executable, "-c", STARTUP_CHILD, str(code), str(ROOT / "plans" / "example.yaml")],
                                 capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(code)})
            got[code].append([float(x) for x in out.stdout.split()[-4:]])
    for code, runs in got.items():
        best = [min(r[i] for r in runs) for i in range(4)]
        print(f"{code}: CPU s, best of {len(runs)}: import checks+labels {best[0]:.3f}, first check_record {best[1]:.3f}, "
              f"first measure {best[2]:.3f}, first token count {best[3]:.3f}; checks+labels total {sum(best[:3]):.3f}")
    print(f"load average {os.getloadavg()[0]:.2f}")


COMPARE_CHILD = """
import json, pickle, random, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from agent.audit.checks import check_record
from agent.audit.labels import measure
from agent.plan import load_plan
plan = load_plan(Path(sys.argv[2]))
records = pickle.loads(Path(sys.argv[3]).read_bytes())
rng = random.Random(5)
noise = ["I can't help with that.", "As an AI, ", "Call +1 415 867 5309.", "card 5500 0000 0000 0004", " ssn 536-22-1234 ",
         "DE89 3704 0044 0532 0130 00", "é", "’", "\\n- a\\n- b\\n", "\\n| a | b |\\n|---|---|\\n| 1 | 2 |\\n",
         "```json\\n{\\"a\\": 1}\\n```", "i dont know", "pls help thx", "Unfortunately I cannot do that because of policy.",
         "`x = 1`", "for example 3", "WE WON'T", "bob@gmail.com", "?", "\\t", "    code", "I CANNOT STRESS ENOUGH", "ſ"]
out = []
for variant in range(4):    # 0: as written; 1-3: one to three noise pieces inserted in each turn
    for record, requested, _ in records:
        record = json.loads(json.dumps(record))
        for m in record["messages"][1:] if variant else []:
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(m["content"]) + 1)
                m["content"] = m["content"][:i] + rng.choice(noise) + m["content"][i:]
        for behaviour in [requested.get("behaviour")] if variant < 2 else ["negative", "ambiguous", "standard"]:
            asked = {**requested, "behaviour": behaviour}
            out.append([[(i.code, i.message) for i in check_record(record, "chat", plan.quality, asked)],
                        measure(record, plan, asked)])
print(json.dumps(out))
"""


def compare(other: Path) -> None:
    """check_record's issues and measure's labels of this checkout and `other` on the same 8,000 cases: 1,000
    simulated records as written and with noise inserted (refusals, PII, Markdown, typos, non-ASCII), each
    behaviour. Prints where they differ; exits 1 if anywhere."""
    import os
    import pickle
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "records.pickle"
        f.write_bytes(pickle.dumps(labels_records(1000)))
        got = {}
        for code in (ROOT, other):
            out = subprocess.run([sys.executable, "-c", COMPARE_CHILD, str(code), str(ROOT / "plans" / "example.yaml"), str(f)],
                                 capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(code)})
            got[code] = json.loads(out.stdout)
    differ = [i for i, (a, b) in enumerate(zip(got[ROOT], got[other], strict=True)) if a != b]
    flagged = sum(bool(issues) for issues, _ in got[ROOT])
    print(f"{len(got[ROOT])} cases ({flagged} with issues): {len(differ)} differ" + (f", first at {differ[:5]}" if differ else ""))
    if differ:
        sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=50_000)
    ap.add_argument("--labels", action="store_true", help="time check_record + measure alone (see above)")
    ap.add_argument("--code", type=Path, help="with --labels: another checkout to compare, round by round")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--startup", action="store_true", help="the fixed start-up of checks, labels and tokens")
    ap.add_argument("--labels-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--compare", action="store_true", help="with --code: the same issues and labels as that checkout?")
    args = ap.parse_args()
    if args.compare:
        compare(args.code)
        return
    if args.startup:
        startup_bench(args.code, args.rounds)
        return
    if args.labels_child:
        labels_child(args.labels_child[0], args.labels_child[1], 1)
        return
    if args.labels:
        labels_bench(args.code, args.rounds)
        return
    import bench_resume

    from agent.generate import Engine
    from agent.ledger import CallRow, Ledger
    from agent.limits import Limiter
    from agent.plan import Plan
    from agent.prompts import build_request
    from agent.providers import create
    from agent.providers.simulated import SimulatedProvider
    from agent.reply import parse_reply
    from agent.tokens import load_prices

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        bench_resume.build(d, args.examples)
        print(f"built a ledger of {args.examples:,} in {time.perf_counter() - t:.0f} s", flush=True)
        plan = Plan.model_validate_json((d / "plan.json").read_text())
        data = plan.model_dump()
        data["generation"]["batch_size"] = 100
        plan = Plan.model_validate({**data, "total": args.examples + 1000})
        ledger = Ledger.open(d, plan, simulated=True)
        engine = Engine(plan, ledger, create("simulated", model="simulated-1"), Limiter(), load_prices())
        engine.auditor.load_index()
        t = time.perf_counter()
        _ = engine.auditor.tracker  # the once-per-run restore
        restore = time.perf_counter() - t
        writer = SimulatedProvider(seed=5, drift=False)
        timings = []
        for batch in range(3):
            calls = engine.draw_batch()[:20]
            replies = []
            for specs in calls:  # generation is the provider's time, not the audit's: done before timing
                request = build_request(plan, specs)
                replies.append((specs, parse_reply(writer.reply(request), "chat", [s.id for s in specs])))
            t = time.perf_counter()
            for specs, parsed in replies:
                for s in specs:
                    for dname, c in s.labels.items():
                        engine.reserved[dname][c] -= 1
                rows = [engine.auditor.admit(s, parsed.items[s.id]) for s in specs if s.id in parsed.items]
                ledger.record_call([CallRow(batch=engine.batch_no, purpose="generate", provider="simulated",
                                            model="simulated-1", status="ok")], rows, simulated=True)
            summary = engine.auditor.close_batch(engine.batch_no)
            ledger.record_batch(summary)
            timings.append(time.perf_counter() - t)
            n = sum(len(s) for s, _ in replies)
            print(f"batch {batch + 1}: {n} examples audited and committed in {timings[-1]:.3f} s "
                  f"({summary.accepted} accepted)", flush=True)
        t = time.perf_counter()
        ledger.save_state(engine.auditor.snapshot(ledger.last_accepted_id()))
        snap = time.perf_counter() - t
        print(f"diversity snapshot (at most once a minute and at the end of a run): {snap:.2f} s", flush=True)
        print(f"audit overhead per batch of 100 on a ledger of {args.examples:,}: best {min(timings):.3f} s, "
              f"worst {max(timings):.3f} s (target < 1 s); one-time diversity restore after resume {restore:.2f} s")


if __name__ == "__main__":
    main()
