"""Next-token scoring on a local transformers model: the log-probability of each candidate (e.g. the grades A-D) as
the token that comes right after a prompt, in one forward pass per prompt and no generation.

`score_prompts` batches prompts (left-padded, with position ids that ignore the padding, and only the last
position's logits computed where the model allows it). A candidate counts every single token that spells it, with
or without a leading space ("A", " A"); their probabilities are added. Candidates that no single token spells, or
that share a token with another, cannot be scored: `candidate_ids` says which in one line.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

TOP = 5  # the most likely next tokens recorded beside the candidates' scores (what the model wanted to say)


def candidate_ids(tokenizer: Any, candidates: Sequence[str]) -> tuple[dict[str, list[int]], str]:
    """{candidate: token ids that spell it alone}, and a problem ('' when every candidate has its own tokens)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    out: dict[str, list[int]] = {}
    for text in candidates:
        found: set[int] = set()
        for variant in (text, " " + text):
            ids = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if len(ids) == 1 and ids[0] != unk:
                found.add(int(ids[0]))
        out[text] = sorted(found)
    missing = [c for c, ids in out.items() if not ids]
    if missing:
        return out, f"score: no single token of this tokenizer spells {', '.join(map(repr, missing))}"
    seen: dict[int, str] = {}
    for text, ids in out.items():
        for tid in ids:
            if tid in seen:
                return out, f"score: {seen[tid]!r} and {text!r} share token {tid}"
            seen[tid] = text
    return out, ""


def score_prompts(model: Any, tokenizer: Any, prompts: Sequence[str], candidates: Sequence[str],
                  batch_size: int = 8) -> list[dict[str, Any]]:
    """Per prompt: {"scores": {candidate: log P}, "top": [[token, log P], ...], "prompt_tokens": n}."""
    import torch

    from herd.students import pad_id
    from herd.textgen import encode_prompt, pad_rows

    ids_of, problem = candidate_ids(tokenizer, candidates)
    if problem:
        raise ValueError(problem)
    pad = pad_id(tokenizer)
    encoded = [encode_prompt(tokenizer, p, model) for p in prompts]
    device = next(model.parameters()).device
    out: list[dict[str, Any]] = []
    for start in range(0, len(encoded), max(1, batch_size)):
        rows = encoded[start:start + max(1, batch_size)]
        ids, mask = pad_rows(rows, pad, left=True)
        with torch.inference_mode():
            logits = _last_logits(model, ids.to(device), mask.to(device))
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, lp in zip(rows, logprobs, strict=True):
            scores = {c: float(torch.logsumexp(lp[tids], dim=0)) for c, tids in ids_of.items()}
            best = torch.topk(lp, k=min(TOP, lp.shape[0]))
            top = [[tokenizer.decode([int(t)]), round(float(v), 4)] for v, t in zip(best.values, best.indices,
                                                                                        strict=True)]
            out.append({"scores": scores, "top": top, "prompt_tokens": len(row)})
    return out


def _last_logits(model: Any, ids: Any, mask: Any) -> Any:
    """Logits (batch, vocab) for the token after each left-padded row."""
    import torch

    from herd.students import spec_of_model

    if spec_of_model(model).separate_decoder:  # the next token comes from the decoder, started afresh
        start = model.config.decoder_start_token_id
        start = model.config.pad_token_id if start is None else start
        decoder = torch.full((ids.shape[0], 1), int(start or 0), dtype=torch.long, device=ids.device)
        return model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder).logits[:, -1]
    params = inspect.signature(model.forward).parameters
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
    if "position_ids" in params:  # left padding must not shift the real tokens' positions
        kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    if "logits_to_keep" in params:
        kwargs["logits_to_keep"] = 1
    return model(**kwargs).logits[:, -1]


def renormalise(scores: dict[str, float | None]) -> tuple[dict[str, float], float]:
    """Probabilities over the candidates that have a score (summing to 1), and the mass they had before."""
    seen = {c: v for c, v in scores.items() if v is not None and math.isfinite(v)}
    if not seen:
        return {}, 0.0
    top = max(seen.values())
    weights = {c: math.exp(v - top) for c, v in seen.items()}
    total = sum(weights.values())
    mass = sum(math.exp(v) for v in seen.values())
    return {c: weights.get(c, 0.0) / total for c in scores}, mass
