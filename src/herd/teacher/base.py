"""The `Teacher` protocol every backend implements, and the request/result types that cross it.

A `Request` is one chat call: messages plus sampling parameters (and optionally a response format, a JSON schema the
answer must follow) plus a sample index (so asking the same prompt for several samples gives several journal
rows). Its `key(model)` hashes all of that with the model's identity: the journal's primary key, so a finished call
is never made twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Request:
    """One chat-completion call. `tag` is the caller's (e.g. the row id); it is not part of the key."""

    messages: tuple[tuple[str, str], ...]
    max_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    sample_index: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    tag: str = ""
    top_logprobs: int = 0  # K > 0: also return the teacher's top-K next-token log-probs per generated token
    # An OpenAI `response_format` object as JSON text ('' = free text); a json_schema in it is what the local
    # backend constrains its decoding to (herd.teacher.structured). Part of the key when set.
    response_format: str = ""
    # Score these candidate continuations instead of (or besides) writing a reply: a backend that can returns, in
    # `Result.raw["scores"]`, each candidate's log-probability as the next token where the reply's grade goes
    # (None where it could not see it). Part of the key only when set, so other requests keep their keys.
    score: tuple[str, ...] = ()

    @staticmethod
    def chat(user: str, system: str | None = None, **params: Any) -> Request:
        messages = ((("system", system),) if system else ()) + (("user", user),)
        return Request(messages=messages, **params)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}
        if self.seed is not None:
            out["seed"] = self.seed
        if self.stop:
            out["stop"] = list(self.stop)
        if self.top_logprobs:
            out["top_logprobs"] = self.top_logprobs  # only when asked: earlier journal keys stay valid
        if self.response_format:
            out["response_format"] = json.loads(self.response_format)
        return out

    def key(self, model: str) -> str:
        scored = [list(self.score)] if self.score else []
        blob = json.dumps(
            [model, self.message_dicts(), self.params(), self.sample_index, *scored], sort_keys=True, ensure_ascii=False
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def prompt_chars(self) -> int:
        return sum(len(content) for _, content in self.messages)


@dataclass
class Result:
    """What came back for one request: a text, or after the last attempt the reason it failed."""

    request: Request
    ok: bool
    text: str = ""
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 1
    error: str = ""
    cached: bool = False
    raw: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    cost: float = 0.0
    topk: TopK | None = None  # with request.top_logprobs > 0 (journaled with the call)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class TopK:
    """The teacher's next-token distribution at each generated token, cut to its K most likely tokens.

    `tokens[t]` is the t-th generated token id; `ids[t]` / `logprobs[t]` are the top-K candidates at that step,
    most likely first. Local backends give log-probs of the raw model distribution (temperature 1, before
    top-p or any other sampling processor) and fill `ids`; an OpenAI-compatible endpoint returns token strings,
    kept in `pieces` (and `tokens` empty) until a tokenizer maps them to ids (herd.teacher.topk).
    """

    tokens: list[int] = field(default_factory=list)
    ids: list[list[int]] = field(default_factory=list)
    logprobs: list[list[float]] = field(default_factory=list)
    pieces: list[list[str]] = field(default_factory=list)
    sampled: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.logprobs)


Emit = Callable[[Result], None]


class Teacher(Protocol):
    """A backend: answers requests and hands each result to `emit` as soon as it is ready (any order).

    `model_id` is the identity that goes into journal keys: the same model behind a different URL is the same
    teacher, so moving an endpoint does not pay twice. A backend that answers `Request.score` sets an attribute
    `can_score = True` (optional: the judge reads it with getattr and grades from text without it).
    """

    model_id: str

    def run(self, requests: Sequence[Request], emit: Emit) -> None: ...

    def close(self) -> None: ...


def scores_of(result: Result) -> dict[str, float | None] | None:
    """The candidate log-probabilities a scoring request got back, or None when the backend returned none."""
    scores = result.raw.get("scores") if isinstance(result.raw, dict) else None
    return dict(scores) if isinstance(scores, dict) else None
