"""kill -9 a running `herd responses` several times against a faulty endpoint, then let it finish: every input id is
in data.jsonl or rejects.jsonl exactly once, and the endpoint never answered again a call herd had finished."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from herd.teacher.base import Request
from herd.teacher.fake import answer
from herd.teacher.mockserver import fetch_ledger, spawn
from tests.mock_endpoint import write_instructions, write_run_file

FAULTS = "429=0.05,500=0.05,hang=0.03,truncated=0.03,empty=0.02,garbage=0.02"


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def finished_calls(journal: Path) -> dict[str, float]:
    """Prompt -> when the journal recorded its call as finished (wall clock)."""
    if not journal.exists():
        return {}
    db = sqlite3.connect(journal, timeout=30)
    try:
        rows = db.execute("SELECT request, created FROM calls WHERE status = 'ok'").fetchall()
    except sqlite3.OperationalError:  # the table is not there yet
        rows = []
    finally:
        db.close()
    return {json.loads(r)["messages"][-1]["content"]: created for r, created in rows}


def start(run_file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "herd", "responses", "-c", str(run_file), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_until(proc: subprocess.Popen[bytes], ready: Callable[[], bool], limit_s: float = 60.0) -> bool:
    """Wait until `ready()` is true (True) or the process ends first (False)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.02)
    raise AssertionError("the stage made no progress")


def test_sigkill_loses_nothing_and_repeats_nothing(tmp_path):
    ids = write_instructions(tmp_path / "in.jsonl", 50)
    run_dir = tmp_path / "runs"
    journal = run_dir / "t" / "journal.sqlite"
    data, rejects = run_dir / "t" / "responses" / "data.jsonl", run_dir / "t" / "responses" / "rejects.jsonl"
    kills = 0
    with spawn("--latency", "0.15", "--concurrency", "2", "--faults", FAULTS, "--retry-after", "0.1") as url:
        run_file = write_run_file(tmp_path / "run.toml", run_dir, tmp_path / "in.jsonl", url, concurrency=2,
                                  timeout_s=1.0, max_attempts=4)
        # Kill points: a few calls into a run (rows still in buffers), and after rows reached data.jsonl.
        for wait_for in ("calls", "rows", "calls", "rows"):
            proc = start(run_file)
            calls0, rows0 = len(finished_calls(journal)), lines(data) + lines(rejects)

            def ready(wait_for: str = wait_for, calls0: int = calls0, rows0: int = rows0) -> bool:
                if wait_for == "calls":
                    return len(finished_calls(journal)) >= calls0 + 4
                return lines(data) + lines(rejects) > rows0

            if not run_until(proc, ready):
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
        final = subprocess.run([sys.executable, "-m", "herd", "responses", "-c", str(run_file), "-q"],
                               capture_output=True, text=True, timeout=300)
        ledger = fetch_ledger(url)
    assert final.returncode == 0, final.stderr
    assert kills >= 3, "the stage finished before it could be killed often enough"

    kept = [json.loads(line) for line in data.open(encoding="utf-8")]
    dropped = [json.loads(line) for line in rejects.open(encoding="utf-8")]
    assert sorted(r["id"] for r in kept + dropped) == ids  # each input exactly once, never in both files
    for row in kept:
        assert row["response"] == answer(Request.chat(row["instruction"]))
    assert all(r["reason"].startswith("teacher_failed: ") for r in dropped)

    calls = {c["prompt"]: c for c in ledger["calls"].values()}
    finished = finished_calls(journal)
    assert set(finished) == {r["instruction"] for r in kept}
    for prompt, when in finished.items():
        # The endpoint saw no attempt at a call after herd had recorded it as finished.
        assert all(t < when for t, _ in calls[prompt]["events"]), (prompt, when, calls[prompt])
    # A call is answered twice only when a kill falls between the answer and its journal row: at most the calls
    # in flight at each kill (concurrency 2).
    assert sum(c["answers"] > 1 for c in calls.values()) <= 2 * kills
    assert ledger["faults"], "the endpoint injected no faults"
