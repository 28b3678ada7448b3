"""The training loss of a student, in one place: token-level cross-entropy summed over the micro-batch and divided by
the label tokens of the whole accumulated step, so that a step's loss (and gradient) is the mean over its real
label tokens however the step was cut into micro-batches. Another term (a distillation loss, say) belongs here.

Reads model outputs; writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from herd.students import IGNORE, family_spec
from herd.train.collate import HOST_COUNTS
from herd.train.kd import BATCH_FIELDS, distill_loss


def split_inputs(inputs: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[str, int]]:
    """(what the model reads, the labels, the host-side counts) of one collated batch."""
    model_inputs = {k: v for k, v in inputs.items() if k not in HOST_COUNTS and k != "labels" and k not in BATCH_FIELDS}
    return model_inputs, inputs["labels"], {k: int(inputs.get(k, 0)) for k in HOST_COUNTS}


def label_loss(logits: Any, labels: Any, shift: bool, num_items: Any) -> Any:
    """Sum of -log p(label) over labels that are not -100, divided by num_items; `shift`: logits at t predict the
    label at t+1 (decoder-only)."""
    import torch.nn.functional as F

    if shift:
        logits, labels = logits[..., :-1, :], labels[..., 1:]
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).to(logits.device),
                            ignore_index=IGNORE, reduction="sum")
    return total / num_items


def scored_positions(labels: Any, shift: bool) -> Any:
    """Boolean (batch, positions): where the logits score a real label (decoder-only: the label one step later)."""
    import torch

    if not shift:
        return labels != IGNORE
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE
    return mask


@contextmanager
def head_only_at(model: Any, mask: Any) -> Iterator[None]:
    """Within the block, the model's output layer reads only the hidden states at `mask`, so its logits are
    (scored positions, vocabulary) instead of (batch, positions, vocabulary). Prompt and padding positions carry no
    loss, and on LaMini's pairs they are about half of all positions: their share of the output layer (the largest
    matmul of a small student with a 32K-50K vocabulary) and of the float32 logits is never computed. A forward
    pre-hook on the output layer is the one place every family shares (GPT-2, GPT-Neo, LLaMA, T5 all call it once
    on the last hidden states), so no model's forward is rewritten."""
    inner = getattr(model, "module", model)  # DDP / accelerate wrapper
    head = inner.get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda _module, args: (args[0][mask.to(args[0].device)], *args[1:]))
    try:
        yield
    finally:
        handle.remove()


def student_loss(model: Any, inputs: dict[str, Any], family: str, num_items: Any = None, scale: float = 1.0,
                 scored_only: bool = False, kd_weight: float = 0.0) -> tuple[Any, Any]:
    """(loss, outputs) of one micro-batch. num_items: label tokens of the whole step over all devices (None: this
    batch's own, i.e. a plain mean, as in evaluation); scale: the number of data-parallel processes (their gradients
    are averaged, the loss is normalised over all of them); scored_only: compute the output layer only where a label
    is scored (training; the same loss and gradients; `outputs.logits` is then 2-D). A batch with distillation
    targets (objective kd) gets herd.train.kd's mixed loss, weighted by kd_weight, instead of plain CE."""
    import torch

    model_inputs, labels, counts = split_inputs(inputs)
    items = num_items if num_items is not None else max(1, counts["herd_label_tokens"])
    shift = family_spec(family).shifts_labels
    kd = {k: inputs[k] for k in BATCH_FIELDS} if "kd_ids" in inputs else None
    if not scored_only:
        outputs = model(**model_inputs, use_cache=False)
        if kd is not None:
            return distill_loss(outputs.logits, labels, kd, kd_weight, shift, items)[0] * scale, outputs
        return label_loss(outputs.logits, labels, shift, items) * scale, outputs
    mask = scored_positions(labels, shift)
    with head_only_at(model, mask):
        outputs = model(**model_inputs, use_cache=False)

    def scored(t: Any) -> Any:  # the values at each scored position (decoder-only: those one step later)
        return (torch.roll(t, -1, dims=1) if shift else t)[mask]

    targets = scored(labels)
    if kd is not None:  # the targets follow the labels to the scored positions: one row of them, no shift
        picked = {k: scored(v)[None] for k, v in kd.items()}
        return distill_loss(outputs.logits[None], targets[None], picked, kd_weight, False, items)[0] * scale, outputs
    return label_loss(outputs.logits, targets, False, items) * scale, outputs
