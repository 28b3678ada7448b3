"""The OpenAI wire format herd serves: request models (checked strictly), response and stream-chunk bodies, and
errors as `{"error": {"message", "type", "param", "code"}}`.

Requests are validated with pydantic in strict mode, so `"temperature": "hot"` or `"n": true` is a 400 naming the
field rather than a silent coercion. Unknown fields are accepted and ignored (clients send many optional ones);
`presence_penalty` and `frequency_penalty` are accepted and ignored. Completions take `logprobs` (0 to
`MAX_LOGPROBS` alternatives per token) and `echo`, as lm-eval's `local-completions` model sends them; chat requests
refuse `logprobs` and `echo`. `repetition_penalty` is an extension (as in vLLM) that maps to transformers' option of
that name.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from herd.textgen import GenOutput

Stop = str | list[str] | None
MAX_LOGPROBS = 5  # as OpenAI's completions endpoint
MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds
MAX_STOP = 16  # OpenAI allows 4; lm-eval adds the EOS text to a task's own `until` list, which can hold more
Entry = tuple[int, float | None, list[tuple[int, float]]]  # token id, its log-prob (None: first prompt token), top-k


class ApiError(Exception):
    """An error the server answers with: HTTP status plus the OpenAI error body (and maybe headers)."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
        code: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    """Fields both endpoints share."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stop: Stop = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stream: bool = False
    stream_options: StreamOptions | None = None
    repetition_penalty: float | None = Field(None, gt=0.0)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        items = [self.stop] if isinstance(self.stop, str) else self.stop
        if len(items) > MAX_STOP:
            raise ApiError(400, f"stop: at most {MAX_STOP} stop sequences", param="stop")
        return tuple(s for s in items if s)


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[int] | list[list[int]] | list[str]
    max_tokens: int | None = Field(None, ge=0)  # 0 with echo: only the prompt's log-probs (lm-eval's loglikelihood)
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


def parse(model: type[_Sampling], obj: Any) -> Any:
    """Validate a decoded JSON body; the first problem becomes a 400 naming the field."""
    if not isinstance(obj, dict):
        raise ApiError(400, "request body must be a JSON object")
    try:
        req = model.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first["loc"])
        raise ApiError(400, f"{param or 'body'}: {first['msg']}", param=param) from None
    if isinstance(req, ChatRequest):
        if req.logprobs:
            raise ApiError(400, "logprobs: chat completions do not return log-probs here; use /v1/completions",
                           param="logprobs")
        if obj.get("echo"):
            raise ApiError(400, "echo: only /v1/completions can echo the prompt", param="echo")
    if isinstance(req, CompletionRequest):
        if req.suffix:
            raise ApiError(400, "suffix is not supported by herd serve", param="suffix")
        if (req.best_of or 1) > 1:
            raise ApiError(400, "best_of is not supported by herd serve", param="best_of")
        if req.stream and (req.echo or req.logprobs is not None):
            raise ApiError(400, "stream: echo and logprobs need a non-streaming request", param="stream")
    return req


_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _param(loc: tuple[Any, ...]) -> str | None:
    """A field path without pydantic's union-member labels: ('messages', 0, 'content', 'str') -> messages.0.content."""
    parts = [str(p) for p in loc if isinstance(p, int) or ("[" not in str(p) and str(p) not in _UNION_TAGS)]
    return ".".join(parts) or None


# --------------------------------------------------------------------------------------------------- responses
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(outputs: list[GenOutput]) -> dict[str, int]:
    prompt = sum(o.prompt_tokens for o in outputs)
    completion = sum(o.completion_tokens for o in outputs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def texts_of(output: GenOutput, n: int) -> list[str]:
    return (output.texts or [output.text])[:n] if n > 1 else [output.text]


def chat_body(model: str, output: GenOutput, n: int) -> dict[str, Any]:
    choices = [
        {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": output.finish_reason,
         "logprobs": None}
        for i, text in enumerate(texts_of(output, n))
    ]
    return {"id": new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage([output]), "system_fingerprint": None}


def completion_body(model: str, outputs: list[GenOutput], n: int, extra: Any = None) -> dict[str, Any]:
    """`extra(p, j, text) -> (text, logprobs or None)` adds the echo and the log-probs of prompt p, choice j."""
    choices = []
    for p, output in enumerate(outputs):
        for j, text in enumerate(texts_of(output, n)):
            text, logprobs = extra(p, j, text) if extra is not None else (text, None)
            choices.append({"index": p * n + j, "text": text, "finish_reason": output.finish_reason,
                            "logprobs": logprobs})
    return {"id": new_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage(outputs), "system_fingerprint": None}


def chat_chunk(cid: str, model: str, index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}],
            "system_fingerprint": None}


def completion_chunk(cid: str, model: str, index: int, text: str, finish: str | None) -> dict[str, Any]:
    return {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": index, "text": text, "finish_reason": finish, "logprobs": None}]}


def usage_chunk(cid: str, model: str, obj: str, counts: dict[str, int]) -> dict[str, Any]:
    """The last chunk when a client asks for `stream_options.include_usage`: empty choices plus usage."""
    return {"id": cid, "object": obj, "created": int(time.time()), "model": model, "choices": [], "usage": counts}


def logprobs_block(entries: list[Entry], piece: Any, start: int = 0) -> dict[str, Any]:
    """OpenAI's completions `logprobs` object; `piece(id)` is a token's text (offsets add those lengths up)."""
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    offsets: list[int] = []
    at = start
    for tid, logprob, top in entries:
        text = piece(tid)
        tokens.append(text)
        token_logprobs.append(logprob)
        offsets.append(at)
        at += len(text)
        if logprob is None:
            tops.append(None)
            continue
        alternatives: dict[str, float] = {}
        for alt, value in top:  # two ids with the same text: the likelier one stands for both
            key = piece(alt)
            alternatives[key] = max(value, alternatives.get(key, value))
        tops.append(alternatives)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": tops, "text_offset": offsets}
