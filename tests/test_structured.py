"""Structured teacher output (instructions.output = 'json') and seeded, batch-independent sampling.

The local path runs a tiny random LLaMA with a byte-level BPE tokenizer (any string is spellable, so the schema
can always be followed): whatever a random model prefers, llguidance's mask makes every reply parse. The openai
path runs against the mock server, once accepting `response_format` and once refusing it (fallback to tags).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from herd.config import TeacherConfig, load_config
from herd.teacher.base import Request, Result
from herd.teacher.structured import instructions_schema, response_format

pytest.importorskip("llguidance")


def byte_llama(folder: Path) -> Path:
    """A 2-layer random LLaMA whose tokenizer is byte-level BPE trained here on a few sentences (~300 tokens)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "</s>", "<s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ['{"instructions": ["Write a poem.", "What is the sun?"]}', "Explain how rivers form in spring."] * 20
    core.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", bos_token="<s>", pad_token="<pad>")
    tok.chat_template = "{% for m in messages %}<s>{{ m['content'] }}\n{% endfor %}"
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                      bos_token_id=2, eos_token_id=1, pad_token_id=0)
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    return byte_llama(tmp_path_factory.mktemp("byte") / "llama")


def answers(model: Path, requests: list[Request], batch_size: int = 4) -> dict[str, Result]:
    from herd.teacher.local import LocalTeacher

    teacher = LocalTeacher(TeacherConfig(model=str(model), batch_size=batch_size, device="cpu"))
    got: list[Result] = []
    try:
        teacher.run(requests, got.append)
    finally:
        teacher.close()
    assert sorted(r.request.tag for r in got) == sorted(r.tag for r in requests)
    return {r.request.tag: r for r in got}


def json_requests(n: int, **params: Any) -> list[Request]:
    fmt = response_format(instructions_schema(3, 2, 12), "instructions")
    return [Request.chat(f"write three instructions, call {i}", max_tokens=200, temperature=1.0, tag=f"r{i}",
                         response_format=fmt, **params) for i in range(n)]


def test_local_constrained_decoding_always_gives_the_schema(byte_model: Path) -> None:
    got = answers(byte_model, json_requests(5))
    for result in got.values():
        assert result.ok and result.finish_reason == "stop", result.text
        body = json.loads(result.text)
        assert list(body) == ["instructions"] and len(body["instructions"]) == 3
        assert all(isinstance(x, str) and 2 <= len(x) <= 12 for x in body["instructions"])
    free = answers(byte_model, [Request.chat("write three instructions, call 0", max_tokens=60, temperature=1.0)])
    with pytest.raises(ValueError):  # the same random model without the mask writes no JSON at all
        json.loads(next(iter(free.values())).text)


def test_each_row_samples_with_its_own_seed_whatever_the_batch(byte_model: Path) -> None:
    requests = [Request.chat(f"say something {i}", max_tokens=24, temperature=1.0, tag=f"s{i}") for i in range(6)]
    batched = answers(byte_model, requests, batch_size=6)
    alone = answers(byte_model, list(reversed(requests)), batch_size=1)
    assert {t: r.text for t, r in batched.items()} == {t: r.text for t, r in alone.items()}
    assert len({r.text for r in batched.values()}) > 1  # sampled, not one greedy answer
    seeded = [Request.chat("say something 0", max_tokens=24, temperature=1.0, tag=f"k{k}", seed=k) for k in (1, 2)]
    twice = answers(byte_model, seeded + [Request.chat("say something 0", max_tokens=24, temperature=1.0,
                                                       tag="k1again", seed=1)])
    assert twice["k1"].text == twice["k1again"].text != twice["k2"].text


def stage_cfg(tmp_path: Path, model: Path, *sets: str) -> Any:
    return load_config(None, [
        f"run.dir={json.dumps(str(tmp_path))}", "teacher.backend=local", f"teacher.model={json.dumps(str(model))}",
        "teacher.device=cpu", "teacher.batch_size=4", "instructions.output=json", "instructions.calls=4",
        "instructions.per_call=2", "instructions.min_words=1", "instructions.max_words=3",
        "instructions.max_tokens=160", *sets,
    ])


