"""A small rating study end to end through the real `herd` command (issue 8's "done when").

Two tiny students (a decoder and an encoder-decoder from tests/tiny.py) are trained for two steps with `herd train`;
they and the fake teacher answer four evaluation instructions (`herd answers`); the fake judge grades every answer
(`herd judge`); `herd rate-app create` makes a study that `herd rate-app serve` serves on 127.0.0.1, where two
simulated raters in headless Chromium rate every answer blind (one with the keyboard, one with the mouse), each
deciding from the answer text alone; the admin page shows progress, agreement and the chart; `herd rate-app export`
writes the ratings, `herd judge --human` gives Cohen's kappa of the judge against people, and the charts are drawn.
Finally the hallucination probe's answers go to the rating app too.

Commands run in this process through `herd.cli.main` (the console script's own entry point): a subprocess per
command would import torch again each time. The rating server is a real subprocess.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from herd.rate import agreement, figures
from herd.rate.store import Study
from tests.browser import chromium, watch_errors
from tests.rate_study import free_port, running_server

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INSTRUCTIONS = 3
MODELS = ("teacher:fake", "tiny-llama", "tiny-t5")
KEYS = {"A": "1a", "B": "2b", "C": "3c", "D": "4d"}  # the keyboard rater uses digits and letters in turn
WORDS = ["dog", "cat", "tree", "moon", "sun", "city", "book", "water"]
QUESTIONS = [
    {"id": "h1", "question": "Why did the moon land on the city in 2001?", "category": "did not happen"},
    {"id": "h2", "question": "Who will win the world cup in the year 2090?", "category": "far future"},
    {"id": "h3", "question": "How many blue sounds does a square tree eat?", "category": "nonsense"},
    {"id": "h4", "question": "What did my dog eat on the first day of school?", "category": "obscure"},
]


# ------------------------------------------------------------------------------------------- the simulated raters
# Each decides from what the page shows (the answer's text), never from the model, which the page does not name.
def sounds_like_teacher(text: str) -> bool:
    return text.startswith("Here is a concise answer")


def rater_one(text: str) -> str:
    """Full marks for a fluent answer, C for varied word salad, D for an empty or looping one."""
    if sounds_like_teacher(text):
        return "A"
    return "C" if len(set(text.split())) > 3 else "D"


def rater_two(text: str) -> str:
    """Stricter: a fluent answer that promises an even number of sentences gets only a B; any other answer a D."""
    if sounds_like_teacher(text):
        promised = re.findall(r"(\d+) sentences", text)
        return "B" if promised and int(promised[-1]) % 2 == 0 else "A"
    return "D"


RATERS = {"rater-01": rater_one, "rater-02": rater_two}


# ------------------------------------------------------------------------------------------- helpers
def herd(*args: str) -> str:
    """Run one `herd` command as the console script does; its stdout (the summary lines) is returned."""
    from herd.cli import main

    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(list(args))
    assert done.value.code == 0, f"herd {' '.join(args)} exited {done.value.code}: {out.getvalue()}"
    return out.getvalue()


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_run(root: Path, tiny: dict[str, Path], port: int) -> Path:
    """The run file and the training pairs a user would have (pairs in the tiny tokenizer's words)."""
    pairs = [{"id": f"p{i}", "instruction": f"write a short story about the {w} .",
              "response": f"the {w} is good and the sun is red ."} for i, w in enumerate(WORDS)]
    (root / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    (root / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    config = root / "run.toml"
    config.write_text(f"""
[run]
dir = {json.dumps(str(root / "runs"))}
name = "e2e"
quiet = true

[teacher]
backend = "fake"
model = "fake"

[train]
data = {json.dumps(str(root / "pairs.jsonl"))}
batch_size = 4
micro_batch_size = 4
max_steps = 2
max_length = 64
report_to = []

[[train.students]]
base = {json.dumps(str(tiny["llama"]))}
name = "tiny-llama"

[[train.students]]
base = {json.dumps(str(tiny["t5"]))}
name = "tiny-t5"

[answers]
models = ["teacher", "students"]
limit = {INSTRUCTIONS}
max_new_tokens = 12

[probe]
questions = {json.dumps(str(root / "questions.jsonl"))}
models = ["teacher", "students"]

[rate_app]
per_item = 2
raters = 2
port = {port}
""", encoding="utf-8")
    return config


def links_of(created: str) -> dict[str, str]:
    """name -> link from `herd rate-app create`'s output ("admin: URL", "rater-01: URL", ...)."""
    found = dict(re.findall(r"^([\w-]+): (http://\S+)$", created, re.M))
    assert set(found) == {"admin", *RATERS}, created
    return found


def blind(html: str) -> None:
    leaked = [m for m in (*MODELS, "tiny-", "::") if m in html]
    assert not leaked, f"the rater's page shows {leaked}"


def rate_everything(browser: Any, link: str, name: str, total: int) -> list[str]:
    """One rater's whole session in their own browser context; returns the answer texts seen, in order."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors = watch_errors(page)
    page.goto(link)
    seen = []
    for n in range(1, total + 1):
        page.wait_for_url(f"**/rate/{n}")
        blind(page.content())
        assert page.locator(".progress-line").inner_text().startswith(f"Item {n} of {total}")
        text = page.locator("#answer").inner_text()
        grade = RATERS[name](text)
        if name == "rater-01":
            page.keyboard.press(KEYS[grade][n % 2])
        else:
            page.locator(f'button[value="{grade}"]').click()
        seen.append(text)
    page.wait_for_url("**/rate/done")
    assert f"All {total} rated" in page.locator("h1").inner_text()
    assert errors == []
    context.close()
    return seen


def admin_view(browser: Any, link: str, root: Path) -> dict[str, Any]:
    """What the admin page shows once everyone is done, its screenshot and the chart it serves."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = watch_errors(page)
    page.goto(link)
    assert page.url.endswith("/admin")
    page.wait_for_function("document.querySelector('img.chart').complete")
    view = {
        "raters": page.locator("#raters").inner_text(),
        "agreement": page.locator("#agreement").inner_text(),
        "counts": [row.inner_text().split("\t") for row in page.locator("#counts tbody tr").all()],
        "chart_width": page.evaluate("document.querySelector('img.chart').naturalWidth"),
    }
    page.screenshot(path=str(root / "admin.png"), full_page=True)
    chart = context.request.get(page.url + "/chart.png")
    assert chart.ok and chart.headers["content-type"] == "image/png"
    (root / "admin_chart.png").write_bytes(chart.body())
    assert errors == []
    context.close()
    return view


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------- the study, once
@pytest.fixture(scope="module")
def study(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("study")
    port = free_port()
    config = str(write_run(root, tiny_models, port))
    run = root / "runs" / "e2e"
    herd("train", "-c", config)
    herd("answers", "-c", config)
    herd("judge", "-c", config)
    links = links_of(herd("rate-app", "create", "-c", config))
    total = len(rows(run / "answers" / "data.jsonl"))  # per_item 2 over 2 raters: each rates every answer
    with running_server(run / "rate-app", port) as base, chromium() as browser:
        assert all(link.startswith(base) for link in links.values())
        seen = {name: rate_everything(browser, links[name], name, total) for name in RATERS}
        admin = admin_view(browser, links["admin"], root)
    status = herd("rate-app", "status", "-c", config)
    herd("rate-app", "export", "-c", config, str(root / "ratings.csv"))
    herd("judge", "-c", config, "--human", str(root / "ratings.csv"))
    judged = str(run / "judge" / "data.jsonl")
    herd("rate-app", "chart", "-c", config, str(root / "people_vs_judge.png"), "--judge", judged)
    among = herd("rate-app", "chart", "-c", config, str(root / "among_paper.png"), "--judge", judged, "--paper")
    return SimpleNamespace(root=root, run=run, config=config, seen=seen, admin=admin, status=status, among=among,
                           answers=rows(run / "answers" / "data.jsonl"), judged=rows(run / "judge" / "data.jsonl"),
                           ratings=read_csv(root / "ratings.csv"))


def test_two_trained_students_and_the_teacher_answered(study):
    for name, family in (("tiny-llama", "causal"), ("tiny-t5", "seq2seq")):
        meta = json.loads((study.run / "train" / name / "herd.json").read_text())
        assert meta["family"] == family and meta["stats"]["steps"] == 2
    assert len(study.answers) == INSTRUCTIONS * len(MODELS)
    by_instruction: dict[str, set[str]] = {}
    for row in study.answers:
        assert row["id"] == f"{row['instruction_id']}::{row['model']}"
        assert row["kind"] == ("teacher" if row["model"] == "teacher:fake" else "student")
        by_instruction.setdefault(row["instruction_id"], set()).add(row["model"])
    assert len(by_instruction) == INSTRUCTIONS and all(m == set(MODELS) for m in by_instruction.values())
    manifest = json.loads((study.run / "answers" / "manifest.json").read_text())
    assert manifest["models"] == ["teacher:fake", "tiny-llama", "tiny-t5"]


def test_the_judge_graded_every_answer_once(study):
    assert sorted(r["id"] for r in study.judged) == sorted(r["id"] for r in study.answers)
    assert all(r["parsed"] and r["rating"] in "ABCD" and r["reason"] for r in study.judged)
    summary = (study.run / "judge" / "summary.md").read_text()
    for model in MODELS:
        c = Counter(r["rating"] for r in study.judged if r["model"] == model)
        assert f"| {model} | {sum(c.values())} | {c['A']} | {c['B']} | {c['C']} | {c['D']} | 0 |" in summary


def test_every_answer_got_two_blind_ratings_on_the_right_answer(study):
    texts = {r["id"]: r["answer"] for r in study.answers}
    assert len(study.ratings) == 2 * len(texts)
    per_answer = Counter(r["id"] for r in study.ratings)
    assert set(per_answer) == set(texts) and set(per_answer.values()) == {2}
    for row in study.ratings:
        # The rating stored for an answer is the one its rater chose from that answer's text: nothing got mixed up.
        assert row["rating"] == RATERS[row["rater"]](texts[row["id"]]), row
        assert row["model"] == row["id"].split("::")[1]
    for name, seen in study.seen.items():
        assert sorted(" ".join(t.split()) for t in seen) == sorted(" ".join(t.split()) for t in texts.values()), name
        # Each rater's order is their own shuffle, not the table's order.
    assert study.seen["rater-01"] != study.seen["rater-02"]
    assert Study(study.run / "rate-app").export_rows() == study.ratings  # the CSV export holds every stored rating


def test_admin_page_and_status_show_progress_and_agreement(study):
    total = len(study.answers)
    assert study.admin["raters"].count(f"{total} / {total}") == 2
    stats = agreement.summary(study.ratings)
    assert stats["items_rated_twice"] == total and stats["raters"] == 2
    text = study.admin["agreement"]
    assert f"Over {total} answers rated by two or more people ({2 * total} ratings of {total} answers in all)" in text
    for label, key in (("Krippendorff's alpha, ordinal (A > B > C > D)", "alpha_ordinal"),
                       ("Krippendorff's alpha, nominal", "alpha_nominal"), ("Fleiss' kappa", "fleiss_kappa")):
        assert stats[key] is not None and f"{label}\t{stats[key]:.3f}" in text
    counts = figures.count_ratings(study.ratings)
    shown = {row[0]: [int(v) for v in row[1:]] for row in study.admin["counts"]}
    assert shown == {m: [*(counts[m][g] for g in "ABCD"), 2 * INSTRUCTIONS] for m in MODELS}
    assert study.admin["chart_width"] > 300
    assert f"rater-01: {total}/{total} rated" in study.status
    assert f"Fleiss' kappa {stats['fleiss_kappa']:.3f}" in study.status


def test_cohens_kappa_judge_vs_people_from_the_files(study):
    votes: dict[str, Counter[str]] = {}
    for row in study.ratings:
        votes.setdefault(row["id"], Counter())[row["rating"]] += 1
    # The majority grade; a tie goes to the better grade (what `herd judge --human` documents).
    people = {i: min(c, key=lambda g: (-c[g], g)) for i, c in votes.items()}
    judge = {r["id"]: r["rating"] for r in study.judged}
    common = sorted(set(people) & set(judge))
    expected = agreement.cohen_kappa([judge[i] for i in common], [people[i] for i in common])
    assert expected is not None and len(common) == len(study.answers)
    manifest = json.loads((study.run / "judge" / "manifest.json").read_text())
    assert manifest["kappa_vs_human"] == {"kappa": pytest.approx(expected), "items": len(common)}
    assert f"Cohen's kappa, judge vs people (majority grade): {expected:.3f} over {len(common)} answers." in (
        study.run / "judge" / "summary.md").read_text()


def test_a_dozen_grades_are_not_drawn_among_the_papers_shares(study):
    assert not (study.run / "judge" / "ratings_vs_paper.png").exists()  # 3 grades per model: no shares


@pytest.mark.parametrize("name", ["judge/ratings.png", "people_vs_judge.png", "among_paper.png", "admin_chart.png",
                                  "admin.png"])
def test_charts_are_real_pictures(study, name):
    import matplotlib.image

    path = study.run / name if name.startswith("judge/") else study.root / name
    assert path.read_bytes().startswith(PNG_MAGIC)
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert width > 400 and height > 150
    assert pixels.std() > 0.05  # bars and text, not a blank canvas
    if name == "among_paper.png":
        assert height > width  # the paper's 22 models and this run's rows stacked in one readable panel


def test_chart_outputs_name_their_sources(study):
    assert study.among.strip().startswith("rate-app: People, LLM judge, LaMini paper (people) -> ")


def test_probe_answers_go_to_the_rating_app(study, monkeypatch):
    out = herd("probe", "hallucination", "-c", study.config)
    assert out.strip() == f"probe: {study.run / 'probe'}/summary.md"
    table = study.run / "probe" / "answers.jsonl"
    answers = rows(table)
    assert len(answers) == len(QUESTIONS) * len(MODELS)
    judged = rows(study.run / "probe" / "data.jsonl")
    assert [r["id"] for r in judged] == [r["id"] for r in answers]
    assert [(r["answer"], r["category"]) for r in judged] == [(a["answer"], a["category"]) for a in answers]
    # Run again: no student generates anything again, and the table still holds the answers that were judged.
    monkeypatch.setattr("herd.generate.answer_all", lambda *a, **k: pytest.fail("a student was asked again"))
    herd("probe", "hallucination", "-c", study.config)
    assert rows(table) == answers and len(rows(study.run / "probe" / "data.jsonl")) == len(answers)
    folder = study.root / "probe-study"
    created = herd("rate-app", "create", "-c", study.config, "--answers", str(table), "--study", str(folder),
                   "--per-item", "1", "--rater", "ana")
    assert re.search(r"^ana: http://127\.0\.0\.1:\d+/r/\S+$", created, re.M)
    probe_study = Study(folder)
    assert set(probe_study.answers()) == {r["id"] for r in answers}
    assert probe_study.counts()["assigned"] == len(answers)
    # People's grades of the probe answers come back like any other study's.
    ratings = folder / "ana.jsonl"
    ratings.write_text("".join(json.dumps({"id": r["id"], "rater": "ana", "rating": "D" if i % 2 else "A"}) + "\n"
                               for i, r in enumerate(answers)), encoding="utf-8")
    herd("rate-app", "import", str(ratings), "-c", study.config, "--study", str(folder))
    status = herd("rate-app", "status", "-c", study.config, "--study", str(folder))
    assert f"ana: {len(answers)}/{len(answers)} rated" in status
