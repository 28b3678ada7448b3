"""One student's training loop: transformers' Trainer (Seq2SeqTrainer for encoder-decoders) with herd's token-budget
batches (herd.train.batching), loss (herd.train.loss), progress line, checkpoints and resume.

Reads the tokenised pairs; writes `checkpoint-N/` folders and TensorBoard logs into the student's work folder
(`<output>/<name>.partial/`), the resume point after a kill. The batch order depends only on (seed, epoch), so a
resumed run sees exactly the batches the killed one would have seen.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.progress import Progress
from herd.rundir import write_json
from herd.students import family_spec
from herd.train.batching import Batches
from herd.train.data import Tokenised
from herd.train.device import cuda_flags
from herd.train.record import StudentRun

PLAN_FILE = "herd-train.json"


def make_trainer(run: StudentRun, model: Any, args: Any, tokenizer: Any, data: Tokenised, batches: Batches) -> Any:
    """The family's Trainer with herd's batches (sampler and collator); add callbacks with `trainer.add_callback`.

    Only the batch sampler is replaced (the DataLoader keeps the Trainer's workers, pinned memory and prefetching);
    the loss is herd.train.loss.student_loss over the step's label tokens, counted on the host."""
    from torch.utils.data import DataLoader
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.trainer_utils import seed_worker

    from herd.train.loss import student_loss

    family, kd_weight = run.family, run.kd_weight
    base = family_spec(family).trainer_classes()[0]
    sampler = batches.sampler

    class HerdTrainer(base):  # type: ignore[misc,valid-type]  # get_train_dataloader is Trainer's documented hook
        def get_train_dataloader(self) -> Any:
            a = self.args
            workers = a.dataloader_num_workers
            extra = {"prefetch_factor": a.dataloader_prefetch_factor,
                     "persistent_workers": a.dataloader_persistent_workers} if workers else {}
            loader = DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator,
                                num_workers=workers, pin_memory=a.dataloader_pin_memory,
                                worker_init_fn=partial(seed_worker, num_workers=workers, rank=a.process_index),
                                **extra)
            return self.accelerator.prepare(loader)

        def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> tuple[list[Any], Any]:
            """The step's micro-batches and its label-token count, from the host-side counts (no device sync; with
            several processes one all-reduce per optimizer step, as the stock Trainer does)."""
            batches = []
            for _ in range(num_batches):
                try:
                    batches.append(next(epoch_iterator))
                except StopIteration:
                    break
            counts = [sum(int(b[key]) for b in batches) for key in ("herd_label_tokens", "herd_tokens")]
            if self.args.world_size > 1:
                import torch

                total = self.accelerator.reduce(torch.tensor(counts, device=device), reduction="sum")
                counts = [int(v) for v in total.tolist()]
            self.state.num_input_tokens_seen += counts[1]
            return batches, max(1, counts[0])

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            scale = self.args.world_size if num_items_in_batch is not None else 1
            # training computes the output layer only at scored positions (not under torch.compile: a data-dependent
            # shape per batch would break the graph); evaluation keeps whole logits for the Trainer's metrics
            scored_only = model.training and not self.args.torch_compile
            loss, outputs = student_loss(model, inputs, family, num_items_in_batch, scale, scored_only, kd_weight)
            return (loss, outputs) if return_outputs else loss

        def floating_point_ops(self, inputs: dict[str, Any]) -> int:
            return 6 * self._herd_params * int(inputs.get("herd_tokens", 0))  # host count, parameters counted once

    trainer = HerdTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                          data_collator=batches.collator, processing_class=tokenizer)
    trainer._herd_params = sum(p.numel() for p in model.parameters())
    # the loss is already normalised over the accumulated step: the Trainer must not divide it again
    trainer.model_accepts_loss_kwargs = True
    trainer.loss_is_scaled_for_ga = True
    for noisy in (PrinterCallback, ProgressCallback):  # herd prints its own progress line
        trainer.remove_callback(noisy)
    return trainer


def training_args(run: StudentRun, tc: Any, seed: int) -> Any:
    """TrainingArguments from the run's recipe, precision and batch plan (micro-batch, accumulation, gradient
    checkpointing); logging, saving and evaluation from `[train]`. No per-micro-step device syncs for bookkeeping."""
    import torch

    gpu = torch.cuda.is_available()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    recipe = run.recipe
    has_eval = tc.eval_fraction > 0
    args_class = family_spec(run.family).trainer_classes()[1]
    return args_class(
        **version_kwargs(args_class, run.gradient_checkpointing, recipe.warmup_ratio), **cuda_flags(),
        output_dir=str(run.work), per_device_train_batch_size=recipe.micro_batch_size,
        per_device_eval_batch_size=tc.micro_batch_size, gradient_accumulation_steps=recipe.accumulation,
        num_train_epochs=recipe.epochs, max_steps=recipe.max_steps or -1, learning_rate=recipe.lr,
        lr_scheduler_type=recipe.scheduler, weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm, bf16=run.precision == "bf16", fp16=run.precision == "fp16",
        torch_compile=tc.compile, use_cpu=not gpu, ddp_backend=None if gpu or not distributed else "gloo",
        logging_steps=tc.logging_steps, save_strategy="steps", save_steps=tc.save_steps,
        save_total_limit=tc.save_total_limit, eval_strategy="steps" if has_eval else "no",
        eval_steps=tc.eval_steps or tc.save_steps, report_to=list(tc.report_to) or "none", seed=seed, data_seed=seed,
        disable_tqdm=True, include_num_input_tokens_seen="no", logging_nan_inf_filter=False,
        remove_unused_columns=False, dataloader_num_workers=tc.num_workers, log_level="error",
        log_level_replica="error", ddp_find_unused_parameters=False,
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
    """A TrainerCallback that drives herd's progress bar (herd.progress): steps, loss, eval loss, non-padding
    tokens/s and ETA, on the main process only."""
    from transformers import TrainerCallback

    class TrainProgress(TrainerCallback):  # type: ignore[misc]  # callbacks are Trainer's documented extension point
        def __init__(self) -> None:
            self.bar: Progress | None = None
            self.loss = float("nan")
            self.eval_loss = float("nan")
            self.tokens = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.tokens = state.num_input_tokens_seen
            self.bar = Progress(label, state.max_steps, quiet, enabled=state.is_world_process_zero, unit="steps",
                                start=state.global_step, costs=False).open()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            logs = logs or {}
            self.loss = logs.get("loss", self.loss)
            self.eval_loss = logs.get("eval_loss", self.eval_loss)
            if self.bar is not None:
                evaluated = f" eval {self.eval_loss:.3f}" if self.eval_loss == self.eval_loss else ""
                self.bar.status = f"loss {self.loss:.3f}{evaluated}"

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if self.bar is not None:
                self.bar.advance(state.global_step - self.bar.done, tokens=state.num_input_tokens_seen - self.tokens)
                self.tokens = state.num_input_tokens_seen

        def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    return TrainProgress()
