"""Grounding: ingest speed (pages per second) and the grounding check's cost per example.

    .venv/bin/python bench/bench_grounding.py [--copies 40] [--pdf-pages 200] [--write]

Ingest: the sample handbook (plans/handbook) copied `--copies` times into a temporary folder (Markdown and
HTML; a page = 500 words), and one PDF of `--pdf-pages` pages written by hand (pypdf extracts its text), each
read, chunked and assigned to the example plan's domain categories (agent.sources.load_for_plan's steps).
Check: the accepted examples of a grounded simulated run, each checked against its passage the way the
auditor does (support cached per passage; the user's side parsed per example), and once with no cache.
--write puts the figures in bench/notes/grounding.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ingest_bench(copies: int, pdf_pages: int, tmp: Path) -> dict:
    from agent.plan import load_plan
    from agent.sources import assign, domain_categories, ingest
    from tests.test_grounding import pdf_bytes

    plan = load_plan(ROOT / "plans" / "example.yaml")
    docs = tmp / "docs"
    for i in range(copies):
        shutil.copytree(ROOT / "plans" / "handbook", docs / f"copy{i:03d}")
    pdf_dir = tmp / "pdf"
    pdf_dir.mkdir()
    page_lines = ["Spot instances", "Spot instances cost less but can be reclaimed when capacity is needed.",
                  "You get a 30-second warning before a spot instance stops.", "Checkpoint often when you train.",
                  "Persistent volumes", "Volumes range from 50 GB to 16 TB and are attached to one instance."] * 5
    # one PDF of many pages: the same content stream on every page
    one = pdf_bytes(page_lines)
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    page = PdfReader(__import__("io").BytesIO(one)).pages[0]
    for _ in range(pdf_pages):
        writer.add_page(page)
    with open(pdf_dir / "manual.pdf", "wb") as f:
        writer.write(f)
    out = {}
    for name, path in (("markdown+html", docs), ("pdf", pdf_dir)):
        t = time.perf_counter()
        sources, passages = ingest([str(path)])
        assign(passages, domain_categories(plan))
        secs = time.perf_counter() - t
        pages = sum(s.pages for s in sources)
        out[name] = {"files": len(sources), "pages": pages, "passages": len(passages), "seconds": round(secs, 3),
                     "pages_per_s": round(pages / secs, 1)}
    return out


def check_bench(tmp: Path) -> dict:
    from agent.audit import grounding

    plan = tmp / "grounded.yaml"
    import yaml

    data = yaml.safe_load((ROOT / "plans" / "grounded.yaml").read_text())
    data.update(total=1000, sources=[str(ROOT / "plans" / "handbook")],
                examples=[str(ROOT / "plans" / "handbook_examples.jsonl")])
    plan.write_text(yaml.safe_dump(data, sort_keys=False))
    subprocess.run([sys.executable, "-m", "agent", "generate", "--plan", str(plan), "--outputs", str(tmp / "out"),
                    "--quiet"], check=True, cwd=ROOT, capture_output=True)
    con = sqlite3.connect(tmp / "out" / "grounded" / "ledger.sqlite")
    passages = dict(con.execute("SELECT id, text FROM passages"))
    fixed = "\n".join([data.get("persona", ""), *data["system_prompts"]])
    rows = [(p, json.loads(r)) for p, r in con.execute(
        "SELECT passage, record FROM examples WHERE record IS NOT NULL AND passage IS NOT NULL")]
    res = {"examples": len(rows)}
    for mode in ("cached", "uncached"):
        cache: dict[str, grounding.Support] = {}
        t = time.perf_counter()
        claims = 0
        for pid, rec in rows:
            support = cache.get(pid) if mode == "cached" else None
            if support is None:
                support = grounding.Support(f"{passages[pid]}\n{fixed}")
                cache[pid] = support
            answer = grounding.answer_text(rec, "chat")
            claims += len(grounding.claims(answer))
            grounding.unsupported(answer, support, grounding.Support(grounding.user_side(rec)))
        secs = time.perf_counter() - t
        res[mode] = {"ms_per_example": round(secs * 1000 / len(rows), 3), "seconds": round(secs, 3)}
    res["claims_per_example"] = round(claims / len(rows), 2)
    res["mean_answer_words"] = round(sum(len(grounding.answer_text(r, "chat").split()) for _, r in rows) / len(rows), 1)
    return res


def notes(ing: dict, chk: dict) -> str:
    cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    lines = [
        "## Grounding: ingest speed and the check's cost (sources.py, audit/grounding.py)",
        "",
        "What: documents read, chunked along headings and assigned to domain categories (Markdown and HTML: the",
        "sample handbook copied many times; a page = 500 words; PDF: one hand-written many-page file, text by",
        "pypdf); then the grounding check on every example of a 1,000-example grounded simulated run (support",
        "cached per passage as the auditor does, and rebuilt per example).",
        "",
        f"Command: `.venv/bin/python bench/bench_grounding.py --write`. Machine: {platform.machine()}, {cpus} cores, "
        f"Python {platform.python_version()}. Date: {dt.date.today().isoformat()}. Load average at the end: "
        f"{os.getloadavg()[0]:.1f} (the machine is shared; figures on idle cores are lower).",
        "",
        "| input | files | pages | passages | seconds | pages/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in ing.items():
        lines.append(f"| {name} | {r['files']} | {r['pages']} | {r['passages']} | {r['seconds']} | {r['pages_per_s']} |")
    lines += [
        "",
        f"Grounding check over {chk['examples']:,} examples ({chk['mean_answer_words']} assistant words and "
        f"{chk['claims_per_example']} claims per example on average):",
        "",
        "| support | ms per example | seconds |",
        "|---|---|---|",
        f"| cached per passage (the auditor) | {chk['cached']['ms_per_example']} | {chk['cached']['seconds']} |",
        f"| rebuilt per example | {chk['uncached']['ms_per_example']} | {chk['uncached']['seconds']} |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--pdf-pages", type=int, default=200)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ing = ingest_bench(args.copies, args.pdf_pages, tmp)
        chk = check_bench(tmp)
    text = notes(ing, chk)
    print(text)
    if args.write:
        (ROOT / "bench" / "notes" / "grounding.md").write_text(text)


if __name__ == "__main__":
    main()
