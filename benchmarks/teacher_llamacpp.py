"""llama.cpp (the `xllamacpp` wheel) against herd's transformers backend on the embedded teacher's own GGUF file.

Both answer the same short instructions with the same max_tokens, greedy. The transformers side is `LocalTeacher`
(the dequantized fp32 copy, batches of `--batch`); the llama.cpp side is an in-process `xllamacpp.Server` on the
Q4_1 GGUF with `--batch` parallel slots (continuous batching), fed by as many threads. Printed: completion tokens
per second of each, the ratio, and a few answers side by side (the kinds of answers must match before llama.cpp
could replace the default). Loading is not timed. llama.cpp threads spin while they wait, so on a loaded machine
`--threads 1` is much faster than 2 (measured: 0.24 tok/s with 2 threads, 29 tok/s with 1, at load 16).

    .venv/bin/python benchmarks/teacher_llamacpp.py [--prompts 16] [--new-tokens 48] [--batch 16] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from herd.config import TeacherConfig
from herd.teacher.base import Request, Result
from herd.teacher.local import LocalTeacher
from teacher_local import INSTRUCTIONS  # this folder is on sys.path when run as a script


def transformers_side(prompts: list[str], new_tokens: int, batch: int) -> tuple[float, list[str], int]:
    teacher = LocalTeacher(TeacherConfig(model="embedded", device="cpu", batch_size=batch))
    teacher.load()
    requests = [Request.chat(p, max_tokens=new_tokens, temperature=0.0, tag=str(i)) for i, p in enumerate(prompts)]
    got: dict[str, Result] = {}
    started = time.perf_counter()
    teacher.run(requests, lambda r: got.__setitem__(r.request.tag, r))
    elapsed = time.perf_counter() - started
    teacher.close()
    tokens = sum(r.completion_tokens for r in got.values())
    return tokens / elapsed, [got[str(i)].text for i in range(len(prompts))], tokens


def llamacpp_side(prompts: list[str], new_tokens: int, batch: int, threads: int) -> tuple[float, list[str], int]:
    import xllamacpp

    from herd.teacher.embedded import embedded_gguf

    params = xllamacpp.CommonParams()
    params.model.path = str(embedded_gguf())
    params.n_parallel = batch
    params.n_ctx = batch * 1024
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)

    def one(prompt: str) -> dict[str, Any]:
        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": new_tokens, "temperature": 0.0}
        return dict(server.handle_chat_completions(body))

    one(prompts[0])  # warm-up
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=batch) as pool:
        replies = list(pool.map(one, prompts))
    elapsed = time.perf_counter() - started
    tokens = sum(int(r["usage"]["completion_tokens"]) for r in replies)
    texts = [str(r["choices"][0]["message"]["content"]) for r in replies]
    return tokens / elapsed, texts, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16, help="transformers batch size = llama.cpp parallel slots")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (torch keeps its own setting)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = parser.parse_args()
    import torch

    prompts = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(args.prompts)]
    tf_rate, tf_texts, tf_tokens = transformers_side(prompts, args.new_tokens, args.batch)
    ll_rate, ll_texts, ll_tokens = llamacpp_side(prompts, args.new_tokens, args.batch, args.threads)
    load = os.getloadavg()[0]
    print(f"embedded teacher, {args.prompts} instructions, {args.new_tokens} new tokens, greedy, batch {args.batch}; "
          f"torch threads {torch.get_num_threads()}, llama.cpp threads {args.threads}; load {load:.1f}")
    print(f"transformers (fp32)  : {tf_rate:7.1f} tok/s ({tf_tokens} tokens)")
    print(f"llama.cpp (Q4_1 GGUF): {ll_rate:7.1f} tok/s ({ll_tokens} tokens)  {ll_rate / tf_rate:4.2f}x transformers")
    for a, b, p in list(zip(tf_texts, ll_texts, prompts, strict=True))[:3]:
        print(f"  {p}\n    transformers: {a[:90]!r}\n    llama.cpp   : {b[:90]!r}")
    if args.json:
        print(json.dumps({"transformers_tok_s": round(tf_rate, 1), "llamacpp_tok_s": round(ll_rate, 1),
                          "ratio": round(ll_rate / tf_rate, 2), "batch": args.batch, "threads": args.threads,
                          "load": round(load, 1)}))


if __name__ == "__main__":
    main()
