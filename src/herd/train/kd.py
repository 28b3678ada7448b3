"""Token-level knowledge distillation (`train.objective = "kd"`): the loss, and the collator that carries the
teacher's stored top-K distributions into batches (padded or packed).

At every response position where the teacher's distribution is known, the student is pulled toward it:
KL(p || q) over K + 1 outcomes, the teacher's top-K tokens plus one bucket for all other tokens, where p is the
teacher's top-K probabilities (renormalised if rounding made them sum above 1) with the remaining mass 1 - sum(p)
in the bucket, and q is the student's softmax on the same K tokens plus the student's own remaining mass. The loss
per label token is (1 - w) * CE + w * KL there and plain CE elsewhere; the sum is divided by the real label tokens of
the whole accumulated step (Trainer's `num_items_in_batch`), as cross-entropy is, so gradient accumulation, padding
and packing do not change what a token weighs. Against a one-hot teacher (top-1 with log-prob 0) KL equals CE.

herd.train.loss calls `distill_loss` when a batch carries targets; herd.train.collate lays them out with `kd_batch`
at the positions each example's labels landed on (packed rows or padded buckets), so they follow the examples through
token-budget batching. Reads nothing and writes nothing: herd.train.kd_data builds the per-example targets from the
sidecar.
"""

from __future__ import annotations

import math
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
    # every chosen row at once (an untaught row has no valid slot and gets 0): no (rows, vocab) copy of logq
    kl = torch.where(taught, topk_kl(logq, ids[chosen], lps[chosen]), torch.zeros_like(ce))
    per_token = torch.where(taught, (1 - weight) * ce + weight * kl, ce)
    denom = num_items if num_items is not None else chosen.sum().clamp_min(1)
    parts = {"ce_sum": ce.detach().sum(), "kl_sum": kl.detach().sum(), "tokens": chosen.sum(),
             "taught": taught.sum()}
    return per_token.sum() / denom, parts


def kd_batch(features: Sequence[dict[str, Any]], starts: Sequence[tuple[int, int]], shape: tuple[int, ...]
             ) -> dict[str, Any]:
    """The examples' targets laid out like the batch's `labels` (of `shape`): (feature index, flat offset of its
    first label) per example, as the collator placed it (packed rows or padded buckets); {} without targets."""
    import torch

    if not features or "kd_pos" not in features[0]:
        return {}
    k = next((len(f["kd_ids"]) // len(f["kd_pos"]) for f in features if f["kd_pos"]), 1)
    size = math.prod(shape)
    ids = torch.zeros((size, k), dtype=torch.long)
    lps = torch.full((size, k), float("-inf"))
    mask = torch.zeros(size, dtype=torch.bool)
    for index, start in starts:
        pos = features[index]["kd_pos"]
        if not pos:
            continue
        at = torch.as_tensor(pos, dtype=torch.long) + start
        ids[at] = torch.as_tensor(features[index]["kd_ids"], dtype=torch.long).view(len(pos), k)
        lps[at] = torch.as_tensor(features[index]["kd_lps"], dtype=torch.float32).view(len(pos), k)
        mask[at] = True
    return {"kd_ids": ids.view(*shape, k), "kd_lps": lps.view(*shape, k), "kd_mask": mask.view(shape)}
