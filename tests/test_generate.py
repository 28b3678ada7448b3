"""herd generate: batched answers equal one-at-a-time answers, rows stream to data.jsonl, a kill -9 loses and repeats
nothing, too-long prompts are rejected with a reason, and a folder that is not a model is one line and exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from herd.config import load_config
from herd.textgen import GenParams

WORDS = "the sun is a big red dog and my cat can write one short poem about water in the city".split()


def instructions(n: int) -> list[str]:
    # lengths from 1 to 12 words so that batches hold prompts of different lengths (padding must not matter)
    return [" ".join(WORDS[(i * 3) % 7 : (i * 3) % 7 + 1 + i % 12]) for i in range(n)]


def write_input(path: Path, texts: list[str]) -> Path:
    with path.open("w") as fh:
        for i, text in enumerate(texts):
            fh.write(json.dumps({"id": f"q{i}", "instruction": text, "category": "test"}) + "\n")
    return path


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def herd(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "herd", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("family", ["gpt2", "llama", "t5"])
def test_batched_greedy_equals_one_at_a_time(tiny_models, tmp_path, family):
    from herd import generate
    from herd.students import format_prompt, load_student
    from herd.textgen import generate_texts

    texts = instructions(10)
    source = write_input(tmp_path / "in.jsonl", texts)
    cfg = config(tiny_models[family], source, tmp_path / "out", "generate.max_new_tokens=12", "generate.max_batch=4",
                 "generate.name='tiny'")
    folder = generate.run(cfg)
    rows = {r["instruction_id"]: r for r in rows_of(folder / "data.jsonl")}
    assert len(rows) == 10
    student = load_student(str(tiny_models[family]))
    params = GenParams(max_new_tokens=12)
    for i, text in enumerate(texts):
        alone = generate_texts(student.model, student.tokenizer, [format_prompt(student, text)], params)[0]
        row = rows[f"q{i}"]
        assert row["answer"] == alone.text.strip()
        assert row["finish_reason"] == alone.finish_reason
        assert row["id"] == f"q{i}::tiny" and row["model"] == "tiny" and row["kind"] == "student"
        assert row["category"] == "test" and row["instruction"] == text
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == 10 and manifest["family"] == student.family


def test_wrapper_comes_from_the_checkpoint(tiny_models, tmp_path):
    """A herd checkpoint's wrapper is applied by generate: the prompt token count includes the wrapper's words."""
    from herd import generate
    from herd.students import load_student, save_student

    base = load_student(str(tiny_models["gpt2"]))
    wrapper = "Below is an instruction that describes a task .\n### Instruction :\n{instruction}\n### Response :"
    folder = save_student(base.model, base.tokenizer, "causal", tmp_path / "student", {"wrapper": wrapper})
    out = generate.answer_all(str(folder), ["write a poem", "the sun"], GenParams(max_new_tokens=4))
    bare = generate.answer_all(str(tiny_models["gpt2"]), ["write a poem", "the sun"], GenParams(max_new_tokens=4))
    wrapper_tokens = len(base.tokenizer(wrapper.replace("{instruction}", ""))["input_ids"])
    assert [o.prompt_tokens - b.prompt_tokens for o, b in zip(out, bare, strict=True)] == [wrapper_tokens] * 2


def config(model: Path, source: Path, out: Path, *extra: str):
    return load_config(None, [f"generate.model={json.dumps(str(model))}", f"generate.input={json.dumps(str(source))}",
                              f"generate.out={json.dumps(str(out))}", *extra])


def test_rejects_too_long_and_a_rerun_adds_nothing(tiny_models, tmp_path):
    from herd import generate

    texts = instructions(6) + [" ".join(["the sun"] * 200)]  # 400 words: over the tiny GPT-2's 256 positions
    source = write_input(tmp_path / "in.jsonl", texts)
    out = tmp_path / "out"
    cfg = config(tiny_models["gpt2"], source, out, "generate.max_new_tokens=8")
    generate.run(cfg)
    rejects = rows_of(out / "rejects.jsonl")
    assert [r["instruction_id"] for r in rejects] == ["q6"]
    assert rejects[0]["reason"].startswith("too_long: prompt ") and "context 256" in rejects[0]["reason"]
    assert len(rows_of(out / "data.jsonl")) == 6
    generate.run(cfg)  # everything done: nothing added
    assert len(rows_of(out / "data.jsonl")) == 6 and len(rows_of(out / "rejects.jsonl")) == 1
    assert json.loads((out / "manifest.json").read_text())["skipped_done"] == 7


def test_kill_9_loses_and_repeats_nothing(tiny_models, tmp_path):
    from herd import generate

    texts = instructions(200)
    source = write_input(tmp_path / "in.jsonl", texts)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "herd", "generate", "--model", str(tiny_models["gpt2"]), "--input",
                             str(source), "--out", str(out), "--max-new-tokens", "8", "--max-batch", "1", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    data = out / "data.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if data.exists() and data.read_text().count("\n") >= 20:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; give it more rows"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = data.read_text().count("\n")
    assert 20 <= partial < 200
    generate.run(config(tiny_models["gpt2"], source, out, "generate.max_new_tokens=8"))
    generate.run(config(tiny_models["gpt2"], source, tmp_path / "clean", "generate.max_new_tokens=8"))
    rows = rows_of(data)
    assert len(rows) == 200 and len({r["id"] for r in rows}) == 200
    expected = {r["id"]: r["answer"] for r in rows_of(tmp_path / "clean" / "data.jsonl")}
    assert {r["id"]: r["answer"] for r in rows} == expected


def test_not_a_model_is_one_line_exit_2(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("not a model")
    source = write_input(tmp_path / "in.jsonl", ["hello"])
    out = herd("generate", "--model", str(tmp_path / "junk"), "--input", str(source), "--out", str(tmp_path / "o"))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"herd: error: {tmp_path / 'junk'}")
    assert not (tmp_path / "o").exists()


def test_bad_input_line_names_file_and_line(tiny_models, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"instruction": "fine"}\n{"instruction": \n')
    out = herd("generate", "--model", str(tiny_models["gpt2"]), "--input", str(source), "--out", str(tmp_path / "o"))
    assert out.returncode == 2
    assert out.stderr.strip() == f"herd: error: {source}:2: not valid JSON (Expecting value)"
    assert not (tmp_path / "o").exists()


def test_answer_all_keeps_order(tiny_models):
    from herd.generate import answer_all
    from herd.students import load_student

    texts = instructions(7)
    together = answer_all(str(tiny_models["t5"]), texts, GenParams(max_new_tokens=6), batch_tokens=64)
    alone = [answer_all(str(tiny_models["t5"]), [t], GenParams(max_new_tokens=6))[0] for t in texts[:3]]
    assert [o.text for o in together[:3]] == [o.text for o in alone]
    tokenizer = load_student(str(tiny_models["t5"])).tokenizer
    assert [o.prompt_tokens for o in together] == [len(tokenizer(t)["input_ids"]) for t in texts]  # input order
