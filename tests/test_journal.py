"""The call journal: cache rows, failures that never replace a success, persistence across processes and kills."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

from herd.teacher.base import Request, Result
from herd.teacher.journal import MIGRATIONS, Journal

MODEL = "fake:test"


def ok(request: Request, text: str = "an answer", attempts: int = 1) -> Result:
    return Result(request=request, ok=True, text=text, finish_reason="stop", prompt_tokens=7, completion_tokens=3,
                  latency_s=0.5, attempts=attempts, cost=0.25, raw={"id": "x"})


def failed(request: Request, attempts: int = 1) -> Result:
    return Result(request=request, ok=False, error="http_500: boom", attempts=attempts)


def test_a_recorded_call_comes_back_as_a_cached_result(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    req = Request.chat("What is a river?", system="Be brief.", max_tokens=32, tag="row-1")
    journal.record(MODEL, ok(req), stage="responses")
    found = journal.lookup(MODEL, [req, Request.chat("Something else")])
    assert list(found) == [req.key(MODEL)]
    hit = found[req.key(MODEL)]
    assert (hit.ok, hit.cached, hit.text, hit.finish_reason) == (True, True, "an answer", "stop")
    assert (hit.prompt_tokens, hit.completion_tokens, hit.attempts, hit.cost) == (7, 3, 1, 0.25)
    assert hit.request is req and hit.key == req.key(MODEL)
    assert journal.lookup("openai:other-model", [req]) == {}


def test_keys_cover_messages_parameters_and_sample_index_but_not_the_tag():
    base = Request.chat("hi", max_tokens=10)
    assert Request.chat("hi", max_tokens=10, tag="other-row").key(MODEL) == base.key(MODEL)
    variants = [Request.chat("hi", max_tokens=11), Request.chat("hi", max_tokens=10, temperature=0.5),
                Request.chat("hi", max_tokens=10, sample_index=1), Request.chat("hi", system="s", max_tokens=10),
                Request.chat("hi", max_tokens=10, seed=3)]
    keys = {v.key(MODEL) for v in variants} | {base.key(MODEL), base.key("fake:another")}
    assert len(keys) == len(variants) + 2


def test_failures_are_not_cached_and_never_replace_a_success(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    req = Request.chat("flaky")
    journal.record(MODEL, failed(req, attempts=3))
    assert journal.lookup(MODEL, [req]) == {}
    journal.record(MODEL, ok(req, "first answer", attempts=2))
    journal.record(MODEL, failed(req, attempts=4))
    journal.record(MODEL, ok(req, "second answer"))
    hit = journal.lookup(MODEL, [req])[req.key(MODEL)]
    assert hit.text == "first answer" and hit.attempts == 5  # 3 failed + 2 to succeed; nothing after counts
    (status, count), = sqlite3.connect(tmp_path / "j.sqlite").execute("SELECT status, COUNT(*) FROM calls GROUP BY 1")
    assert (status, count) == ("ok", 1)


def test_usage_sums_calls_tokens_and_cost_per_stage_and_model(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    for i in range(3):
        journal.record(MODEL, ok(Request.chat(f"q{i}")), stage="responses")
    journal.record(MODEL, failed(Request.chat("bad"), attempts=6), stage="responses")
    journal.record("openai:gpt-4o-mini", ok(Request.chat("q")), stage="instructions")
    rows = {(r["stage"], r["model"], r["status"]): r for r in journal.usage()}
    assert set(rows) == {("responses", MODEL, "ok"), ("responses", MODEL, "failed"),
                         ("instructions", "openai:gpt-4o-mini", "ok")}
    good = rows[("responses", MODEL, "ok")]
    assert (good["calls"], good["prompt_tokens"], good["completion_tokens"]) == (3, 21, 9)
    assert good["cost"] == 0.75 and rows[("responses", MODEL, "failed")]["attempts"] == 6


def test_lookup_of_many_requests_and_writes_from_many_threads(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    requests = [Request.chat(f"question {i}") for i in range(1200)]

    def write(part: list[Request]) -> None:
        for r in part:
            journal.record(MODEL, ok(r, text=r.messages[-1][1].upper()))

    threads = [threading.Thread(target=write, args=(requests[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = journal.lookup(MODEL, requests)
    assert len(found) == 1200
    assert all(found[r.key(MODEL)].text == r.messages[-1][1].upper() for r in requests)


def test_schema_is_migrated_once_and_data_survives_reopening(tmp_path):
    path = tmp_path / "j.sqlite"
    req = Request.chat("kept")
    Journal(path).record(MODEL, ok(req))
    again = Journal(path)
    assert again.lookup(MODEL, [req])[req.key(MODEL)].text == "an answer"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rows_committed_before_a_kill_are_there_after_it(tmp_path):
    path = tmp_path / "j.sqlite"
    code = (
        "import os, signal, sys\n"
        "from herd.teacher.base import Request, Result\n"
        "from herd.teacher.journal import Journal\n"
        "j = Journal(sys.argv[1])\n"
        "for i in range(40):\n"
        "    j.record('fake:test', Result(request=Request.chat(f'q{i}'), ok=True, text=f'a{i}'))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=60)
    assert proc.returncode == -9
    found = Journal(path).lookup(MODEL, [Request.chat(f"q{i}") for i in range(40)])
    assert sorted(r.text for r in found.values()) == sorted(f"a{i}" for i in range(40))
