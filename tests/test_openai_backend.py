"""The openai backend against herd's mock endpoint (a real HTTP server on 127.0.0.1): answers, every fault kind,
Retry-After, rejects, several base URLs, the RPM limit, the preflight, and the API key kept out of everything."""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import socket
import time

import pytest

from herd.cli import main
from herd.errors import UserError
from herd.teacher.base import Request, Result
from herd.teacher.fake import answer
from herd.teacher.mockserver import MockServer
from herd.teacher.openai_backend import OpenAITeacher
from herd.teacher.ratelimit import Pacer, parse_retry_after, retry_delay
from tests.mock_endpoint import openai_config, write_instructions, write_run_file

SECRET = "sk-herd-test-5EcR3t-0123456789"


def ask_all(teacher: OpenAITeacher, n: int, prefix: str = "question", **params: object) -> dict[str, Result]:
    """Results by prompt for n distinct prompts."""
    out: dict[str, Result] = {}
    requests = [Request.chat(f"{prefix} {i}: what is a river?", **params) for i in range(n)]  # type: ignore[arg-type]
    teacher.run(requests, lambda r: out.__setitem__(r.request.messages[-1][1], r))
    assert len(out) == n
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_answers_carry_text_usage_and_finish_reason():
    mock = MockServer(latency_s=0.01)
    with mock as url:
        results = ask_all(OpenAITeacher(openai_config(url), None), 10, max_tokens=64)
        short = ask_all(OpenAITeacher(openai_config(url), None), 2, prefix="short", max_tokens=3)
    for prompt, r in results.items():
        assert r.ok and r.attempts == 1 and r.finish_reason == "stop" and not r.truncated
        assert r.text == answer(Request.chat(prompt))
        assert r.completion_tokens == len(r.text.split()) and r.prompt_tokens == len(prompt.split())
        assert r.raw["endpoint"] == url
    for r in short.values():
        assert r.finish_reason == "length" and r.truncated and r.completion_tokens == 3
    ledger = mock.ledger.snapshot()
    assert ledger["requests"] == ledger["answers"] == 12


FAULT_REASONS = {
    "429": "http_429", "500": "http_500", "hang": "timeout", "truncated": "bad_json", "empty": "no_choices",
    "no_content": "no_content", "garbage": "bad_json",
}


@pytest.mark.parametrize("kind", sorted(FAULT_REASONS))
def test_every_fault_kind_is_retried_until_answered(kind):
    always = MockServer(latency_s=0.01, retry_after=0.05, faults={kind: 1.0})
    with always as url:
        failed = ask_all(OpenAITeacher(openai_config(url, max_attempts=2, timeout_s=1.0), None), 3)
    for r in failed.values():
        assert not r.ok and r.attempts == 2
        assert r.error.startswith(FAULT_REASONS[kind] + ": "), r.error
    assert always.ledger.snapshot()["faults"] == {kind: 6}

    sometimes = MockServer(latency_s=0.01, retry_after=0.05, faults={kind: 0.4})
    with sometimes as url:
        results = ask_all(OpenAITeacher(openai_config(url, max_attempts=10, timeout_s=1.0), None), 10)
    ledger = sometimes.ledger.snapshot()
    assert ledger["faults"][kind] > 0
    by_prompt = {c["prompt"]: c for c in ledger["calls"].values()}
    for prompt, r in results.items():
        call = by_prompt[prompt]
        assert r.ok, r.error
        assert r.attempts == call["attempts"] == sum(call["faults"].values()) + 1
        assert call["answers"] == 1 and call["repeats"] == 0
        assert [kind] * (r.attempts - 1) + ["answer"] == [outcome for _, outcome in call["events"]]


def test_retry_after_is_honoured():
    mock = MockServer(latency_s=0.01, retry_after=0.3, faults={"429": 0.5})
    with mock as url:
        results = ask_all(OpenAITeacher(openai_config(url, backoff_base_s=0.001, max_attempts=10), None), 8)
    assert all(r.ok for r in results.values())
    gaps = []
    for call in mock.ledger.snapshot()["calls"].values():
        for (t0, outcome), (t1, _) in zip(call["events"], call["events"][1:], strict=False):
            assert outcome == "429"
            gaps.append(t1 - t0)
    assert gaps and min(gaps) >= 0.3


def test_backoff_is_exponential_with_full_jitter_and_never_before_retry_after():
    rng = random.Random(0)
    for attempt in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        delays = [retry_delay(attempt, 0.5, 8.0, rng=rng) for _ in range(200)]
        assert min(delays) >= 0.0 and max(delays) <= ceiling
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # spread over the whole range
        assert all(retry_delay(attempt, 0.5, 8.0, retry_after=9.5, rng=rng) >= 9.5 for _ in range(20))


