"""Training throughput of `herd train` against a plain Hugging Face Trainer that pads every example to max length.

Both train the same decoder (a GPT-2-shaped model from a config: --layers x --dim, random init, seeded) on the same
synthetic pairs for the same number of optimizer steps with the same micro-batch and accumulation. The pairs follow
LaMini's length profile (LAMINI.md §1: each source's share of the 2.58M pairs and its average instruction and
response length, drawn log-normally around them: short instructions, responses of tens of tokens with a long tail),
written in a word-level tokenizer's words, so a word is a token.

- herd: `herd.train.run` (LaMini wrapper, loss on the response, packing with position ids or length-grouped batches,
  whatever herd picks for the model), timed from the Trainer's first to last step.
- baseline: `transformers.Trainer` with examples tokenised the same way but padded to --max-length (512, the
  Alpaca/LaMini setting) and shuffled at random: what a straightforward fine-tuning script does.

Printed: non-padding tokens per second of each, their ratio (goal: >= 2x) and each side's padding fraction (padding
positions / all positions the model processed), measured on the batches the model actually received.

    .venv/bin/python benchmarks/train_throughput.py [--steps 8] [--micro-batch 8] [--accumulation 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/tiny.py: the word-level tokenizer the tests use



def lognormal(rng: random.Random, mean: float, sigma: float, cap: int) -> int:
    """A length with the given mean (log-normal, so a long right tail), at least 1 and at most cap."""
    return max(1, min(cap, round(rng.lognormvariate(math.log(mean) - sigma**2 / 2, sigma))))


def write_pairs(path: Path, rows: int, seed: int, words: list[str]) -> dict[str, float]:
    rng = random.Random(seed)
    from herd.stats.measures import PAPER_TABLE1  # LaMini Table 1: pairs, avg instruction / response tokens

    sources = list(PAPER_TABLE1)
    weights = [PAPER_TABLE1[s][0] for s in sources]
    sums = [0, 0]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            source = rng.choices(sources, weights)[0]
            _, avg_in, avg_out = PAPER_TABLE1[source]
            n_in, n_out = lognormal(rng, avg_in, 0.6, 300), lognormal(rng, avg_out, 0.9, 400)
            sums[0] += n_in
            sums[1] += n_out
            row = {"id": str(i), "instruction": " ".join(rng.choices(words, k=n_in)),
                   "response": " ".join(rng.choices(words, k=n_out)), "instruction_source": source}
            fh.write(json.dumps(row) + "\n")
    return {"avg_instruction_words": sums[0] / rows, "avg_response_words": sums[1] / rows}


def make_model(folder: Path, layers: int, dim: int, max_length: int) -> Path:
    import torch
    from tests.tiny import tiny_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tok = tiny_tokenizer(folder, with_pad=True)
    config = GPT2Config(vocab_size=len(tok), n_positions=max_length, n_embd=dim, n_layer=layers, n_head=dim // 64,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def meter() -> Any:
    """A TrainerCallback that times the training loop and counts, from the batches themselves, the positions the
    model processed and how many of them were padding."""
    from transformers import TrainerCallback

    class Meter(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.positions = 0
            self.real = 0
            self.started = self.seconds = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, train_dataloader: Any = None, **_: Any) -> None:
            # accelerate wraps the torch DataLoader; its collate_fn is the one the batches go through
            loader = getattr(train_dataloader, "base_dataloader", train_dataloader)
            collate = loader.collate_fn

            def counting(features: list[dict[str, Any]]) -> Any:
                batch = collate(features)
                self.positions += int(batch["input_ids"].numel())
                mask = batch.get("attention_mask")
                self.real += int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
                return batch

            loader.collate_fn = counting
            self.started = time.perf_counter()

        def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.seconds = time.perf_counter() - self.started

    return Meter()


def run_herd(model: Path, data: Path, work: Path, opts: argparse.Namespace, packing: str
             ) -> tuple[Any, dict[str, Any]]:
    from herd.config import load_config
    from herd.train import run

    keys = [f"run.dir={json.dumps(str(work))}", "run.quiet=true", f"train.student={json.dumps(str(model))}",
            f"train.data={json.dumps(str(data))}", f"train.max_steps={opts.steps}",
            f"train.micro_batch_size={opts.micro_batch}", f"train.batch_size={opts.micro_batch * opts.accumulation}",
            f"train.max_length={opts.max_length}", "train.save_steps=100000", "train.logging_steps=100000",
            "train.report_to=[]", f"train.packing={json.dumps(packing)}", *opts.herd_set]
    measured = meter()
    out = run(load_config(None, keys), callbacks=[measured])
    meta = json.loads((out / f"lamini-{model.name}" / "herd.json").read_text())
    return measured, meta


def run_baseline(model: Path, data: Path, work: Path, opts: argparse.Namespace) -> Any:
    """The plain way: tokenise, pad every example to max_length, random order, transformers' Trainer."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

    from herd.students import default_wrapper
    from herd.students.training import encode_pairs

    tok = AutoTokenizer.from_pretrained(model)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    enc = encode_pairs("causal", tok, default_wrapper(), ([r["instruction"] for r in rows],
                                                         [r["response"] for r in rows]), max_length=opts.max_length)
    features = []
    for ids, labels in zip(enc["input_ids"], enc["labels"], strict=True):
        if ids:
            pad = opts.max_length - len(ids)
            features.append({"input_ids": ids + [tok.pad_token_id] * pad, "labels": labels + [-100] * pad,
                             "attention_mask": [1] * len(ids) + [0] * pad})
    gpu = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(work / "baseline"), per_device_train_batch_size=opts.micro_batch,
        gradient_accumulation_steps=opts.accumulation, max_steps=opts.steps, learning_rate=2e-5,
        lr_scheduler_type="cosine", warmup_steps=0.03, save_strategy="no", report_to="none", disable_tqdm=True,
        logging_steps=100000, seed=0, use_cpu=not gpu, bf16=gpu and torch.cuda.is_bf16_supported(),
        log_level="error")
    measured = meter()
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(model), args=args,
                      train_dataset=datasets.Dataset.from_list(features), data_collator=default_data_collator,
                      callbacks=[measured])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the Trainer's end-of-run dict would interleave with the report
    trainer.train()
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps for each side")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--accumulation", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU); the same for both sides")
    parser.add_argument("--herd-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra herd config override for herd's side, e.g. train.gradient_checkpointing=off")
    opts = parser.parse_args()

    import torch
    from tests.tiny import WORDS
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(opts.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="herd-bench-train-") as tmp:
        work = Path(tmp)
        profile = write_pairs(work / "pairs.jsonl", opts.rows, seed=0, words=WORDS)
        model = make_model(work / "gpt2-bench", opts.layers, opts.dim, opts.max_length)
        for packing in ("auto", "on"):
            measured, meta = run_herd(model, work / "pairs.jsonl", work / f"runs-{packing}", opts, packing)
            runs[f"herd train (packing={packing}: {'packed' if meta['packing'] else 'grouped'})"] = measured
        runs["HF Trainer, pad to max"] = run_baseline(model, work / "pairs.jsonl", work, opts)
    device = "cuda" if torch.cuda.is_available() else f"cpu, {opts.threads} thread(s)"
    print(f"model: GPT-2 config, {opts.layers} layers x {opts.dim} dims; {device}; {opts.steps} steps of "
          f"{opts.micro_batch} x {opts.accumulation} examples; max length {opts.max_length}")
    print(f"data: {opts.rows} pairs, avg instruction {profile['avg_instruction_words']:.1f} tokens, avg response "
          f"{profile['avg_response_words']:.1f} tokens (+ the wrapper's tokens)")
    rates = {}
    for name, m in runs.items():
        rates[name] = m.real / m.seconds
        print(f"{name:<38} {m.real:>7,} non-padding tokens in {m.seconds:6.2f} s = {rates[name]:>7,.0f} tok/s; "
              f"padding {1 - m.real / m.positions:5.1%} of {m.positions:,} positions")
    base = rates.pop("HF Trainer, pad to max")
    for name, rate in rates.items():
        print(f"ratio {name} / baseline, non-padding tokens per second: {rate / base:.2f}x  (goal >= 2x)")


if __name__ == "__main__":
    main()
