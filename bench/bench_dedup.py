"""Near-duplicate detection on 10k / 50k / 100k generated questions (run by hand; figures: bench/notes/dedup.md).

    .venv/bin/python bench/bench_dedup.py                        # everything, ~35 min on 2 cores
    .venv/bin/python bench/bench_dedup.py --sizes 10000 --reference-up-to 10000 --no-latency
    git show REV:agent/audit/dedup.py > /tmp/old_dedup.py
    .venv/bin/python bench/bench_dedup.py --find-cpu 2000 --against /tmp/old_dedup.py   # find(): CPU, old vs new

    .venv/bin/python bench/bench_dedup.py --replay 2000 10000 20000 --against /tmp/old_dedup.py   # a run's finds

`--replay N...`: the near-duplicate work of a `datagen generate` run on the simulated provider (plans/example.yaml
at 20,000 examples, generated once into --ledger-dir, ~8 min), replayed in one process: every example that
reached the near-duplicate check, in ledger order, through find(), and add() for the ones the run accepted (the
auditor's sequence). Reported: CPU (process_time) of find + add per accepted example over the first N accepted,
and per find with N kept (the next 1,000 accepted texts; at most 19,000 of a 20,000 run), against the dedup.py given
by --against: the run's figure with the two taking turns find by find, the per-find figure in alternating rounds; the
answers must agree with each other and with the run's own verdicts.

`--find-cpu KEPT`: the CPU (process_time, not wall: the cores are shared) of one exact-mode find() against
KEPT kept texts, over 1,000 probes (`--probes fresh`: new questions only, as most of a run's are; `mixed`:
half of them near-copies), in one process, in alternating rounds with the dedup.py given by --against,
whose answers must be the same.

Every measurement runs in a child process of its own, so the peak memory (ru_maxrss) is that run's alone.
The corpus is tests/test_dedup.py:make_corpus (seeded; 20% near-copies planted at edit strengths around the
0.85 threshold; lengths after seed 000's mix).

The reference is the rule itself: difflib SequenceMatcher(new, old, autojunk=False).ratio() > 0.85 in the seed's
keep-first walk. The literal quadratic walk takes hours at 10k, so:
  - sizes <= --reference-up-to: reference_dedupe(prefilter=True), the seed's walk over every kept pair with
    rapidfuzz's exact upper bound skipping pairs that cannot pass (same result; the tests check it against
    the literal walk), verified ratios by stdlib difflib;
  - larger sizes: exact mode, after this run has checked exact mode == that reference at the smaller sizes.
Precision of every mode is also checked directly: each reported (i, j, ratio) is recomputed with stdlib difflib.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.audit.dedup import NearDupIndex, dedupe, reference_dedupe, similarity  # noqa: E402
from tests.test_dedup import Vocab, make_corpus, near_copy  # noqa: E402

SEED = 1
THRESHOLD = 0.85


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(task: str, size: int, out: str) -> None:
    texts = make_corpus(size, seed=SEED)
    base = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    if task == "reference":
        drops = reference_dedupe(texts, THRESHOLD, prefilter=True)
    else:
        drops = dedupe(texts, THRESHOLD, mode=task)
    result = {"task": task, "size": size, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
              "rss_base_mb": base, "rss_peak_mb": _rss_mb(), "drops": drops}
    Path(out).write_text(json.dumps(result))


def latency_child(mode: str, kept: int, probes: int, out: str) -> None:
    """One new example against `kept` texts: half near-copies of kept ones, half fresh questions."""
    texts = make_corpus(kept + probes, seed=SEED + 1)
    rng, vocab = random.Random(3), Vocab(3)
    queries = [near_copy(vocab, rng, rng.choice(texts[:kept]), rng.uniform(0, 0.25)) if k % 2 else texts[kept + k]
               for k in range(probes)]
    index = NearDupIndex(THRESHOLD, mode)
    t0 = time.perf_counter()
    index.extend((i, t) for i, t in enumerate(texts[:kept]))
    rebuild = time.perf_counter() - t0
    times, hits = [], 0
    for q in queries:
        t1 = time.perf_counter()
        hits += index.find(q) is not None
        times.append((time.perf_counter() - t1) * 1000)
    times.sort()
    result = {"mode": mode, "kept": kept, "fast": index.fast, "rebuild_s": rebuild, "hits": hits, "probes": probes,
              "median_ms": statistics.median(times), "p99_ms": times[int(0.99 * len(times)) - 1],
              "mean_ms": statistics.fmean(times), "max_ms": times[-1], "rss_peak_mb": _rss_mb()}
    Path(out).write_text(json.dumps(result))


def find_cpu(kept: int, probes: str, against: str | None, rounds: int = 2) -> None:
    modules = _modules(against)
    texts = make_corpus(kept + 1000, seed=SEED + 1)
    rng, vocab = random.Random(3), Vocab(3)
    queries = [near_copy(vocab, rng, rng.choice(texts[:kept]), rng.uniform(0, 0.25))
               if probes == "mixed" and k % 2 else texts[kept + k] for k in range(1000)]
    indexes = {}
    for name, module in modules.items():
        indexes[name] = module.NearDupIndex(THRESHOLD, "exact")   # type: ignore[attr-defined]
        indexes[name].extend(enumerate(texts[:kept]))
    answers: dict[str, list] = {}
    cpu: dict[str, list[float]] = {name: [] for name in modules}
    for r in range(rounds):
        for name in (list(modules) if r % 2 == 0 else list(reversed(modules))):
            c0 = time.process_time()
            answers[name] = [indexes[name].find(q) for q in queries]
            cpu[name].append((time.process_time() - c0) / len(queries) * 1000)
    assert all(a == answers["this tree"] for a in answers.values()), "different answers"
    hits = sum(a is not None for a in answers["this tree"])
    print(f"find() against {kept:,} kept, 1,000 {probes} probes ({hits} near-duplicates), load {os.getloadavg()[0]:.1f}")
    for name, ms in cpu.items():
        print(f"  {name}: CPU ms per find by round: {', '.join(f'{x:.3f}' for x in ms)}")


def simulated_run(ledger_dir: Path, total: int = 20_000) -> list[tuple[str, bool, bool]]:
    """(first user message, accepted?, rejected as a near-duplicate?) for each example of a simulated run that
    reached the near-duplicate check, in ledger order."""
    import sqlite3

    import yaml

    db = ledger_dir / "example" / "ledger.sqlite"
    if not db.exists():
        plan = yaml.safe_load((ROOT / "plans" / "example.yaml").read_text())
        plan["total"] = total
        ledger_dir.mkdir(parents=True, exist_ok=True)
        (ledger_dir / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
        subprocess.run([sys.executable, "-m", "agent", "generate", "--plan", str(ledger_dir / "plan.yaml"),
                        "--provider", "simulated", "--outputs", str(ledger_dir), "--quiet"], cwd=ROOT, check=True)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    # the reasons the auditor gives after find() (auditor.admit): the rest never reached the index
    after = "reason = 'near_duplicate' OR reason LIKE 'no_room:%' OR reason LIKE 'surplus:%' OR reason IN " \
            "('copies_real_example', 'ungrounded', 'unfaithful')"
    return [(t, s == "accepted", r == "near_duplicate") for t, s, r in con.execute(
        f"SELECT user_text, status, reason FROM examples WHERE status = 'accepted' OR {after} ORDER BY id")]


def replay(sizes: list[int], ledger_dir: Path, against: str | None, rounds: int = 2) -> None:
    modules = _modules(against)
    run = simulated_run(ledger_dir)
    texts = [t for t, ok, _ in run if ok]
    accepted_before = list(itertools.accumulate(ok for _, ok, _ in run))   # accepted among the first k + 1
    print(f"simulated run: {len(run):,} finds, {len(texts):,} accepted; load {os.getloadavg()[0]:.1f}")
    for n in sizes:
        steps = run[:bisect.bisect_left(accepted_before, n) + 1] if n < len(texts) else run
        cpu: dict[str, list[float]] = {name: [] for name in modules}
        answers: dict[str, list] = {}
        names = list(modules)
        for _ in range(rounds):
            # the trees take turns find by find (which goes first alternating): on shared cores a load change then
            # hits both alike, where whole rounds one after the other moved single figures by +-20 %
            index = {name: modules[name].NearDupIndex(THRESHOLD, "exact") for name in names}   # type: ignore[attr-defined]
            spent = dict.fromkeys(names, 0.0)
            answers = {name: [] for name in names}
            for k, (text, ok, _) in enumerate(steps):
                for name in (names if k % 2 == 0 else names[::-1]):
                    c0 = time.process_time()
                    answers[name].append(index[name].find(text))
                    if ok:
                        index[name].add(k, text)
                    spent[name] += time.process_time() - c0
            for name in names:
                cpu[name].append(spent[name] / sum(ok for _, ok, _ in steps) * 1000)
        assert all(a == answers["this tree"] for a in answers.values()), "different answers"
        assert all((a is not None) == dup for a, (_, _, dup) in zip(answers["this tree"], steps, strict=True)), \
            "not the run's verdicts"
        print(f"find + add over the first {n:,} accepted ({len(steps):,} finds), CPU ms per accepted example, "
              f"by round (load {os.getloadavg()[0]:.1f}):")
        for name, ms in cpu.items():
            print(f"  {name}: {', '.join(f'{x:.3f}' for x in ms)}")
    for kept in sorted({min(n, len(texts) - 1000) for n in sizes}):   # a run of 20,000: the last point is 19,000
        queries = texts[kept:kept + 1000]
        indexes = {}
        for name, module in modules.items():
            indexes[name] = module.NearDupIndex(THRESHOLD, "exact")   # type: ignore[attr-defined]
            indexes[name].extend(enumerate(texts[:kept]))
        per: dict[str, list[float]] = {name: [] for name in modules}
        for r in range(rounds):
            for name in (list(modules) if r % 2 == 0 else list(reversed(modules))):
                c0 = time.process_time()
                for q in queries:
                    indexes[name].find(q)
                per[name].append(time.process_time() - c0)   # s per 1000 finds = ms per find
        print(f"one find against {kept:,} kept (the next 1,000 accepted texts), CPU ms per find by round "
              f"(load {os.getloadavg()[0]:.1f}):")
        for name, ms in per.items():
            print(f"  {name}: {', '.join(f'{x:.3f}' for x in ms)}")


def _modules(against: str | None) -> dict:
    import importlib.util

    from agent.audit import dedup

    modules = {"this tree": dedup}
    if against:
        spec = importlib.util.spec_from_file_location("dedup_against", against)
        assert spec is not None and spec.loader is not None
        modules["--against"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules["--against"])
    return modules


def run_child(args: list[str], out: Path) -> dict:
    subprocess.run([sys.executable, __file__, *args, "--out", str(out)], check=True)
    return json.loads(out.read_text())


def _check_pair(item: tuple[str, str, float]) -> bool:
    new, old, r = item
    return r == similarity(new, old) and r > THRESHOLD


def score(texts: list[str], got: list, reference: list) -> dict:
    """Recall/precision of a drop list against the reference, and every reported pair re-checked by difflib."""
    dropped = {i for i, _, _ in got}
    ref = {i for i, _, _ in reference}
    kept_ok = all(j not in dropped and j < i for i, j, _ in got)
    with Pool(2) as pool:
        pairs_ok = sum(pool.map(_check_pair, [(texts[i], texts[j], r) for i, j, r in got], chunksize=64))
    by_index = {i: j for i, j, _ in got}
    extra = dropped - ref
    return {"drops": len(got), "ref_drops": len(ref), "recall": len(dropped & ref) / max(1, len(ref)),
            "set_precision": len(dropped & ref) / max(1, len(dropped)), "extra": len(extra),
            "extra_after_a_miss": sum(by_index[i] in ref for i in extra),
            "pair_precision": pairs_ok / max(1, len(got)), "matches_kept": kept_ok,
            "identical_to_reference": got == reference}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    ap.add_argument("--modes", nargs="+", default=["exact", "fast"])   # auto = exact up to 20k, fast above
    ap.add_argument("--reference-up-to", type=int, default=20_000,
                    help="largest size at which the prefiltered quadratic reference is computed")
    ap.add_argument("--extra-reference-sizes", type=int, nargs="*", default=[20_000],
                    help="sizes where only exact mode and the reference run, to check exact == reference")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--json", default="")
    ap.add_argument("--find-cpu", type=int, metavar="KEPT", help="only the find() CPU micro-bench (see above)")
    ap.add_argument("--probes", choices=["fresh", "mixed"], default="fresh")
    ap.add_argument("--against", help="with --find-cpu or --replay: another dedup.py to compare with")
    ap.add_argument("--replay", type=int, nargs="+", metavar="N", help="a simulated run's finds (see above)")
    ap.add_argument("--ledger-dir", type=Path, default=Path(tempfile.gettempdir()) / "bench_dedup_simulated",
                    help="with --replay: where the simulated run's ledger is (generated there if missing)")
    # child process entry points
    ap.add_argument("--child")
    ap.add_argument("--latency-child")
    ap.add_argument("--size", type=int)
    ap.add_argument("--kept", type=int)
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.size, a.out)
    if a.latency_child:
        return latency_child(a.latency_child, a.kept, 1000, a.out)
    if a.find_cpu:
        return find_cpu(a.find_cpu, a.probes, a.against)
    if a.replay:
        return replay(a.replay, a.ledger_dir, a.against)

    tmp = Path(tempfile.mkdtemp(prefix="bench_dedup_"))
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
                    "load_at_start": os.getloadavg(), "runs": [], "latency": []}
    checked_exact = True
    for size in sorted(set(a.sizes) | {s for s in a.extra_reference_sizes if s <= a.reference_up_to}):
        texts = make_corpus(size, seed=SEED)
        runs = {}
        modes = a.modes if size in a.sizes else ["exact"]
        for mode in modes:
            runs[mode] = run_child(["--child", mode, "--size", str(size)], tmp / f"{mode}_{size}.json")
            print(f"{size} {mode}: wall {runs[mode]['wall']:.1f}s cpu {runs[mode]['cpu']:.1f}s", flush=True)
        if size <= a.reference_up_to:
            ref_run = run_child(["--child", "reference", "--size", str(size)], tmp / f"ref_{size}.json")
            reference, source = ref_run["drops"], f"reference_dedupe(prefilter=True), {ref_run['wall']:.0f}s"
            checked_exact &= runs["exact"]["drops"] == reference
        else:
            reference = runs["exact"]["drops"]
            source = "exact mode (== reference at smaller sizes: %s)" % ("yes" if checked_exact else "NO")
        for run in runs.values():
            run_report = {k: v for k, v in run.items() if k != "drops"}
            run_report.update(score(texts, run["drops"], reference), reference=source)
            report["runs"].append(run_report)
            print(json.dumps(run_report), flush=True)
    if not a.no_latency:
        for mode, kept in [("auto", 50_000), ("exact", 50_000), ("exact", 20_000), ("fast", 20_000)]:
            lat = run_child(["--latency-child", mode, "--kept", str(kept)], tmp / f"lat_{mode}_{kept}.json")
            report["latency"].append(lat)
            print(json.dumps(lat), flush=True)
    report["load_at_end"] = os.getloadavg()
    print(render(report))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


def render(report: dict) -> str:
    lines = [f"date {report['date']}, {report['cores']} cores, load average at start "
             f"{report['load_at_start'][0]:.1f}, at end {report['load_at_end'][0]:.1f}", "",
             "| size | mode | wall s | cpu s | peak RSS MB (corpus alone) | drops | recall | set precision "
             "| pair precision | identical to reference | reference |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        lines.append(f"| {r['size']} | {r['task']} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss_peak_mb']:.0f} "
                     f"({r['rss_base_mb']:.0f}) | {r['drops']} | {r['recall']:.4f} | {r['set_precision']:.4f} "
                     f"({r['extra']} extra, {r['extra_after_a_miss']} after a miss) | {r['pair_precision']:.4f} "
                     f"| {r['identical_to_reference']} | {r['reference']} |")
    if report["latency"]:
        lines += ["", "| kept | mode (fast?) | rebuild (extend) s | find median ms | p99 ms | mean ms | max ms "
                  "| hits / probes |", "|---|---|---|---|---|---|---|---|"]
        for r in report["latency"]:
            lines.append(f"| {r['kept']} | {r['mode']} ({r['fast']}) | {r['rebuild_s']:.2f} | {r['median_ms']:.2f} "
                         f"| {r['p99_ms']:.2f} | {r['mean_ms']:.2f} | {r['max_ms']:.1f} | {r['hits']} / {r['probes']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
