"""The sides of benchmarks/train_throughput.py: herd train, the HF Trainer padding to max length, the HF Trainer with
group_by_length and dynamic padding, and TRL's SFTTrainer with packing (decoder only). Every side trains the same
model from the same synthetic LaMini-shaped pairs and is measured by the same callback on the batches the model
actually received."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

CAUSAL, SEQ2SEQ = "causal", "seq2seq"


def lognormal(rng: random.Random, mean: float, sigma: float, cap: int) -> int:
    """A length with the given mean (log-normal, so a long right tail), at least 1 and at most cap."""
    return max(1, min(cap, round(rng.lognormvariate(math.log(mean) - sigma**2 / 2, sigma))))


def write_pairs(path: Path, rows: int, seed: int, words: list[str], scale: float = 1.0) -> dict[str, float]:
    """LaMini's length profile (Table 1: each source's share and average lengths), in words of the tiny tokenizer;
    `scale` shrinks every length (the micro model's overhead run)."""
    from herd.stats.measures import PAPER_TABLE1

    rng = random.Random(seed)
    sources = list(PAPER_TABLE1)
    weights = [PAPER_TABLE1[s][0] for s in sources]
    sums = [0, 0]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            source = rng.choices(sources, weights)[0]
            _, avg_in, avg_out = PAPER_TABLE1[source]
            n_in = lognormal(rng, avg_in * scale, 0.6, max(2, int(300 * scale)))
            n_out = lognormal(rng, avg_out * scale, 0.9, max(2, int(400 * scale)))
            sums[0] += n_in
            sums[1] += n_out
            row = {"id": str(i), "instruction": " ".join(rng.choices(words, k=n_in)),
                   "response": " ".join(rng.choices(words, k=n_out)), "instruction_source": source}
            fh.write(json.dumps(row) + "\n")
    return {"avg_instruction_words": sums[0] / rows, "avg_response_words": sums[1] / rows}


def make_model(folder: Path, family: str, shape: dict[str, int]) -> Path:
    """A GPT-2 (decoder) or Flan-T5-style (gated-GELU encoder-decoder) model from a config, seeded; `vocab` above the
    tokenizer's size pads the embedding (the real models' compute: GPT-2 50257, T5 32128)."""
    import torch
    from tests.tiny import tiny_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    tok = tiny_tokenizer(folder, with_pad=True)
    vocab, dim, layers = max(len(tok), shape.get("vocab", 0)), shape["dim"], shape["layers"]
    special = {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id}
    if family == CAUSAL:
        config = GPT2Config(vocab_size=vocab, n_positions=shape["max_length"], n_embd=dim, n_layer=layers,
                            n_head=max(1, dim // 64), bos_token_id=tok.bos_token_id, **special)
        GPT2LMHeadModel(config).save_pretrained(folder)
    else:
        config = T5Config(vocab_size=vocab, d_model=dim, d_kv=64, d_ff=dim * 8 // 3, num_layers=layers,
                          num_decoder_layers=layers, num_heads=max(1, dim // 64), feed_forward_proj="gated-gelu",
                          decoder_start_token_id=tok.pad_token_id, tie_word_embeddings=False, **special)
        T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


def count_batch(batch: dict[str, Any]) -> tuple[int, int, tuple[int, ...]]:
    """(real tokens, positions processed, shape) of one batch; encoder-decoders count input and label sides."""
    ids = batch["input_ids"]
    shape = tuple(ids.shape)
    positions = int(ids.numel())
    if "herd_tokens" in batch:
        real = int(batch["herd_tokens"])
    elif "attention_mask" in batch:
        real = int(batch["attention_mask"].sum())
    else:
        real = positions  # padding-free (TRL): one flat row, no padding
    if "decoder_input_ids" in batch or ("labels" in batch and batch["labels"].shape != ids.shape):
        labels = batch["labels"]
        shape += tuple(labels.shape[1:])
        positions += int(labels.numel())
        if "herd_tokens" not in batch:
            real += int((labels != -100).sum())
    return real, positions, shape


def meter(profile_to: Path | None = None) -> Any:
    """A TrainerCallback that times the training loop, counts (from the batches themselves) the real tokens, the
    positions processed and the distinct shapes, and can profile the third optimizer step (torch profiler)."""
    from transformers import TrainerCallback

    class Meter(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.positions = self.real = self.micro_steps = 0
            self.shapes: set[tuple[int, ...]] = set()
            self.started = self.seconds = 0.0
            self.params = 0
            self.profiler: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, train_dataloader: Any = None,
                           model: Any = None, **_: Any) -> None:
            loader = getattr(train_dataloader, "base_dataloader", train_dataloader)
            collate = loader.collate_fn

            def counting(features: list[dict[str, Any]]) -> Any:
                batch = collate(features)
                real, positions, shape = count_batch(batch)
                self.real, self.positions, self.micro_steps = self.real + real, self.positions + positions, \
                    self.micro_steps + 1
                self.shapes.add(shape)
                return batch

            loader.collate_fn = counting
            self.params = sum(p.numel() for p in model.parameters()) if model is not None else 0
            _sync()
            self.started = time.perf_counter()

        def on_step_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if profile_to is not None and state.global_step == min(2, state.max_steps - 1) and self.profiler is None:
                import torch

                activities = [torch.profiler.ProfilerActivity.CPU]
                if torch.cuda.is_available():
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                self.profiler = torch.profiler.profile(activities=activities)
                self.profiler.__enter__()

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if self.profiler is not None and profile_to is not None and not profile_to.exists():
                import torch

                _sync()
                self.profiler.__exit__(None, None, None)
                key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
                profile_to.write_text(self.profiler.key_averages().table(sort_by=key, row_limit=10) + "\n")

        def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            _sync()
            self.seconds = time.perf_counter() - self.started

    return Meter()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_herd(model: Path, data: Path, work: Path, opts: Any, family: str, extra: list[str], profile: Path | None
             ) -> tuple[Any, dict[str, Any]]:
    from herd.config import load_config
    from herd.train import run

    keys = [f"run.dir={json.dumps(str(work))}", "run.quiet=true", f"train.student={json.dumps(str(model))}",
            f"train.data={json.dumps(str(data))}", f"train.max_steps={opts.steps}",
            f"train.batch_size={opts.micro_batch * opts.accumulation}", f"train.max_length={opts.max_length}",
            f"train.batch_tokens={opts.batch_tokens}", "train.save_steps=100000", "train.logging_steps=100000",
            "train.report_to=[]", *extra]
    measured = meter(profile)
    out = run(load_config(None, keys), callbacks=[measured])
    meta = json.loads((out / f"lamini-{model.name}" / "herd.json").read_text())
    return measured, meta


def encoded(model: Path, data: Path, family: str, max_length: int) -> tuple[Any, list[dict[str, list[int]]]]:
    """The pairs tokenised exactly as herd does (wrapper, response-only labels for decoders)."""
    from transformers import AutoTokenizer

    from herd.students import default_wrapper
    from herd.students.training import encode_pairs

    tok = AutoTokenizer.from_pretrained(model)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    enc = encode_pairs(family, tok, default_wrapper() if family == CAUSAL else None,
                       ([r["instruction"] for r in rows], [r["response"] for r in rows]), max_length=max_length)
    return tok, [{"input_ids": i, "labels": lab} for i, lab in zip(enc["input_ids"], enc["labels"], strict=True) if i]


def run_trainer(model: Path, data: Path, work: Path, opts: Any, family: str, mode: str,
                profile: Path | None = None) -> Any:
    """The HF Trainer: mode 'padded' pads every example to max_length in random order (a straightforward script);
    'grouped' uses group_by_length and pads each batch to its longest (what a careful user writes)."""
    import datasets
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        Trainer,
        TrainingArguments,
    )
    from transformers.trainer_callback import PrinterCallback

    tok, features = encoded(model, data, family, opts.max_length)
    gpu = torch.cuda.is_available()
    args_class, trainer_class = ((TrainingArguments, Trainer) if family == CAUSAL
                                 else (Seq2SeqTrainingArguments, Seq2SeqTrainer))
    args = args_class(
        output_dir=str(work / f"trainer-{mode}"), per_device_train_batch_size=opts.micro_batch,
        gradient_accumulation_steps=opts.accumulation, max_steps=opts.steps, learning_rate=2e-5,
        lr_scheduler_type="cosine", warmup_steps=0.03, save_strategy="no", report_to="none", disable_tqdm=True,
        logging_steps=100000, seed=0, use_cpu=not gpu, bf16=gpu and torch.cuda.is_bf16_supported(),
        log_level="error", remove_unused_columns=False, **grouping(args_class, mode == "grouped"))
    loader = AutoModelForCausalLM if family == CAUSAL else AutoModelForSeq2SeqLM
    net = loader.from_pretrained(model)
    pad = "longest" if mode == "grouped" else "max_length"
    collator = DataCollatorForSeq2Seq(tok, model=net if family == SEQ2SEQ else None, padding=pad,
                                      max_length=opts.max_length, label_pad_token_id=-100)
    measured = meter(profile)
    trainer = trainer_class(model=net, args=args, train_dataset=datasets.Dataset.from_list(features),
                            data_collator=collator, callbacks=[measured])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return measured


def grouping(args_class: Any, on: bool) -> dict[str, Any]:
    """Length grouping under this release's name (5.24: train_sampling_strategy; earlier: group_by_length)."""
    import inspect

    if "train_sampling_strategy" in inspect.signature(args_class.__init__).parameters:
        return {"train_sampling_strategy": "group_by_length" if on else "random"}
    return {"group_by_length": on}


def run_trl(model: Path, data: Path, work: Path, opts: Any) -> Any:
    """TRL's SFTTrainer with packing (best-fit decreasing, padding-free rows of max_length), loss on completions;
    per device as many packed rows as hold --micro-batch examples on average (the HF sides' micro-batch)."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from herd.students import default_wrapper, fill

    tok = AutoTokenizer.from_pretrained(model)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    lengths = [len(f["input_ids"]) for f in encoded(model, data, CAUSAL, opts.max_length)[1]]
    rows_per_micro = max(1, round(opts.micro_batch * sum(lengths) / len(lengths) / opts.max_length))
    wrapper = default_wrapper()
    pairs = datasets.Dataset.from_list([{"prompt": fill(wrapper, r["instruction"]), "completion": " " + r["response"]}
                                        for r in rows])
    gpu = torch.cuda.is_available()
    args = SFTConfig(
        output_dir=str(work / "trl"), per_device_train_batch_size=rows_per_micro,
        gradient_accumulation_steps=opts.accumulation, max_steps=opts.steps, learning_rate=2e-5,
        lr_scheduler_type="cosine", save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=100000,
        seed=0, use_cpu=not gpu, bf16=gpu and torch.cuda.is_bf16_supported(), log_level="error",
        max_length=opts.max_length, packing=True, completion_only_loss=True)
    measured = meter()
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model), args=args, train_dataset=pairs,
                         processing_class=tok, callbacks=[measured])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return measured
