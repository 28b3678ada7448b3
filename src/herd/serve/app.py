"""The FastAPI application: routes, API-key check, body-size limit, SSE streaming, and OpenAI-format errors.

Bodies are read and parsed here rather than by FastAPI's own validation, so that every malformed request (bad
JSON, wrong types, a body over the limit) gets the OpenAI error shape and a 4xx, never a 422 in another format.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from herd.config import ServeConfig
from herd.conversation import conversation_prompt
from herd.serve.batcher import Overloaded
from herd.serve.loaded import ServedModel, sampling
from herd.serve.protocol import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    Entry,
    chat_body,
    chat_chunk,
    completion_body,
    completion_chunk,
    logprobs_block,
    new_id,
    parse,
    usage_chunk,
)
from herd.textgen import GenOutput, GenParams


def build_app(models: dict[str, ServedModel], cfg: ServeConfig, api_key: str | None = None) -> FastAPI:
    """An app serving `models`; `api_key` (None = open) is compared with each request's Bearer token."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for served in models.values():
            served.batcher.start()
        yield
        for served in models.values():
            await served.batcher.close()

    app = FastAPI(title="herd serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.model_names = list(models)
    _add_error_handlers(app)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:].strip() if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY)", code="invalid_api_key")

    def find(name: str) -> ServedModel:
        if name not in models:
            raise ApiError(404, f"the model {name!r} does not exist; this server has: {', '.join(models)}",
                           param="model", code="model_not_found")
        return models[name]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok",
                "models": {n: m.batcher.stats.as_dict(m.batcher.waiting) for n, m in models.items()}}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        check_key(request)
        return {"object": "list", "data": [m.card() for m in models.values()]}

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str, request: Request) -> dict[str, Any]:
        check_key(request)
        return find(name).card()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        check_key(request)
        req: ChatRequest = parse(ChatRequest, await read_json(request, cfg.max_body_bytes))
        served = find(req.model)
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        try:
            prompt = conversation_prompt(served.student, messages, served.multi_turn)
        except ValueError as exc:
            raise ApiError(400, f"messages: {exc}", param="messages") from None
        ids = served.encode(prompt)
        params = sampling(served, req, [ids], cfg, req.max_completion_tokens or req.max_tokens)
        if req.stream:
            return _sse(stream_chat(served, ids, params, _wants_usage(req)))
        outputs = await _generate(served, [ids], params)
        return chat_body(served.name, outputs[0], req.n)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        check_key(request)
        req: CompletionRequest = parse(CompletionRequest, await read_json(request, cfg.max_body_bytes))
        served = find(req.model)
        texts, encoded = prompt_ids(served, req.prompt)
        check_logprobs(served, req)
        params = sampling(served, req, encoded, cfg, req.max_tokens)
        if req.stream:
            if len(encoded) > 1:
                raise ApiError(400, "prompt: streaming takes one prompt", param="prompt")
            return _sse(stream_completion(served, encoded[0], params, _wants_usage(req)))
        k = req.logprobs
        if params.max_new_tokens > 0:
            outputs = await _generate(served, encoded, params, k)
        else:
            outputs = [GenOutput("", "length", len(ids), 0, texts=[""] * req.n) for ids in encoded]
        scored = await served.batcher.score(encoded, k or 0) if req.echo and k is not None else None
        return completion_body(served.name, outputs, req.n, _extras(served, req, texts, encoded, outputs, scored))

    return app


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON; 413 past `limit` bytes (checked while reading, not only from Content-Length)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is over {limit} bytes", code="request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ApiError(413, f"request body is over {limit} bytes", code="request_too_large")
    try:
        return json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # e.g. 100,000 nested brackets: valid JSON, but nothing this server takes
        raise ApiError(400, "request body is nested too deeply to be a request") from None


def prompt_ids(served: ServedModel, prompt: Any) -> tuple[list[str], list[list[int]]]:
    """(texts, token ids) of a completions prompt: a string, strings, token ids, or lists of token ids."""
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise ApiError(400, "prompt: give at least one prompt", param="prompt")
    if isinstance(prompt[0], str):
        return list(prompt), [served.encode(p) for p in prompt]
    rows = [prompt] if isinstance(prompt[0], int) else list(prompt)
    for i, row in enumerate(rows):
        if not row:
            raise ApiError(400, f"prompt: token list {i} is empty", param="prompt")
        bad = next((t for t in row if not 0 <= t < served.vocab), None)
        if bad is not None:
            raise ApiError(400, f"prompt: token id {bad} is outside the vocabulary of {served.name} "
                                f"(0 to {served.vocab - 1})", param="prompt", code="invalid_token_id")
    return [served.decode(r) for r in rows], [list(r) for r in rows]


def check_logprobs(served: ServedModel, req: CompletionRequest) -> None:
    if req.logprobs is None:
        return
    if served.spec.separate_decoder:
        raise ApiError(400, f"logprobs: {served.name} is an {served.spec.label}; log-probs are served for decoder-only "
                            "models", param="logprobs")
    if not served.batcher.continuous and req.max_tokens != 0:
        raise ApiError(400, f"logprobs: {served.name} runs without continuous batching, which log-probs of "
                            "generated tokens need; max_tokens 0 with echo works", param="logprobs")


