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


def test_report_opens_with_what_the_run_shows_from_its_own_numbers(tmp_path):
    from herd import report
    from herd.rate import judge

    cfg, root = make_run(tmp_path)
    graded = [json.loads(line) for line in (root / "judge" / "data.jsonl").read_text().splitlines()]
    # One answer emptied and graded again: D without a call, counted with the rest.
    answers = root / "answers" / "data.jsonl"
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    rows[0]["answer"] = '"'
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("data.jsonl", "rejects.jsonl", "manifest.json", "summary.md"):
        (root / "judge" / name).unlink(missing_ok=True)
    judge.run(cfg)
    graded = [json.loads(line) for line in (root / "judge" / "data.jsonl").read_text().splitlines()]
    assert len(graded) == 4 and next(r for r in graded if r["id"] == rows[0]["id"])["method"] == "empty"
    train = root / "train"
    train.mkdir()
    held = {"before": {"rows": 5, "tokens": 61, "loss": 9.5, "perplexity": 13360.0},
            "after": {"rows": 5, "tokens": 61, "loss": 3.8, "perplexity": 44.7}, "loss_fall": 0.6}
    (train / "manifest.json").write_text(json.dumps({
        "stage": "train", "students": [{"name": "stu", "heldout": held, "steps": 3}],
        "data": {"rows": 20, "heldout": {"rows": 5, "seed": 0, "teacher": {"model": "local:x", "rows": 5,
                                                                           "tokens": 60, "loss": 2.1,
                                                                           "perplexity": 8.17}}}}))
    report.run(cfg)
    md = (root / "report.md").read_text()
    assert md.index("## What this run shows") < md.index("## Run")
    opening = md[md.index("## What this run shows"):md.index("## Run")]
    assert "6 instruction-response pairs reached training" in opening
    assert "stu from 9.5 to 3.8 (a fall of 60.0%)" in opening
    assert "teacher's own loss on the same responses is 2.1" in opening
    assert "The judge graded 4 of 4 answers (100%): 3 from its probabilities over A-D, 1 empty answers" in opening
    assert "teacher:embedded 3 of 4" in opening  # answers with any text in them
    masses = [r["grade_mass"] for r in graded if "grade_mass" in r]
    assert f"the four letters held {100 * sum(masses) / len(masses):.0f}% of the judge's next-token" in opening
    assert "too few" not in opening and "small sample" in opening  # 4 grades: counts, not shares
    assert "| stu | 5 | 61 | 9.5 | 3.8 | 60.0% | 13360.0 | 44.7 |" in md
    assert "| teacher (local:x) | 5 | 60 | – | 2.1 |" in md
    assert "(empty answer: '\"')" in md and "The first 4 of 4 evaluation instructions (all of them)" in md
    stage_table = md[md.index("## Run"):md.index("## Dataset")]
    assert stage_table.index("| responses |") < stage_table.index("| train |") < stage_table.index("| answers |") \
        < stage_table.index("| judge |")  # chain order, not alphabetical


def test_side_by_side_says_how_many_it_shows(tmp_path):
    from herd import report

    root = tmp_path / "runs" / "s"
    (root / "answers").mkdir(parents=True)
    rows = [{"id": f"{m}-{i}", "instruction_id": f"q{i}", "instruction": f"question {i}", "model": m,
             "answer": "" if (m == "stu" and i % 3 == 0) else f"answer {i}"} for i in range(12) for m in ("t", "stu")]
    (root / "answers" / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(None, [f"run.dir={str(tmp_path / 'runs')!r}", "run.name=s", "teacher.backend=fake"])
    report.run(cfg)
    md = (root / "report.md").read_text()
    assert "The first 8 of 12 evaluation instructions; all 12 are in answers/data.jsonl." in md
    assert "| question 0 | (empty answer) | answer 0 |" in md


def test_dataset_lengths_are_counted_as_stats_counts_them(tmp_path):
    """The dataset table's mean lengths agree with the stats stage's lengths figure for the same rows: its own
    numbers when stats described this file, else stats' word counter (words and punctuation), not str.split()."""
    from herd import report, stats
    from herd.stats.measures import word_counter

    ins = tmp_path / "pairs.jsonl"
    rows = [{"id": f"p{n}", "instruction": f"Explain, briefly: idea {n}!", "response": "It is (mostly) fine.",
             "instruction_source": "alpaca"} for n in range(5)]
    ins.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(None, [f"run.dir={str(tmp_path / 'runs')!r}", "run.name=r", f"responses.input={str(ins)!r}",
                             "run.stages=['responses', 'stats']"])
    root = tmp_path / "runs" / "r"
    (root / "responses").mkdir(parents=True)
    (root / "responses" / "data.jsonl").write_text(ins.read_text())
    count = word_counter("words")
    expected = sum(count([r["instruction"]])[0] for r in rows) / len(rows)
    assert expected != sum(len(r["instruction"].split()) for r in rows) / len(rows)  # the two counts differ here
    assert f"| alpaca | 5 | {expected:.1f} |" in (report.run(cfg) / "report.md").read_text()
    stats.run(cfg)
    described = json.loads((root / "stats" / "stats.json").read_text())["sources"]["alpaca"]["instruction_tokens"]
    assert f"| alpaca | 5 | {described['mean']:.1f} |" in (report.run(cfg) / "report.md").read_text()


def test_a_report_of_a_run_that_never_ran_is_one_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "run.toml"
    cfg.write_text(f"[run]\nname = 'never'\ndir = {str(tmp_path / 'runs')!r}\nstages = ['responses', 'report']\n")
    done = subprocess.run([sys.executable, "-m", "herd", "run", str(cfg), "--only", "report", "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("herd: error")]
    assert len(errors) == 1 and "holds no finished stage" in errors[0] and "Traceback" not in done.stderr
    assert not list(tmp_path.glob("runs/**/report.*"))
