"""The local teacher backend's batching against a batch-1 loop, on the embedded teacher (SmolLM2-135M-Instruct).

Both sides are the same `LocalTeacher` on the same model and the same short instructions, greedy; only
`teacher.batch_size` differs (1 for the baseline). Printed: completion tokens per second of each, the ratio
(goal >= 3x) and how many answers are identical to the baseline's (greedy batched must equal one-at-a-time; a
rare near-tie in fp32 sums can flip a token).

    .venv/bin/python benchmarks/teacher_local.py [--prompts 16] [--new-tokens 48] [--batch-sizes 8,16] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from herd.config import TeacherConfig
from herd.teacher.base import Request, Result
from herd.teacher.local import LocalTeacher

INSTRUCTIONS = [
    "Name three rivers in Africa.", "Write a haiku about autumn.", "Explain what a prime number is.",
    "Give two tips for a job interview.", "What is photosynthesis?", "Suggest a name for a black cat.",
    "Describe the taste of a lemon.", "List four colours of the rainbow.", "Why is the sea salty?",
    "Translate 'good morning' into French.", "Write one sentence about the moon.", "What does a baker do?",
    "Summarize the plot of Cinderella in two sentences.", "How many legs does a spider have?",
    "Give an example of a renewable energy source.", "Write a short thank-you note to a teacher.",
    "What is the boiling point of water?", "Name a famous painting.", "Explain gravity to a child.",
    "Suggest a healthy breakfast.", "What is a noun?", "Write a slogan for a bakery.",
    "Why do leaves change colour?", "Compare cats and dogs in one sentence.",
]


def measure(cfg: TeacherConfig, batch_size: int, requests: list[Request]) -> tuple[float, list[str], int]:
    """(completion tokens per second, answers in request order, completion tokens) for one batch size."""
    teacher = LocalTeacher(replace(cfg, batch_size=batch_size))
    teacher.load()  # loaded once per process and shared; loading is not what is measured
    got: dict[str, Result] = {}
    started = time.perf_counter()
    teacher.run(requests, lambda r: got.__setitem__(r.request.tag, r))
    elapsed = time.perf_counter() - started
    results = [got[r.tag] for r in requests]
    tokens = sum(r.completion_tokens for r in results)
    return tokens / elapsed, [r.text for r in results], tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batch-sizes", default="8,16", help="Batched runs to compare with batch 1.")
    parser.add_argument("--model", default="embedded", help="teacher.model (default: the embedded teacher).")
    parser.add_argument("--device", default="cpu", help="teacher.device: cpu (default), cuda, auto.")
    args = parser.parse_args()
    import torch

    cfg = TeacherConfig(model=args.model, device=args.device)

    requests = [Request.chat(INSTRUCTIONS[i % len(INSTRUCTIONS)], max_tokens=args.new_tokens, temperature=0.0,
                             tag=str(i)) for i in range(args.prompts)]
    measure(cfg, 1, requests[:1])  # warm-up: first-call allocations and kernel choices
    print(f"teacher {args.model} on {args.device}, {args.prompts} instructions, {args.new_tokens} new tokens, "
          f"greedy, {torch.get_num_threads()} torch threads")
    base_rate, base_texts, base_tokens = measure(cfg, 1, requests)
    print(f"batch 1 loop : {base_rate:7.1f} tok/s ({base_tokens} tokens)")
    for size in (int(s) for s in args.batch_sizes.split(",")):
        rate, texts, tokens = measure(cfg, size, requests)
        same = sum(a == b for a, b in zip(texts, base_texts, strict=True))
        print(f"batch {size:<2}     : {rate:7.1f} tok/s ({tokens} tokens)  {rate / base_rate:4.1f}x the batch-1 loop"
              f"  (goal >= 3x); identical answers {same}/{len(texts)}")


if __name__ == "__main__":
    main()