def _extras(served: ServedModel, req: CompletionRequest, texts: list[str], encoded: list[list[int]],
            outputs: list[GenOutput], scored: Any) -> Any:
    """Echo and log-probs per choice, for `completion_body`."""
    piece = served.piece

    def extra(p: int, j: int, text: str) -> tuple[str, dict[str, Any] | None]:
        head = texts[p] if req.echo else ""
        if req.logprobs is None:
            return head + text, None
        entries: list[Entry] = []
        if scored is not None:
            entries = [(tid, lp, top) for tid, (lp, top) in zip(encoded[p], scored[p], strict=True)]
        generated = outputs[p].logprobs[j] if outputs[p].logprobs else []
        entries += [(tid, lp, top) for tid, lp, top in generated]
        return head + text, logprobs_block(entries, piece)

    return extra


async def _generate(served: ServedModel, prompts: list[list[int]], params: GenParams,
                    logprobs: int | None = None) -> list[GenOutput]:
    try:
        outputs = await served.batcher.generate(prompts, params, logprobs)
    except Overloaded as exc:
        raise _busy(exc) from None
    if params.temperature == 0 and params.num_return_sequences > 1:
        # greedy n > 1: one sequence computed, n identical choices sent; usage counts what the client receives
        outputs = [dataclasses.replace(o, completion_tokens=o.completion_tokens * params.num_return_sequences)
                   for o in outputs]
    return outputs


def _busy(exc: Overloaded) -> ApiError:
    return ApiError(503, str(exc), type="server_error", code="overloaded",
                    headers={"Retry-After": str(exc.retry_after)})


def _wants_usage(req: Any) -> bool:
    return bool(req.stream_options and req.stream_options.include_usage)


def _sse(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for event in events:
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def stream_chat(served: ServedModel, prompt: list[int], params: GenParams,
                with_usage: bool) -> AsyncIterator[dict[str, Any]]:
    cid = new_id("chatcmpl")

    def piece(index: int, text: str) -> dict[str, Any]:
        return chat_chunk(cid, served.name, index, {"content": text}, None)

    def first(index: int) -> dict[str, Any]:
        return chat_chunk(cid, served.name, index, {"role": "assistant", "content": ""}, None)

    def last(index: int, finish: str) -> dict[str, Any]:
        return chat_chunk(cid, served.name, index, {}, finish)

    return _stream(served, prompt, params, (first, piece, last), ("chat.completion.chunk", cid, with_usage))


def stream_completion(
    served: ServedModel, prompt: list[int], params: GenParams, with_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    cid = new_id("cmpl")

    def piece(index: int, text: str) -> dict[str, Any]:
        return completion_chunk(cid, served.name, index, text, None)

    def last(index: int, finish: str) -> dict[str, Any]:
        return completion_chunk(cid, served.name, index, "", finish)

    return _stream(served, prompt, params, (None, piece, last), ("text_completion", cid, with_usage))


def _stream(served: ServedModel, prompt: list[int], params: GenParams, make: tuple[Any, Any, Any],
            meta: tuple[str, str, bool]) -> AsyncIterator[dict[str, Any]]:
    """Queue the request now (a full queue is a 503 before the stream starts), then yield chunks as pieces come."""
    first, piece, last = make
    obj, cid, with_usage = meta
    try:
        handle = served.batcher.stream(prompt, params)
    except Overloaded as exc:
        raise _busy(exc) from None

    async def events() -> AsyncIterator[dict[str, Any]]:
        texts: dict[int, str] = {}
        try:
            async for index, text, finish in handle.pieces():
                if index not in texts:
                    texts[index] = ""
                    if first is not None:
                        yield first(index)
                if text is None:  # this choice is done: tell why (or count its tokens when the worker cannot)
                    if finish is None:
                        used = served.count(texts[index], special=False) if texts[index] else 0
                        finish = "length" if used >= params.max_new_tokens else "stop"
                    yield last(index, finish)
                elif text:
                    texts[index] += text
                    yield piece(index, text)
        except Exception as exc:  # the status line is gone; an error event tells the client what happened
            yield ApiError(500, f"generation failed: {exc}", type="server_error").body()
            return
        if with_usage:
            prompt_tokens = len(prompt)
            completion = sum(served.count(t, special=False) for t in texts.values() if t)
            counts = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                      "total_tokens": prompt_tokens + completion}
            yield usage_chunk(cid, served.name, obj, counts)

    return events()


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        err = ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", type=kind)
        return JSONResponse(err.body(), status_code=exc.status_code, headers=dict(exc.headers or {}))

    app.add_middleware(_Answer500)


class _Answer500:
    """Turns an unexpected exception into a 500 JSON answer *and ends the request there*.

    Starlette's own catch-all handler answers and then re-raises, and uvicorn resets the connection, so a keep-alive
    client lost its connection after any 500. This middleware sits inside that one and never re-raises.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:  # the status line is gone: nothing to answer; close this response cleanly
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            err = ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error")
            await JSONResponse(err.body(), status_code=500)(scope, receive, send)
