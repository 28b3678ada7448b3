"""One student's training loop: transformers' Trainer (Seq2SeqTrainer for encoder-decoders) with herd's batch order,
progress line, checkpoints and resume.

Reads the tokenised pairs; writes `checkpoint-N/` folders and TensorBoard logs into the student's work folder
(`<output>/<name>.partial/`), the resume point after a kill. The batch order depends only on (seed, epoch), so a
resumed run sees exactly the batches the killed one would have seen.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.rundir import write_json
from herd.students import Family
from herd.students.training import collator_for, trainer_classes
from herd.train.data import Tokenised
from herd.train.recipe import Recipe

PLAN_FILE = "herd-train.json"


class SeededOrder:
    """Sampler: a shuffle that depends only on (seed, epoch); with `group`, examples of similar length are batched
    together (mega-batches of 64 micro-batches sorted by length, micro-batches then shuffled), so dynamic padding
    pads little. transformers' own length-grouped sampler draws from the global RNG, which a resume cannot replay."""

    def __init__(self, lengths: Sequence[int], micro_batch: int, seed: int, group: bool) -> None:
        self.lengths = list(lengths)
        self.micro_batch = micro_batch
        self.seed = seed
        self.group = group
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        import torch

        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        if not self.group:
            return iter(order)
        mega = self.micro_batch * 64
        full: list[list[int]] = []
        tail: list[int] = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start:start + mega], key=lambda i: -self.lengths[i])
            for j in range(0, len(chunk), self.micro_batch):
                batch = chunk[j:j + self.micro_batch]
                if len(batch) == self.micro_batch:
                    full.append(batch)
                else:
                    tail.extend(batch)
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        return iter([i for batch in shuffled for i in batch] + tail)  # a short batch last keeps the rest aligned


def make_trainer(family: Family, model: Any, args: Any, tokenizer: Any, data: Tokenised, options: dict[str, Any]
                 ) -> Any:
    """The family's Trainer with herd's data order. `options`: packing, group, callbacks, kd ((weight, K) or None)."""
    from torch.utils.data import DataLoader
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    base = trainer_classes(family)[0]

    class HerdTrainer(base):  # type: ignore[misc,valid-type]  # get_train_dataloader is Trainer's documented hook
        def get_train_dataloader(self) -> Any:
            sampler = SeededOrder(data.lengths, self.args.per_device_train_batch_size, self.args.seed,
                                  options["group"] and not options["packing"])
            loader = DataLoader(self.train_dataset, batch_size=self.args.train_batch_size, sampler=sampler,
                                collate_fn=self.data_collator, num_workers=self.args.dataloader_num_workers,
                                pin_memory=self.args.dataloader_pin_memory, drop_last=self.args.dataloader_drop_last)
            return self.accelerator.prepare(loader)

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if "kd_ids" not in inputs:  # sft, or an eval batch without targets: transformers' own loss
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            from herd.train.kd import compute_kd_loss

            assert kd is not None  # targets come only from the KD collator
            return compute_kd_loss(self, model, inputs, kd[0], return_outputs, num_items_in_batch)

    kd = options.get("kd")
    collator = collator_for(family, tokenizer, options["packing"])
    if kd is not None:
        from herd.train.kd import KDCollator

        collator = KDCollator(collator, kd[1], tokenizer.padding_side)
    trainer = HerdTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                          data_collator=collator,
                          processing_class=tokenizer, callbacks=list(options.get("callbacks", ())))
    for noisy in (PrinterCallback, ProgressCallback):  # herd prints its own progress line
        trainer.remove_callback(noisy)
    return trainer


def training_args(family: Family, work: Path, recipe: Recipe, tc: Any, seed: int, has_eval: bool) -> Any:
    """TrainingArguments from the recipe; bf16 and gradient checkpointing by default only where a GPU is."""
    import torch

    gpu = torch.cuda.is_available()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    precision = tc.precision
    if precision == "auto":
        precision = "bf16" if gpu and torch.cuda.is_bf16_supported() else "fp32"
    checkpointing = tc.gradient_checkpointing == "on" or (tc.gradient_checkpointing == "auto" and gpu)
    args_class = trainer_classes(family)[1]
    return args_class(
        **version_kwargs(args_class, checkpointing, recipe.warmup_ratio),
        output_dir=str(work), per_device_train_batch_size=recipe.micro_batch_size,
        per_device_eval_batch_size=recipe.micro_batch_size, gradient_accumulation_steps=recipe.accumulation,
        num_train_epochs=recipe.epochs, max_steps=recipe.max_steps or -1, learning_rate=recipe.lr,
        lr_scheduler_type=recipe.scheduler, weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm, bf16=precision == "bf16", fp16=precision == "fp16",
        torch_compile=tc.compile, use_cpu=not gpu, ddp_backend=None if gpu or not distributed else "gloo",
        logging_steps=tc.logging_steps, save_strategy="steps", save_steps=tc.save_steps,
        save_total_limit=tc.save_total_limit, eval_strategy="steps" if has_eval else "no",
        eval_steps=tc.eval_steps or tc.save_steps, report_to=list(tc.report_to) or "none", seed=seed, data_seed=seed,
        disable_tqdm=True, include_num_input_tokens_seen="non_padding", remove_unused_columns=False,
        dataloader_num_workers=tc.num_workers, log_level="error", log_level_replica="error",
        ddp_find_unused_parameters=False,
    )


