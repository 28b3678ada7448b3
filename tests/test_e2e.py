"""The whole chain through the real CLI on tiny models: `herd run` over every stage and both student families,
killed with SIGKILL mid-run and run again, then run a third time with nothing left to do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STAGES = ["instructions", "responses", "dedup", "stats", "train", "answers", "judge", "report"]


def write_config(tmp_path: Path, models: dict[str, Path]) -> Path:
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"""
[run]
name = "e2e"
dir = "{tmp_path / 'runs'}"
stages = {json.dumps(STAGES)}
[teacher]
backend = "fake"
[instructions]
calls = 6
per_call = 10
[stats]
embedder = "tfidf"
projection = "pca"
[train]
max_steps = 2
batch_size = 4
micro_batch_size = 2
max_length = 64
save_steps = 1
logging_steps = 1
report_to = []
[[train.students]]
name = "dec"
base = "{models['gpt2']}"
[[train.students]]
name = "s2s"
base = "{models['t5']}"
[answers]
limit = 4
max_new_tokens = 8
""")
    return cfg


def herd(*args: str, **kw) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "herd", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, **kw)


def teacher_calls(run_dir: Path) -> dict[str, int]:
    from herd.teacher.journal import Journal

    journal = Journal(run_dir / "journal.sqlite")
    try:
        out: dict[str, int] = {}
        for row in journal.usage():
            out[row["stage"]] = out.get(row["stage"], 0) + row["calls"]
        return out
    finally:
        journal.close()


def test_whole_chain_killed_and_resumed(tmp_path, tiny_models):
    cfg = write_config(tmp_path, tiny_models)
    run_dir = tmp_path / "runs" / "e2e"
    first = herd("run", str(cfg), "-q")
    seen = ""
    deadline = time.monotonic() + 300
    assert first.stdout is not None
    while "train: running" not in seen and time.monotonic() < deadline:
        line = first.stdout.readline()
        if not line:
            break
        seen += line
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert "responses: done" in seen, seen
    before = teacher_calls(run_dir)
    assert before["instructions"] == 6 and before["responses"] > 20

    second = herd("run", str(cfg), "-q")
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out
    for stage in ("instructions", "responses", "dedup", "stats"):
        assert f"{stage}: up to date, skipped" in out
    after = teacher_calls(run_dir)
    assert after["instructions"] == before["instructions"] and after["responses"] == before["responses"]

    state = json.loads((run_dir / ".herd" / "state.json").read_text())
    assert set(state) == set(STAGES)
    for name in ("dec", "s2s"):
        meta = json.loads((run_dir / "train" / name / "herd.json").read_text())
        assert meta["family"] == ("causal" if name == "dec" else "seq2seq")
    answers = [json.loads(x) for x in (run_dir / "answers" / "data.jsonl").read_text().splitlines()]
    assert {a["model"] for a in answers} == {"teacher:embedded", "dec", "s2s"}
    judged = [json.loads(x) for x in (run_dir / "judge" / "data.jsonl").read_text().splitlines()]
    assert sorted(j["id"] for j in judged) == sorted(a["id"] for a in answers)
    dataset = [json.loads(x) for x in (run_dir / "dedup" / "data.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in dataset}) == len(dataset) > 0
    report = (run_dir / "report.html").read_text()
    assert "Teacher and student answers side by side" in report

    third = herd("run", str(cfg), "-q")
    out, _ = third.communicate(timeout=300)
    assert third.returncode == 0
    assert out.count("up to date, skipped") == len(STAGES) - 1  # all but the report, which is always redrawn
    assert teacher_calls(run_dir) == after
