"""`herd.pipeline`: one call that answers instructions with a student of either family (transformers 5 dropped
the `text2text-generation` pipeline). Reads a checkpoint; writes nothing."""

from __future__ import annotations

from typing import Any

from herd.students.loading import Student
from herd.students.padding import pad_id
from herd.students.prompting import format_prompt, uses_chat_template


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
    """Answer instructions in one batch (padded on the family's side with the pad rule's id; the tokenizer is left
    as it is); returns the new text only."""
    import torch

    from herd.textgen import pad_rows

    tok, model, spec = student.tokenizer, student.model, student.spec
    chat = uses_chat_template(student.family, tok, student.wrapper)
    rows = [list(tok(format_prompt(student, text), add_special_tokens=not chat)["input_ids"]) for text in instructions]
    pad = pad_id(tok)
    ids, mask = pad_rows(rows, pad, left=spec.padding_side == "left")
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), pad_token_id=pad,
                             **generate_kwargs)
    out = out[:, spec.answer_start(ids.shape[1]):]
    return [text.strip() for text in tok.batch_decode(out, skip_special_tokens=True)]
