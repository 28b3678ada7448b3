"""Sampling that does not depend on batch composition: each row draws from its own seeded `torch.Generator`.

`generate()` samples all rows of a batch from torch's one global generator, so a row's answer depends on which rows
share its batch and in what order: a resumed run, a different batch size or one more request changes every answer
after it. `RowSampler` is a logits processor that does the sampling itself (temperature, then top-p through
transformers' own warper), one generator per row seeded from that row's request, and hands `generate` a one-hot
score row, so `generate` runs greedy and keeps the row's pick. The same request with the same seed gives the same
answer alone or in any batch (up to float rounding of the batch's logits, which a draw almost never straddles).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any


class RowSampler:
    """Per-row seeded sampling as a transformers logits processor (put it last in the list)."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        import torch
        from transformers import TopPLogitsWarper

        self.generators = [torch.Generator().manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF) for s in seeds]
        self.temperature = temperature
        self.top_p = TopPLogitsWarper(top_p) if top_p < 1.0 else None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        warped = scores.float() / self.temperature
        if self.top_p is not None:
            warped = self.top_p(input_ids, warped)
        probs = torch.softmax(warped, dim=-1).cpu()
        picks = [int(torch.multinomial(probs[i], 1, generator=g)) if torch.isfinite(warped[i]).any() else 0
                 for i, g in enumerate(self.generators)]
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(picks)), torch.tensor(picks, device=scores.device)] = 0.0
        return out


def seed_from_key(key: str) -> int:
    """A 63-bit sampling seed from a hex digest (a request's journal key)."""
    return int(key[:16], 16) & 0x7FFF_FFFF_FFFF_FFFF


def request_seed(stage: str, run_seed: int, what: str) -> int:
    """A stage's sampling seed for one request: the first 63 bits of sha256('herd-<stage>:<run.seed>:<what>')."""
    digest = hashlib.sha256(f"herd-{stage}:{run_seed}:{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: fits every endpoint's integer seed
