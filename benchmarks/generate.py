"""How much faster `herd generate` answers an instruction file than the seed README's way, with identical answers.

The baseline is what the LaMini README shows: a transformers `pipeline("text-generation")` called once per prompt,
with the instruction wrapper filled in by hand. herd's way is the `generate` stage (`herd generate`): the wrapper
comes from the checkpoint, prompts are sorted by length and run in left-padded batches under a token budget, rows
are written to data.jsonl. Both decode greedily with the same max_new_tokens on the same prompts; herd's time
includes loading the model and writing the files, the baseline's excludes building its pipeline.

Models:
1. a GPT-2-shaped student built from a config (6 layers, 256 dims, 8 heads; random weights) with SmolLM2's real
   49K-token BPE tokenizer, saved as a herd checkpoint carrying the paper's wrapper;
2. unless --smollm-prompts 0: the embedded SmolLM2-135M-Instruct teacher (a trained causal chat model; its chat
   template is the prompt format on both sides).

Both sides run with the same number of torch threads (--threads, default 1: on a shared machine more threads than
free cores make OpenMP spin and every figure meaningless).

Instructions: the 252 user-oriented self-instruct instructions in ../shared/data (only read; nothing is trained).
Printed per model: seconds, answers/s, generated tokens/s, the speed-up (goal >= 3x on CPU) and how many answers
are identical (goal: all).

    .venv/bin/python benchmarks/generate.py [--prompts 64] [--max-new-tokens 32] [--smollm-prompts 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED = Path(os.environ.get("HERD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def instructions(n: int) -> list[str]:
    rows = [json.loads(line) for line in (SHARED / "self_instruct_user_oriented_instructions.jsonl").open()]
    out = []
    for row in rows[:n]:
        first = (row.get("instances") or [{}])[0].get("input") or ""
        out.append(f"{row['instruction']}\n{first}".strip())  # inputs inlined, as herd's stages do
    return out


def build_student(folder: Path) -> Path:
    """GPT-2 with 6 layers of 256 dims and SmolLM2's tokenizer, saved as a herd checkpoint with the paper's wrapper."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from herd.students import default_wrapper, save_student, source_args

    src, extra = source_args("embedded")
    tok = AutoTokenizer.from_pretrained(src, **extra)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=256, n_layer=6, n_head=8,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    meta = {"wrapper": default_wrapper(), "base_model": "gpt2-6x256-random"}
    return save_student(GPT2LMHeadModel(cfg).eval(), tok, "causal", folder, meta)


def baseline(model_path: str, texts: list[str], max_new_tokens: int) -> tuple[float, float, list[str], int]:
    """The README's way: one pipeline() call per prompt, the prompt format applied by the caller.

    Returns (seconds to load, seconds to answer, answers, generated tokens)."""
    from transformers import pipeline

    from herd.students import format_prompt, load_student

    started = time.perf_counter()
    student = load_student(model_path, device="cpu")
    pipe = pipeline("text-generation", model=student.model, tokenizer=student.tokenizer, device="cpu")
    load_s = time.perf_counter() - started
    prompts = [format_prompt(student, t) for t in texts]  # the wrapper (or chat template), filled in by hand
    started = time.perf_counter()
    answers = []
    for prompt in prompts:
        out = pipe(prompt, max_new_tokens=max_new_tokens, do_sample=False, return_full_text=False,
                   pad_token_id=student.tokenizer.eos_token_id)
        answers.append(out[0]["generated_text"].strip())
    seconds = time.perf_counter() - started
    tokens = sum(len(student.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    return load_s, seconds, answers, tokens


def herd_generate(
    model_path: str, texts: list[str], max_new_tokens: int, work: Path
) -> tuple[float, float, list[str], int]:
    """`herd generate`'s stage, in process: load, batch, write data.jsonl and manifest.json.

    Returns (seconds in all, seconds after loading, answers, generated tokens); the second figure is the stage's own
    timing in manifest.json, which starts once the model is loaded."""
    from herd import generate
    from herd.config import load_config

    source = work / "instructions.jsonl"
    source.write_text("".join(json.dumps({"id": f"q{i}", "instruction": t}) + "\n" for i, t in enumerate(texts)))
    out = work / "herd-out"
    cfg = load_config(None, [f"generate.model={json.dumps(model_path)}", f"generate.input={json.dumps(str(source))}",
                             f"generate.out={json.dumps(str(out))}", f"generate.max_new_tokens={max_new_tokens}",
                             "run.quiet=true"])
    started = time.perf_counter()
    folder = generate.run(cfg)
    seconds = time.perf_counter() - started
    rows = {r["instruction_id"]: r for r in map(json.loads, (folder / "data.jsonl").read_text().splitlines())}
    answers = [rows[f"q{i}"]["answer"] for i in range(len(texts))]
    tokens = sum(r["usage"]["completion_tokens"] for r in rows.values())
    after_load = json.loads((folder / "manifest.json").read_text())["timings"]["seconds"]
    return seconds, after_load, answers, tokens


def compare(label: str, model_path: str, texts: list[str], max_new_tokens: int, work: Path) -> dict[str, Any]:
    load_s, base_s, base_answers, base_tokens = baseline(model_path, texts, max_new_tokens)
    total_s, herd_s, herd_answers, herd_tokens = herd_generate(model_path, texts, max_new_tokens, work)
    same = sum(a == b for a, b in zip(base_answers, herd_answers, strict=True))
    n = len(texts)
    result = {"model": label, "prompts": n, "max_new_tokens": max_new_tokens, "baseline_s": round(base_s, 2),
              "herd_s": round(herd_s, 2), "speedup": round(base_s / herd_s, 2),
              "speedup_with_loading": round((load_s + base_s) / total_s, 2),
              "baseline_tok_s": round(base_tokens / base_s, 1), "herd_tok_s": round(herd_tokens / herd_s, 1),
              "identical": f"{same}/{n}"}
    print(f"{label}: pipeline() per prompt {base_s:.1f}s ({n / base_s:.2f} answers/s, {base_tokens / base_s:.0f} "
          f"tok/s) | herd generate {herd_s:.1f}s ({n / herd_s:.2f} answers/s, {herd_tokens / herd_s:.0f} tok/s) | "
          f"speed-up {base_s / herd_s:.2f}x (goal >= 3x; {result['speedup_with_loading']}x counting model loading "
          f"on both sides) | identical answers {same}/{n}", flush=True)
    for i, (a, b) in enumerate(zip(base_answers, herd_answers, strict=True)):
        if a != b:
            print(f"  differs at {i}: pipeline={a[:80]!r} herd={b[:80]!r}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--smollm-prompts", type=int, default=16, help="0 skips the SmolLM2 run")
    parser.add_argument("--smollm-max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides (1 keeps a shared machine from oversubscribing)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}, cpu count: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        student = build_student(work / "student")
        (work / "a").mkdir()
        results.append(compare("gpt2-6x256 (random, herd checkpoint with wrapper)", str(student),
                               instructions(args.prompts), args.max_new_tokens, work / "a"))
        if args.smollm_prompts:
            (work / "b").mkdir()
            results.append(compare("SmolLM2-135M-Instruct (embedded, chat template)", "embedded",
                                   instructions(args.smollm_prompts), args.smollm_max_new_tokens, work / "b"))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
