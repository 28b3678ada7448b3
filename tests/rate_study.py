"""Rating-study fixtures shared by the rating-app tests: an answers table, a study, a real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from herd.config import load_config
from herd.rate import study as rate_study
from herd.rate.store import Created

# Distinct names, so a test can search any page for them without matching ordinary words.
MODELS = ("zebra-student-7q", "okapi-student-3x", "teacher-kudu-9z")
SCRIPT_ANSWER = "<script>window.__pwned = 1; alert('x')</script> & <b>not bold</b>"


def write_answers(path: Path, instructions: int = 3, models: tuple[str, ...] = MODELS) -> list[dict[str, str]]:
    """An answers table in the brief's format; the first instruction's second model answers with a <script>."""
    rows = []
    for i in range(instructions):
        for j, model in enumerate(models):
            answer = SCRIPT_ANSWER if (i, j) == (0, 1) else f"Answer {j} to question {i}: plain text.\nSecond line."
            rows.append({"id": f"q{i}::{model}", "instruction_id": f"q{i}", "instruction": f"Question {i}: say why.",
                         "model": model, "answer": answer, "kind": "student"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def make_study(folder: Path, answers: Path, **keys: object) -> Created:
    """Create a study with `rate_app.KEY=value` settings (per_item, per_rater, raters, rater_names, port...)."""
    overrides = [f"rate_app.answers={str(answers)!r}", f"rate_app.study={str(folder)!r}"]
    overrides += [f"rate_app.{k}={json.dumps(v)}" for k, v in keys.items()]
    return rate_study.create(load_config(None, overrides))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(folder: Path, port: int | None = None) -> Iterator[str]:
    """`herd rate-app serve` in a subprocess on 127.0.0.1; yields its base URL and stops it afterwards."""
    port = port or free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "herd", "rate-app", "serve", "--study", str(folder), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"rate-app server did not start: {out}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)