def version_kwargs(args_class: Any, checkpointing: bool, warmup_ratio: float) -> dict[str, Any]:
    """The arguments whose names moved between transformers releases, under the name this release takes.

    transformers 5.24 renamed gradient_checkpointing to activation_checkpointing and folded warmup_ratio into a
    fractional warmup_steps; earlier releases (5.17 on the GPU image, 4.x) know only the old names.
    """
    import inspect

    params = inspect.signature(args_class.__init__).parameters
    name = "activation_checkpointing" if "activation_checkpointing" in params else "gradient_checkpointing"
    out: dict[str, Any] = {name: checkpointing, f"{name}_kwargs": {"use_reentrant": False}}
    out["warmup_ratio" if "warmup_ratio" in params else "warmup_steps"] = warmup_ratio
    return out


def resume_point(work: Path, plan: dict[str, Any], main: bool) -> Path | None:
    """The newest complete checkpoint of this same plan; a checkpoint cut short by a kill is removed, and a work
    folder started with other settings is a UserError (resuming it would mix two runs)."""
    plan = json.loads(json.dumps(plan, sort_keys=True, default=str))  # compare as it is stored
    plan_file = work / PLAN_FILE
    if plan_file.is_file():
        before = json.loads(plan_file.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(before) | set(plan) if before.get(k) != plan.get(k))
        if changed:
            raise UserError(f"{work}: started with other settings ({', '.join(changed)}); restore them, or delete "
                            "the folder (or set train.overwrite = true) to start over")
    elif main:
        write_json(plan_file, plan)  # atomic: other ranks may read it
    found = sorted(work.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]), reverse=True)
    for checkpoint in found:
        try:
            json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))  # written last by Trainer
            return checkpoint
        except (OSError, ValueError):
            if main:
                shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def progress_callback(label: str, quiet: bool) -> Any:
    """A TrainerCallback that shows step, loss, eval loss, non-padding tokens/s and ETA (main process only)."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):  # type: ignore[misc]  # callbacks are Trainer's documented extension point
        def __init__(self) -> None:
            self.bar: Any = None
            self.task: Any = None
            self.loss = float("nan")
            self.eval_loss = float("nan")
            self.started = time.monotonic()
            self.first_step = 0
            self.first_tokens = 0
            self.tokens_per_s = 0.0
            self.quiet = quiet or not sys.stderr.isatty()

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if not state.is_world_process_zero:
                return
            self.started, self.first_step = time.monotonic(), state.global_step
            self.first_tokens = state.num_input_tokens_seen
            if not self.quiet:
                from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
                from rich.progress import Progress as Bar

                self.bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[info]}"), TimeRemainingColumn())
                self.bar.start()
                self.task = self.bar.add_task(label, total=state.max_steps, completed=state.global_step, info="")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            logs = logs or {}
            self.loss = logs.get("loss", self.loss)
            self.eval_loss = logs.get("eval_loss", self.eval_loss)
            if state.is_world_process_zero and self.quiet and "loss" in logs:
                print(f"[{label}] step {state.global_step}/{state.max_steps} {self.info()} eta {self.eta(state)}",
                      file=sys.stderr, flush=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            elapsed = max(time.monotonic() - self.started, 1e-9)
            self.tokens_per_s = (state.num_input_tokens_seen - self.first_tokens) / elapsed
            if self.bar is not None:
                self.bar.update(self.task, completed=state.global_step, info=self.info())

        def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if self.bar is not None:
                self.bar.stop()

        def info(self) -> str:
            evaluated = f" eval {self.eval_loss:.3f}" if self.eval_loss == self.eval_loss else ""
            return f"loss {self.loss:.3f}{evaluated} {self.tokens_per_s:,.0f} tok/s"

        def eta(self, state: Any) -> str:
            done = state.global_step - self.first_step
            if done <= 0:
                return "?"
            left = (time.monotonic() - self.started) / done * (state.max_steps - state.global_step)
            return time.strftime("%H:%M:%S", time.gmtime(left))

    return Progress()
