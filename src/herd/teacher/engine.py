"""The engine every stage talks to: a `Teacher` backend behind the call journal, the price table and a progress bar.

`Engine.map(requests, on_result)` answers finished calls from the journal without touching the backend, sends the
rest to it, records each result in the journal *before* handing it to the stage (so a kill after the call never pays
for it again) and counts usage and cost.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from herd.config import TeacherConfig
from herd.errors import UserError
from herd.progress import Progress
from herd.secrets import key_env
from herd.teacher.base import Request, Result, Teacher
from herd.teacher.journal import Journal
from herd.teacher.prices import cost, teacher_prices


@dataclass
class Usage:
    calls: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    attempts: int = 0
    by_error: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Engine:
    """A teacher with a memory. One per stage; `close()` when done."""

    def __init__(
        self, backend: Teacher, journal: Journal | None = None, prices: tuple[float, float] = (0.0, 0.0),
        stage: str = "", quiet: bool = True,
    ) -> None:
        self.backend = backend
        self.journal = journal
        self.prices = prices
        self.stage = stage
        self.quiet = quiet
        self.usage = Usage()

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def map(
        self, requests: Sequence[Request], on_result: Callable[[Result], None], label: str = "", progress: bool = True
    ) -> Usage:
        """Answer every request; `on_result` sees each exactly once, cached ones first."""
        model = self.model_id
        cached = self.journal.lookup(model, requests) if self.journal else {}
        # Requests with the same key (the same text under two row ids) make one call, and each gets its answer.
        by_key: dict[str, list[Request]] = {}
        for r in requests:
            by_key.setdefault(r.key(model), []).append(r)
        todo = [same[0] for key, same in by_key.items() if key not in cached]
        with Progress(label or self.stage or "teacher", total=len(requests), quiet=self.quiet,
                      enabled=progress) as bar:

            def emit(result: Result) -> None:
                result.key = result.key or result.request.key(model)
                if not result.cached:
                    result.cost = cost(self.prices, result.prompt_tokens, result.completion_tokens)
                    if self.journal is not None:
                        self.journal.record(model, result, self.stage)
                self._count(result)
                bar.advance(tokens=result.completion_tokens, cost=0.0 if result.cached else result.cost,
                            error=not result.ok)
                on_result(result)
                for twin in by_key[result.key][1:]:
                    copy = replace(result, request=twin, cached=True)
                    self._count(copy)
                    bar.advance(error=not result.ok)
                    on_result(copy)

            for key, result in cached.items():
                emit(replace(result, request=by_key[key][0]))
            if todo:
                self.backend.run(todo, emit)
        return self.usage

    def ask(self, request: Request) -> Result:
        out: list[Result] = []
        self.map([request], out.append, progress=False)
        return out[0]

    def _count(self, result: Result) -> None:
        u = self.usage
        if result.cached:
            u.cached += 1
            return
        u.calls += 1
        u.attempts += result.attempts
        u.prompt_tokens += result.prompt_tokens
        u.completion_tokens += result.completion_tokens
        u.cost += result.cost
        if not result.ok:
            u.failed += 1
            reason = result.error.split(":")[0]
            u.by_error[reason] = u.by_error.get(reason, 0) + 1

    def close(self) -> None:
        self.backend.close()
        if self.journal is not None:
            self.journal.close()


def make_backend(cfg: TeacherConfig) -> Teacher:
    """The backend a `[teacher]` section names. Checks what can be checked before anything is spent."""
    if cfg.backend == "fake":
        from herd.teacher.fake import FakeTeacher

        return FakeTeacher(cfg.model)
    if cfg.backend == "openai":
        from herd.teacher.openai_backend import OpenAITeacher

        return OpenAITeacher(cfg, api_key=api_key(cfg))
    if cfg.backend == "llamacpp":
        from herd.teacher.llamacpp import LlamaCppTeacher

        return LlamaCppTeacher(cfg)
    from herd.teacher.local import LocalTeacher

    return LocalTeacher(cfg)


def api_key(cfg: TeacherConfig) -> str | None:
    """The key from the environment variable the config names; never from the config itself."""
    if not cfg.api_key_env:
        return None
    value = os.environ.get(key_env(cfg.api_key_env, "teacher.api_key_env"))
    if not value:
        raise UserError(f"teacher.api_key_env: environment variable {cfg.api_key_env} is not set")
    return value


def open_engine(cfg: TeacherConfig, journal: str | Path | None, stage: str = "", quiet: bool = True) -> Engine:
    backend = make_backend(cfg)
    prices = teacher_prices(cfg)
    return Engine(backend, Journal(journal) if journal else None, prices, stage=stage, quiet=quiet)