def test_two_fresh_runs_write_byte_identical_instructions(byte_model: Path, tmp_path: Path) -> None:
    from herd.instructions import run

    first = run(stage_cfg(tmp_path / "a", byte_model))
    second = run(stage_cfg(tmp_path / "b", byte_model))
    data = (first / "data.jsonl").read_bytes() + (first / "rejects.jsonl").read_bytes()
    assert data == (second / "data.jsonl").read_bytes() + (second / "rejects.jsonl").read_bytes()
    rows = [json.loads(x) for x in data.decode().splitlines()]
    assert len(rows) == 4 * 2 and all(r.get("reason") != "unparseable" for r in rows)  # every reply parsed
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["output"] == "json" and manifest["sampling"]["seed"] == 0
    other = run(stage_cfg(tmp_path / "c", byte_model, "run.seed=7"))
    assert (other / "data.jsonl").read_bytes() + (other / "rejects.jsonl").read_bytes() != data


def test_a_missing_llguidance_is_one_line_and_exit_2(byte_model: Path, tmp_path: Path, monkeypatch: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from herd.cli import main
    from herd.teacher import structured

    monkeypatch.setattr(structured, "available", lambda: False)
    with pytest.raises(SystemExit) as done:
        main(["instructions", "--set", f"run.dir={json.dumps(str(tmp_path))}", "--set", "teacher.backend=local",
              "--set", f"teacher.model={json.dumps(str(byte_model))}", "--set", "instructions.output=json", "-q"])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and len(err.splitlines()) == 1 and "pip install llguidance" in err
    assert not any(tmp_path.rglob("*.jsonl"))


def mock_run(tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    from herd.cli import main

    argv = ["instructions", "--calls", "4", "-q", "--set", "teacher.backend=openai", "--set", "teacher.model=mock",
            "--set", f"teacher.base_urls=[{json.dumps(url)}]", "--set", "teacher.backoff_base_s=0.01",
            "--set", "instructions.output=json", "--set", "instructions.per_call=5",
            "--set", f"run.dir={json.dumps(str(tmp_path))}"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 0, err
    return tmp_path / "default" / "instructions", err


def test_openai_endpoints_get_the_schema_and_every_reply_is_kept(tmp_path: Path, capsys: Any) -> None:
    from herd.teacher.mockserver import MockServer

    with MockServer(latency_s=0.0) as url:
        folder, err = mock_run(tmp_path, url, capsys)
    kept = [json.loads(x) for x in (folder / "data.jsonl").read_text().splitlines()]
    assert len(kept) == 4 * 5 and "falling back" not in err
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["output"] == "json" and manifest["usage"]["calls"] == 4
    assert set(manifest["prompts"]) == {"example_guided", "topic_guided"}


def test_an_endpoint_that_refuses_response_format_falls_back_to_tags(tmp_path: Path, capsys: Any) -> None:
    from herd.teacher.mockserver import MockServer

    with MockServer(latency_s=0.0, response_format=False) as url:
        folder, err = mock_run(tmp_path, url, capsys)
        again, err2 = mock_run(tmp_path, url, capsys)
    notices = [line for line in err.splitlines() if "falling back" in line]
    assert len(notices) == 1 and "response_format" in notices[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["output"] == "tags" and "http_400" in manifest["output_fallback"]
    kept = [json.loads(x) for x in (folder / "data.jsonl").read_text().splitlines()]
    assert len(kept) == 4 * 5  # the fake answers tags with exactly N blocks
    assert json.loads((again / "manifest.json").read_text())["usage"]["cached"] == 4  # nothing asked twice


def test_json_replies_are_read_with_a_reason_for_every_dropped_piece() -> None:
    from herd.instructions.parse import judge_json

    def read(text: str, truncated: bool = False) -> list[tuple[str, str]]:
        return [(p.text, p.reason) for p in judge_json(text, seeds={"name a fruit"}, words=(3, 8), banned=None,
                                                       truncated=truncated)]

    fenced = '```json\n{"instructions": ["Write a poem about rain.", "Name a fruit.", "Hi.", 7]}\n```'
    assert read(fenced) == [("Write a poem about rain.", ""), ("Name a fruit.", "copies_seed"), ("Hi.", "too_short"),
                            ("7", "wrong_shape")]
    cut = '{"instructions":["Write a poem about the sea.","Name three birds of prey.","Explain how tid'
    assert read(cut, truncated=True) == [("Write a poem about the sea.", ""), ("Name three birds of prey.", ""),
                                         ('"Explain how tid', "truncated")]
    assert read(cut) == [(cut, "unparseable")] and read('{"items": []}') == [('{"items": []}', "wrong_shape")]
