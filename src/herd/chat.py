"""herd chat: talk to a model in the terminal, with answers streamed as they are generated.

Reads a model (a herd student or any Hugging Face causal or seq2seq model); writes nothing. Decoder models with
their own chat template keep the conversation (older turns are dropped when it outgrows the context); herd
students and seq2seq models take one instruction at a time, so each message is answered on its own, and the
greeting says so (see conversation.py). After each answer: tokens, seconds and tokens per second.
Commands: /reset (forget the conversation), /exit (or Ctrl-D). Ctrl-C stops an answer mid-way.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from herd.conversation import conversation_prompt, keeps_history
from herd.textgen import GenParams

HELP = "commands: /reset forgets the conversation, /exit quits (or Ctrl-D); Ctrl-C stops an answer"


@dataclass
class ChatSession:
    """One conversation with one loaded model."""

    student: Any
    params: GenParams
    system: str = ""
    context: int | None = None
    multi_turn: bool = False
    history: list[dict[str, str]] = field(default_factory=list)

    def reset(self) -> None:
        self.history = [{"role": "system", "content": self.system}] if self.system and self.multi_turn else []

    def prompt_for(self, text: str) -> tuple[str, list[dict[str, str]], int]:
        """The prompt for a new user message, dropping the oldest turns until it fits; also how many were dropped."""
        history = list(self.history)
        keep = 1 if history and history[0]["role"] == "system" else 0
        dropped = 0
        while True:
            messages = history + [{"role": "user", "content": text}]
            if not self.multi_turn and self.system:
                messages = [{"role": "system", "content": self.system}] + messages
            prompt = conversation_prompt(self.student, messages, self.multi_turn)
            if not self.too_long(prompt) or len(history) <= keep:
                return prompt, messages, dropped
            del history[keep : keep + 2]  # the oldest user turn and its answer
            dropped += 1

    def too_long(self, prompt: str) -> bool:
        """The family's context-budget rule (students.families: decoders need room for the answer too)."""
        if self.context is None:
            return False
        tokens = len(self.student.tokenizer(prompt)["input_ids"])
        return bool(self.student.spec.over_context(tokens, self.params.max_new_tokens, self.context))


def run_chat(
    model: str, params: GenParams, *, system: str = "", device: str = "auto", dtype: str = "auto",
    out: TextIO | None = None,
) -> None:
    """Load `model` and chat on stdin/stdout until /exit or end of input."""
    from herd.generate import model_name
    from herd.students import context_length, load_student

    out = out or sys.stdout
    student = load_student(model, device=device, dtype=dtype)
    session = ChatSession(student, params, system, context_length(student.model, student.tokenizer),
                          keeps_history(student))
    session.reset()
    mode = ("the conversation is kept (/reset forgets it)" if session.multi_turn
            else "this model takes one instruction at a time: each message is answered on its own")
    print(f"herd chat: {model_name(model)} ({student.family}); {mode}", file=out)
    print(HELP, file=out, flush=True)
    _loop(session, out)


def _loop(session: ChatSession, out: TextIO) -> None:
    with contextlib.suppress(ImportError):  # readline is not on every platform
        import readline  # noqa: F401 - line editing and history for input()
    while True:
        try:
            line = input("you> ")
        except EOFError:
            print(file=out)
            return
        except KeyboardInterrupt:
            print(file=out)
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        if text == "/reset":
            session.reset()
            print("(conversation cleared)", file=out, flush=True)
            continue
        if text.startswith("/"):
            print(HELP, file=out, flush=True)
            continue
        _turn(session, text, out)


def _turn(session: ChatSession, text: str, out: TextIO) -> None:
    """Answer one message, streaming it; keep it in the history if the model keeps one."""
    from herd.textgen import stream_text

    prompt, messages, dropped = session.prompt_for(text)
    if dropped:
        print(f"(dropped the {dropped} oldest turn(s) to fit the model's context)", file=out)
    if session.too_long(prompt):
        print(f"(message too long for this model's context of {session.context} tokens)", file=out, flush=True)
        return
    print("bot> ", end="", file=out, flush=True)
    pieces: list[str] = []
    started = time.monotonic()
    stopped = False
    stream = stream_text(session.student.model, session.student.tokenizer, prompt, session.params)
    try:
        for piece in stream:
            pieces.append(piece)
            print(piece, end="", file=out, flush=True)
    except KeyboardInterrupt:
        stopped = True
    finally:
        getattr(stream, "close", lambda: None)()  # stops the generation thread early
    seconds = max(time.monotonic() - started, 1e-9)
    answer = "".join(pieces)
    tokens = len(session.student.tokenizer(answer, add_special_tokens=False)["input_ids"]) if answer else 0
    note = ", stopped" if stopped else ""
    print(f"\n[{tokens} tokens in {seconds:.1f}s, {tokens / seconds:.1f} tok/s{note}]", file=out, flush=True)
    if session.multi_turn:
        session.history = messages + [{"role": "assistant", "content": answer.strip()}]
