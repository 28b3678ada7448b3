"""herd export: shards that datasets.load_dataset opens offline, and a dataset card built from the run's manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from herd.config import load_config
from herd.errors import UserError
from herd.export import run


def make_rows(path: Path, n: int = 23) -> list[dict]:
    sources = ["self_instruct_with_topic", "alpaca", "original_flan"]
    rows = [{"id": f"r{i}", "instruction": "word " * (2 + i % 3), "response": "answer " * (1 + i % 4),
             "instruction_source": sources[i % 3], "seed_ids": [] if i % 2 else ["s1", "s2"],
             "usage": {"prompt_tokens": i, "completion_tokens": 2 * i}, "truncated": i == 5} for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def config(tmp_path: Path, *sets: str):
    return load_config(None, [f"run.dir={json.dumps(str(tmp_path / 'runs'))}", *sets])


def test_shards_open_with_load_dataset_offline(tmp_path):
    from datasets import load_dataset

    rows = make_rows(tmp_path / "in.jsonl")
    out = run(config(tmp_path, f"export.input={json.dumps(str(tmp_path / 'in.jsonl'))}", "export.rows_per_shard=10"))
    assert sorted(p.name for p in (out / "data").iterdir()) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    parquet = load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    jsonl = load_dataset("json", data_files=str(out / "jsonl" / "*.jsonl"), split="train")
    expected = [{k: r[k] for k in ("id", "instruction", "response", "instruction_source")} for r in rows]
    assert parquet.column_names == ["id", "instruction", "response", "instruction_source"]
    assert sorted(parquet, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
    assert sorted(jsonl, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == 23 and len(manifest["files"]) == 6


def test_every_column_with_nested_values(tmp_path):
    from datasets import load_dataset

    rows = make_rows(tmp_path / "in.jsonl", n=5)
    out = run(config(tmp_path, f"export.input={json.dumps(str(tmp_path / 'in.jsonl'))}", "export.columns=[]",
                     "export.formats=['parquet']"))
    assert not (out / "jsonl").exists()
    data = load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert data.column_names == list(rows[0])
    assert data[1]["seed_ids"] == [] and data[0]["seed_ids"] == ["s1", "s2"]
    assert data[3]["usage"] == {"prompt_tokens": 3, "completion_tokens": 6}


def test_card_has_front_matter_composition_teacher_and_prompt_hashes(tmp_path):
    run_dir = tmp_path / "runs" / "default"
    rows = make_rows(run_dir / "responses" / "data.jsonl", n=12)
    (run_dir / "responses" / "manifest.json").write_text(json.dumps({
        "stage": "responses", "teacher": "openai:gpt-x", "prompts": {"system": "ab" * 32},
        "sampling": {"temperature": 0.7}, "counts": {"rows": 12, "rejects": 0}, "timings": {"finished": 5}}))
    out = run(config(tmp_path, "export.license=cc-by-nc-4.0", "export.pretty_name='Tiny herd'",
                     'run.stages=["responses"]'))
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "cc-by-nc-4.0" and front["pretty_name"] == "Tiny herd"
    assert front["configs"][0] == {"config_name": "default",
                                   "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}
    assert front["configs"][1]["config_name"] == "jsonl" and front["size_categories"] == ["n<1K"]
    alpaca = [r for r in rows if r["instruction_source"] == "alpaca"]
    mean_i = sum(len(r["instruction"].split()) for r in alpaca) / len(alpaca)
    mean_r = sum(len(r["response"].split()) for r in alpaca) / len(alpaca)
    assert f"| alpaca | {len(alpaca)} | 33.3% | {mean_i:.1f} | {mean_r:.1f} |" in card
    assert "`openai:gpt-x`" in card and f"| responses | system | `{'ab' * 32}` |" in card
    assert "Licence: `cc-by-nc-4.0`" in card


def test_default_input_is_the_chains_nearest_data_stage_and_exports_replace_only_exports(tmp_path):
    run_dir = tmp_path / "runs" / "default"
    for stage, finished, n in (("responses", 10, 4), ("dedup", 20, 3), ("mix", 15, 2)):
        make_rows(run_dir / stage / "data.jsonl", n=n)
        (run_dir / stage / "manifest.json").write_text(json.dumps({"stage": stage, "timings": {"finished": finished}}))
    out = run(config(tmp_path))  # dedup is in the default chain: it feeds export, whatever finished last
    assert json.loads((out / "manifest.json").read_text())["input"] == str(run_dir / "dedup" / "data.jsonl")
    out = run(config(tmp_path, 'run.stages=["responses","mix"]'))
    assert json.loads((out / "manifest.json").read_text())["input"] == str(run_dir / "mix" / "data.jsonl")
    run(config(tmp_path))  # an earlier export is replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="exists and is not a herd export"):
        run(config(tmp_path, f"export.out={json.dumps(str(mine))}"))
    assert (mine / "notes.txt").read_text() == "keep me"


def test_bad_rows_stop_the_export_before_anything_is_written(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "instruction": "Fine."}\n{"id": "2", "instruction": ""}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: field 'instruction' must be a non-empty string"):
        run(config(tmp_path, f"export.input={json.dumps(str(bad))}"))
    with pytest.raises(UserError, match="export.formats"):
        run(config(tmp_path, f"export.input={json.dumps(str(bad))}", "export.formats=['csv']"))
    with pytest.raises(UserError, match=r"dedup/data.jsonl not found \(run the chain first"):
        run(config(tmp_path))
    assert not (tmp_path / "runs").exists()
