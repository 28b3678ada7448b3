"""Grades read from probabilities: next-token scoring on a tiny local model, the judge's probability grading (every
answer graded, renormalised over A-D, expected grade, empty answers D without a call), the OpenAI logprobs path
against the mock HTTP server, and endpoints without log-probs (fallback to text, or exit 2 when asked for them)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from herd.config import load_config
from herd.errors import UserError
from herd.teacher.base import Request
from herd.teacher.mockserver import MockServer
from tests.mock_endpoint import FAST

GRADES = ("A", "B", "C", "D")


@pytest.fixture(scope="module")
def lettered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny chat llama whose tokenizer has a token for each grade letter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.tiny import tiny_llama

    folder = tiny_llama(tmp_path_factory.mktemp("judge") / "llama")
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.add_tokens(list(GRADES))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    model.resize_token_embeddings(len(tok))
    torch.manual_seed(1)  # distinct rows for the new letters (resizing gives them all the same mean row)
    with torch.no_grad():
        for emb in (model.get_input_embeddings(), model.get_output_embeddings()):
            emb.weight[-len(GRADES):] = torch.randn(len(GRADES), emb.weight.shape[1])
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def write_answers(path: Path, answers: list[str]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i, text in enumerate(answers):
            fh.write(json.dumps({"id": f"a{i}", "instruction_id": f"q{i}", "instruction": f"tell me a fact {i}",
                                 "model": ("m1", "m2")[i % 2], "answer": text}) + "\n")
    return path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def judge_calls(run_dir: Path) -> int:
    from herd.teacher.journal import Journal

    journal = Journal(run_dir / "journal.sqlite")
    try:
        return sum(u["calls"] for u in journal.usage() if u["stage"] == "judge")
    finally:
        journal.close()


def test_local_scoring_is_one_forward_pass_and_batching_changes_nothing(lettered: Path) -> None:
    import torch

    from herd.config import TeacherConfig
    from herd.teacher.local import LocalTeacher, chat_prompt

    teacher = LocalTeacher(TeacherConfig(model=str(lettered), batch_size=3))
    requests = [Request(messages=(("user", "a " * n + "question"), ("assistant", "Grade:")), score=GRADES,
                        tag=str(n)) for n in (1, 7, 2, 15)]
    got: dict[str, object] = {}
    teacher.run(requests, lambda r: got.__setitem__(r.request.tag, r))
    model, tok = teacher.load()
    for req in requests:
        result = got[req.tag]
        assert result.ok and result.completion_tokens == 0  # nothing generated
        prompt = chat_prompt(tok, req)
        assert prompt.endswith("assistant : Grade:")  # the prompt ends where the grade letter goes
        with torch.inference_mode():
            logits = model(torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])).logits[0, -1]
        direct = torch.log_softmax(logits, -1)
        for g in GRADES:  # left-padded batches of 3 give the same numbers as the prompt alone
            assert result.raw["scores"][g] == pytest.approx(float(direct[tok.convert_tokens_to_ids(g)]), abs=1e-4)
        assert result.text == max(GRADES, key=lambda g: result.raw["scores"][g])
    teacher.close()


def test_renormalise_over_the_four() -> None:
    from herd.teacher.scoring import renormalise

    probs, mass = renormalise({"A": math.log(0.2), "B": math.log(0.1), "C": None, "D": math.log(0.1)})
    assert probs == pytest.approx({"A": 0.5, "B": 0.25, "C": 0.0, "D": 0.25})
    assert mass == pytest.approx(0.4)
    assert renormalise(dict.fromkeys(GRADES)) == ({}, 0.0)


def test_tokenizer_without_letters_cannot_score(tiny_models: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoTokenizer

    from herd.rate import judge
    from herd.teacher.scoring import candidate_ids

    tok = AutoTokenizer.from_pretrained(str(tiny_models["llama"]))  # word-level: "A" is <unk>
    assert "no single token" in candidate_ids(tok, GRADES)[1]
    answers = write_answers(tmp_path / "answers.jsonl", ["the sun is a star"])
    base = [f"run.dir={str(tmp_path / 'runs')!r}", "run.name=n", "teacher.backend=local", "judge.retries=0",
            f"teacher.model={str(tiny_models['llama'])!r}", f"judge.answers={str(answers)!r}", "run.quiet=true"]
    with pytest.raises(UserError, match=r"^judge.method = 'probabilities': .* cannot score the grades"):
        judge.run(load_config(None, [*base, "judge.method=probabilities"]))
    out = judge.run(load_config(None, base))  # auto: one line, then the written reply
    assert "grading from the reply text instead" in capsys.readouterr().err
    assert [r["method"] for r in rows(out / "data.jsonl")] == ["text"]


def test_judge_grades_every_answer_from_a_local_models_probabilities(tmp_path: Path, lettered: Path) -> None:
    from herd.rate import judge

    answers = write_answers(tmp_path / "answers.jsonl", ["the sun is a star", "", "water is wet", '"', "dogs bark"])
    cfg = load_config(None, [f"run.dir={str(tmp_path / 'runs')!r}", "run.name=p", "teacher.backend=local",
                             f"teacher.model={str(lettered)!r}", f"judge.answers={str(answers)!r}", "run.quiet=true"])
    out = judge.run(cfg)
    graded = {r["id"]: r for r in rows(out / "data.jsonl")}
    assert len(graded) == 5 and all(r["rating"] in GRADES for r in graded.values())  # every answer graded
    for key in ("a1", "a3"):  # "" and a lone quote: D, no call, with the reason
        assert graded[key]["rating"] == "D" and graded[key]["method"] == "empty" and graded[key]["call"] is None
        assert "without a judge call" in graded[key]["reason"]
    for key in ("a0", "a2", "a4"):
        r = graded[key]
        assert r["method"] == "probabilities" and sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-3)
        assert r["rating"] == max(GRADES, key=lambda g: r["probs"][g])
        mean = sum(r["probs"][g] * v for g, v in zip(GRADES, (4, 3, 2, 1), strict=True))
        assert r["expected"] == pytest.approx(mean, abs=2e-3)
        assert 0 < r["grade_mass"] <= 1 and r["judge_top"]
    assert judge_calls(tmp_path / "runs" / "p") == 3  # one forward pass per non-empty answer
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "probabilities"
    summary = (out / "summary.md").read_text()
    assert "| m1 | 3 |" in summary and "not graded" in summary
    (out / "manifest.json").unlink()
    for name in ("data.jsonl", "rejects.jsonl"):
        (out / name).write_text("")
    judge.run(cfg)  # graded again from the journal: no new call
    assert judge_calls(tmp_path / "runs" / "p") == 3
    assert [r["rating"] for r in rows(out / "data.jsonl")] == [r["rating"] for r in graded.values()]


def mock_cfg(tmp_path: Path, url: str, answers: Path, *extra: str):
    teacher = [f"teacher.{k}={json.dumps(v)}" for k, v in {**FAST, "base_urls": [url]}.items()]
    return load_config(None, [f"run.dir={str(tmp_path / 'runs')!r}", "run.name=o", "run.quiet=true",
                              f"judge.answers={str(answers)!r}", *teacher, *extra])


def test_openai_logprobs_path_against_the_mock_server(tmp_path: Path) -> None:
    from herd.rate import judge

    answers = write_answers(tmp_path / "answers.jsonl", [f"answer number {i}" for i in range(6)] + [" "])
    with MockServer(latency_s=0.0) as url:
        out = judge.run(mock_cfg(tmp_path, url, answers))
        graded = rows(out / "data.jsonl")
        assert len(graded) == 7 and all(r["rating"] in GRADES for r in graded)
        scored = [r for r in graded if r["method"] == "probabilities"]
        assert len(scored) == 6
        for r in scored:  # the mock's chosen letter has P 0.6 before renormalising: it must win
            assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-3) and r["probs"][r["rating"]] > 0.5
            assert 0.6 < r["grade_mass"] < 1.0
        bodies = list(out.parent.glob("journal.sqlite"))
        assert bodies and judge_calls(tmp_path / "runs" / "o") == 6  # the first (probe) call was not paid twice


@pytest.mark.parametrize("mode", ["ignored", "refused"])
def test_endpoint_without_logprobs(tmp_path: Path, mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    from herd.rate import judge

    answers = write_answers(tmp_path / "answers.jsonl", ["one answer", "another answer"])
    with MockServer(latency_s=0.0, logprobs=mode) as url:
        with pytest.raises(UserError, match=r"^judge.method = 'probabilities': openai:mock .*log-probs.*"
                                            r"set judge.method = 'text'"):
            judge.run(mock_cfg(tmp_path, url, answers, "judge.method=probabilities"))
        assert not (tmp_path / "runs" / "o" / "judge").exists()  # nothing written
        out = judge.run(mock_cfg(tmp_path, url, answers))  # auto: says so in one line and reads the text
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if "log-probs" in line]
    assert len(notices) == 1 and notices[0].endswith("grading from the reply text instead")
    graded = rows(out / "data.jsonl")
    assert {r["method"] for r in graded} == {"text"} and all(r["rating"] in GRADES for r in graded)
    assert json.loads((out / "manifest.json").read_text())["method"] == "text"


def test_cli_probabilities_on_an_endpoint_without_logprobs_exits_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    answers = write_answers(tmp_path / "answers.jsonl", ["one answer"])
    with MockServer(latency_s=0.0, logprobs="ignored") as url:
        args = [f"run.dir={str(tmp_path / 'runs')!r}", "run.name=o", "teacher.backend='openai'",
                "teacher.model='mock'", f"teacher.base_urls=[{url!r}]"]
        done = subprocess.run([sys.executable, "-m", "herd", "judge", "--answers", str(answers), "--method",
                               "probabilities",
                               *[a for kv in args for a in ("--set", kv)]], capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "judge.method = 'probabilities'" in done.stderr


def test_only_models_with_enough_grades_are_drawn_among_the_papers(tmp_path: Path, monkeypatch) -> None:
    from collections import Counter

    from herd.rate import figures, judge

    drawn: list = []
    monkeypatch.setattr(figures, "plot_among_paper", lambda sources, out: drawn.append(sources))
    many = Counter({"A": 20, "B": 10, "D": 1})
    few = Counter({"A": 12})
    judge.draw_chart(tmp_path, {"big": many, "small": few}, [])
    assert (tmp_path / "ratings.png").exists()
    assert [(source, sorted(counts)) for source, counts in drawn[0]] == [("judge", ["big"])]
    (tmp_path / "ratings_vs_paper.png").write_bytes(b"old")
    judge.draw_chart(tmp_path, {"small": few}, [])
    assert len(drawn) == 1 and not (tmp_path / "ratings_vs_paper.png").exists()
