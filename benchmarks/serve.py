"""How much dynamic batching buys `herd serve`: 32 concurrent clients against the same server handling one request
at a time.

The server is the real `herd serve` command in its own process on 127.0.0.1, serving a GPT-2-shaped herd student
(6 layers, 256 dims, random weights, SmolLM2's tokenizer, the paper's wrapper; built as in benchmarks/generate.py). It
runs twice: with dynamic batching (`--max-batch 32`) and as the baseline with `--max-batch 1` (one request at a
time, the same code otherwise). Each time, 32 clients (asyncio + httpx) each send --per-client chat requests back
to back (greedy, max_tokens --max-tokens, user-oriented self-instruct instructions).

Printed per mode: requests/s, generated tokens/s, p50 and p95 latency, mean batch size (from /health); then the
throughput ratio (goal >= 2x) and how many answers are identical between the two modes (greedy: all).

    .venv/bin/python benchmarks/serve.py [--clients 32] [--per-client 4] [--max-tokens 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from generate import build_student, instructions  # benchmarks/generate.py, beside this file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, max_batch: int, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "herd", "serve", "--model", f"student={model}", "--port", str(port),
         "--max-batch", str(max_batch), "--max-queue", "1024", "-q"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"herd serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("herd serve did not come up")


async def load(base: str, texts: list[str], clients: int, per_client: int, max_tokens: int) -> dict[str, Any]:
    latencies: list[float] = []
    answers: dict[int, str] = {}
    tokens = 0

    async def client(c: int, http: httpx.AsyncClient) -> None:
        nonlocal tokens
        for k in range(per_client):
            i = (c * per_client + k) % len(texts)
            body = {"model": "student", "messages": [{"role": "user", "content": texts[i]}],
                    "max_tokens": max_tokens, "temperature": 0}
            started = time.perf_counter()
            r = await http.post(f"{base}/v1/chat/completions", json=body)
            latencies.append(time.perf_counter() - started)
            r.raise_for_status()
            data = r.json()
            answers[c * per_client + k] = data["choices"][0]["message"]["content"]
            tokens += data["usage"]["completion_tokens"]

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        await client(0, http)  # warm-up (first call pays for lazy initialisation), not counted
        latencies.clear()
        answers.clear()
        tokens = 0
        started = time.perf_counter()
        await asyncio.gather(*(client(c, http) for c in range(clients)))
        seconds = time.perf_counter() - started
        health = (await http.get(f"{base}/health")).json()["models"]["student"]
    ordered = sorted(latencies)
    return {"requests": len(latencies), "seconds": seconds, "rps": len(latencies) / seconds,
            "tok_s": tokens / seconds, "p50": statistics.median(ordered),
            "p95": ordered[max(0, int(round(0.95 * len(ordered))) - 1)], "mean_batch": health["mean_batch"],
            "answers": answers}


def run_mode(model: Path, max_batch: int, args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    proc, base = start_server(model, max_batch, args.threads)
    try:
        return asyncio.run(load(base, texts, args.clients, args.per_client, args.max_tokens))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server (both modes)")
    args = parser.parse_args()
    texts = instructions(252)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_student(Path(tmp) / "student")
        for label, max_batch in (("one at a time (--max-batch 1)", 1), ("batched (--max-batch 32)", 32)):
            r = run_mode(model, max_batch, args, texts)
            results[max_batch] = r
            print(f"{label}: {r['requests']} requests in {r['seconds']:.1f}s = {r['rps']:.2f} req/s, "
                  f"{r['tok_s']:.0f} tok/s, latency p50 {r['p50']:.2f}s p95 {r['p95']:.2f}s, "
                  f"mean batch {r['mean_batch']}", flush=True)
    single, batched = results[1], results[32]
    same = sum(batched["answers"][k] == single["answers"].get(k) for k in batched["answers"])
    ratio = batched["rps"] / single["rps"]
    print(f"throughput ratio batched / one-at-a-time: {ratio:.2f}x (goal >= 2x); identical answers "
          f"{same}/{len(batched['answers'])}; {args.clients} clients x {args.per_client} requests, "
          f"max_tokens {args.max_tokens}, {args.threads} torch thread(s), load {os.getloadavg()[0]:.1f}")
    print(json.dumps({"ratio": round(ratio, 2), "identical": same, "requests": len(batched["answers"]),
                      **{f"{k}_{m}": round(v, 3) for m, r in (("single", single), ("batched", batched))
                         for k, v in r.items() if k in ("rps", "tok_s", "p50", "p95", "mean_batch")}}))


if __name__ == "__main__":
    main()
