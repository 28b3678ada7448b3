"""The engine: the journal as cache and resume point (a second run makes no calls), the cost ledger, failures that
are tried again next run, identical requests that share one call, and the teacher's identity across endpoints."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from herd.config import TeacherConfig
from herd.errors import UserError
from herd.teacher import Engine, Request, Result, open_engine
from herd.teacher.base import Emit
from herd.teacher.fake import FakeTeacher
from herd.teacher.journal import Journal
from herd.teacher.mockserver import MockServer
from tests.mock_endpoint import openai_config


class FailingTeacher:
    """A fake that fails every prompt in `broken` (a test double for the Teacher protocol)."""

    def __init__(self, broken: set[str]) -> None:
        self.model_id = "fake:failing"
        self.broken = broken
        self.sent: list[str] = []

    def run(self, requests: Sequence[Request], emit: Emit) -> None:
        for req in requests:
            prompt = req.messages[-1][1]
            self.sent.append(prompt)
            if prompt in self.broken:
                emit(Result(request=req, ok=False, error="http_503: overloaded", attempts=6))
            else:
                emit(Result(request=req, ok=True, text=f"answer to {prompt}", prompt_tokens=10,
                            completion_tokens=4))

    def close(self) -> None:
        return None


def requests_for(n: int) -> list[Request]:
    return [Request.chat(f"question {i}", tag=f"row{i}") for i in range(n)]


def test_a_second_run_is_answered_from_the_journal(tmp_path):
    first_backend = FakeTeacher("t")
    engine = Engine(first_backend, Journal(tmp_path / "j.sqlite"), stage="s")
    first: dict[str, Result] = {}
    usage = engine.map(requests_for(8), lambda r: first.__setitem__(r.request.tag, r), progress=False)
    engine.close()
    assert first_backend.calls == 8 and usage.calls == 8 and usage.cached == 0

    again_backend = FakeTeacher("t")
    engine = Engine(again_backend, Journal(tmp_path / "j.sqlite"), stage="s")
    second: dict[str, Result] = {}
    usage = engine.map(requests_for(8), lambda r: second.__setitem__(r.request.tag, r), progress=False)
    engine.close()
    assert again_backend.calls == 0 and usage.cached == 8 and usage.calls == 0
    assert {t: r.text for t, r in second.items()} == {t: r.text for t, r in first.items()}
    assert all(r.cached for r in second.values())


def test_each_call_is_in_the_journal_before_the_stage_sees_it(tmp_path):
    seen: list[str] = []

    def crash_on_third(result: Result) -> None:
        seen.append(result.request.tag)
        if len(seen) == 3:
            raise KeyboardInterrupt  # as if the stage were killed while writing its third row

    engine = Engine(FakeTeacher("t"), Journal(tmp_path / "j.sqlite"))
    with pytest.raises(KeyboardInterrupt):
        engine.map(requests_for(6), crash_on_third, progress=False)
    engine.close()
    backend = FakeTeacher("t")
    engine = Engine(backend, Journal(tmp_path / "j.sqlite"))
    engine.map(requests_for(6), lambda r: None, progress=False)
    assert backend.calls == 3  # the three the stage had seen were paid for once


def test_failed_calls_are_counted_and_tried_again_next_run(tmp_path):
    backend = FailingTeacher({"question 1", "question 4"})
    engine = Engine(backend, Journal(tmp_path / "j.sqlite"), prices=(2.0, 10.0))
    results: list[Result] = []
    usage = engine.map(requests_for(6), results.append, progress=False)
    assert (usage.calls, usage.failed, usage.attempts, usage.by_error) == (6, 2, 4 + 12, {"http_503": 2})
    assert usage.cost == pytest.approx(4 * (10 * 2.0 + 4 * 10.0) / 1e6)
    assert sorted(r.request.tag for r in results if not r.ok) == ["row1", "row4"]

    backend.broken.clear()
    backend.sent.clear()
    engine.map(requests_for(6), lambda r: None, progress=False)
    assert sorted(backend.sent) == ["question 1", "question 4"]
    rows = {r["status"]: r for r in Journal(tmp_path / "j.sqlite").usage()}
    assert set(rows) == {"ok"} and rows["ok"]["calls"] == 6 and rows["ok"]["attempts"] == 6 + 12


def test_identical_requests_under_different_ids_share_one_call(tmp_path):
    twins = [Request.chat("same text", tag="a"), Request.chat("same text", tag="b"), Request.chat("other", tag="c")]
    for round_ in range(2):
        backend = FakeTeacher("t")
        engine = Engine(backend, Journal(tmp_path / "j.sqlite"))
        results: list[Result] = []
        engine.map(twins, results.append, progress=False)
        engine.close()
        seen = {r.request.tag: r.text for r in results}
        assert backend.calls == (2 if round_ == 0 else 0) and len(results) == 3
        assert sorted(seen) == ["a", "b", "c"] and seen["a"] == seen["b"] != seen["c"]


def test_the_same_model_behind_another_url_is_the_same_teacher(tmp_path):
    journal = tmp_path / "j.sqlite"
    old, new = MockServer(latency_s=0.0), MockServer(latency_s=0.0)
    with old as old_url, new as new_url:
        for url in (old_url, new_url):
            engine = open_engine(openai_config(url), journal, stage="responses")
            assert engine.model_id == "openai:mock"
            results: list[Result] = []
            engine.map(requests_for(5), results.append, progress=False)
            engine.close()
            assert len(results) == 5 and all(r.ok and r.text for r in results)
    assert old.ledger.snapshot()["answers"] == 5 and new.ledger.snapshot()["requests"] == 0


def test_open_engine_checks_the_key_before_creating_the_journal(tmp_path, monkeypatch):
    monkeypatch.delenv("HERD_NO_SUCH_KEY", raising=False)
    cfg = openai_config("http://127.0.0.1:9/v1", api_key_env="HERD_NO_SUCH_KEY")
    with pytest.raises(UserError, match="HERD_NO_SUCH_KEY is not set"):
        open_engine(cfg, tmp_path / "run" / "journal.sqlite")
    assert not (tmp_path / "run").exists()
    fake = open_engine(TeacherConfig(backend="fake", model="x"), None)
    assert fake.model_id == "fake:x" and fake.prices == (0.0, 0.0)
