"""Grounding (issue 14): documents -> passages, one passage per spec, the grounding check, real examples."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3

import pytest
import yaml

from agent.audit.grounding import Support, claims, unsupported, words_to_digits
from agent.errors import ConfigError
from agent.ledger import Ledger
from agent.plan import load_plan
from agent.references import References
from agent.sources import MAX_WORDS, PassagePicker, assign, ingest, load_for_plan, topics_from
from tests.conftest import ROOT

HANDBOOK = ROOT / "plans" / "handbook"
GROUNDED_PLAN = ROOT / "plans" / "grounded.yaml"


def pdf_bytes(lines: list[str]) -> bytes:
    """A one-page PDF with the lines as text, written by hand (offsets computed, so any reader accepts it)."""
    text = "BT /F1 12 Tf 72 720 Td " + " ".join(
        f"({line.replace('(', '[').replace(')', ']')}) Tj 0 -16 Td" for line in lines) + " ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(text) + text.encode() + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


# -- chunking each file type ----------------------------------------------------------------------------------
def test_markdown_chunks_follow_headings_and_keep_their_path(tmp_path):
    doc = tmp_path / "guide.md"
    body = "Volumes survive a stop and cost $0.10 per GB per month in every region we run."
    doc.write_text(f"# Guide\n\nIntro text that is long enough to stand on its own as a passage here.\n\n"
                   f"## Storage\n\n{body}\n\n```\n# not a heading inside a fence\n```\n\n## Network\n\nPort 22 is open; "
                   f"everything else is closed until you open it in the firewall settings.\n\nBilling\n-------\n\nInvoices "
                   f"are issued on the first day of each month and paid by card or by bank transfer.\n")
    _, passages = ingest([str(doc)])
    assert [p.heading for p in passages] == ["Guide", "Guide > Storage", "Guide > Network", "Guide > Billing"]
    assert body in passages[1].text and "not a heading" in passages[1].text
    assert [p.id for p in passages] == ["guide/guide", "guide/storage", "guide/network", "guide/billing"]
    assert len({p.hash for p in passages}) == 4   # the setext heading ("Billing\n----") is a heading too


def test_long_sections_are_cut_into_bounded_passages_and_ids_are_stable(tmp_path):
    doc = tmp_path / "long.md"
    para = " ".join(f"word{i}" for i in range(120)) + "."
    doc.write_text("# Long\n\n" + "\n\n".join([para] * 6))
    _, passages = ingest([str(doc)])
    assert len(passages) >= 3 and all(p.words <= MAX_WORDS for p in passages)
    assert [p.id for p in passages][:2] == ["long/long", "long/long-2"]
    # editing one paragraph keeps every id and changes only the edited passage's hash
    doc.write_text("# Long\n\n" + "\n\n".join([para.replace("word5 ", "changed ")] + [para] * 5))
    _, again = ingest([str(doc)])
    assert [p.id for p in again] == [p.id for p in passages]
    assert [a.hash != b.hash for a, b in zip(again, passages, strict=True)].count(True) == 1


def test_plain_text_html_and_pdf_are_read(tmp_path):
    (tmp_path / "notes.txt").write_text("Support replies within four hours on the Team plan, every day of the week.\n")
    (tmp_path / "api.html").write_text(
        "<html><head><style>p{}</style><script>var x = 1;</script></head><body><h1>API</h1><p>The API allows 600 "
        "requests per minute per key, and over that you get HTTP 429.</p><h2>Endpoints</h2><table><tr><th>Path</th>"
        "<th>Method</th></tr><tr><td>/v2/instances</td><td>POST</td></tr></table><p>More endpoints follow later in "
        "this document, one per resource.</p></body></html>")
    (tmp_path / "prices.pdf").write_bytes(pdf_bytes([
        "GPU Prices", "The H100 costs $2.49 per GPU per hour on demand and", "$1.19 per hour on spot instances.",
        "Storage", "Persistent volumes cost $0.10 per GB per month and range", "from 50 GB to 16 TB in size."]))
    sources, passages = ingest([str(tmp_path)])
    assert {s.kind for s in sources} == {"text", "html", "pdf"}
    by_source = {p.source.rsplit("/", 1)[-1]: p for p in passages}
    html = [p for p in passages if p.source.endswith(".html")]
    assert [p.heading for p in html] == ["API", "API > Endpoints"]
    assert "| /v2/instances | POST |" in html[1].text and "var x" not in html[0].text
    pdf = [p for p in passages if p.source.endswith(".pdf")]
    assert [p.heading for p in pdf] == ["GPU Prices", "Storage"] and "$2.49" in pdf[0].text
    assert "four hours" in by_source["notes.txt"].text


def test_bad_sources_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ingest([str(tmp_path / "missing")])
    (tmp_path / "x.docx").write_text("nope")
    with pytest.raises(ConfigError, match="not Markdown"):
        ingest([str(tmp_path / "x.docx")])
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    with pytest.raises(ConfigError, match="not a readable PDF"):
        ingest([str(tmp_path / "broken.pdf")])


# -- assignment and rotation ------------------------------------------------------------------------------------
def test_handbook_passages_land_in_their_domain_categories_and_become_topics():
    plan = load_plan(GROUNDED_PLAN)
    _, passages = load_for_plan(plan)
    by_file = {}
    for p in passages:
        by_file.setdefault(p.source.rsplit("/", 1)[-1], set()).add(p.category)
    assert by_file["02-pricing.md"] == {"pricing_and_billing"}
    assert by_file["04-networking.md"] == {"networking_and_ssh"}
    assert by_file["05-api.html"] == {"api_and_cli"}
    assert by_file["06-account-policies.md"] == {"account_and_policies"}
    topics = topics_from(passages)
    assert "Rate limits" in topics["api_and_cli"] and "GPU prices" in topics["pricing_and_billing"]


def test_a_passage_matching_no_category_goes_to_the_emptiest(tmp_path):
    from agent.sources import Passage

    ps = [Passage(f"p{i}", "x.md", "", text, "h") for i, text in
          enumerate(["Refund policy for credit.", "Billing invoices and refunds.", "Zebra quokka lemur."])]
    out = assign(ps, {"billing": "invoices, payment, refunds", "other": "anything else"})
    assert [p.category for p in out] == ["billing", "billing", "other"]


def test_picker_gives_the_least_used_passage_of_the_category_and_takes_failures_back():
    from agent.sources import Passage

    ps = [Passage(f"a{i}", "a.md", "", "t", "h", "a") for i in range(3)] + [Passage("b0", "b.md", "", "t", "h", "b")]
    picker = PassagePicker(ps, used={"a0": 2}, rng=random.Random(1))
    first = [picker.pick("a").id for _ in range(2)]
    assert sorted(first) == ["a1", "a2"]                # the used one waits
    assert picker.pick("a").id in {"a0", "a1", "a2"}
    picker.release("b0")                                 # releasing an unused passage never goes negative
    assert picker.pick("b").id == "b0" and picker.pick("zzz") is not None  # unknown category: any passage
    counts = [picker.used[p.id] for p in ps[:3]]
    assert max(counts) - min(counts) <= 1


# -- the grounding check ----------------------------------------------------------------------------------------
PASSAGE = """GPU prices
| GPU | On-demand | Spot |
|---|---|---|
| H100 SXM | $2.49/hr | $1.19/hr |
Volumes range from 50 GB to 16 TB. Support replies within 4 hours on the Team plan. The API is at
https://api.cloudgpu.example.com/v2 and answers HTTP 429 with RATE_LIMITED. The CLI needs Python 3.9.
Transfer out costs $0.05 per GB after the first 1,000 GB."""


def bad(answer: str, passage: str = PASSAGE) -> list[str]:
    return [c.text for c in unsupported(answer, Support(passage))]


def test_a_supported_price_passes_and_an_invented_one_is_rejected():
    assert bad("An H100 costs $2.49 per hour on demand, or $1.19 on spot.") == []
    assert bad("An H100 costs $2.99 per hour on demand.") == ["$2.99"]
    assert bad("The spot price is 1.19 USD an hour.") == []
    # arithmetic on documented figures is not invention; a sum the passage cannot produce is
    assert bad("Eight GPUs: 8 GPUs x $2.49 = $19.92 per hour.") == ["8 GPUs"]
    assert bad("That's $19.92 per hour.", PASSAGE + " A node has 8 GPUs.") == []
    assert bad("That's $19.95 per hour.", PASSAGE + " A node has 8 GPUs.") == ["$19.95"]


def test_numbers_in_words_units_and_separators_are_normalised():
    assert words_to_digits("twenty-four hours, one thousand GB, a hundred keys") == "24 hours, 1000 GB, 100 keys"
    assert bad("Support replies within four hours on the Team plan.") == []
    assert bad("Support replies within 4 hrs.") == []
    assert bad("Support replies within five hours.") == ["5 hours"]
    assert bad("The first 1000 GB out are free, then five cents per GB.") == []
    assert bad("Volumes go up to sixteen TB.") == []
    assert bad("Volumes go up to 32 TB.") == ["32 TB"]
    assert bad("Volumes go up to 16 GB.") == ["16 GB"]   # a unit is part of the claim


def test_versions_urls_codes_products_and_plans():
    assert bad("Install the CLI with Python 3.9 and call https://api.cloudgpu.example.com/v2.") == []
    assert bad("It needs Python 3.11.") == ["Python 3.11"]
    assert bad("Call https://api.cloudgpu.example.com/v3/jobs") == ["https://api.cloudgpu.example.com/v3/jobs"]
    endpoints = PASSAGE + "\n| /v2/instances | POST |"
    assert bad("POST https://api.cloudgpu.example.com/v2/instances", endpoints) == []
    assert bad("POST https://api.cloudgpu.example.com/v2/jobs", endpoints) == ["https://api.cloudgpu.example.com/v2/jobs"]
    assert bad("You'll see HTTP 429 and RATE_LIMITED.") == []
    assert bad("You'll see HTTP 503 and QUOTA_EXCEEDED.") == ["HTTP 503", "QUOTA_EXCEEDED"]
    assert bad("The H100 SXM is our fastest.") == []
    assert bad("The B200 is our fastest.") == ["B200"]
    assert bad("Checksums use SHA256 and keys AES256; p99 latency, Q4 and FP16 or INT8 are no products.") == []
    assert bad("Upgrade to the Team plan.") == [] and bad("Upgrade to the Pro plan.") == ["Pro plan"]
    assert bad("I don't know that; please contact support.") == []
    assert {c.kind for c in claims("$5, 10 GB, v2, E1234, A100, Pro plan, https://x.example.com")} == {
        "price", "quantity", "version", "code", "product", "plan", "url"}


# -- real examples ----------------------------------------------------------------------------------------------
def test_references_rotate_and_never_repeat_a_set_in_a_row():
    pairs = [(f"question number {i} about something", f"answer {i}") for i in range(7)]
    refs = References(pairs, threshold=0.85, seed=3, per_call=3)
    sets = [frozenset(u for u, _ in refs.next()) for _ in range(30)]
    assert all(len(s) == 3 for s in sets)
    assert all(a != b for a, b in zip(sets, sets[1:], strict=False))
    assert set().union(*sets[:3]) == {u for u, _ in pairs}  # every example shown before any repeats much
    assert refs.copied("question number 4 about something!") is not None
    assert refs.copied("how do I rotate my ssh keys on a running instance") is None


# -- end to end ---------------------------------------------------------------------------------------------------
def grounded_copy(tmp_path, total=60, **changes):
    shutil.copytree(HANDBOOK, tmp_path / "handbook")
    shutil.copy(ROOT / "plans" / "handbook_examples.jsonl", tmp_path / "examples.jsonl")
    data = yaml.safe_load(GROUNDED_PLAN.read_text())
    data.update(total=total, sources=[str(tmp_path / "handbook")], examples=[str(tmp_path / "examples.jsonl")],
                **changes)
    path = tmp_path / "grounded.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_grounded_demo_plan_end_to_end(tmp_path, run_cli):
    plan_path = grounded_copy(tmp_path, total=120)
    out = tmp_path / "out"
    r = run_cli("generate", "--plan", str(plan_path), "--outputs", str(out), "--quiet")
    assert r.code == 0, r.err
    con = sqlite3.connect(out / "grounded" / "ledger.sqlite")
    passages = dict(con.execute("SELECT id, text FROM passages"))
    rows = con.execute("SELECT passage, record FROM examples WHERE status = 'accepted'").fetchall()
    assert len(rows) == 120 and all(p in passages for p, _ in rows)   # every example names its passage
    for pid, record in rows:  # and states nothing its passage (or persona/prompt/user) does not
        rec = json.loads(record)
        answer = "\n".join(m["content"] for m in rec["messages"] if m["role"] == "assistant")
        support = Support(passages[pid] + "\n" + "\n".join(m["content"] for m in rec["messages"] if m["role"] != "assistant"))
        assert unsupported(answer, support) == [], (pid, answer)
    # the simulated model drifted off its passage sometimes, and the check caught it with the claim named
    details = [d for d, in con.execute("SELECT detail FROM examples WHERE reason = 'ungrounded'")]
    assert details and all("unsupported claim" in d and "not in passage" in d for d in details)
    summary = json.loads(con.execute("SELECT summary FROM batches ORDER BY id DESC LIMIT 1").fetchone()[0])
    run = summary["grounding"]["run"]
    assert run["unsupported"] == len(details) and run["checked"] == 120 + len(details)
    assert set(run["by_category"]) <= {c for c, in con.execute("SELECT DISTINCT category FROM passages")}
    # least-used rotation: with 120 examples over 26 passages, every passage is used
    used = {p for p, _ in rows}
    assert used == set(passages)
    # the prompt showed the passage and the real examples; no accepted example copies a real one
    real = [json.loads(line)["messages"][1]["content"] for line in (tmp_path / "examples.jsonl").read_text().splitlines()]
    refs = References([(u, "") for u in real], threshold=0.85)
    assert all(refs.copied(json.loads(rec)["messages"][1]["content"]) is None for _, rec in rows)
    # coverage: status, dataset_info.txt, report.html and the metadata side files name sources and passages
    status = run_cli("status", "--plan", str(plan_path), "--outputs", str(out))
    assert "Sources: 6 documents, 26 passages, 26 used" in status.out and "Grounding check:" in status.out
    assert "grounding: " in run_cli("audit", "--plan", str(plan_path), "--outputs", str(out)).out
    info = (out / "grounded" / "dataset_info.txt").read_text()
    assert "02-pricing.md (sha256 " in info and "pricing_and_billing:" in info
    assert "Grounding: documents and coverage" in (out / "grounded" / "report.html").read_text()
    assert "## Sources" in (out / "grounded" / "README.md").read_text()   # the dataset card names them too
    assert run_cli("export", "--plan", str(plan_path), "--outputs", str(out), "--with-metadata").code == 0
    meta = [json.loads(line) for line in (out / "grounded" / "training_metadata.jsonl").read_text().splitlines()]
    assert meta and all(m["passage"] in passages for m in meta)
    # the simulated model sometimes copies a real example it was shown: those were rejected, saying which
    copies = [d for d, in con.execute("SELECT detail FROM examples WHERE reason = 'copies_real_example'")]
    assert copies and all("with real example" in d for d in copies)


def test_resume_after_a_source_changed_says_what_it_will_do(tmp_path, run_cli):
    plan_path = grounded_copy(tmp_path, total=60)
    out = tmp_path / "out"
    assert run_cli("generate", "--plan", str(plan_path), "--outputs", str(out), "--quiet").code == 0
    pricing = tmp_path / "handbook" / "02-pricing.md"
    pricing.write_text(pricing.read_text().replace("$2.49/hr", "$2.29/hr"))
    (tmp_path / "handbook" / "04-networking.md").unlink()
    data = yaml.safe_load(plan_path.read_text())
    data["total"] = 90
    plan_path.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("generate", "--plan", str(plan_path), "--outputs", str(out))
    assert r.code == 0, r.err
    assert "02-pricing.md changed: 1 passages changed, 0 new, 0 removed" in r.err
    assert "04-networking.md was removed: its passages are no longer drawn" in r.err
    con = sqlite3.connect(out / "grounded" / "ledger.sqlite")
    text = con.execute("SELECT text FROM passages WHERE id = '02-pricing/gpu-prices'").fetchone()[0]
    assert "$2.29/hr" in text
    removed = {p for p, in con.execute("SELECT id FROM passages WHERE removed = 1")}
    assert removed and all(p.startswith("04-networking/") for p in removed)
    # examples after the resume never use a removed passage
    later = con.execute("SELECT passage FROM examples WHERE status = 'accepted' AND spec_id LIKE 'r2%'").fetchall()
    assert later and not any(p in removed for p, in later)


def test_a_missing_source_is_one_clear_line(tmp_path, run_cli):
    plan_path = grounded_copy(tmp_path)
    shutil.rmtree(tmp_path / "handbook")
    r = run_cli("generate", "--plan", str(plan_path), "--outputs", str(tmp_path / "out"))
    assert r.code == 2 and "does not exist" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "out" / "grounded").exists()


def test_a_version_2_ledger_gains_the_passage_column_and_table(tmp_path):
    db = tmp_path / "ledger.sqlite"
    Ledger(db).close()
    con = sqlite3.connect(db)  # make it a version-2 ledger: examples without passage, no passages table
    con.execute("DROP TABLE passages")
    con.execute("ALTER TABLE examples DROP COLUMN passage")
    con.execute("INSERT INTO examples (spec_id, status, requested, created_at) VALUES ('s', 'accepted', '{}', 1)")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    ledger = Ledger(db)
    try:
        assert ledger.meta("schema_version") == "3"
        assert ledger.db.execute("SELECT spec_id, passage FROM examples").fetchall() == [("s", None)]
        assert ledger.passage_rows() == [] and ledger.passage_usage() == {}
    finally:
        ledger.close()


def test_with_the_judge_on_it_rates_faithfulness_and_low_ratings_are_rejected(tmp_path, run_cli, monkeypatch):
    from agent.providers.simulated import SimulatedProvider

    # The simulated judge rates ~1 % of items 2, and whether one of them reaches the faithfulness check (past
    # the near-duplicate, quota and grounding checks) was luck of the run. Every fourth item rated 2 makes the
    # rule meet many examples; each spec's last rating is kept to check it against what was accepted.
    last_rating: dict[str, int] = {}
    judge = SimulatedProvider._judge

    def harsh_judge(self, rng, request):
        out = judge(self, rng, request)
        for i, item in enumerate(out):
            if i % 4 == 0:
                item["faithful"] = 2
            last_rating[item["id"]] = item["faithful"]
        return out

    monkeypatch.setattr(SimulatedProvider, "_judge", harsh_judge)
    plan_path = grounded_copy(tmp_path, total=150)
    data = yaml.safe_load(plan_path.read_text())
    data["audit"] = {"judge": True}
    plan_path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    assert run_cli("generate", "--plan", str(plan_path), "--outputs", str(out), "--quiet").code == 0
    con = sqlite3.connect(out / "grounded" / "ledger.sqlite")
    details = [d for d, in con.execute("SELECT detail FROM examples WHERE reason = 'unfaithful'")]
    assert details and all("rated faithfulness" in d and "/5" in d for d in details)
    accepted = [s for s, in con.execute("SELECT spec_id FROM examples WHERE status = 'accepted'")]
    assert len(accepted) == 150 and all(last_rating[s] >= 3 for s in accepted)
    summary = json.loads(con.execute("SELECT summary FROM batches ORDER BY id DESC LIMIT 1").fetchone()[0])
    run = summary["grounding"]["run"]
    assert 2 <= run["judge_faithfulness"] <= 5
    assert all("judge_faithfulness" in t for t in run["by_category"].values())


def test_datagen_plan_writes_sources_and_examples_and_proposes_topics(tmp_path, run_cli):
    shutil.copytree(HANDBOOK, tmp_path / "handbook")
    req = tmp_path / "req.yaml"
    req.write_text(yaml.safe_dump({
        "task": "customer support", "domain": "cloud GPU rental", "num_examples": 100,
        "subject_areas": ["GPU instances", "pricing and billing", "API and CLI"],
        "sources": [str(tmp_path / "handbook")], "examples": [str(ROOT / "plans" / "handbook_examples.jsonl")]}))
    r = run_cli("plan", str(req), "-o", str(tmp_path / "p.yaml"))
    assert r.code == 0, r.err
    plan = load_plan(tmp_path / "p.yaml")
    assert plan.sources == [str(tmp_path / "handbook")] and plan.examples[0].endswith("handbook_examples.jsonl")
    assert "GPU prices" in plan.topics["pricing_and_billing"] and "Rate limits" in plan.topics["api_and_cli"]


def test_the_interview_asks_for_documents_and_examples(tmp_path):
    from agent.interview import QUESTIONS, parse_paths

    prompts = {q.key: q.prompt for q in QUESTIONS}
    assert prompts["sources"].startswith("Documents to ground answers in (folder or files")
    assert prompts["examples"].startswith("Real examples to learn the style from")
    assert parse_paths(f"{HANDBOOK}, {ROOT / 'plans' / 'handbook_examples.jsonl'}")[0] == str(HANDBOOK)
    assert parse_paths("") == []
    with pytest.raises(ValueError, match="does not exist"):
        parse_paths(str(tmp_path / "nope"))


def test_the_estimate_counts_the_passages_and_references_a_grounded_prompt_carries():
    from agent.prompts import sample_request

    grounded = sample_request(load_plan(GROUNDED_PLAN))
    plain = sample_request(load_plan(ROOT / "plans" / "example.yaml"))
    assert grounded.user.count('<doc id="doc-') == grounded.user.count("doc: doc-") == 5
    assert "Real examples from the company" in grounded.user and "<doc" not in plain.user
    assert len(grounded.user) > len(plain.user) + 1000


def test_llm_assignment_calls_once_per_passage_and_is_cached_in_the_ledger(tmp_path, run_cli):
    plan_path = grounded_copy(tmp_path, total=30, assign_passages="llm")
    out = tmp_path / "out"
    assert run_cli("generate", "--plan", str(plan_path), "--outputs", str(out), "--quiet").code == 0
    con = sqlite3.connect(out / "grounded" / "ledger.sqlite")

    def assign_calls() -> int:
        return con.execute("SELECT COUNT(*) FROM calls WHERE purpose = 'assign'").fetchone()[0]

    n_passages = con.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
    assert assign_calls() == n_passages == 26
    categories = dict(con.execute("SELECT id, category FROM passages"))
    assert categories["05-api/rate-limits"] == "api_and_cli" and categories["02-pricing/plans"] == "pricing_and_billing"
    # a resume with one passage edited calls the model for that passage only
    refunds = tmp_path / "handbook" / "06-account-policies.md"
    refunds.write_text(refunds.read_text().replace("within 90 days of purchase", "within 60 days of purchase"))
    data = yaml.safe_load(plan_path.read_text())
    data["total"] = 40
    plan_path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run_cli("generate", "--plan", str(plan_path), "--outputs", str(out), "--quiet").code == 0
    assert assign_calls() == 27


@pytest.mark.parametrize("content, message", [
    ('{"foo": 1}\n', "no row in a known format"),
    ("not json\n", "invalid JSON"),
    (None, "not found"),
])
def test_a_bad_examples_file_is_one_clear_line(tmp_path, run_cli, content, message):
    examples = tmp_path / "real.jsonl"
    if content is not None:
        examples.write_text(content)
    plan_path = grounded_copy(tmp_path)
    data = yaml.safe_load(plan_path.read_text())
    data["examples"] = [str(examples)]
    plan_path.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("generate", "--plan", str(plan_path), "--outputs", str(tmp_path / "out"))
    assert r.code == 2 and r.err.count("\n") == 1 and r.err.startswith(f"datagen: examples: {examples}")
    assert message in r.err and "remove it from the plan" in r.err and not (tmp_path / "out" / "grounded").exists()
