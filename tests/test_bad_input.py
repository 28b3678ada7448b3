"""Bad input files and configs (issue 15): bytes that are not UTF-8 and empty inputs are one line naming the file
(and line), exit 2, and a refused run never replaces an earlier output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import tiny_gpt2

BINARY = b'{"id": "a", "instruction": "hi", "response": "hello"}\n\xff\xfe\x00binary\n'


def herd(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "herd", args[0], "-q", *args[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env)


def one_line_exit_2(out: subprocess.CompletedProcess[str], message: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"herd: error: {message}"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_gpt2(tmp_path_factory.mktemp("tiny") / "gpt2")


def stage_args(stage: str, file: str, model: Path) -> list[str]:
    return {
        "responses": ["responses", "--input", file, "--set", 'teacher.backend="fake"'],
        "dedup": ["dedup", "--input", file],
        "generate": ["generate", "--model", str(model), "--input", file, "--out", "gen"],
        "train": ["train", "--data", file, "--student", str(model), "--set", "train.max_steps=1"],
    }[stage]


@pytest.mark.parametrize("stage", ["responses", "dedup", "generate", "train"])
def test_binary_input_file_names_file_and_line(tmp_path, model, stage):
    (tmp_path / "in.jsonl").write_bytes(BINARY)
    out = herd(tmp_path, *stage_args(stage, "in.jsonl", model))
    one_line_exit_2(out, "in.jsonl:2: not UTF-8 text (byte 0xff at column 1); save the file as UTF-8")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "gen").exists()


def test_binary_csv_names_file_and_line(tmp_path):
    from herd.errors import UserError
    from herd.records import read_rows

    path = tmp_path / "in.csv"
    path.write_bytes(b"instruction,response\nhi,hello\nok,caf\xe9\n")
    with pytest.raises(UserError, match=r"in\.csv:3: not UTF-8 text \(byte 0xe9 at column 7\)"):
        read_rows(path)


@pytest.mark.parametrize("stage", ["responses", "dedup", "generate", "train"])
def test_binary_config_names_file_and_line(tmp_path, model, stage):
    (tmp_path / "in.jsonl").write_text('{"id": "a", "instruction": "hi", "response": "hello"}\n')
    (tmp_path / "run.toml").write_bytes(b'[run]\nname = "x"\n# caf\xe9\n')
    out = herd(tmp_path, *stage_args(stage, "in.jsonl", model), "--config", "run.toml")
    one_line_exit_2(out, "run.toml:3: not UTF-8 text (a TOML file must be UTF-8)")


@pytest.mark.parametrize("stage", ["responses", "dedup", "generate"])
def test_empty_input_is_refused(tmp_path, model, stage):
    (tmp_path / "in.jsonl").write_text("\n\n")
    out = herd(tmp_path, *stage_args(stage, "in.jsonl", model))
    one_line_exit_2(out, "in.jsonl: empty input (no rows); nothing was written")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "gen").exists()


def test_train_refuses_empty_input_too(tmp_path, model):
    (tmp_path / "in.jsonl").write_text("")
    out = herd(tmp_path, *stage_args("train", "in.jsonl", model))
    one_line_exit_2(out, "in.jsonl: no training pairs (empty dataset)")


def test_refused_dedup_keeps_the_previous_output(tmp_path):
    rows = [{"id": str(i), "instruction": f"write a poem about the number {i} " * 2, "response": "ok " * 5}
            for i in range(5)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert herd(tmp_path, "dedup", "--input", "in.jsonl").returncode == 0
    folder = tmp_path / "runs" / "default" / "dedup"
    before = {name: (folder / name).read_bytes() for name in ("data.jsonl", "rejects.jsonl", "manifest.json")}
    assert before["data.jsonl"].count(b"\n") == 5
    for bad in (b"", BINARY):
        (tmp_path / "in.jsonl").write_bytes(bad)
        assert herd(tmp_path, "dedup", "--input", "in.jsonl").returncode == 2
        assert {name: (folder / name).read_bytes() for name in before} == before
        assert sorted(p.name for p in folder.parent.iterdir()) == ["dedup"]
