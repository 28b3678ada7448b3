"""The training loss of a student, in one place: token-level cross-entropy summed over the micro-batch and divided by
the label tokens of the whole accumulated step, so that a step's loss (and gradient) is the mean over its real
label tokens however the step was cut into micro-batches. Another term (a distillation loss, say) belongs here.

Reads model outputs; writes nothing.
"""

from __future__ import annotations

from typing import Any

from herd.students import IGNORE
from herd.train.collate import HOST_COUNTS


def split_inputs(inputs: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[str, int]]:
    """(what the model reads, the labels, the host-side counts) of one collated batch."""
    model_inputs = {k: v for k, v in inputs.items() if k not in HOST_COUNTS and k != "labels"}
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


def student_loss(model: Any, inputs: dict[str, Any], family: str, num_items: Any = None, scale: float = 1.0
                 ) -> tuple[Any, Any]:
    """(loss, outputs) of one micro-batch. num_items: label tokens of the whole step over all devices (None: this
    batch's own, i.e. a plain mean, as in evaluation); scale: the number of data-parallel processes (their gradients
    are averaged, the loss is normalised over all of them)."""
    model_inputs, labels, counts = split_inputs(inputs)
    outputs = model(**model_inputs, use_cache=False)
    items = num_items if num_items is not None else max(1, counts["herd_label_tokens"])
    loss = label_loss(outputs.logits, labels, family != "seq2seq", items)
    return loss * scale, outputs
