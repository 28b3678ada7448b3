"""Training throughput of `herd train` against the HF Trainer (padded to max length; group_by_length with dynamic
padding) and TRL's SFTTrainer with packing, for a decoder and an encoder-decoder, plus herd's host overhead per
micro-step on a micro model.

Every side trains the same model (GPT-2 / Flan-T5-shaped, from a config, seeded) on the same synthetic pairs that
follow LaMini's length profile (Table 1: each source's share and average lengths, drawn log-normally; a word is a
token of the tests' word-level tokenizer), for the same number of optimizer steps, each step about
--micro-batch x --accumulation examples. Measured on the batches the model actually received:

- non-padding tokens per second (encoder-decoders: input + label tokens) and its ratio herd / side;
- padding fraction (padding positions / all positions processed) and distinct batch shapes;
- host overhead per micro-step: a 1-layer, 64-dim decoder on short pairs, where compute is negligible, herd vs
  the plain Trainer with the same positions per micro-batch (ratio; goal <= 1.3x);
- on a GPU, MFU = 6 x parameters x non-padding tokens/s / the card's peak dense bf16 FLOP/s (--peak-tflops, or
  known from the card's name).

CPU goals: >= 2x padded, >= 1.2x grouped, >= 1.0x TRL, overhead <= 1.3x, <= 16 shapes.

    .venv/bin/python benchmarks/train_throughput.py [--quick] [--json] [--family causal|seq2seq|both]
        [--layers 4 --dim 256 --vocab 0 --steps 6 --micro-batch 8 --accumulation 8 --rows 1500] [--profile DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/tiny.py: the word-level tokenizer the tests use
sys.path.insert(0, str(REPO / "benchmarks"))

from train_sides import CAUSAL, SEQ2SEQ, make_model, run_herd, run_trainer, run_trl, write_pairs  # noqa: E402

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes: under 5 minutes on 2 CPU cores")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object with the figures")
    parser.add_argument("--family", choices=["causal", "seq2seq", "both"], default="both")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps for each side")
    parser.add_argument("--micro-batch", type=int, default=8, help="examples per micro-batch of the HF sides")
    parser.add_argument("--accumulation", type=int, default=8)
    parser.add_argument("--batch-tokens", type=int, default=0, help="herd's train.batch_tokens (0 = its default)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=0, help="embedding rows (0 = the tokenizer's ~300)")
    parser.add_argument("--t5-vocab", type=int, default=-1, help="the encoder-decoder's (-1 = --vocab)")
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds of every side, order rotated; best counts (default 2; --quick: 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU); the same for every side")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the GPU's peak dense bf16 TFLOP/s")
    parser.add_argument("--profile", type=Path, default=None, help="write torch profiler top-10 tables here")
    parser.add_argument("--herd-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra herd config override for herd's side")
    opts = parser.parse_args()
    if opts.quick:  # small layers, but the real output layers: GPT-2's 50,257 and T5's 32,128 vocabularies
        opts.layers, opts.dim, opts.steps, opts.rows, opts.accumulation = 2, 128, 4, 600, 4
        opts.vocab = opts.vocab or 50257
        opts.t5_vocab = opts.t5_vocab if opts.t5_vocab >= 0 else 32128
    if opts.repeats is None:
        opts.repeats = 1 if opts.quick else 2
    return opts


def side_row(name: str, m: Any) -> dict[str, Any]:
    rate = m.real / m.seconds if m.seconds else 0.0
    return {"side": name, "tokens_per_s": rate, "real_tokens": m.real, "positions": m.positions,
            "padding": 1 - m.real / m.positions if m.positions else 0.0, "shapes": len(m.shapes),
            "seconds": m.seconds, "micro_steps": m.micro_steps, "params": m.params}


def family_sides(family: str, work: Path, opts: argparse.Namespace, words: list[str]) -> list[dict[str, Any]]:
    """Every side of the family, --repeats rounds with the order rotated each round (so no side always runs first,
    on a cold process, or always last, when the machine's load has changed); each side's fastest round counts."""
    vocab = opts.t5_vocab if family == SEQ2SEQ and opts.t5_vocab >= 0 else opts.vocab
    shape = {"layers": opts.layers, "dim": opts.dim, "vocab": vocab, "max_length": opts.max_length}
    model = make_model(work / f"{family}-bench", family, shape)
    data = work / "pairs.jsonl"
    if not data.exists():
        write_pairs(data, opts.rows, seed=0, words=words)
    profile = (lambda side: opts.profile / f"profile_{family}_{side}.txt") if opts.profile else (lambda side: None)

    def herd(n: int) -> dict[str, Any]:
        measured, meta = run_herd(model, data, work / f"herd-{family}-{n}", opts, family, opts.herd_set,
                                  profile("herd"))
        return side_row("herd", measured) | {"batching": meta.get("batching", {}), "precision": meta.get("precision"),
                                             "gradient_checkpointing": meta.get("gradient_checkpointing")}

    sides: dict[str, Any] = {
        "herd": herd,
        "padded": lambda n: side_row("padded", run_trainer(model, data, work, opts, family, "padded",
                                                           profile("padded"))),
        "grouped": lambda n: side_row("grouped", run_trainer(model, data, work, opts, family, "grouped"))}
    if family == CAUSAL:
        sides["trl"] = lambda n: side_row("trl", run_trl(model, data, work, opts))
    names = list(sides)
    best: dict[str, dict[str, Any]] = {}
    for n in range(max(1, opts.repeats)):
        for name in names[n % len(names):] + names[:n % len(names)]:
            row = sides[name](n)
            if name not in best or row["tokens_per_s"] > best[name]["tokens_per_s"]:
                best[name] = row
    return [best[name] for name in names]


def overhead(work: Path, opts: argparse.Namespace, words: list[str]) -> dict[str, float]:
    """Seconds per micro-step of herd and of the plain Trainer on a 1-layer, 64-dim decoder and short pairs, the
    same positions per micro-batch (8 rows of 64), same steps and accumulation."""
    micro = argparse.Namespace(**{**vars(opts), "max_length": 64, "micro_batch": 8, "accumulation": 4, "steps": 10,
                                  "batch_tokens": 512})
    model = make_model(work / "micro", CAUSAL, {"layers": 1, "dim": 64, "vocab": 0, "max_length": 64})
    data = work / "micro.jsonl"
    write_pairs(data, 600, seed=1, words=words, scale=0.15)
    herd, _ = run_herd(model, data, work / "herd-micro", micro, CAUSAL, [], None)
    plain = run_trainer(model, data, work / "micro-trainer", micro, CAUSAL, "padded")
    per = {"herd": herd.seconds / max(1, herd.micro_steps), "trainer": plain.seconds / max(1, plain.micro_steps)}
    return {"herd_ms": 1000 * per["herd"], "trainer_ms": 1000 * per["trainer"],
            "ratio": per["herd"] / per["trainer"], "herd_positions": herd.positions / max(1, herd.micro_steps),
            "trainer_positions": plain.positions / max(1, plain.micro_steps)}


def peak_flops(opts: argparse.Namespace) -> float:
    import torch

    if opts.peak_tflops:
        return opts.peak_tflops * 1e12
    if not torch.cuda.is_available():
        return 0.0
    name = torch.cuda.get_device_name()
    return next((v * 1e12 for k, v in PEAK_BF16_TFLOPS.items() if k in name), 0.0)


def report(results: dict[str, list[dict[str, Any]]], over: dict[str, float], opts: argparse.Namespace
           ) -> dict[str, Any]:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu, {opts.threads} thread(s)"
    print(f"device: {device}; model {opts.layers} layers x {opts.dim} dims, vocab {opts.vocab or 'tokenizer'}; "
          f"{opts.steps} steps of ~{opts.micro_batch * opts.accumulation} examples; max length {opts.max_length}")
    peak = peak_flops(opts)
    summary: dict[str, Any] = {"device": device}
    for family, rows in results.items():
        herd = rows[0]
        print(f"-- {family}: herd batching {json.dumps(herd.get('batching', {}).get('kind'))}, "
              f"precision {herd.get('precision')}, gradient checkpointing {herd.get('gradient_checkpointing')}")
        for row in rows:
            print(f"{row['side']:<8} {row['real_tokens']:>9,} non-padding tokens in {row['seconds']:7.2f} s = "
                  f"{row['tokens_per_s']:>9,.0f} tok/s; padding {row['padding']:5.1%}; {row['shapes']} shapes")
        prefix = "" if family == CAUSAL else "t5_"
        for row in rows[1:]:
            ratio = herd["tokens_per_s"] / row["tokens_per_s"] if row["tokens_per_s"] else 0.0
            summary[f"{prefix}ratio_vs_{row['side']}"] = round(ratio, 3)
            print(f"ratio herd / {row['side']}: {ratio:.2f}x")
        summary[f"{prefix}herd_shapes"] = herd["shapes"]
        summary[f"{prefix}tokens_per_s"] = {r["side"]: round(r["tokens_per_s"]) for r in rows}
        summary[f"{prefix}padding"] = {r["side"]: round(r["padding"], 4) for r in rows}
        if peak:
            mfu = {r["side"]: round(6 * r["params"] * r["tokens_per_s"] / peak, 4) for r in rows}
            summary["mfu" if family == CAUSAL else "t5_mfu"] = mfu["herd"]
            summary[f"{prefix}mfu_sides"] = mfu
            print(f"MFU (6 x {herd['params']:,} params x tok/s / {peak / 1e12:.0f} TFLOP/s): "
                  + ", ".join(f"{k} {v:.1%}" for k, v in mfu.items()))
    summary["distinct_shapes"] = max(summary.get("herd_shapes", 0), summary.get("t5_herd_shapes", 0))
    if over:
        summary["overhead_ratio"] = round(over["ratio"], 3)
        summary["overhead_ms"] = {"herd": round(over["herd_ms"], 2), "trainer": round(over["trainer_ms"], 2)}
        print(f"host overhead per micro-step (1 layer x 64 dims, {over['herd_positions']:.0f} vs "
              f"{over['trainer_positions']:.0f} positions): herd {over['herd_ms']:.1f} ms, plain Trainer "
              f"{over['trainer_ms']:.1f} ms, ratio {over['ratio']:.2f}x (goal <= 1.3x)")
    return summary


def main() -> None:
    opts = options()
    import torch
    from tests.tiny import WORDS
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(opts.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if opts.profile:
        opts.profile.mkdir(parents=True, exist_ok=True)
    families = [CAUSAL, SEQ2SEQ] if opts.family == "both" else [opts.family]
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="herd-bench-train-") as tmp:
        work = Path(tmp)
        for family in families:
            results[family] = family_sides(family, work, opts, WORDS)
        over = overhead(work, opts, WORDS)
    summary = report(results, over, opts)
    if opts.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
