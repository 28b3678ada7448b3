"""Token-level knowledge distillation (`train.objective = "kd"`): the loss, and the collator that carries the
teacher's stored top-K distributions into batches (padded or packed).

At every response position where the teacher's distribution is known, the student is pulled toward it:
KL(p || q) over K + 1 outcomes, the teacher's top-K tokens plus one bucket for all other tokens, where p is the
teacher's top-K probabilities (renormalised if rounding made them sum above 1) with the remaining mass 1 - sum(p)
in the bucket, and q is the student's softmax on the same K tokens plus the student's own remaining mass. The loss
per label token is (1 - w) * CE + w * KL there and plain CE elsewhere; the sum is divided by the real label tokens of
the whole accumulated step (Trainer's `num_items_in_batch`), as cross-entropy is, so gradient accumulation, padding
and packing do not change what a token weighs. Against a one-hot teacher (top-1 with log-prob 0) KL equals CE.

Reads nothing and writes nothing: herd.train.kd_data builds the per-example targets from the sidecar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from herd.students import IGNORE

KD_FIELDS = ("kd_pos", "kd_ids", "kd_lps")
BATCH_FIELDS = ("kd_ids", "kd_lps", "kd_mask")


def topk_kl(logq: Any, ids: Any, lps: Any) -> Any:
    """KL(teacher top-K + rest bucket || student) per row; logq (M, V) student log-probs, ids/lps (M, K)."""
    import torch

    p = lps.float().exp()  # an empty slot has log-prob -inf: p = 0, and it adds nothing
    valid = torch.isfinite(lps)
    total = p.sum(-1, keepdim=True)
    p = torch.where(total > 1, p / total.clamp_min(1e-12), p)
    rest = (1 - p.sum(-1)).clamp_min(0)
    lq = logq.gather(1, ids)
    q_top = (lq.exp() * valid).sum(-1).clamp(max=1 - 1e-6)
    lq_rest = torch.log1p(-q_top)
    inside = (torch.xlogy(p, p) - p * torch.where(valid, lq, torch.zeros_like(lq))).sum(-1)
    return inside + torch.xlogy(rest, rest) - rest * lq_rest


def distill_loss(logits: Any, labels: Any, targets: dict[str, Any], weight: float, shift: bool,
                 num_items: Any = None) -> tuple[Any, dict[str, Any]]:
    """(loss, parts): the mixed loss over label tokens (see the module docstring) and its CE / KL sums.

    `targets` has kd_ids / kd_lps (rows, length, K) and kd_mask (rows, length) aligned with `labels`; with `shift`
    (decoder-only) position t's logits predict label t + 1, as in transformers' own causal loss.
    """
    import torch

    ids, lps, mask = targets["kd_ids"], targets["kd_lps"], targets["kd_mask"]
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
        ids, lps, mask = ids[:, 1:], lps[:, 1:], mask[:, 1:]
    chosen = labels != IGNORE
    logq = torch.log_softmax(logits[chosen].float(), dim=-1)
    ce = -logq.gather(1, labels[chosen][:, None])[:, 0]
    taught = mask[chosen]
    kl = torch.zeros_like(ce)
    if weight > 0 and bool(taught.any()):
        kl = kl.masked_scatter(taught, topk_kl(logq[taught], ids[chosen][taught], lps[chosen][taught]))
    per_token = torch.where(taught, (1 - weight) * ce + weight * kl, ce)
    denom = num_items if num_items is not None else chosen.sum().clamp_min(1)
    parts = {"ce_sum": ce.detach().sum(), "kl_sum": kl.detach().sum(), "tokens": chosen.sum(),
             "taught": taught.sum()}
    return per_token.sum() / denom, parts


class KDCollator:
    """Wraps the family's collator: pops each example's top-K targets, lets the base collator pad or pack the rest,
    then lays the targets out as (rows, length, K) tensors at the positions the example's labels landed on.

    Placement: a batch with `position_ids` (packed rows; positions restart at 0 for each example) puts example i at
    the i-th restart, row-major, which is how any packing collator concatenates examples in order; otherwise
    example i is row i, right- or left-aligned as the tokenizer pads.
    """

    def __init__(self, base: Any, k: int, padding_side: str = "right") -> None:
        self.base = base
        self.k = k
        self.padding_side = padding_side

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        taught = [{key: f.get(key) for key in KD_FIELDS} for f in features]
        plain = [{key: v for key, v in f.items() if key not in KD_FIELDS} for f in features]
        batch = self.base(plain)
        if all(t["kd_pos"] is None for t in taught):
            return batch
        batch.update(self.layout(batch, taught, [len(f["labels"]) for f in plain]))
        return dict(batch)

    def layout(self, batch: Any, taught: list[dict[str, Any]], lengths: list[int]) -> dict[str, Any]:
        import torch

        rows, width = batch["labels"].shape
        ids = torch.zeros((rows, width, self.k), dtype=torch.long)
        lps = torch.full((rows, width, self.k), float("-inf"))
        mask = torch.zeros((rows, width), dtype=torch.bool)
        for index, (row, start) in enumerate(self.starts(batch, lengths)):
            pos = taught[index]["kd_pos"]
            if not pos:
                continue
            at = torch.as_tensor(pos, dtype=torch.long) + start
            ids[row, at] = torch.as_tensor(taught[index]["kd_ids"], dtype=torch.long).view(len(pos), self.k)
            lps[row, at] = torch.as_tensor(taught[index]["kd_lps"], dtype=torch.float32).view(len(pos), self.k)
            mask[row, at] = True
        return {"kd_ids": ids, "kd_lps": lps, "kd_mask": mask}

    def starts(self, batch: Any, lengths: list[int]) -> list[tuple[int, int]]:
        """(row, column) where each example's first token sits in the collated batch."""
        rows, width = batch["labels"].shape
        if "position_ids" in batch and rows < len(lengths):
            found = (batch["position_ids"] == 0).nonzero().tolist()
            if len(found) != len(lengths):
                raise ValueError(f"kd: {len(found)} packed examples found for {len(lengths)} features")
            return [(int(r), int(c)) for r, c in found]
        left = self.padding_side == "left"
        return [(i, width - n if left else 0) for i, n in enumerate(lengths)]


def compute_kd_loss(trainer: Any, model: Any, inputs: dict[str, Any], weight: float, return_outputs: bool,
                    num_items: Any) -> Any:
    """Trainer.compute_loss for a batch with KD targets (herd's Trainer subclass calls it from its override)."""
    targets = {key: inputs.pop(key) for key in BATCH_FIELDS}
    labels = inputs.pop("labels")
    core = trainer.accelerator.unwrap_model(model)
    seq2seq = bool(getattr(core.config, "is_encoder_decoder", False))
    if seq2seq:  # the decoder's inputs are the labels shifted right, as the model would make them itself
        prepare = getattr(core, "prepare_decoder_input_ids_from_labels", None)
        if prepare is None:
            inputs["labels"] = labels  # the model derives them (and computes a CE we do not use)
        else:
            inputs["decoder_input_ids"] = prepare(labels=labels)
    outputs = model(**inputs)
    loss, parts = distill_loss(outputs.logits, labels, targets, weight, shift=not seq2seq, num_items=num_items)
    if trainer.args.average_tokens_across_devices and num_items is not None:
        loss = loss * trainer.accelerator.num_processes  # DDP averages gradients; num_items counts every rank
    trainer.kd_parts = parts
    return (loss, outputs) if return_outputs else loss
