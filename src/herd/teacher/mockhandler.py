"""The mock teacher's HTTP handler: one connection's requests, in call order: routing, the request's checks,
admission (the server's concurrency and RPM limits), fault injection, then the reply (bodies from mockreplies.py).

Reads requests; writes replies and, through the server, the ledger (mockledger.py). The decisions (admit, which
fault an attempt draws) belong to `herd.teacher.mockserver.MockServer`, which this handler reaches as `self.mock`
(typed by the `Decider` protocol, so that this module need not import the server's).
"""

from __future__ import annotations

import hashlib
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from herd.teacher.mockledger import Ledger, MockOptions
from herd.teacher.mockreplies import completion


class Decider(Protocol):
    """What the handler asks of the server (herd.teacher.mockserver.MockServer): its options and ledger, and the
    decisions (admission, an attempt's fault, how long until the RPM window has room)."""

    options: MockOptions
    ledger: Ledger
    stopping: threading.Event

    def admit(self, fingerprint: str, prompt: str) -> tuple[str, int]: ...

    def release(self) -> None: ...

    def fault(self, fingerprint: str, number: int) -> str | None: ...

    def rpm_wait(self) -> float: ...


class MockHandler(BaseHTTPRequestHandler):
    """One connection's requests (BaseHTTPRequestHandler's do_GET/do_POST hooks), in call order: routing, the
    request's checks, admission (concurrency and RPM limits), fault injection, then the reply. The MockServer it
    serves is `self.mock`."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
    disable_nagle_algorithm = True  # headers and body go out as two writes; Nagle would hold the second ~40 ms
    timeout = 120

    @property
    def mock(self) -> Decider:
        return self.server.mock  # type: ignore[attr-defined,no-any-return]  # set by MockServer.__init__

    # ------------------------------------------------------------------------------------------------ routing
    def do_GET(self) -> None:
        route = self.path.rstrip("/")
        if route == "/v1/_ledger":
            self.send_json(200, self.mock.ledger.snapshot())
        elif route == "/v1/models":
            if self.authorized():
                self.reply_models()
        else:
            self.error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self.error(404, f"no route {self.path}")
            return
        if not self.authorized():
            return
        request = self.chat_request(raw)
        if request is not None:
            self.admit(*request)

    def authorized(self) -> bool:
        want = self.mock.options.api_key
        presented = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if want is None or presented == want:
            return True
        with self.mock.ledger.lock:
            self.mock.ledger.counts["unauthorized"] += 1
        # Like real providers, echo what was presented: a client must keep it out of its own logs.
        self.error(401, f"Incorrect API key provided: {presented or '(none)'}")
        return False

    # ------------------------------------------------------------------------------------- the request's checks
    def chat_request(self, raw: bytes) -> tuple[dict[str, Any], str] | None:
        """(body, last message) of a chat request the mock can answer; otherwise a 400 is sent and None returned."""
        try:
            body = json.loads(raw)
            prompt = str(body["messages"][-1].get("content", ""))
            body["model"]  # noqa: B018 - a request without a model is a 400, as on real endpoints
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            self.error(400, "expected a JSON body with model and messages")
            return None
        if body.get("stream"):
            self.error(400, "the mock does not stream")
            return None
        if "response_format" in body and not self.mock.options.response_format:
            self.error(400, "response_format is not supported by this server")
            return None
        return body, prompt

    # ------------------------------------------------------------------------------------------------ admission
    def admit(self, body: dict[str, Any], prompt: str) -> None:
        """A 429 when over the RPM or concurrency limit, else serve the attempt (the ledger counts it either way)."""
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        verdict, number = self.mock.admit(fingerprint, prompt)
        if verdict == "over_rpm":
            self.error(429, "rate limit reached (requests per minute)",
                       {"Retry-After": f"{max(self.mock.rpm_wait(), 0.001):.3f}"})
        elif verdict == "over_concurrency":
            self.error(429, "too many requests in flight", {"Retry-After": f"{self.mock.options.retry_after:g}"})
        else:
            self.serve(fingerprint, number, body)

    # ------------------------------------------------------------------------------------------ fault injection
    def serve(self, fingerprint: str, number: int, body: dict[str, Any]) -> None:
        """The attempt's fault, if it draws one; otherwise its answer (or a 400 where logprobs are refused)."""
        mock = self.mock
        kind = mock.fault(fingerprint, number)
        if kind == "hang":
            mock.release()  # a hung call holds no slot, so hangs do not turn into 429s as well
            mock.ledger.outcome(fingerprint, number, kind)
            self.hang()
            return
        if kind != "429":
            time.sleep(mock.options.latency_s)
        mock.release()  # before the reply goes out: the client may send its next call the moment it reads
        if kind is None and body.get("logprobs") and mock.options.logprobs == "refused":
            mock.ledger.outcome(fingerprint, number, "refused")
            self.error(400, "this model does not return logprobs")
            return
        mock.ledger.outcome(fingerprint, number, kind or "answer")
        if kind is None:
            self.send_json(200, completion(body, mock.options.logprobs == "on"))
        else:
            self.send_fault(kind, body)

    def send_fault(self, kind: str, body: dict[str, Any]) -> None:
        if kind == "429":
            self.error(429, "rate limited (injected)", {"Retry-After": f"{self.mock.options.retry_after:g}"})
        elif kind == "500":
            self.error(500, "internal server error (injected)")
        elif kind == "truncated":
            whole = json.dumps(completion(body)).encode()
            self.send_raw(200, whole[: len(whole) // 2], "application/json")
        elif kind == "empty":
            self.send_json(200, {**completion(body), "choices": []})
        elif kind == "no_content":
            reply = completion(body)
            reply["choices"][0]["message"] = {"role": "assistant"}
            self.send_json(200, reply)
        else:  # garbage
            self.send_raw(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")

    def hang(self) -> None:
        """Say nothing until the client gives up (closes the connection), the server stops, or hang_s passes."""
        self.close_connection = True
        deadline = time.monotonic() + self.mock.options.hang_s
        conn = self.connection
        while time.monotonic() < deadline and not self.mock.stopping.is_set():
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable:
                try:
                    if not conn.recv(1, socket.MSG_PEEK):
                        return
                except OSError:
                    return

    # -------------------------------------------------------------------------------------------------- replies
    def reply_models(self) -> None:
        data = [{"id": m, "object": "model", "owned_by": "herd-mock"} for m in self.mock.options.models]
        self.send_json(200, {"object": "list", "data": data})

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.send_json(status, {"error": {"message": message, "type": "mock_error", "code": status}}, headers)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_raw(status, json.dumps(obj).encode(), "application/json", headers)

    def send_raw(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    # ------------------------------------------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the hook's own signature
        return None

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (e.g. it timed out): nothing to tell it