def test_retry_after_header_forms():
    now = 1_700_000_000.0
    assert parse_retry_after("2") == 2.0 and parse_retry_after("0.25") == 0.25
    assert abs(parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) - 30) <= 1  # type: ignore[operator]
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_client_errors_are_not_retried_and_the_key_is_scrubbed():
    mock = MockServer(latency_s=0.01, api_key="the-right-key")
    with mock as url:
        teacher = OpenAITeacher(openai_config(url, api_key_env="HERD_TEST_KEY"), SECRET, preflight=False)
        results = ask_all(teacher, 3)
    for r in results.values():
        assert not r.ok and r.attempts == 1 and r.error.startswith("http_401: ")
        assert SECRET not in r.error and "<redacted>" in r.error  # the mock echoes the key, like real providers
    assert mock.ledger.snapshot()["unauthorized"] == 3
    assert SECRET not in repr(teacher) and SECRET not in str(vars(teacher).get("cfg"))


def test_requests_are_spread_over_every_base_url_and_retries_move_on():
    a, b = MockServer(latency_s=0.02), MockServer(latency_s=0.02)
    with a as url_a, b as url_b:
        results = ask_all(OpenAITeacher(openai_config(url_a, url_b), None), 40)
    assert all(r.ok for r in results.values())
    counts = [a.ledger.snapshot()["requests"], b.ledger.snapshot()["requests"]]
    assert sum(counts) == 40 and min(counts) >= 10, counts

    broken, healthy = MockServer(latency_s=0.01, faults={"500": 1.0}), MockServer(latency_s=0.01)
    with broken as url_a, healthy as url_b:
        results = ask_all(OpenAITeacher(openai_config(url_a, url_b, max_attempts=2), None), 12)
    assert all(r.ok for r in results.values())
    assert broken.ledger.snapshot()["requests"] > 0
    assert healthy.ledger.snapshot()["answers"] == 12


def test_rpm_limit_causes_no_429():
    # herd is held to 1200/min; the mock enforces 2% more over any 3 s window (61 calls), so that a server thread
    # scheduled late on a busy machine is not counted as herd's burst. 70 calls need more than one window.
    limited = MockServer(latency_s=0.01, concurrency=8, rpm=1224, rpm_window_s=3.0)
    with limited as url:
        results = ask_all(OpenAITeacher(openai_config(url, concurrency=8, rpm=1200, max_attempts=1), None), 70)
    ledger = limited.ledger.snapshot()
    assert all(r.ok for r in results.values())
    assert ledger["over_rpm"] == 0 and ledger["requests"] == 70

    # The same calls without herd's limit do hit it: the check above can fail.
    control = MockServer(latency_s=0.01, concurrency=8, rpm=1224, rpm_window_s=3.0)
    with control as url:
        ask_all(OpenAITeacher(openai_config(url, concurrency=8, max_attempts=1), None), 70)
    assert control.ledger.snapshot()["over_rpm"] > 0


def test_tpm_limit_spaces_requests_by_their_tokens():
    pacer = Pacer(tpm=600_000)
    assert pacer.gap(1000) == pytest.approx(0.1 / 0.98)

    async def five() -> list[float]:
        times = []
        for _ in range(5):
            await pacer.wait(1000)
            times.append(time.monotonic())
        return times

    times = asyncio.run(five())
    assert times[-1] - times[0] >= 4 * 0.1


def test_preflight_names_what_is_wrong(monkeypatch):
    port = free_port()
    with pytest.raises(UserError, match=rf"^teacher.base_urls: cannot reach http://127.0.0.1:{port}/v1: "):
        OpenAITeacher(openai_config(f"http://127.0.0.1:{port}/v1"), None)
    mock = MockServer(latency_s=0.0, api_key="the-right-key")
    with mock as url:
        with pytest.raises(UserError) as rejected:
            OpenAITeacher(openai_config(url, api_key_env="HERD_TEST_KEY"), SECRET)
        with pytest.raises(UserError, match="wants an API key"):
            OpenAITeacher(openai_config(url), None)
        OpenAITeacher(openai_config(url, api_key_env="HERD_TEST_KEY"), "the-right-key")  # accepted
    assert str(rejected.value) == f"teacher.api_key_env: {url} rejected the key in $HERD_TEST_KEY (HTTP 401)"
    with pytest.raises(UserError, match=r"teacher.base_urls\[0\]"):
        OpenAITeacher(openai_config("ftp://127.0.0.1/v1"), None)
    with pytest.raises(UserError, match="teacher.concurrency"):
        OpenAITeacher(openai_config("http://127.0.0.1:1/v1", concurrency=0), None)


