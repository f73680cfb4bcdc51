"""The figures of a `make test-real` run, read from its ledger: calls, accepted per call, rejections by
reason, tokens/s, time and calls against `datagen estimate`. Read-only; standard library only, so it runs
with any Python.

    python scripts/real_figures.py outputs/real-20/ledger.sqlite --elapsed 812 --estimate outputs/real-20-estimate.txt
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
from pathlib import Path


def rows(db: sqlite3.Connection, sql: str) -> list[tuple]:
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # a column this ledger version lacks
        return []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ledger", type=Path)
    ap.add_argument("--elapsed", type=float, help="wall seconds of `datagen generate`")
    ap.add_argument("--estimate", type=Path, help="the output of `datagen estimate` for this plan")
    ap.add_argument("--model", default="", help="the GGUF file served")
    ap.add_argument("--status", default="", help="generate's exit status")
    args = ap.parse_args()
    if not args.ledger.is_file():
        raise SystemExit(f"no ledger at {args.ledger}: generate did not start")
    db = sqlite3.connect(f"file:{args.ledger}?mode=ro", uri=True)

    calls = rows(db, "SELECT purpose, status, kind, attempts, input_tokens, output_tokens, cached_tokens, "
                     "latency, mode FROM calls")
    gen = [c for c in calls if c[0] in ("generate", "reask")] or calls  # not judge or brainstorm calls
    accepted = rows(db, "SELECT count(*) FROM examples WHERE status = 'accepted'")[0][0]
    rejected = rows(db, "SELECT reason, count(*) FROM examples WHERE status = 'rejected' "
                        "GROUP BY reason ORDER BY count(*) DESC")
    by_status = rows(db, "SELECT status, coalesce(kind, ''), count(*) FROM calls GROUP BY 1, 2 ORDER BY 3 DESC")
    modes = rows(db, "SELECT coalesce(mode, '?'), count(*) FROM calls GROUP BY 1 ORDER BY 2 DESC")

    ok = [c for c in gen if c[1] == "ok"]
    out_tokens = sum(c[5] or 0 for c in ok)
    in_tokens = sum(c[4] or 0 for c in ok)
    cached = sum(c[6] or 0 for c in ok)
    busy = sum(c[7] or 0 for c in ok)
    latencies = sorted(c[7] or 0 for c in ok)
    attempts = sum(c[3] or 1 for c in gen)

    print(f"model file:            {args.model}")
    print(f"generate exit status:  {args.status}")
    print(f"examples accepted:     {accepted}")
    print(f"calls (ledger rows):   {len(calls)} ({len(gen)} generate + re-ask; {attempts} HTTP attempts incl. retries)")
    print("calls by outcome:      " + ", ".join(f"{s}{'/' + k if k else ''} {n}" for s, k, n in by_status))
    print("response modes:        " + ", ".join(f"{m} {n}" for m, n in modes))
    if gen:
        print(f"accepted per call:     {accepted / len(gen):.2f}")
    print("rejections by reason:  " + (", ".join(f"{r} {n}" for r, n in rejected) or "none"))
    if ok:
        print(f"tokens (ok calls):     {in_tokens:,} in ({cached:,} cached), {out_tokens:,} out")
        print(f"output tokens/s:       {out_tokens / busy:.1f} (over the calls' own latency, prompt included)"
              if busy else "output tokens/s:       n/a")
        print(f"call latency:          median {statistics.median(latencies):.1f} s, max {latencies[-1]:.1f} s")
    if args.elapsed is not None:
        per = f", {args.elapsed / accepted:.1f} s per accepted example" if accepted else ""
        print(f"wall time:             {args.elapsed / 60:.1f} min{per}")
    if args.estimate and args.estimate.is_file():
        text = args.estimate.read_text()
        est_calls = re.search(r"~([\d,]+) calls", text)
        est_min = re.search(r"~([\d.]+) min", text)
        if est_calls and gen:
            print(f"calls vs estimate:     {len(gen)} vs ~{est_calls.group(1)}")
        if est_min and args.elapsed is not None:
            print(f"time vs estimate:      {args.elapsed / 60:.1f} min vs ~{est_min.group(1)} min")


if __name__ == "__main__":
    main()
