"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks, with fault injection and a ledger.

`GET /v1/models`, `POST /v1/chat/completions` (answers are herd.teacher.fake's, so deterministic) and
`GET /v1/_ledger` (the ledger as JSON). Each answer takes a fixed latency; at most `concurrency` calls are served at
once (one more gets a 429 with Retry-After); an optional RPM limit is enforced over a sliding window (`rpm_window_s`;
providers quantize per-minute limits to shorter windows); and faults are injected at configurable rates, drawn from
a hash of (seed, request, attempt number) so a run is reproducible whatever the order of arrival:

    429 (with Retry-After)  500  hang (longer than any client timeout)  truncated (JSON cut in half)
    empty (no choices)  no_content (a message without content)  garbage (an HTML page with status 200)

Asked for `logprobs` it returns them (`logprobs = "on"`), leaves them out like an endpoint without them
("ignored"), or answers 400 ("refused").

The ledger counts, per request fingerprint (a hash of the request body), its attempts, its complete answers, and
`repeats`: attempts that arrived after it had already been answered, which a client with a working cache never makes.

Rooms: this module decides (admission, which fault an attempt draws) and runs the server; mockhandler.py speaks HTTP
(routing, checks, replies); mockledger.py keeps the fault kinds, the options and the ledger; mockreplies.py
writes reply bodies.

In a thread:      `mock = MockServer(latency_s=0.01); with mock as url: ...; mock.ledger.snapshot()`
As a process:     `python -m herd.teacher.mockserver --port 0 --latency 0.05 --concurrency 8 --faults 429=0.1,500=0.05`
                  prints `herd mock teacher: http://127.0.0.1:PORT/v1` once it listens;
                  `with spawn("--latency", "0.05") as url: ...; fetch_ledger(url)` does that from Python.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any

from herd.teacher.mockhandler import MockHandler
from herd.teacher.mockledger import FAULT_KINDS, Ledger, MockOptions, parse_faults


class MockServer:
    """The server in a background thread: `with MockServer(...) as url:` gives its base URL (…/v1)."""

    def __init__(self, options: MockOptions | None = None, port: int = 0, **kwargs: Any) -> None:
        self.options = options or MockOptions(**kwargs)
        self.ledger = Ledger()
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), MockHandler, bind_and_activate=False)
        self.httpd.mock = self  # type: ignore[attr-defined]  # what each request's handler serves
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 256  # the default 5 drops connections when a client opens many at once
        try:
            self.httpd.server_bind()
            self.httpd.server_activate()
        except OSError:
            self.httpd.server_close()
            raise
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> str:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:  # shutdown() waits for serve_forever, so only when it runs
            self.httpd.shutdown()
            self._thread = None
        self.httpd.server_close()

    # --------------------------------------------------------------------------------------------- decisions
    def admit(self, fingerprint: str, prompt: str) -> tuple[str, int]:
        """('ok' | 'over_rpm' | 'over_concurrency', attempt number), taking a serving slot when 'ok'."""
        opts, ledger = self.options, self.ledger
        now = time.monotonic()
        with ledger.lock:
            number = ledger.attempt(fingerprint, prompt)
            if opts.rpm > 0:
                window = ledger.arrivals
                while window and window[0] <= now - opts.rpm_window_s:
                    window.popleft()
                if len(window) + 1 > opts.rpm * opts.rpm_window_s / 60.0 + 1e-9:
                    ledger.record(fingerprint, number, "over_rpm")
                    return "over_rpm", number
            if ledger.in_flight >= opts.concurrency:
                ledger.record(fingerprint, number, "over_concurrency")
                return "over_concurrency", number
            if opts.rpm > 0:
                ledger.arrivals.append(now)
            ledger.in_flight += 1
            ledger.max_in_flight = max(ledger.max_in_flight, ledger.in_flight)
        return "ok", number

    def release(self) -> None:
        with self.ledger.lock:
            self.ledger.in_flight -= 1

    def fault(self, fingerprint: str, number: int) -> str | None:
        """The fault this attempt gets, if any: the same for the same (seed, request, attempt) every time."""
        if not self.options.faults:
            return None
        digest = hashlib.sha256(f"{self.options.seed}|{fingerprint}|{number}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        for kind in FAULT_KINDS:
            u -= self.options.faults.get(kind, 0.0)
            if u < 0:
                return kind
        return None

    def rpm_wait(self) -> float:
        with self.ledger.lock:
            oldest = self.ledger.arrivals[0] if self.ledger.arrivals else time.monotonic()
        return max(0.0, oldest + self.options.rpm_window_s - time.monotonic())


@contextmanager
def spawn(*args: str) -> Iterator[str]:
    """The server as a subprocess on a free port (`args` as on its command line); yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "herd.teacher.mockserver", "--port", "0", *args],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("herd mock teacher: "):
            raise RuntimeError(f"the mock server did not start: {line!r}")
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def fetch_ledger(url: str) -> dict[str, Any]:
    """The ledger of a server (e.g. a spawned one) from its `/_ledger` route."""
    import httpx

    return dict(httpx.get(f"{url}/_ledger", timeout=30).json())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m herd.teacher.mockserver", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free one)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=16, help="calls served at once; more get a 429")
    parser.add_argument("--rpm", type=int, default=0, help="requests per minute enforced (0 = none)")
    parser.add_argument("--rpm-window", type=float, default=60.0, help="sliding window the RPM limit is checked over")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on injected 429s")
    parser.add_argument("--faults", default="", help=f"kind=rate,... kinds: {', '.join(FAULT_KINDS)}")
    parser.add_argument("--seed", type=int, default=0, help="changes which attempts get faults")
    parser.add_argument("--api-key-env", default="", help="require the key held in this environment variable")
    parser.add_argument("--hang-s", type=float, default=600.0, help="longest a hung call stays silent")
    parser.add_argument("--no-response-format", action="store_true", help="answer response_format with a 400")
    parser.add_argument("--logprobs", choices=("on", "ignored", "refused"), default="on",
                        help="answer logprobs requests with log-probs, without them, or with a 400")
    parser.add_argument("--ledger-file", default="", help="write the ledger here as JSON on exit")
    args = parser.parse_args(argv)
    options = MockOptions(
        latency_s=args.latency, concurrency=args.concurrency, rpm=args.rpm, rpm_window_s=args.rpm_window,
        retry_after=args.retry_after, faults=parse_faults(args.faults), seed=args.seed, hang_s=args.hang_s,
        api_key=os.environ[args.api_key_env] if args.api_key_env else None, logprobs=args.logprobs,
        response_format=not args.no_response_format,
    )
    # Sleeping handler threads wake to a GIL another thread may hold for the whole default 5 ms switch interval;
    # a shorter one keeps the served latency close to --latency (this process serves and does nothing else).
    sys.setswitchinterval(0.0005)
    server = MockServer(options, port=args.port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.httpd.shutdown, daemon=True).start())
    print(f"herd mock teacher: {server.url}", flush=True)
    try:
        server.httpd.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.httpd.server_close()
        if args.ledger_file:
            with open(args.ledger_file, "w", encoding="utf-8") as fh:
                json.dump(server.ledger.snapshot(), fh)


if __name__ == "__main__":
    main()
