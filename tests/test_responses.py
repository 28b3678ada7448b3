"""herd responses: answers, labels, rejects, shards, bad input."""

from __future__ import annotations

import json

import pytest

from herd import responses
from herd.config import load_config
from herd.errors import UserError


def cfg_for(tmp_path, *extra):
    return load_config(None, [f"run.dir={str(tmp_path / 'runs')!r}", "run.name=r", "teacher.backend=fake", *extra])


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_answers_every_instruction_with_labels_and_usage(tmp_path):
    src = tmp_path / "alpaca.jsonl"
    src.write_text(json.dumps({"instruction": "Name a fruit.", "input": "red ones"}) + "\n"
                   + json.dumps({"id": "k", "instruction": "Count to 3.", "instruction_source": "original_p3"}) + "\n")
    out = responses.run(cfg_for(tmp_path, f"responses.input={str(src)!r}", "responses.source=alpaca"))
    got = {r["instruction"]: r for r in rows(out / "data.jsonl")}
    assert got["Name a fruit.\nred ones"]["instruction_source"] == "alpaca"
    assert got["Count to 3."]["instruction_source"] == "original_p3" and got["Count to 3."]["id"] == "k"
    assert all(r["response"] and r["finish_reason"] == "stop" and not r["truncated"] for r in got.values())
    manifest = json.loads((out / "manifest.json").read_text())
    rule = "sha256('herd-responses:<run.seed>:<instruction>'), first 63 bits"
    assert manifest["sampling"] == {"temperature": 1.0, "top_p": 1.0, "max_tokens": 512, "seed": 0,
                                    "per_request_seed": rule}
    assert manifest["usage"]["calls"] == 2 and len(manifest["prompts"]["system"]) == 64


def test_reads_a_sharded_instructions_folder(tmp_path):
    folder = tmp_path / "runs" / "r" / "instructions"
    for i in range(2):
        shard = folder / f"shard-{i}-of-2"
        shard.mkdir(parents=True)
        (shard / "data.jsonl").write_text(json.dumps({"id": f"s{i}", "instruction": f"Task {i}."}) + "\n")
    out = responses.run(cfg_for(tmp_path))
    assert sorted(r["id"] for r in rows(out / "data.jsonl")) == ["s0", "s1"]


def test_duplicate_id_is_a_user_error_and_writes_nothing(tmp_path):
    src = tmp_path / "dup.jsonl"
    src.write_text(json.dumps({"id": "a", "instruction": "x"}) + "\n\n" + json.dumps({"id": "a", "instruction": "y"}))
    with pytest.raises(UserError, match=r"dup.jsonl:3: duplicate id 'a' \(first at .*dup.jsonl:1\)"):
        responses.run(cfg_for(tmp_path, f"responses.input={str(src)!r}"))
    assert not (tmp_path / "runs" / "r" / "responses").exists()
