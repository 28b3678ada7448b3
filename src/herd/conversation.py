"""How a conversation (a list of chat messages) becomes one prompt for a model, for `herd chat` and `herd serve`.

Two kinds of model:

- **multi-turn**: a decoder whose tokenizer has its own chat template (SmolLM2, Llama-style chat models) and no herd
  wrapper. The whole history goes through `apply_chat_template`, so the model sees every earlier turn.
- **single-turn**: everything else: herd students (a decoder with the instruction wrapper, or a seq2seq model) and
  plain models without a template. They were trained on one instruction and one response, so a conversation is
  flattened to one instruction: the system messages, then the last user message, separated by blank lines. Earlier
  turns are dropped. The instruction then goes through `students.format_prompt` (the checkpoint's own wrapper).

Which kind a model is comes from `students.format_prompt` itself (it is the one place that knows each family): a
model is multi-turn when it has no wrapper and `format_prompt` renders one user message exactly as the chat
template does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from herd.students import Student, format_prompt

Messages = Sequence[dict[str, str]]
_PROBE = "herd probe instruction"


def keeps_history(student: Student) -> bool:
    """Whether earlier turns reach the model (see the module docstring). Cheap, but callers keep the answer."""
    tokenizer = student.tokenizer
    found = False
    if student.wrapper is None and getattr(tokenizer, "chat_template", None):
        try:
            templated = tokenizer.apply_chat_template(
                [{"role": "user", "content": _PROBE}], tokenize=False, add_generation_prompt=True
            )
            found = format_prompt(student, _PROBE) == templated
        except Exception:  # a template that cannot render one user message is not a chat template we can use
            found = False
    return found


def single_instruction(messages: Messages) -> str:
    """System messages and the last user message, as one instruction; ValueError if there is no user text."""
    system = [str(m.get("content") or "").strip() for m in messages if m.get("role") in ("system", "developer")]
    return "\n\n".join([s for s in system if s] + [last_user(messages)])


def last_user(messages: Messages) -> str:
    """The last user message's text; ValueError when there is none or it is blank."""
    users = [m for m in messages if m.get("role") == "user"]
    text = str(users[-1].get("content") or "").strip() if users else ""
    if not text:
        raise ValueError("the conversation needs a non-empty user message")
    return text


def conversation_prompt(student: Student, messages: Messages, multi_turn: bool | None = None) -> str:
    """The prompt text for a conversation; ValueError when it has no usable user message."""
    if keeps_history(student) if multi_turn is None else multi_turn:
        last_user(messages)  # the same check as single-turn models get
        # "developer" is OpenAI's newer name for "system"; chat templates know only the older one
        turns = [{**m, "role": "system" if m.get("role") == "developer" else m.get("role", "")} for m in messages]
        try:
            rendered: Any = student.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # a template that rejects a role or an order of turns (jinja raise_exception)
            raise ValueError(f"the model's chat template cannot render these messages ({exc})") from None
        return str(rendered)
    return format_prompt(student, single_instruction(messages))
