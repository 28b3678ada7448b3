"""herd run / herd plan over the fake teacher: skipping, re-running on a changed key, limits, bad stage names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from herd.config import load_config
from herd.run import run_chain, select, stage_keys


def write_config(tmp_path: Path, extra: str = "") -> Path:
    ins = tmp_path / "ins.jsonl"
    ins.write_text("".join(json.dumps({"id": f"i{n}", "instruction": f"Name color number {n}."}) + "\n"
                           for n in range(5)))
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'[run]\nname = "t"\ndir = "{tmp_path / "runs"}"\nstages = ["responses", "report"]\n'
        f'[teacher]\nbackend = "fake"\n[responses]\ninput = "{ins}"\n{extra}'
    )
    return cfg


def herd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "herd", *args], capture_output=True, text=True, timeout=120)


def test_rerun_skips_and_changed_key_reruns_only_affected(tmp_path):
    cfg = load_config(write_config(tmp_path))
    stages = select(cfg)
    lines: list[str] = []
    assert run_chain(cfg, stages, echo=lines.append) == {"responses": "ran", "report": "ran"}
    assert run_chain(cfg, stages, echo=lines.append) == {"responses": "skipped", "report": "ran"}
    changed = load_config(write_config(tmp_path), ["responses.max_tokens=99"])
    assert stage_keys(changed)["responses"] != stage_keys(cfg)["responses"]
    assert stage_keys(changed)["instructions"] == stage_keys(cfg)["instructions"]
    assert run_chain(changed, select(changed), echo=lines.append)["responses"] == "ran"
    run_dir = tmp_path / "runs" / "t"
    assert len(list((run_dir / ".herd" / "stale").iterdir())) == 1
    rows = [json.loads(x) for x in (run_dir / "responses" / "data.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [f"i{n}" for n in range(5)]
    # the re-run paid for no call twice: the journal holds one row per distinct request
    from herd.teacher.journal import Journal

    usage = Journal(run_dir / "journal.sqlite").usage()
    assert sum(u["calls"] for u in usage) == 10  # 5 requests x 2 distinct max_tokens values
    assert (run_dir / "report.html").exists() and (run_dir / "report.md").exists()


def test_from_until_only(tmp_path):
    cfg = load_config(write_config(tmp_path), ['run.stages=["instructions","responses","dedup","report"]'])
    assert [s.name for s in select(cfg, start="responses")] == ["responses", "dedup", "report"]
    assert [s.name for s in select(cfg, until="responses")] == ["instructions", "responses"]
    assert [s.name for s in select(cfg, only="dedup")] == ["dedup"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", 'run.stages=["responses","nope"]'], "run.stages: unknown stage 'nope'"),
        (["--only", "dedupe"], "unknown stage 'dedupe' (did you mean 'dedup'?)"),
        (["--set", "teacher.price_input_per_mtok=1000000", "--set", "run.max_cost_usd=1"],
         "run.max_cost_usd: estimated cost"),
        (["--set", "teacher.price_input_per_mtok=1000000"], "pass --yes"),
    ],
)
def test_bad_run_is_one_line_exit_2_and_spends_nothing(tmp_path, args, message):
    out = herd("run", str(write_config(tmp_path)), "-q", *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "runs" / "t" / "journal.sqlite").exists()


def test_plan_counts_calls_and_cost(tmp_path):
    out = herd("plan", str(write_config(tmp_path)), "--set", "teacher.price_input_per_mtok=1",
               "--set", "teacher.price_output_per_mtok=2")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("responses"))
    calls, prompt_tokens, completion_tokens, cost = row.split()[2:6]
    assert int(calls) == 5
    assert float(cost) == pytest.approx((int(prompt_tokens) * 1 + int(completion_tokens) * 2) / 1e6, abs=1e-4)