def test_run_works_inside_a_running_event_loop_and_emit_errors_stop_it():
    mock = MockServer(latency_s=0.01)
    with mock as url:
        teacher = OpenAITeacher(openai_config(url), None)

        async def inside() -> dict[str, Result]:
            return ask_all(teacher, 3)

        assert all(r.ok for r in asyncio.run(inside()).values())

        def explode(result: Result) -> None:
            raise RuntimeError("disk full")

        with pytest.raises(RuntimeError, match="disk full"):
            teacher.run([Request.chat(f"boom {i}") for i in range(20)], explode)
    assert mock.ledger.snapshot()["requests"] < 23  # stopped early, not after all 20


# ------------------------------------------------------------------------------------------ through the CLI
def herd(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the real `herd` entry point in-process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out, out.err


@pytest.mark.parametrize("problem", ["missing_key", "unreachable", "rejected_key"])
def test_cli_setup_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, monkeypatch, problem):
    instructions = tmp_path / "in.jsonl"
    write_instructions(instructions, 3)
    mock = MockServer(latency_s=0.0, api_key="the-right-key")
    with mock as url:
        teacher: dict[str, object] = {"api_key_env": "HERD_TEST_KEY"}
        monkeypatch.setenv("HERD_TEST_KEY", SECRET)
        if problem == "missing_key":
            monkeypatch.delenv("HERD_TEST_KEY")
        if problem == "unreachable":
            url = f"http://127.0.0.1:{free_port()}/v1"
        run_file = write_run_file(tmp_path / "run.toml", tmp_path / "runs", instructions, url, **teacher)
        code, out, err = herd(capsys, "responses", "-c", str(run_file))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("herd: error: ")
    assert {"missing_key": "HERD_TEST_KEY is not set", "unreachable": "cannot reach",
            "rejected_key": "rejected the key in $HERD_TEST_KEY"}[problem] in err
    assert SECRET not in err + out
    assert not (tmp_path / "runs").exists()
    assert mock.ledger.snapshot()["requests"] == 0  # (the rejected key's one GET /models is all it saw)


def test_cli_run_keeps_the_key_out_and_a_second_run_makes_no_calls(tmp_path, capsys, monkeypatch):
    instructions = tmp_path / "in.jsonl"
    ids = write_instructions(instructions, 12)
    monkeypatch.setenv("HERD_TEST_KEY", SECRET)
    mock = MockServer(latency_s=0.01, api_key=SECRET, retry_after=0.05, faults={"500": 0.3, "truncated": 0.2})
    with mock as url:
        run_file = write_run_file(tmp_path / "run.toml", tmp_path / "runs", instructions, url,
                                  api_key_env="HERD_TEST_KEY")
        code, out, err = herd(capsys, "responses", "-c", str(run_file))
        assert code == 0, err
        stage = tmp_path / "runs" / "t" / "responses"
        first = {json.loads(line)["id"]: json.loads(line) for line in (stage / "data.jsonl").open()}
        calls = mock.ledger.snapshot()["requests"]
        manifest = json.loads((stage / "manifest.json").read_text())

        for name in ("data.jsonl", "rejects.jsonl", "manifest.json"):
            (stage / name).unlink()
        code, out2, err2 = herd(capsys, "responses", "-c", str(run_file))
        assert code == 0, err2
        second = {json.loads(line)["id"]: json.loads(line) for line in (stage / "data.jsonl").open()}
        assert mock.ledger.snapshot()["requests"] == calls  # every answer came from the journal
    assert sorted(first) == ids and second == first
    assert manifest["usage"]["calls"] == 12 and manifest["usage"]["attempts"] > 12
    assert manifest["config"]["teacher"]["api_key_env"] == "HERD_TEST_KEY"
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in out + err + out2 + err2


def test_cli_calls_that_never_succeed_become_rejects_with_the_reason(tmp_path, capsys):
    instructions = tmp_path / "in.jsonl"
    ids = write_instructions(instructions, 5)
    mock = MockServer(latency_s=0.0, faults={"500": 1.0})
    with mock as url:
        run_file = write_run_file(tmp_path / "run.toml", tmp_path / "runs", instructions, url, max_attempts=3)
        code, _, err = herd(capsys, "responses", "-c", str(run_file))
    assert code == 0, err
    stage = tmp_path / "runs" / "t" / "responses"
    rejects = [json.loads(line) for line in (stage / "rejects.jsonl").open()]
    assert sorted(r["id"] for r in rejects) == ids
    assert all(r["reason"].startswith("teacher_failed: http_500: internal server error") for r in rejects)
    assert (stage / "data.jsonl").read_text() == ""
    assert mock.ledger.snapshot()["requests"] == 15
