"""What continuous batching buys `herd serve`: 32 concurrent clients with mixed prompt and answer lengths against the
same server handling one request at a time.

The server is the real `herd serve` command in its own process on 127.0.0.1, serving a GPT-2-shaped herd student
(6 layers, 256 dims, random weights, SmolLM2's tokenizer, the paper's wrapper; built as in benchmarks/generate.py). Two
servers run side by side: one with continuous batching (`--max-batch 32`: a request joins the running batch at the
next decoding step and leaves when done) and the baseline with `--max-batch 1` (one request at a time, the same code
otherwise); `--request-level` adds a third with the older request-level batcher (`--set serve.continuous=false`).
The load alternates between them in --rounds rounds (A then B, then B then A), so a change in how busy the machine
is falls on both; each time 32 clients (asyncio + httpx) each send their share of --per-client streaming chat
requests back to back (greedy; prompts of one to three user-oriented self-instruct instructions; max_tokens cycling
through --lengths). Each request is sent to every mode, so the answers can be compared.

Printed per mode: requests/s, generated tokens/s, p50 and p95 latency, p50 and p95 time to first token, mean rows
per forward pass (from /health); then the throughput ratio (goal >= 5x) and how many answers are identical between
the modes (greedy: all). The last line is one JSON object (ratio, p95_s, ttft_p50_s, identical, ...).

    .venv/bin/python benchmarks/serve.py [--clients 32] [--per-client 4] [--lengths 8,16,32,64,128] [--threads N]

--threads 0 (the default) leaves the servers' torch threads as `herd serve` sets them (torch's default: the
machine's cores); --threads 1 gives each server one thread.
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


def start_server(model: Path, max_batch: int, threads: int, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ)
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.Popen(
        [sys.executable, "-m", "herd", "serve", "--model", f"student={model}", "--port", str(port),
         "--max-batch", str(max_batch), "--max-queue", "1024", "-q", *extra],
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


def workload(texts: list[str], count: int, lengths: list[int]) -> list[tuple[str, int]]:
    """(prompt, max_tokens) per request: one to three instructions, answer lengths cycling through `lengths`."""
    out = []
    for i in range(count):
        parts = 1 + (i * 7) % 3
        prompt = "\n\n".join(texts[(i * 5 + k) % len(texts)] for k in range(parts))
        out.append((prompt, lengths[(i * 3) % len(lengths)]))
    return out


async def ask(http: httpx.AsyncClient, base: str, prompt: str, max_tokens: int) -> tuple[str, int, float, float]:
    """One streaming chat request: (answer, completion tokens, latency s, time to first token s)."""
    body = {"model": "student", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first, text, tokens = None, [], 0
    async with http.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk["choices"]:
                piece = choice["delta"].get("content") or ""
                if piece and first is None:
                    first = time.perf_counter() - started
                text.append(piece)
    latency = time.perf_counter() - started
    return "".join(text), tokens, latency, latency if first is None else first


async def load(bases: dict[str, str], jobs: list[tuple[str, int]], args: argparse.Namespace) -> dict[str, Any]:
    """Every mode's server is up at once; the load alternates between them in rounds (A B, then B A, ...), so a
    change in how busy the machine is falls on every mode alike. Idle servers use no CPU."""
    keys = list(bases)
    out = {k: {"latencies": [], "ttfts": [], "answers": {}, "tokens": 0, "seconds": 0.0} for k in keys}
    per_round = max(1, args.per_client // args.rounds)
    limits = httpx.Limits(max_connections=args.clients * len(keys) + 4)
    async with httpx.AsyncClient(timeout=1200, limits=limits) as http:
        for key in keys:  # warm-up (the first call pays for lazy initialisation), not counted
            await ask(http, bases[key], jobs[0][0], 4)
        for r in range(args.rounds):
            for key in keys if r % 2 == 0 else keys[::-1]:
                acc = out[key]

                async def client(c: int, key: str = key, acc: dict[str, Any] = acc, r: int = r) -> None:
                    for k in range(r * per_round, (r + 1) * per_round):
                        i = c * args.per_client + k
                        answer, used, latency, ttft = await ask(http, bases[key], *jobs[i])
                        acc["answers"][i] = answer
                        acc["latencies"].append(latency)
                        acc["ttfts"].append(ttft)
                        acc["tokens"] += used

                started = time.perf_counter()
                await asyncio.gather(*(client(c) for c in range(args.clients)))
                acc["seconds"] += time.perf_counter() - started
        for key in keys:
            out[key]["mean_batch"] = (await http.get(f"{bases[key]}/health")).json()["models"]["student"]["mean_batch"]
    results = {}
    for key, acc in out.items():
        lat, ttft, seconds = acc["latencies"], acc["ttfts"], acc["seconds"]
        results[key] = {"requests": len(lat), "seconds": seconds, "rps": len(lat) / seconds,
                        "tok_s": acc["tokens"] / seconds, "p50": statistics.median(lat), "p95": _p95(lat),
                        "ttft_p50": statistics.median(ttft), "ttft_p95": _p95(ttft),
                        "mean_batch": acc["mean_batch"], "answers": acc["answers"]}
    return results


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def run_modes(model: Path, modes: list[tuple[str, str, int, list[str]]], args: argparse.Namespace,
              jobs: list[tuple[str, int]]) -> dict[str, Any]:
    procs, bases = [], {}
    try:
        for _, key, max_batch, extra in modes:
            proc, base = start_server(model, max_batch, args.threads, extra)
            procs.append(proc)
            bases[key] = base
        return asyncio.run(load(bases, jobs, args))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument("--lengths", default="8,16,32,64,128", help="max_tokens values the requests cycle through")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in each server (every mode); 0: herd serve's own default")
    parser.add_argument("--rounds", type=int, default=2, help="load alternates between the modes in this many rounds")
    parser.add_argument("--request-level", action="store_true", help="also run the request-level batcher")
    parser.add_argument("--json", action="store_true", help="(the last line is always the JSON summary)")
    args = parser.parse_args()
    jobs = workload(instructions(252), args.clients * args.per_client, [int(x) for x in args.lengths.split(",")])
    modes = [("one at a time (--max-batch 1)", "single", 1, []),
             ("continuous batching (--max-batch 32)", "continuous", 32, [])]
    if args.request_level:
        modes.append(("request-level batches (serve.continuous=false)", "request", 32,
                      ["--set", "serve.continuous=false"]))
    with tempfile.TemporaryDirectory() as tmp:
        model = build_student(Path(tmp) / "student")
        results = run_modes(model, modes, args, jobs)
        for label, key, _, _ in modes:
            r = results[key]
            print(f"{label}: {r['requests']} requests in {r['seconds']:.1f}s = {r['rps']:.2f} req/s, "
                  f"{r['tok_s']:.0f} tok/s, latency p50 {r['p50']:.2f}s p95 {r['p95']:.2f}s, time to first token "
                  f"p50 {r['ttft_p50']:.2f}s p95 {r['ttft_p95']:.2f}s, mean rows per forward {r['mean_batch']}",
                  flush=True)
    single, batched = results["single"], results["continuous"]
    same = sum(batched["answers"][k] == single["answers"].get(k) for k in batched["answers"])
    ratio = batched["rps"] / single["rps"]
    summary: dict[str, Any] = {
        "ratio": round(ratio, 2), "p50_s": round(batched["p50"], 3), "p95_s": round(batched["p95"], 3),
        "ttft_p50_s": round(batched["ttft_p50"], 3), "ttft_p95_s": round(batched["ttft_p95"], 3),
        "identical": same, "requests": len(batched["answers"]), "threads": args.threads or "default",
        **{f"{k}_{m}": round(v, 3) for m, r in results.items() for k, v in r.items()
           if k in ("rps", "tok_s", "p50", "p95", "ttft_p50", "mean_batch")}}
    if "request" in results:
        summary["ratio_request_level"] = round(results["request"]["rps"] / single["rps"], 2)
        summary["identical_request_level"] = sum(results["request"]["answers"][k] == single["answers"].get(k)
                                                 for k in single["answers"])
    print(f"throughput ratio continuous / one-at-a-time: {ratio:.2f}x (goal >= 5x); identical answers "
          f"{same}/{len(batched['answers'])}; {args.clients} clients x {args.per_client} requests, "
          f"max_tokens {args.lengths}, torch threads {args.threads or 'default'}, load {os.getloadavg()[0]:.1f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
