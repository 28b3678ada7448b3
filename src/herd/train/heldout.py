"""Held-out loss: evidence that a student learned from its teacher, even while its answers are still weak.

`train.heldout_rows` pairs are split off before training (a seeded draw with `run.seed`; listed in
`train/heldout.jsonl`; no student ever trains on them). Each student's mean loss per response token on them, and its
perplexity (exp of that loss), is measured on the freshly built student and again after training, with the same
tokenisation as training (wrapper, response prefix, EOS; prompt tokens carry no loss). Beside them the teacher's own
loss on the same responses, under the prompt it wrote them for (its chat template and the responses stage's system
prompt), when the teacher is a local model that wrote them; otherwise a stated reason why not.

Numbers from different tokenizers are per token of each model's own tokenizer: they compare exactly only between
models that share one (the demo's students use the teacher's).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from herd.config import Config
from herd.errors import UserError
from herd.students import Family, FamilySpec, family_spec, pad_id, spec_of_model
from herd.train.data import Pairs
from herd.train.record import Encoding

BATCH = 8


def hold_out(pairs: Pairs, rows: int, seed: int) -> Pairs:
    """The pairs left to train on, with the held-out ones in `.heldout`; the manifest records the split."""
    if rows == 0:
        return pairs
    total = len(pairs.dataset)
    if rows < 0 or rows >= total:
        raise UserError(f"train.heldout_rows = {rows}: must be between 0 and {total - 1} (the data has {total} "
                        "pairs and training needs some)")
    chosen = sorted(random.Random(seed).sample(range(total), rows))
    held = set(chosen)
    train = pairs.dataset.select([i for i in range(total) if i not in held])
    manifest = {**pairs.manifest, "rows": total - rows, "heldout": {"rows": rows, "seed": seed, "of": total}}
    return replace(pairs, dataset=train, manifest=manifest, heldout=pairs.dataset.select(chosen))


def write_heldout(held: Any, path: Path) -> None:
    """The held-out pairs, one JSON line each: what no student was trained on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in held:
            fh.write(json.dumps({"instruction": row["instruction"], "response": row["response"]},
                                ensure_ascii=False) + "\n")


def measure(model: Any, tokenizer: Any, family: Family, wrapper: str | None, encoding: Encoding,
            held: Any) -> dict[str, Any]:
    """Loss per response token and perplexity of a student on the held-out pairs, tokenised as for training."""
    from herd.students.training import encode_pairs

    encoded = encode_pairs(family, tokenizer, wrapper, (list(held["instruction"]), list(held["response"])),
                           **encoding.kwargs())
    rows = [(i, lab) for i, lab in zip(encoded["input_ids"], encoded["labels"], strict=True) if i]
    return _loss(model, rows, family_spec(family), pad_id(tokenizer))


def _loss(model: Any, rows: list[tuple[list[int], list[int]]], spec: FamilySpec, pad: int) -> dict[str, Any]:
    """Token-weighted mean cross-entropy over the labelled tokens (labels -100 carry none): the training loss
    (herd.train.loss.label_loss, summed) over the held-out rows, tokens counted on the host as training counts them."""
    import torch

    from herd.train.collate import label_tokens
    from herd.train.loss import label_loss

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for start in range(0, len(rows), BATCH):
            batch = rows[start:start + BATCH]
            ids, mask = _right_pad([r[0] for r in batch], pad)
            labels = _right_pad([r[1] for r in batch], -100)[0]
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            with torch.inference_mode():  # T5 builds its decoder inputs from the labels
                extra = {"labels": labels} if spec.separate_decoder else {}
                logits = model(input_ids=ids, attention_mask=mask, **extra).logits
                total += float(label_loss(logits, labels, spec.shifts_labels, 1))
            count += sum(label_tokens(r[1], spec.shifts_labels) for r in batch)
    finally:
        model.train(was_training)
    if not count:
        return {"rows": len(rows), "tokens": 0, "loss": None, "perplexity": None}
    mean = total / count
    return {"rows": len(rows), "tokens": count, "loss": round(mean, 4), "perplexity": round(math.exp(min(mean, 50)), 2)}


def _right_pad(rows: list[list[int]], value: int) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids, mask


def entry(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """A student's manifest fields: before, after and the relative fall of the loss."""
    if before is None or after is None:
        return {}
    out: dict[str, Any] = {"heldout": {"before": before, "after": after}}
    if before.get("loss") and after.get("loss") is not None:
        out["heldout"]["loss_fall"] = round(1 - after["loss"] / before["loss"], 4)
    return out


def teacher_loss(cfg: Config, held: Any) -> dict[str, Any]:
    """The teacher's loss on the held-out responses under its own prompt, or {"skipped": reason}."""
    tc = cfg.teacher
    if tc.backend != "local":
        return {"skipped": f"the teacher is not a local model (teacher.backend = {tc.backend!r}): herd cannot "
                           "read its token probabilities here"}
    if cfg.train.data:
        return {"skipped": "train.data names other pairs, not this run's teacher responses"}
    from herd.prompts import read_prompt
    from herd.teacher.base import Request
    from herd.teacher.local import LocalTeacher, chat_prompt
    from herd.textgen import encode_prompt

    system = read_prompt(cfg.responses.system_prompt).strip() if cfg.responses.system_prompt else None
    teacher = LocalTeacher(tc)
    try:
        model, tokenizer = teacher.load()
        eos = tokenizer.eos_token_id
        rows = []
        for instruction, response in zip(held["instruction"], held["response"], strict=True):
            prompt = encode_prompt(tokenizer, chat_prompt(tokenizer, Request.chat(instruction, system)), model)
            answer = list(tokenizer(response, add_special_tokens=False)["input_ids"]) + ([eos] if eos is not None
                                                                                      else [])
            rows.append((prompt + answer, [-100] * len(prompt) + answer))
        return {"model": teacher.model_id, **_loss(model, rows, spec_of_model(model), pad_id(tokenizer))}
    finally:
        teacher.close()
