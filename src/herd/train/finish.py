"""Model loading options (attention kernel, QLoRA), LoRA adapters, and finishing a trained student: merged weights,
herd checkpoint, model card, TensorBoard logs, then the rename that makes `<output>/<name>/` appear whole.

Reads the Trainer's state; writes `<output>/<name>/` (via `<name>.partial/final/`) and removes `<name>.partial/`.
"""

from __future__ import annotations

import os
import shutil
import time
from importlib import util
from pathlib import Path
from typing import Any

from herd.config import TrainConfig
from herd.errors import UserError
from herd.rundir import publish, versions
from herd.students import Family, Student, attention_kernel, family_spec
from herd.students.saving import save_student
from herd.train.model_card import write_card
from herd.train.record import Lora, StudentRun


def model_kwargs(tc: TrainConfig, family: Family) -> dict[str, Any]:
    """from_pretrained kwargs: the attention kernel and, for QLoRA, a 4-bit quantization config."""
    import torch

    kwargs: dict[str, Any] = {}
    attn = attention_kernel(family, tc.attn_implementation)
    if attn:
        kwargs["attn_implementation"] = attn
    if tc.qlora:
        if not torch.cuda.is_available() or util.find_spec("bitsandbytes") is None:
            raise UserError("train.qlora = true needs a CUDA GPU and the bitsandbytes package")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return kwargs


def with_lora(model: Any, tc: TrainConfig, family: Family) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if tc.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    targets: Any = "all-linear" if list(tc.lora_targets) == ["all-linear"] else list(tc.lora_targets)
    config = LoraConfig(r=tc.lora_r, lora_alpha=tc.lora_alpha, lora_dropout=tc.lora_dropout, target_modules=targets,
                        task_type=family_spec(family).peft_task)
    return get_peft_model(model, config)


def final_model(trainer: Any, student: Student, lora: Lora, work: Path) -> Any:
    """The weights to save: LoRA merged into the base (QLoRA: into a fresh 16-bit copy of the base)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not lora.enabled:
        return model
    if not lora.quantized:
        return model.merge_and_unload()
    import torch
    from peft import PeftModel

    from herd.students import source_args

    adapter = work / "adapter"
    model.save_pretrained(str(adapter))
    src, extra = source_args(student.path)
    base = student.spec.model_class().from_pretrained(src, dtype=torch.bfloat16, **extra)
    if base.get_input_embeddings().weight.shape[0] < len(student.tokenizer):
        base.resize_token_embeddings(len(student.tokenizer))
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


def finish_student(trainer: Any, student: Student, run: StudentRun, result: Any, main: bool) -> dict[str, Any]:
    """Save, describe and publish one student (`main`: this is the main process); returns its manifest entry."""
    work = run.work
    history = list(trainer.state.log_history)
    stats = _stats(trainer, result, history)
    trained_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sharded = bool(getattr(trainer, "is_fsdp_enabled", False)) or _zero3(trainer)
    gathered = sharded and not run.lora.enabled  # every rank takes part in gathering sharded weights
    final = work / "final"
    if main:
        shutil.rmtree(final, ignore_errors=True)  # left by a run killed while finishing
    trainer.accelerator.wait_for_everyone()
    if gathered:
        trainer.save_model(str(final))
    trainer.accelerator.wait_for_everyone()
    if main:
        model = None if gathered else final_model(trainer, student, run.lora, work)
        save_student(model, student.tokenizer, run.family, final, run.herd_json(stats, trained_at))
        write_card(final, run.card(stats, trained_at, versions()), history)
        if (work / "runs").is_dir():
            shutil.move(str(work / "runs"), str(final / "runs"))  # TensorBoard event files travel with the model
        _readable(final)
        publish(final, run.folder)
        shutil.rmtree(work, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return run.entry(stats)


def _readable(folder: Path) -> None:
    """Files as the umask allows (some writers create 0600 temp files and rename them): a checkpoint is shared."""
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~mask)


def _zero3(trainer: Any) -> bool:
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return bool(getattr(trainer, "is_deepspeed_enabled", False) and plugin is not None and plugin.zero_stage == 3)


def _stats(trainer: Any, result: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    losses = [row["loss"] for row in history if "loss" in row]
    evals = [row["eval_loss"] for row in history if "eval_loss" in row]
    evaluated_last = any("eval_loss" in row and row.get("step") == trainer.state.global_step for row in history)
    if trainer.eval_dataset is not None and not evaluated_last:
        evals.append(trainer.evaluate()["eval_loss"])  # the held-out loss of the final weights
    runtime = float(result.metrics.get("train_runtime", 0.0))
    speeds = [row["train_tokens_per_second"] for row in history if "train_tokens_per_second" in row]
    seen = trainer.state.num_input_tokens_seen
    # A run shorter than logging_steps logs no loss or speed: fall back to the run's average loss and overall rate.
    loss = losses[-1] if losses else getattr(result, "training_loss", None)
    speed = speeds[-1] if speeds else (seen / runtime if runtime and seen else None)
    stats: dict[str, Any] = {"steps": trainer.state.global_step, "runtime_s": round(runtime, 1),
                             "train_loss": round(loss, 4) if loss is not None else None,
                             "tokens_per_s": round(speed) if speed is not None else None,
                             "tokens_seen": seen}
    if evals:
        stats["eval_loss"] = round(evals[-1], 4)
    return stats
