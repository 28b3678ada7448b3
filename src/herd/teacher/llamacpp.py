"""The optional `llamacpp` teacher backend: a .gguf model run by llama-cpp-python in this process.

Install it with `pip install 'herd[llamacpp]'` (it compiles llama.cpp, several minutes). `teacher.model` is a .gguf
file or 'embedded'. Requests are answered one at a time with `Llama.create_chat_completion` (the chat template comes
from the GGUF metadata). Its identity is 'llamacpp:<name>:<hash>' (hash as for the local backend): the quantized
model gives different answers from the dequantized transformers copy, so the two never share journal rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from herd.config import TeacherConfig
from herd.errors import UserError
from herd.teacher.base import Emit, Request, Result

INSTALL = "pip install 'herd[llamacpp]'"
CONTEXT = 4096  # tokens; llama.cpp allocates its KV cache for this many


class LlamaCppTeacher:
    def __init__(self, cfg: TeacherConfig) -> None:
        from importlib import util

        if util.find_spec("llama_cpp") is None:
            raise UserError(f"teacher.backend = 'llamacpp' needs llama-cpp-python: {INSTALL}")
        from herd.teacher.model_files import check_gguf, identity

        if cfg.model == "embedded":
            from herd.teacher.embedded import MODEL_NAME, embedded_gguf

            self.path, name = embedded_gguf(), MODEL_NAME
        else:
            self.path = Path(cfg.model).expanduser()
            name = self.path.stem
        check_gguf(self.path, "teacher.model")
        self.cfg = cfg
        self.model_id = "llamacpp:" + identity(str(self.path), name).split(":", 1)[1]
        self._llm: Any = None
        self._lock = threading.Lock()  # a Llama object is not safe to call from two threads

    def _load(self) -> Any:
        if self._llm is None:
            from llama_cpp import Llama

            gpu_layers = 0 if self.cfg.device == "cpu" else -1  # -1 = offload all layers when built with a GPU
            self._llm = Llama(model_path=str(self.path), n_ctx=CONTEXT, n_gpu_layers=gpu_layers, verbose=False)
        return self._llm

    def run(self, requests: Sequence[Request], emit: Emit) -> None:
        with self._lock:
            llm = self._load()
            for req in requests:
                emit(self._one(llm, req))

    def _one(self, llm: Any, req: Request) -> Result:
        started = time.monotonic()
        try:
            reply = llm.create_chat_completion(
                messages=req.message_dicts(), max_tokens=req.max_tokens, temperature=req.temperature,
                top_p=req.top_p, stop=list(req.stop) or None, seed=req.seed,
            )
        except Exception as exc:  # a failed call becomes a reject with its reason, not a crash of the stage
            return Result(request=req, ok=False, error=f"llamacpp: {type(exc).__name__}: {exc}"[:300],
                          latency_s=time.monotonic() - started)
        choice = (reply.get("choices") or [{}])[0]
        usage = reply.get("usage") or {}
        return Result(
            request=req, ok=True, text=str((choice.get("message") or {}).get("content") or ""),
            finish_reason=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=int(usage.get("prompt_tokens", 0)), completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=time.monotonic() - started,
        )

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()
