"""herd answers, herd judge, herd probe hallucination on the fake teacher (and endpoints standing in for students)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from herd.config import load_config
from herd.errors import UserError
from herd.rate import evalset
from herd.rate.judge import load_human, parse_grade
from herd.rate.probe import parse_verdict


def cfg_for(tmp_path: Path, *extra: str):
    return load_config(None, [f"run.dir={str(tmp_path / 'runs')!r}", "run.name=j", "teacher.backend=fake",
                              *extra])


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("reply", "grade"),
    [("Grade: B\nReason: small slip.", "B"), ("**Grade:** (A)\nReason: fine", "A"), ("C", "C"), ("c.", None),
     ("The answer is good.", None), ("Rating - D", "D"), ("Grade: E", None), ("", None)],
)
def test_parse_grade_never_guesses(reply, grade):
    assert parse_grade(reply)[0] == grade


def test_parse_verdict():
    assert parse_verdict("Verdict: HALLUCINATED\nReason: invents a date") == (True, "invents a date")
    assert parse_verdict("verdict: rejected")[0] is False
    assert parse_verdict("no idea")[0] is None


def test_selection_follows_the_papers_rule(shared_data):
    rows_ = evalset.load(shared_data / "self_instruct_user_oriented_instructions.jsonl")
    assert len(rows_) == 252
    kept, dropped = evalset.select(rows_, per_app=2, drop_nlp=True, limit=0, seed=0)
    per_app: dict[str, int] = {}
    for r in kept:
        per_app[r["app"]] = per_app.get(r["app"], 0) + 1
        assert not evalset.NLP_STYLE.search(r["base_instruction"])
    assert max(per_app.values()) == 2
    assert len(kept) + len(dropped) == 252
    assert {d["reason"] for d in dropped} <= {"nlp_style_task", "app_quota"}
    again, _ = evalset.select(rows_, per_app=2, drop_nlp=True, limit=0, seed=0)
    assert [r["id"] for r in again] == [r["id"] for r in kept]
    capped, _ = evalset.select(rows_, per_app=2, drop_nlp=True, limit=114, seed=0)
    assert len(capped) == min(114, len(kept))


def test_answers_then_judge_with_human_kappa(tmp_path):
    from herd.rate import answers, judge

    cfg = cfg_for(tmp_path, "answers.models=['teacher']", "answers.limit=10")
    out = answers.run(cfg)
    table = rows(out / "data.jsonl")
    assert len(table) == 10 and {r["model"] for r in table} == {"teacher:embedded"}
    assert len(rows(out / "instructions.jsonl")) == 10
    assert all(r["reason"] in {"nlp_style_task", "app_quota", "over_limit"} for r in rows(out / "rejects.jsonl"))
    human = tmp_path / "human.jsonl"
    human.write_text("".join(json.dumps({"id": r["id"], "rating": "A", "rater": "r1"}) + "\n" for r in table))
    judged = judge.run(cfg_for(tmp_path, f"judge.human={str(human)!r}"))
    graded = rows(judged / "data.jsonl")
    assert sorted(r["id"] for r in graded) == sorted(r["id"] for r in table)
    assert all(r["rating"] in "ABCD" and r["parsed"] for r in graded)
    manifest = json.loads((judged / "manifest.json").read_text())
    assert manifest["kappa_vs_human"]["items"] == 10
    assert (judged / "ratings.png").stat().st_size > 1000
    assert "teacher:embedded" in (judged / "summary.md").read_text()
    # a second run asks nothing again
    judge.run(cfg_for(tmp_path))
    assert len(rows(judged / "data.jsonl")) == 10


def test_unparseable_judge_is_reasked_then_recorded_unparsed(tmp_path):
    from herd.rate import answers, judge

    answers.run(cfg_for(tmp_path, "answers.models=['teacher']", "answers.limit=3"))
    out = judge.run(cfg_for(tmp_path, "judge.same_as_teacher=false", "judge.teacher.backend=fake",
                            "judge.teacher.model=fake-unparseable", "judge.retries=2", "judge.method=text"))
    graded = rows(out / "data.jsonl")
    assert len(graded) == 3
    assert all(r["rating"] is None and not r["parsed"] and r["judge_attempts"] == 3 for r in graded)
    from herd.teacher.journal import Journal

    judge_calls = [u for u in Journal(tmp_path / "runs" / "j" / "journal.sqlite").usage() if u["stage"] == "judge"]
    assert sum(u["calls"] for u in judge_calls) == 9  # 3 answers x (1 ask + 2 re-asks)


def test_human_ratings_with_unknown_id_is_a_user_error(tmp_path):
    p = tmp_path / "h.jsonl"
    p.write_text(json.dumps({"id": "x::m", "rating": "A"}) + "\n" + json.dumps({"id": "nope", "rating": "B"}) + "\n")
    with pytest.raises(UserError, match=r"h.jsonl:2: unknown answer id 'nope'"):
        load_human(p, {"x::m"})


def test_probe_counts_per_category(tmp_path, shared_data):
    from herd.rate import probe

    out = probe.run(cfg_for(tmp_path, "probe.models=['teacher']",
                            f"probe.questions={str(shared_data / 'lamini_paper_hallucination_questions.jsonl')!r}"))
    judged = rows(out / "data.jsonl")
    assert len(judged) == 40
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]["teacher:embedded"]
    assert counts["total"] == sum(1 for r in judged if r["hallucinated"])
    assert sum(counts[c] for c in probe.CATEGORIES) == counts["total"]
    assert "LaMini-LLaMA-7B (paper) | 12" in (out / "summary.md").read_text()
    assert len(rows(out / "answers.jsonl")) == 40


def test_cli_answers_bad_model_spec_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "herd", "answers", "--set", f"run.dir={str(tmp_path)!r}",
                          "--models", "./no/such/dir"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "no such checkpoint folder" in out.stderr


def test_students_are_finished_checkpoints_only(tmp_path):
    from herd.rate.answerers import resolve

    train = tmp_path / "runs" / "j" / "train"
    for folder in ("tiny-a", "tiny-a/checkpoint-4", "tiny-b.partial/final", "tiny-b.partial/checkpoint-2", "tiny-c"):
        (train / folder).mkdir(parents=True)
        (train / folder / "herd.json").write_text("{}")
    found = resolve(cfg_for(tmp_path), ["students"])
    assert [(m.name, m.kind, m.target) for m in found] == [
        ("tiny-a", "student", str(train / "tiny-a")), ("tiny-c", "student", str(train / "tiny-c"))]


def test_judging_another_table_in_the_same_run_is_refused(tmp_path):
    from herd.rate import answers, judge

    answers.run(cfg_for(tmp_path, "answers.models=['teacher']", "answers.limit=2"))
    out = judge.run(cfg_for(tmp_path))
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "x::m", "instruction_id": "x", "instruction": "Say hi.", "model": "m",
                                 "answer": "hi"}) + "\n")
    before = (out / "data.jsonl").read_text()
    with pytest.raises(UserError, match=r"judge: already holds the grades of .*answers/data.jsonl; grade .*other"):
        judge.run(cfg_for(tmp_path, f"judge.answers={str(other)!r}"))
    assert (out / "data.jsonl").read_text() == before
    # the same table again, named by its path, is fine
    judge.run(cfg_for(tmp_path, f"judge.answers={str(tmp_path / 'runs' / 'j' / 'answers' / 'data.jsonl')!r}"))
