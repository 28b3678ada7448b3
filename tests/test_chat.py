"""herd chat: driven through a pseudo-terminal (stdlib pty) on tiny models; history kept only for models with
their own chat template; /reset and /exit; tokens/s shown after each answer."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import time

from herd.textgen import GenParams


class Terminal:
    """A child process on a pseudo-terminal, with pexpect-style `expect`."""

    def __init__(self, *args: str) -> None:
        master, slave = os.openpty()
        env = {**os.environ, "TERM": "dumb", "COLUMNS": "200"}
        self.proc = subprocess.Popen([sys.executable, "-m", "herd", *args], stdin=slave, stdout=slave, stderr=slave,
                                     env=env, close_fds=True, start_new_session=True)
        os.close(slave)
        self.fd = master
        self.seen = ""

    def expect(self, text: str, timeout: float = 120) -> str:
        """Read until `text` appears; returns everything read up to and including it."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {text!r}; got: {self.seen[-2000:]!r}"
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk or text in self.seen, f"terminal closed before {text!r}; got: {self.seen[-2000:]!r}"
                self.seen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        upto = self.seen.index(text) + len(text)
        taken, self.seen = self.seen[:upto], self.seen[upto:]
        return taken

    def send(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=60)
        finally:
            os.close(self.fd)


def test_chat_in_a_terminal_keeps_history_resets_and_exits(tiny_models):
    term = Terminal("chat", "--model", str(tiny_models["llama"]), "--temperature", "0", "--max-new-tokens", "5")
    try:
        greeting = term.expect("you> ")
        assert "(causal); the conversation is kept" in greeting and "/exit" in greeting
        term.send("write a poem about the sun")
        answer = term.expect("tok/s]")
        assert "bot> " in answer and "[5 tokens in " in answer
        term.expect("you> ")
        term.send("/reset")
        assert "(conversation cleared)" in term.expect("you> ")
        term.send("/help")
        assert "/reset forgets the conversation" in term.expect("you> ")
        term.send("/exit")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_single_turn_model_says_so_and_ends_on_eof(tiny_models):
    term = Terminal("chat", "--model", str(tiny_models["t5"]), "--temperature", "0", "--max-new-tokens", "4")
    try:
        greeting = term.expect("you> ")
        assert "(seq2seq); this model takes one instruction at a time" in greeting
        term.send("write a short poem about the sun")
        assert "[4 tokens in " in term.expect("tok/s]")
        term.expect("you> ")
        os.write(term.fd, b"\x04")  # Ctrl-D
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_history_reaches_the_next_prompt_only_for_multi_turn_models(tiny_models):
    from herd.chat import ChatSession, _turn
    from herd.conversation import keeps_history
    from herd.students import format_prompt, load_student

    llama = load_student(str(tiny_models["llama"]))
    session = ChatSession(llama, GenParams(max_new_tokens=3), system="be brief", context=256,
                          multi_turn=keeps_history(llama))
    session.reset()
    out = io.StringIO()
    _turn(session, "hello there", out)
    assert [m["role"] for m in session.history] == ["system", "user", "assistant"]
    prompt, _, dropped = session.prompt_for("and now")
    assert "hello there" in prompt and "be brief" in prompt and dropped == 0
    assert session.history[-1]["content"] == out.getvalue().split("bot> ")[1].split("\n[")[0].strip()
    session.context = len(llama.tokenizer(prompt)["input_ids"])  # too small for the whole history now
    short, _, dropped = session.prompt_for("and now")
    assert dropped == 1 and "hello there" not in short and "be brief" in short

    t5 = load_student(str(tiny_models["t5"]))
    single = ChatSession(t5, GenParams(max_new_tokens=3), multi_turn=keeps_history(t5))
    single.reset()
    _turn(single, "hello there", io.StringIO())
    assert single.history == []
    assert single.prompt_for("and now")[0] == format_prompt(t5, "and now")
