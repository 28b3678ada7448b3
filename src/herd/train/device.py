"""Device defaults for training small models fast: the token budget per device kind, bf16 (never fp16 for T5),
gradient checkpointing only where a memory estimate says the model would not fit without it, fused AdamW and TF32
on CUDA, and a clean refusal of torch.compile where no compiler is. Reads the model config and device; writes
nothing."""

from __future__ import annotations

import os
import shutil
from importlib import util
from typing import Any

from herd.errors import UserError
from herd.train.batching import default_batch_tokens

T5_TYPES = ("t5", "mt5", "umt5", "longt5", "switch_transformers")
MEMORY_SHARE = 0.85  # of the card's memory that a run may plan to use


def device_kind() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def batch_tokens(requested: int) -> int:
    """train.batch_tokens, or the default for this device kind (0)."""
    return requested if requested > 0 else default_batch_tokens(device_kind())


def check_precision(precision: str, config: Any, where: str, base: str) -> None:
    if precision == "fp16" and getattr(config, "model_type", "") in T5_TYPES:
        raise UserError(f"train.precision = 'fp16': {where} ({base}) is a T5 model, whose activations overflow in fp16 "
                        "(training diverges); use 'bf16' or 'auto'")


def precision(requested: str) -> str:
    """bf16 | fp16 | fp32: `train.precision`, with auto = bf16 where a GPU has it, else fp32."""
    import torch

    if requested == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return requested


def compiler_missing() -> str:
    """Why torch.compile cannot run here ('' when it can): inductor needs triton on CUDA, a C++ compiler on CPU."""
    if device_kind() == "cuda":
        return "" if util.find_spec("triton") is not None else "triton is not installed"
    names = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    return "" if any(n and shutil.which(n) for n in names) else "no C++ compiler (g++, clang++) on PATH"


def check_compile(requested: bool) -> None:
    if requested and (why := compiler_missing()):
        raise UserError(f"train.compile = true: torch.compile cannot run here ({why}); set train.compile = false")


def allow_recompiles(shapes: int) -> None:
    """One compiled graph per batch shape: dynamo's cache must hold them all."""
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(int(getattr(torch._dynamo.config, name)), shapes + 8))


def memory_estimate(model: Any, tokens: int) -> float:
    """Bytes a training step needs without gradient checkpointing: fp32 weights, gradients and AdamW's two moments
    (16 bytes a parameter), plus activations per token: about 34 x hidden bytes per layer (bf16, fused attention)
    and 10 bytes per vocabulary entry for the logits (bf16 logits, their fp32 copy and gradient)."""
    config = model.config
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0) + int(getattr(config, "num_decoder_layers", 0) or 0)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    params = sum(p.numel() for p in model.parameters())
    return 16.0 * params + tokens * (34.0 * hidden * layers + 10.0 * vocab)


def checkpointing(mode: str, model: Any, tokens: int) -> tuple[bool, str]:
    """(use gradient checkpointing, the reason recorded in herd.json)."""
    if mode != "auto":
        return mode == "on", f"train.gradient_checkpointing = {mode!r}"
    if device_kind() != "cuda":
        return False, "auto: no CUDA device (memory is not the limit on CPU)"
    import torch

    need = memory_estimate(model, tokens)
    have = torch.cuda.get_device_properties(int(os.environ.get("LOCAL_RANK", "0"))).total_memory
    gib = 1 << 30
    verdict = (f"estimated {need / gib:.1f} GiB for {tokens} tokens a micro-batch vs {MEMORY_SHARE:.0%} of "
               f"{have / gib:.0f} GiB")
    return need > MEMORY_SHARE * have, f"auto: {verdict}"


def cuda_flags() -> dict[str, Any]:
    """TrainingArguments for a CUDA device: fused AdamW, TF32 matmuls where the card has them, non-blocking copies
    from pinned memory."""
    import torch

    if device_kind() != "cuda":
        return {}
    out: dict[str, Any] = {"optim": "adamw_torch_fused", "accelerator_config": {"non_blocking": True}}
    if torch.cuda.get_device_capability()[0] >= 8:
        out["tf32"] = True
    return out
