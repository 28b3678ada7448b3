"""`herd.pipeline`: one call that answers instructions with a student of either family (transformers 5 dropped
the `text2text-generation` pipeline). Reads a checkpoint; writes nothing."""

from __future__ import annotations

from typing import Any

from herd.students import Student, format_prompt, uses_chat_template


class StudentPipeline:
    """One call for both families on transformers 5 (which dropped `text2text-generation`): `herd.pipeline(DIR)`.

    `pipe("instruction", max_new_tokens=128)` -> [{"generated_text": answer}]; a list of instructions gives one such
    list per instruction. The prompt is built with `format_prompt`; the answer excludes it. Extra keyword arguments
    go to `model.generate` (max_length, do_sample, repetition_penalty, ...), as with a transformers pipeline.
    """

    def __init__(self, student: Student) -> None:
        self.student = student

    def __call__(self, inputs: str | list[str], **generate_kwargs: Any) -> list[Any]:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        answers = generate_answers(self.student, texts, **generate_kwargs)
        rows = [[{"generated_text": a}] for a in answers]
        return rows[0] if isinstance(inputs, str) else rows


def generate_answers(student: Student, instructions: list[str], **generate_kwargs: Any) -> list[str]:
    """Answer instructions in one batch (left-padded for decoders); returns the new text only."""
    import torch

    tok, model = student.tokenizer, student.model
    side, pad_token = tok.padding_side, tok.pad_token
    tok.padding_side = "left" if student.family == "causal" else "right"
    if pad_token is None:  # base GPT-2 and friends: pad with EOS for this batch only
        tok.pad_token = tok.eos_token
    try:
        prompts = [format_prompt(student, text) for text in instructions]
        chat = uses_chat_template(student.family, tok, student.wrapper)
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=not chat)
        pad = tok.pad_token_id
    finally:
        tok.padding_side = side
        if pad_token is None:
            tok.pad_token = None
    batch = {k: v.to(model.device) for k, v in batch.items()}
    with torch.no_grad():
        out = model.generate(**batch, pad_token_id=pad, **generate_kwargs)
    if student.family == "causal":
        out = out[:, batch["input_ids"].shape[1]:]
    return [text.strip() for text in tok.batch_decode(out, skip_special_tokens=True)]
