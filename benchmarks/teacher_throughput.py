"""How close herd's openai backend comes to what an endpoint can give, against herd's mock endpoint on 127.0.0.1.

The mock (a separate process, so it does not share the client's interpreter) answers each call after a fixed latency
L and serves at most C calls at once: its capacity is C / L calls per second. Printed:

1. herd (Engine + journal + OpenAITeacher, concurrency C) as a fraction of capacity, and as a multiple of a
   sequential one-call-at-a-time loop (how self-instruct and Alpaca call their teacher). Goal: >= 0.90 of capacity.
2. With an RPM limit R below capacity, enforced by the mock over a sliding window, and the same R given to herd:
   the achieved fraction of R and the number of 429s (the mock counts every one it sends). Goal: >= 0.95, 0 x 429.

    .venv/bin/python benchmarks/teacher_throughput.py [--latency 0.1] [--concurrency 16] [--calls 1600] [--rpm 4800]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from herd.config import TeacherConfig
from herd.teacher import Engine, Request, Result
from herd.teacher.journal import Journal
from herd.teacher.mockserver import fetch_ledger, spawn
from herd.teacher.openai_backend import OpenAITeacher


def herd_rate(url: str, calls: int, concurrency: int, rpm: int = 0, tag: str = "") -> tuple[float, int]:
    """Calls per second herd achieves over `calls` distinct prompts, and how many of them failed."""
    cfg = TeacherConfig(backend="openai", model="mock", base_urls=[url], concurrency=concurrency, rpm=rpm,
                        timeout_s=30.0, backoff_base_s=0.05, backoff_max_s=2.0)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(OpenAITeacher(cfg, api_key=None), Journal(Path(tmp) / "journal.sqlite"), stage="bench")
        requests = [Request.chat(f"{tag} benchmark question {i}: name a colour.", max_tokens=64) for i in range(calls)]
        failed = 0

        def count(result: Result) -> None:
            nonlocal failed
            failed += not result.ok

        started = time.perf_counter()
        engine.map(requests, count, progress=False)
        elapsed = time.perf_counter() - started
        engine.close()
    return calls / elapsed, failed


def sequential_rate(url: str, calls: int) -> float:
    """One call at a time, each waiting for the last: the baseline."""
    started = time.perf_counter()
    with httpx.Client(timeout=30) as client:
        for i in range(calls):
            body = {"model": "mock", "messages": [{"role": "user", "content": f"sequential question {i}"}],
                    "max_tokens": 64}
            client.post(f"{url}/chat/completions", json=body).raise_for_status()
    return calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.1, help="mock latency per call, seconds (L)")
    parser.add_argument("--concurrency", type=int, default=16, help="mock's maximum concurrency (C) = herd's")
    parser.add_argument("--calls", type=int, default=1600, help="calls in the capacity run")
    parser.add_argument("--sequential-calls", type=int, default=30, help="calls in the sequential baseline")
    parser.add_argument("--rpm", type=int, default=4800, help="RPM limit for the second part (below capacity)")
    parser.add_argument("--rpm-calls", type=int, default=960, help="calls in the RPM run")
    parser.add_argument("--rpm-window", type=float, default=5.0, help="window the mock checks the RPM limit over")
    args = parser.parse_args()
    capacity = args.concurrency / args.latency
    common = ["--latency", str(args.latency), "--concurrency", str(args.concurrency)]

    with spawn(*common) as url:
        rate, failed = herd_rate(url, args.calls, args.concurrency, tag="capacity")
        seq = sequential_rate(url, args.sequential_calls)
        stats = fetch_ledger(url)
    print(f"endpoint: latency {args.latency}s, concurrency {args.concurrency}, capacity {capacity:.1f} calls/s")
    print(f"herd:       {rate:.1f} calls/s = {rate / capacity:.3f} of capacity (goal >= 0.90), "
          f"{rate / seq:.1f}x the sequential loop ({seq:.2f} calls/s); failed {failed}, "
          f"429s {stats['over_concurrency'] + stats['over_rpm']}")

    limit = args.rpm / 60.0
    if limit >= capacity:
        print(f"rpm {args.rpm} is not below capacity ({capacity * 60:.0f}/min); skipping the RPM part")
        return
    with spawn(*common, "--rpm", str(args.rpm), "--rpm-window", str(args.rpm_window)) as url:
        rate, failed = herd_rate(url, args.rpm_calls, args.concurrency, rpm=args.rpm, tag="rpm")
        stats = fetch_ledger(url)
    too_many = stats["over_concurrency"] + stats["over_rpm"]
    print(f"rpm limit {args.rpm}/min ({limit:.1f}/s, checked over {args.rpm_window:g}s windows): "
          f"herd {rate:.1f} calls/s = {rate / limit:.3f} of the limit (goal >= 0.95); 429s {too_many} (goal 0); "
          f"failed {failed}")


if __name__ == "__main__":
    main()
