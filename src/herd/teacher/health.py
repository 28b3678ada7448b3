"""`herd teachers`: one line per configured teacher (the [teacher] section and, where set, the judge's own teacher)
saying whether it answers a short question, how fast, and what it said. Reads the config; writes nothing (the check
bypasses the journal so it always reaches the backend).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from herd.config import TeacherConfig
from herd.errors import UserError
from herd.secrets import redact_urls
from herd.teacher.base import Request, Result

QUESTION = "Reply with one short sentence: what colour is the sky on a clear day?"
SAMPLE_CHARS = 60


def check_teachers(cfg: Any) -> Iterator[tuple[str, bool]]:
    """(line, ok) for each configured teacher; ok is False when it could not be made or did not answer."""
    yield check_one("teacher", cfg.teacher)
    judge = getattr(cfg, "judge", None)
    judge_teacher = getattr(judge, "teacher", None)
    if judge is None or judge_teacher is None:
        return
    if getattr(judge, "same_as_teacher", False):
        yield "judge    uses the [teacher] above (judge.same_as_teacher = true)", True
    else:
        yield check_one("judge", judge_teacher)


def check_one(role: str, tcfg: TeacherConfig, question: str = QUESTION, max_tokens: int = 24) -> tuple[str, bool]:
    """Make the backend, load it (timed apart), ask one greedy question, and describe the outcome in one line."""
    from herd.teacher.engine import make_backend

    head = f"{role:<8} {tcfg.backend:<8} {tcfg.model}"
    started = time.monotonic()
    try:
        backend = make_backend(tcfg)
    except UserError as exc:
        return f"{head}  FAILED  {exc}", False
    try:
        load_s = _load(backend)
        asked = time.monotonic()
        results: list[Result] = []
        backend.run([Request.chat(question, max_tokens=max_tokens, temperature=0.0)], results.append)
        latency = time.monotonic() - asked
    except Exception as exc:  # any failure to answer is what this command reports
        why = f"{type(exc).__name__}: {exc}"
        why = backend.scrub(why) if hasattr(backend, "scrub") else redact_urls(why)  # scrub first, then cut
        return f"{head}  FAILED  {why}"[:300], False
    finally:
        backend.close()
    loaded = f" (load {load_s:.1f}s)" if load_s is not None else ""
    if not results or not results[0].ok:
        reason = results[0].error if results else "no answer"
        return f"{head}  FAILED  {reason}  after {time.monotonic() - started:.1f}s", False
    sample = " ".join(results[0].text.split())
    sample = sample if len(sample) <= SAMPLE_CHARS else sample[: SAMPLE_CHARS - 1] + "…"
    return f"{head}  ok  {latency:.2f}s{loaded}  [{backend.model_id}]  {sample!r}", True


def _load(backend: Any) -> float | None:
    """Seconds a lazily loaded backend (local) takes to load, so it is not counted as answer latency."""
    load = getattr(backend, "load", None)
    if not callable(load):
        return None
    started = time.monotonic()
    load()
    return time.monotonic() - started
