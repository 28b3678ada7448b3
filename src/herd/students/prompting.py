"""How an instruction becomes the text a student sees: bare for an encoder-decoder; for a decoder-only model inside
the instruction wrapper it was trained with (the paper's by default), or through the model's own chat template when
it has no wrapper. Reads the shipped wrapper file; writes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from herd.errors import UserError
from herd.prompts import read_prompt
from herd.students.families import family_spec

if TYPE_CHECKING:
    from herd.students.loading import Student

DEFAULT_WRAPPER = "decoder_wrapper.txt"  # the paper's wrapper (Alpaca's no-input template), shipped verbatim
PLACEHOLDER = "{instruction}"


def default_wrapper() -> str:
    """The paper's decoder-only instruction wrapper (src/herd/prompts/decoder_wrapper.txt)."""
    return read_prompt(DEFAULT_WRAPPER)


def check_wrapper(wrapper: str, where: str = "train.wrapper") -> str:
    if wrapper.count(PLACEHOLDER) != 1:
        raise UserError(f"{where}: the wrapper must contain {PLACEHOLDER} exactly once")
    return wrapper


def fill(wrapper: str, instruction: str) -> str:
    # replace, not str.format: a wrapper may hold other braces (JSON examples, code)
    return wrapper.replace(PLACEHOLDER, instruction)


def uses_chat_template(family: str, tokenizer: Any, wrapper: str | None) -> bool:
    """A decoder-only model without a wrapper but with its own chat template is prompted through that template."""
    return family_spec(family).wraps_prompts and not wrapper and bool(getattr(tokenizer, "chat_template", None))


def prompt_for(family: str, tokenizer: Any, wrapper: str | None, instruction: str) -> str:
    if not family_spec(family).wraps_prompts:
        return instruction
    if wrapper:
        return fill(wrapper, instruction)
    if uses_chat_template(family, tokenizer, wrapper):
        messages = [{"role": "user", "content": instruction}]
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return instruction


def format_prompt(student: Student, instruction: str) -> str:
    """The text a student sees for an instruction: wrapper (causal), chat template (causal, no wrapper), or bare."""
    return prompt_for(student.family, student.tokenizer, student.wrapper, instruction)
