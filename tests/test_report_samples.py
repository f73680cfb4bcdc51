"""report.html's reading sections (examples per category, rejected examples, near-duplicate pairs, lengths against
target ranges), checked against the ledger; and its layout in headless Chromium (skipped where absent)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from agent.export import REPORT, export
from agent.export.samples import RATIO
from tests.test_export import copy_run, runs  # noqa: F401 - the fixture


class Page(HTMLParser):
    """Collects <details> blocks (open attribute, summary text) and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.details: list[dict] = []
        self.in_summary = False
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "details":
            self.details.append({"open": "open" in dict(attrs), "class": dict(attrs).get("class", ""), "summary": ""})
        self.in_summary = tag == "summary" or self.in_summary

    def handle_endtag(self, tag):
        if tag == "summary":
            self.in_summary = False

    def handle_data(self, data):
        self.text.append(data)
        if self.in_summary and self.details:
            self.details[-1]["summary"] += data


def test_report_shows_examples_rejections_near_duplicates_and_lengths_from_the_ledger(runs, tmp_path):  # noqa: F811
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    export(plan, ledger, folder)
    html = (folder / REPORT).read_text()
    page = Page()
    page.feed(html)
    text = "".join(page.text)
    assert not any(d["open"] for d in page.details)                     # everything long starts collapsed
    dims = [d["summary"] for d in page.details if d["class"] == "dim"]
    assert dims == list(plan.dimensions)
    cats = [d["summary"].split(" (")[0] for d in page.details if d["class"] == "cat"]
    assert cats == [c.name for dim in plan.dimensions.values() for c in dim.categories]
    # the samples are real accepted examples of their category, shown in full (short ones) and escaped
    db = ledger.db
    shown = [int(i) for i in re.findall(r"#(\d+) · ", text)]
    assert shown
    for i in shown[:20]:
        status, record = db.execute("SELECT status, record FROM examples WHERE id = ?", (i,)).fetchone()
        if status == "accepted":
            msgs = json.loads(record)["messages"]
            short = next((m["content"] for m in msgs if len(m["content"]) < 1500), None)
            assert short is None or short in text
    # rejected examples carry their reason and detail
    rows = db.execute("SELECT reason, detail FROM examples WHERE status = 'rejected'").fetchall()
    assert rows
    for reason in {r for r, _ in rows}:
        assert f"{reason}: " in text
    # the closest near-duplicate pair is first, with the ratio the ledger recorded
    ratios = sorted((float(RATIO.search(d).group(1)) for r, d in rows if r == "near_duplicate"), reverse=True)
    near = [d["summary"] for d in page.details if d["class"] == "near"]
    assert near and near[0].startswith(f"ratio {ratios[0]:.3f}")
    assert len(near) == min(10, len(ratios))
    # one length chart per category with a word range, counting every accepted example of that category
    charts = re.findall(r'data-chart="length:([^:"]+):([^"]+)"[^>]*aria-label="[^"]*?: ([\d,]+) examples', html)
    ranged = {(d, c.name) for d, dim in plan.dimensions.items() if dim.measure in ("response_words", "input_words")
              for c in dim.categories}
    assert {(d, c) for d, c, _ in charts} == ranged
    counts = {(d, c): n for d, c, n in db.execute(
        "SELECT l.dimension, l.category, COUNT(*) FROM labels l JOIN examples e ON e.id = l.example_id "
        "WHERE e.status = 'accepted' GROUP BY 1, 2")}
    for d, c, n in charts:
        assert int(n.replace(",", "")) == counts.get((d, c), 0)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium on this machine (apt-get install chromium)")
def test_report_layout_in_headless_chromium(runs, tmp_path):  # noqa: F811
    """The page renders as one centred column: the simulated banner on top, nothing (long example text, wide
    charts) spilling outside the 800-pixel column, and charts drawn."""
    image = pytest.importorskip("PIL.Image")
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    export(plan, ledger, folder)
    shot = tmp_path / "report.png"
    width, height = 1200, 2400
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", f"--window-size={width},{height}",
                    (folder / REPORT).as_uri()], check=True, capture_output=True, timeout=120)
    img = image.open(shot).convert("RGB")
    assert img.size == (width, height)
    px = img.load()
    # outside the centred column (800 px + the 24 px body margin each side) every pixel is background
    for x in list(range(0, (width - 800) // 2 - 4, 7)) + list(range((width + 800) // 2 + 4, width, 7)):
        for y in range(0, height, 11):
            assert px[x, y] == (255, 255, 255), (x, y, px[x, y])
    # the red "simulated" banner spans the top of the column
    banner = sum(1 for x in range(200, 1000, 5) for y in range(0, 120, 3) if px[x, y] == (0xfb, 0xe3, 0xe1))
    assert banner > 100
    # charts are drawn: the target chart's grey/amber/blue bars appear in the screenshot
    colours = {px[x, y] for x in range(200, 1000, 3) for y in range(0, height, 3)}
    assert {(0xb9, 0xc0, 0xcc), (0xc9, 0x8a, 0x13), (0x3b, 0x6f, 0xd8)} <= colours
