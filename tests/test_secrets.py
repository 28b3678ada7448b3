"""Secrets in odd places (issue 15): a key inside a garbage 200 body, a key in the base URL's query string (as some
gateways want) and a key pasted where the variable's NAME goes never reach a file, a journal or an error."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from herd.cli import main
from herd.rundir import redact
from herd.secrets import looks_like_key, redact_urls
from tests.mock_endpoint import write_instructions, write_run_file

KEY = "gw-5EcR3tQueryKey0123"  # 21 characters, as in the report


class Gateway(BaseHTTPRequestHandler):
    """An OpenAI-compatible gateway that wants its key as ?api-key=...; `garbage` = answer 200 with a non-JSON body
    that quotes the key 63 characters in (where a cut at 80 before scrubbing kept 17 of its 21 characters)."""

    garbage = False
    seen: list[str] = []

    def log_message(self, *args: object) -> None:
        return None

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        parts = urlsplit(self.path)
        self.seen.append(parts.path)
        if parse_qs(parts.query).get("api-key") != [KEY]:
            self._send(401, b'{"error": {"message": "missing api-key"}}')
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        if self._authorised():
            self._send(200, b'{"data": [{"id": "m"}]}')

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        if not self._authorised():
            return
        if self.garbage:
            self._send(200, ("x" * 63 + KEY + " upstream said no").encode(), "text/plain")
            return
        choice = {"message": {"role": "assistant", "content": "an answer"}, "finish_reason": "stop"}
        body = {"id": "c", "choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
        self._send(200, json.dumps(body).encode())


@pytest.fixture
def gateway() -> Iterator[tuple[str, type[Gateway]]]:
    handler = type("G", (Gateway,), {"seen": [], "garbage": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1?api-key={KEY}", handler
    finally:
        server.shutdown()
        server.server_close()


def herd(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out + out.err


def every_byte(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("garbage", [False, True])
def test_a_key_in_the_base_urls_query_reaches_no_file(tmp_path, capsys, gateway, garbage):
    url, handler = gateway
    handler.garbage = garbage
    instructions = tmp_path / "in.jsonl"
    write_instructions(instructions, 3)
    run_file = write_run_file(tmp_path / "run.toml", tmp_path / "runs", instructions, url, max_attempts=1)
    code, text = herd(capsys, "responses", "-c", str(run_file))
    assert code == 0, text
    stage = tmp_path / "runs" / "t" / "responses"
    rows = [json.loads(line) for line in (stage / ("rejects.jsonl" if garbage else "data.jsonl")).open()]
    assert len(rows) == 3
    if garbage:
        assert all(r["reason"].startswith("teacher_failed: bad_json:") and "<redacted>" in r["reason"] for r in rows)
    else:
        assert {r["response"] for r in rows} == {"an answer"}
    # the key went where the gateway wants it, under the right path, and nowhere else
    assert set(handler.seen) == {"/v1/models", "/v1/chat/completions"}
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["config"]["teacher"]["base_urls"] == [url.replace(KEY, "<redacted>")]
    blob = every_byte(tmp_path / "runs")
    for piece in (KEY, KEY[:17], KEY[-17:]):
        assert piece.encode() not in blob
        assert piece not in text


def test_a_key_pasted_as_the_variables_name_is_refused_unprinted(tmp_path, capsys, gateway):
    url, _ = gateway
    instructions = tmp_path / "in.jsonl"
    write_instructions(instructions, 2)
    pasted = "sk-proj-Abc123def456ghi789jkl"
    run_file = write_run_file(tmp_path / "run.toml", tmp_path / "runs", instructions, url, api_key_env=pasted)
    code, text = herd(capsys, "responses", "-c", str(run_file))
    assert code == 2
    assert text.strip().splitlines() == [
        "herd: error: teacher.api_key_env: the value looks like an API key itself (not shown), not the name of an "
        'environment variable; put the key in a variable (export OPENAI_API_KEY=...) and set teacher.api_key_env = '
        '"OPENAI_API_KEY"'
    ]
    assert not (tmp_path / "runs").exists()
    assert redact({"api_key_env": pasted}) == {"api_key_env": "<redacted>"}  # nor would a manifest hold it
    assert redact({"api_key_env": "OPENAI_API_KEY"}) == {"api_key_env": "OPENAI_API_KEY"}


@pytest.mark.parametrize(
    ("value", "is_key"),
    [("OPENAI_API_KEY", False), ("HERD_TEST_KEY", False), ("my_gateway_key_2", False),
     ("sk-abc", True), ("hf_AbCdEfGhIjKlMnOpQrStUvWx", True), ("abc def", True), ("a1b2c3d4e5f6g7h8i9j0k1l2m3", True)],
)
def test_what_looks_like_a_key(value, is_key):
    assert looks_like_key(value) is is_key


def test_redact_urls_drops_passwords_and_query_values_but_keeps_names():
    text = "see http://u:pw@host:8/v1?api-key=K1&v=&flag and https://h/v1?KEYONLY#frag, then text?x=1"
    assert redact_urls(text) == ("see http://<redacted>@host:8/v1?api-key=<redacted>&v=&<redacted> and "
                                 "https://h/v1?<redacted>#frag, then text?x=1")
