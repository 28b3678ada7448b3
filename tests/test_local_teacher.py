"""The `local` teacher backend on tiny models, the checks on what `teacher.model` names, the optional llama.cpp
backend's error path, and `herd teachers` with a fake teacher."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from herd.config import TeacherConfig
from herd.errors import UserError
from herd.teacher.base import Request, Result


def answer_all(teacher: Any, requests: list[Request]) -> list[Result]:
    got: list[Result] = []
    teacher.run(requests, got.append)
    assert sorted(r.request.tag for r in got) == sorted(r.tag for r in requests)  # each exactly once
    by_tag = {r.request.tag: r for r in got}
    return [by_tag[r.tag] for r in requests]


def herd(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (so a loaded model is shared between tests)."""
    from herd.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out, out.err


def test_chat_template_is_applied_and_params_are_honoured(tiny_models: dict[str, Path]) -> None:
    from herd.teacher.local import LocalTeacher, chat_prompt
    from herd.textgen import GenParams, generate_texts

    teacher = LocalTeacher(TeacherConfig(model=str(tiny_models["llama"]), batch_size=2))
    requests = [
        Request.chat("write a short poem about the sun", system="you are a good poem writer", max_tokens=7,
                     temperature=0.0, tag="a"),
        Request.chat("list three animals", max_tokens=7, temperature=0.0, tag="b"),
        Request.chat("hello", max_tokens=3, temperature=0.0, tag="c"),
        Request.chat("what is the color of water", max_tokens=7, temperature=0.0, tag="d"),
    ]
    results = answer_all(teacher, requests)
    model, tok = teacher.load()
    prompts = [chat_prompt(tok, r) for r in requests]
    assert prompts[0].startswith("<s> system : you are a good poem writer </s> <s> user : write a short poem")
    assert prompts[0].endswith("<s> assistant : ")
    for req, prompt, res in zip(requests, prompts, results, strict=True):
        direct = generate_texts(model, tok, [prompt], GenParams(max_new_tokens=req.max_tokens))[0]
        assert res.ok and res.text == direct.text
        assert res.prompt_tokens == len(tok(prompt)["input_ids"]) == direct.prompt_tokens
        assert res.completion_tokens == direct.completion_tokens <= req.max_tokens
    assert results[2].completion_tokens <= 3 < results[0].prompt_tokens


def test_max_tokens_is_clamped_to_the_context(tiny_models: dict[str, Path]) -> None:
    from herd.teacher.local import LocalTeacher

    teacher = LocalTeacher(TeacherConfig(model=str(tiny_models["llama"])))
    context = teacher.load()[0].config.max_position_embeddings
    near = " ".join(["the"] * (context - 20))
    results = answer_all(teacher, [
        Request.chat(near, max_tokens=500, temperature=0.0, tag="near"),
        Request.chat(" ".join(["the"] * (context + 5)), max_tokens=5, temperature=0.0, tag="over"),
    ])
    assert results[0].ok and results[0].prompt_tokens + results[0].completion_tokens <= context
    assert results[0].finish_reason in ("length", "stop")
    assert not results[1].ok and results[1].error.startswith("context:")


@pytest.mark.parametrize("family", ["t5", "gpt2"])
def test_models_without_chat_template_or_pad_token_answer(tiny_models: dict[str, Path], family: str) -> None:
    from herd.teacher.local import LocalTeacher

    teacher = LocalTeacher(TeacherConfig(model=str(tiny_models[family])))
    results = answer_all(teacher, [Request.chat(f"give me {n} animals", max_tokens=4, temperature=0.0, tag=str(n))
                                   for n in ("one", "two", "three")])
    assert all(r.ok and r.completion_tokens >= 1 and r.finish_reason in ("stop", "length") for r in results)


def test_identity_follows_content_not_location(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from herd.teacher.local import LocalTeacher

    moved = tmp_path / "elsewhere" / "teacher"
    shutil.copytree(tiny_models["llama"], moved)
    original = LocalTeacher(TeacherConfig(model=str(tiny_models["llama"]))).model_id
    assert LocalTeacher(TeacherConfig(model=str(moved))).model_id.split(":")[2] == original.split(":")[2]
    weights = next(moved.glob("*.safetensors"))
    assert weights.stat().st_size < 1 << 20
    data = bytearray(weights.read_bytes())
    data[-1000] ^= 0xFF  # a tiny model's weights fit in the hashed first MiB
    weights.write_bytes(bytes(data))
    assert LocalTeacher(TeacherConfig(model=str(moved))).model_id != original
    assert LocalTeacher(TeacherConfig(model="someorg/some-model")).model_id == "local:someorg/some-model"


def test_bad_model_paths_are_one_line_user_errors(tmp_path: Path) -> None:
    from herd.teacher.engine import make_backend

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip file, not a model")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        str(fake): "not a GGUF file",
        str(tmp_path / "missing.gguf"): "GGUF file not found",
        str(empty): "no config.json",
        str(tmp_path / "nowhere"): "no such model folder",
    }
    for model, message in cases.items():
        with pytest.raises(UserError, match=message) as err:
            make_backend(TeacherConfig(model=model))
        assert "\n" not in str(err.value) and model in str(err.value)


def test_cli_rejects_a_fake_gguf_with_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fake = tmp_path / "teacher.gguf"
    fake.write_text("not really gguf")
    code, out, err = herd(capsys, "ask", "hello", "--set", f"teacher.model={fake}")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "not a GGUF file" in err
    assert not (tmp_path / "runs").exists()


def test_llamacpp_backend_says_how_to_install() -> None:
    from importlib import util

    from herd.teacher.engine import make_backend

    if util.find_spec("llama_cpp") is not None:
        pytest.skip("llama-cpp-python is installed here")
    with pytest.raises(UserError, match=r"pip install 'herd\[llamacpp\]'"):
        make_backend(TeacherConfig(backend="llamacpp", model="embedded"))


def test_teachers_command_with_fake_teachers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = herd(capsys, "teachers", "--set", "teacher.backend=fake", "--set", "teacher.model=alpha")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split()[:4] == ["teacher", "fake", "alpha", "ok"]
    assert "fake:alpha" in lines[0] and "concise answer" in lines[0]

    code, out, _ = herd(capsys, "teachers", "--set", "teacher.backend=fake", "--set", "judge.same_as_teacher=false",
                        "--set", "judge.teacher.backend=local", "--set", f"judge.teacher.model={tmp_path}/no.gguf")
    lines = out.strip().splitlines()
    assert code == 1 and len(lines) == 2
    assert lines[0].split()[3] == "ok"
    assert lines[1].split()[:2] == ["judge", "local"] and "FAILED" in lines[1] and "GGUF file not found" in lines[1]


def test_open_teachers_share_a_model_and_the_last_close_drops_it(tiny_models: dict[str, Path]) -> None:
    from herd.teacher import local

    cfg = TeacherConfig(model=str(tiny_models["gpt2"]), device="cpu", dtype="float32")
    first, second = local.LocalTeacher(cfg), local.LocalTeacher(cfg)
    assert first.load()[0] is second.load()[0]
    key = (str(tiny_models["gpt2"]), "cpu", "float32")
    first.close()
    assert key in local._LOADED
    second.close()
    assert key not in local._LOADED
    third = local.LocalTeacher(cfg)
    assert answer_all(third, [Request.chat("hello", max_tokens=2, temperature=0.0, tag="x")])[0].ok
    third.close()
