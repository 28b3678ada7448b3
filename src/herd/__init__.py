"""herd: distil one teacher LLM into a herd of small instruction-following models (the LaMini method)."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from herd.students.pipe import StudentPipeline


def pipeline(model: str, device: str = "auto", dtype: str = "auto") -> StudentPipeline:
    """One call for both student families on transformers 5 (which dropped `text2text-generation`).

    `herd.pipeline(DIR)("instruction", max_new_tokens=128)` -> [{"generated_text": answer}]. The instruction gets the
    checkpoint's wrapper (decoder-only) or goes in bare (encoder-decoder). torch is imported only when called.
    """
    from herd.students import load_student
    from herd.students.pipe import StudentPipeline

    return StudentPipeline(load_student(model, device=device, dtype=dtype))
