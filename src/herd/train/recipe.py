"""The LaMini training recipe as herd's defaults, and which of its numbers the paper gave and which herd chose.

The defaults of `[train]` in herd.config ARE this recipe (a test checks they agree); `resolve()` turns the config
plus one student's table into the concrete hyperparameters of one run, with the provenance of each value, which
the model card prints. Reads nothing; writes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from herd.config import StudentConfig, TrainConfig
from herd.errors import UserError
from herd.students import Family, family_spec

PAPER = "paper"  # LaMini §2: a number the paper states
OPEN = "open"  # the paper is silent; herd's default (Alpaca's recipe, which LaMini says it followed for decoders)

# key -> (LaMini value, where it comes from)
LAMINI: dict[str, tuple[Any, str]] = {
    "epochs": (5.0, PAPER),
    "batch_size": (1024, PAPER),
    "lr_seq2seq": (5e-4, PAPER),
    "lr_causal": (2e-5, PAPER),
    "scheduler": ("cosine", OPEN),
    "warmup_ratio": (0.03, OPEN),
    "max_length": (512, OPEN),
    "mask_prompt": (True, OPEN),
    "weight_decay": (0.0, OPEN),
    "max_grad_norm": (1.0, OPEN),
    "response_prefix": (" ", OPEN),
    "wrapper": ("decoder_wrapper.txt", PAPER),
}
LARGE_EPOCHS = 2.5  # GPT-J 6B and LLaMA 7B (paper)


@dataclass(frozen=True)
class Recipe:
    """The hyperparameters of one student's run."""

    epochs: float
    batch_size: int  # effective, as trained: micro * accumulation * world
    micro_batch_size: int  # before batching: the config's; after: mean examples per token-budget micro-batch
    accumulation: int  # after batching: micro-batches per device per optimizer step
    world_size: int
    lr: float
    scheduler: str
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    max_length: int
    mask_prompt: bool
    max_steps: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(tc: TrainConfig, sc: StudentConfig, family: Family, world_size: int = 1) -> Recipe:
    """One student's recipe: its own epochs/lr where set, else [train]'s (lr by family)."""
    check(tc)
    lr = sc.lr or float(getattr(tc, f"lr_{family}"))  # lr_seq2seq / lr_causal
    micro = max(1, min(tc.micro_batch_size, tc.batch_size // world_size))  # a tiny batch needs no accumulation
    per_step = micro * world_size
    accumulation = max(1, round(tc.batch_size / per_step))
    return Recipe(
        epochs=sc.epochs or tc.epochs, batch_size=per_step * accumulation, micro_batch_size=micro,
        accumulation=accumulation, world_size=world_size, lr=lr, scheduler=tc.scheduler,
        warmup_ratio=tc.warmup_ratio, weight_decay=tc.weight_decay, max_grad_norm=tc.max_grad_norm,
        max_length=tc.max_length, mask_prompt=tc.mask_prompt, max_steps=tc.max_steps,
    )


def check(tc: TrainConfig) -> None:
    """Values that no run can use: one line naming the key."""
    positive = {"batch_size": tc.batch_size, "micro_batch_size": tc.micro_batch_size, "max_length": tc.max_length,
                "epochs": tc.epochs, "lr_seq2seq": tc.lr_seq2seq, "lr_causal": tc.lr_causal,
                "save_steps": tc.save_steps, "logging_steps": tc.logging_steps}
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"train.{key} = {value}: must be > 0")
    if not 0 <= tc.warmup_ratio < 1:
        raise UserError(f"train.warmup_ratio = {tc.warmup_ratio}: must be in [0, 1)")
    if not 0 <= tc.eval_fraction < 0.5:
        raise UserError(f"train.eval_fraction = {tc.eval_fraction}: must be in [0, 0.5)")
    if tc.qlora and not tc.lora:
        raise UserError("train.qlora = true needs train.lora = true")


def provenance(tc: TrainConfig, recipe: Recipe, family: Family) -> list[tuple[str, Any, str]]:
    """(name, value, source) rows for the model card: 'paper', 'open (herd default)' or 'changed from ...'."""
    values = {**recipe.as_dict(), "lr_" + family: recipe.lr, "wrapper": tc.wrapper,
              "response_prefix": tc.response_prefix}
    rows: list[tuple[str, Any, str]] = []
    for key, (paper_value, source) in LAMINI.items():
        if key not in values or (key.startswith("lr_") and key != "lr_" + family):
            continue
        if not family_spec(family).wraps_prompts and key in ("wrapper", "mask_prompt", "response_prefix"):
            continue
        value = values[key]
        same = value == paper_value or (key == "epochs" and value == LARGE_EPOCHS)
        kept = "paper" if source == PAPER else "open (herd default)"
        label = kept if same else f"changed (LaMini: {paper_value!r})"
        rows.append((key, value, label))
    rows += [("batch_tokens", tc.batch_tokens or "device default", "efficiency: token positions per micro-batch"),
             ("micro_batch_size", recipe.micro_batch_size, "efficiency: mean examples per micro-batch"),
             ("gradient_accumulation", recipe.accumulation, "micro-batches per device per step, for batch_size "
                                                            "examples a step on average"),
             ("devices", recipe.world_size, "run")]
    return rows
