"""The run report: written from whatever stages ran, self-contained, and it renders in a real browser."""

from __future__ import annotations

import json
from pathlib import Path

from herd.config import load_config
from tests.browser import browser_page


def make_run(tmp_path: Path):
    from herd import report, responses
    from herd.rate import answers, judge

    ins = tmp_path / "ins.jsonl"
    ins.write_text("".join(json.dumps({"id": f"i{n}", "instruction": f"Explain <b>idea</b> number {n}.",
                                       "instruction_source": ("alpaca", "self_instruct_with_topic")[n % 2]}) + "\n"
                           for n in range(6)))
    cfg = load_config(None, [f"run.dir={str(tmp_path / 'runs')!r}", "run.name=r", "teacher.backend=fake",
                             f"responses.input={str(ins)!r}", "answers.models=['teacher']", "answers.limit=4"])
    responses.run(cfg)
    answers.run(cfg)
    judge.run(cfg)
    return cfg, report.run(cfg)


def test_report_sections_and_escaping(tmp_path):
    _, root = make_run(tmp_path)
    page = (root / "report.html").read_text()
    for title in ("Dataset", "Sample rows per source", "A–D ratings", "Teacher usage and cost", "Provenance",
                  "Teacher and student answers side by side"):
        assert f">{title}</h2>" in page
    assert "Explain &lt;b&gt;idea&lt;/b&gt;" in page and "<b>idea</b>" not in page
    assert "src='data:image/png;base64," in page  # images inlined: the page opens offline
    assert "http://" not in page and "https://" not in page
    md = (root / "report.md").read_text()
    assert "| alpaca | 3 |" in md and "](judge/ratings.png)" in md


def test_report_renders_in_chromium(tmp_path):
    _, root = make_run(tmp_path)
    with browser_page() as (page, errors):
        page.goto((root / "report.html").as_uri())
        assert page.title() == "herd run r"
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        assert images and all(done and width > 0 for done, width in images)
        assert page.locator("table").count() >= 5
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
