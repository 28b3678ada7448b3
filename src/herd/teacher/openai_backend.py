"""The `openai` teacher backend: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server,
Ollama, TGI), one or several base URLs at once.

`OpenAITeacher.run` drives an asyncio loop with one `httpx.AsyncClient`: up to `teacher.concurrency` calls in
flight, each sent to the base URL with the fewest in flight, paced under `teacher.rpm` / `teacher.tpm`
(herd.teacher.ratelimit), retried with exponential backoff and full jitter that honours Retry-After. A 429, a 5xx,
408/409, a timeout, a broken connection, a body that is not JSON, no choices or no content are retried; any other
4xx is not. After the last try the result carries `error="<reason>: <detail>"` and the stage rejects the row.

Creating the backend checks every base URL first (GET /models) so that an unreachable endpoint or a rejected key
stops a stage before it writes anything. The API key lives only in the request headers: it is scrubbed from every
error text and never appears in a repr.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from herd import __version__
from herd.config import TeacherConfig
from herd.errors import TeacherError, UserError
from herd.secrets import redact_urls, url_secrets
from herd.teacher.base import Emit, Request, Result, TopK
from herd.teacher.ratelimit import Pacer, estimate_tokens, parse_retry_after, retry_delay

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PREFLIGHT_TIMEOUT_S = 10.0
RETRYABLE_4XX = (408, 409, 429)
DETAIL_CHARS = 240
TOP_LOGPROBS = 20  # the most OpenAI (and vLLM by default) return per position


class OpenAITeacher:
    """A `Teacher` for OpenAI-compatible endpoints; `model_id` is "openai:<model>" whatever the URL."""

    def __init__(self, cfg: TeacherConfig, api_key: str | None, *, preflight: bool = True) -> None:
        check_settings(cfg)
        self.model = cfg.model
        self.model_id = f"openai:{cfg.model}"
        self.urls = [u.rstrip("/") for u in (cfg.base_urls or [DEFAULT_BASE_URL])]
        self.cfg = cfg
        self._key = api_key
        self.can_score = True  # asks for logprobs/top_logprobs; an endpoint that sends none is found at the first call
        self._secrets = sorted({api_key or "", *(x for u in self.urls for x in url_secrets(u))} - {""}, key=len,
                               reverse=True)
        if preflight:
            self.preflight()

    def __repr__(self) -> str:
        return f"OpenAITeacher(model={self.model!r}, base_urls={[display_url(u) for u in self.urls]!r})"

    def headers(self) -> dict[str, str]:
        out = {"User-Agent": f"herd/{__version__}"}
        if self._key:
            out["Authorization"] = f"Bearer {self._key}"
        return out

    def scrub(self, text: str, limit: int = DETAIL_CHARS) -> str:
        """One line of at most `limit` characters, with the key (if any) and URL secrets cut out first: cutting
        before scrubbing could leave part of a key that no longer matches."""
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        text = " ".join(redact_urls(text).split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    # ------------------------------------------------------------------------------------------------ preflight
    def preflight(self) -> None:
        """Every base URL answers and accepts the key, or a one-line UserError says which does not."""
        timeout = min(PREFLIGHT_TIMEOUT_S, self.cfg.timeout_s)
        with httpx.Client(timeout=timeout, headers=self.headers()) as client:
            for url in self.urls:
                self._check_endpoint(client, url)

    def _check_endpoint(self, client: httpx.Client, url: str) -> None:
        shown = display_url(url)
        try:
            response = client.get(endpoint(url, "models"))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            why = self.scrub(str(exc) or type(exc).__name__)
            raise UserError(f"teacher.base_urls: cannot reach {shown}: {why}") from None
        if response.status_code in (401, 403):
            if self.cfg.api_key_env:
                raise UserError(
                    f"teacher.api_key_env: {shown} rejected the key in ${self.cfg.api_key_env} "
                    f"(HTTP {response.status_code})"
                )
            raise UserError(
                f"teacher.api_key_env: {shown} wants an API key (HTTP {response.status_code}); set "
                "teacher.api_key_env to the name of the environment variable that holds it"
            )
        # Any other answer (even a 404 from a server without /models) proves the endpoint is there.

    # ------------------------------------------------------------------------------------------------ calls
    def run(self, requests: Sequence[Request], emit: Emit) -> None:
        if not requests:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self._run(list(requests), emit))
            return
        # Called from inside a running loop (a web app's handler): ours gets a thread of its own.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, self._run(list(requests), emit)).result()

    async def _run(self, requests: list[Request], emit: Emit) -> None:
        cfg = self.cfg
        state = _Flight(self.urls, asyncio.Semaphore(cfg.concurrency), Pacer(cfg.rpm, cfg.tpm))
        limits = httpx.Limits(max_connections=cfg.concurrency + 4, max_keepalive_connections=cfg.concurrency + 4)
        # Calls waiting out a backoff hold no connection, so more of them than `concurrency` may be alive at once.
        window = max(4 * cfg.concurrency, 64)
        live: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(timeout=cfg.timeout_s, limits=limits, headers=self.headers()) as client:
            try:
                for request in requests:
                    while len(live) >= window:
                        live = await _reap(live)
                    live.add(asyncio.create_task(self._answer(client, state, request, emit)))
                while live:
                    live = await _reap(live)
            finally:
                for task in live:
                    task.cancel()
                await asyncio.gather(*live, return_exceptions=True)

    async def _answer(self, client: httpx.AsyncClient, state: _Flight, request: Request, emit: Emit) -> None:
        """Try one request until it succeeds, cannot succeed, or runs out of attempts; emit what came of it."""
        cfg = self.cfg
        started = time.monotonic()
        avoid: str | None = None
        attempt = 0
        while True:
            attempt += 1
            avoid, outcome = await self._attempt(client, state, request, avoid)
            if isinstance(outcome, Result):
                outcome.attempts = attempt
                emit(outcome)
                return
            if not outcome.retryable or attempt >= cfg.max_attempts:
                break
            await asyncio.sleep(retry_delay(attempt, cfg.backoff_base_s, cfg.backoff_max_s, outcome.retry_after))
        emit(Result(request=request, ok=False, error=outcome.reason, attempts=attempt,
                    latency_s=time.monotonic() - started))

    async def _attempt(
        self, client: httpx.AsyncClient, state: _Flight, request: Request, avoid: str | None
    ) -> tuple[str, Result | TeacherError]:
        """One HTTP call: (the URL it went to, its result or the error it ended in)."""
        body = {"model": self.model, "messages": request.message_dicts(), **request.params()}
        if request.top_logprobs:
            body["logprobs"] = True  # top_logprobs (in params) counts only with logprobs on
        if request.score:  # a scoring request reads the candidates' log-probs where the reply first names one
            body.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        async with state.slots:
            await state.pacer.wait(estimate_tokens(request))
            url = state.pick(avoid)
            state.in_flight[url] += 1
            started = time.monotonic()
            try:
                response = await asyncio.wait_for(
                    client.post(endpoint(url, "chat/completions"), json=body), timeout=self.cfg.timeout_s
                )
            except (asyncio.TimeoutError, httpx.TimeoutException):
                return url, TeacherError(f"timeout: no answer within {self.cfg.timeout_s:g}s from {display_url(url)}")
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                why = self.scrub(str(exc) or type(exc).__name__)
                return url, TeacherError(f"connection: {display_url(url)}: {why}")
            finally:
                state.in_flight[url] -= 1
        try:
            return url, self.parse(response, request, url, time.monotonic() - started)
        except TeacherError as exc:
            return url, exc

    def parse(self, response: httpx.Response, request: Request, url: str, latency_s: float) -> Result:
        """A Result from a chat-completions reply, or a TeacherError that says what was wrong with it."""
        status = response.status_code
        if status != 200:
            retryable = status in RETRYABLE_4XX or status >= 500
            retry_after = _retry_after(response.headers)
            raise TeacherError(f"http_{status}: {self.scrub(_error_text(response))}", retryable=retryable,
                               retry_after=retry_after)
        try:
            body = response.json()
        except ValueError:
            raise TeacherError(f"bad_json: {len(response.content)} bytes that are not JSON: "
                               f"{self.scrub(response.text, 80)}") from None
        if not isinstance(body, dict):
            raise TeacherError(f"bad_json: expected an object, got {type(body).__name__}")
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise TeacherError("no_choices: the reply has no choices")
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise TeacherError("no_content: the first choice has no message content")
        usage: dict[str, Any] = body["usage"] if isinstance(body.get("usage"), dict) else {}
        prompt_tokens = _int(usage.get("prompt_tokens"), request.prompt_chars() // 4)
        completion_tokens = _int(usage.get("completion_tokens"), len(content) // 4)
        raw = {k: body[k] for k in ("id", "model", "created", "system_fingerprint") if k in body}
        if request.score:
            scores = candidate_scores(choices[0], request.score)
            raw.update({"scores": scores} if scores is not None else {"no_logprobs": True})
        return Result(
            request=request, ok=True, text=content, finish_reason=str(choices[0].get("finish_reason") or ""),
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, latency_s=latency_s,
            raw={**raw, "usage": usage, "endpoint": display_url(url)},
            topk=top_logprobs_of(choices[0]) if request.top_logprobs else None,
        )

    def close(self) -> None:
        return None


class _Flight:
    """What one `run` shares between its calls: the concurrency slots, the pacer, in-flight counts per URL."""

    def __init__(self, urls: list[str], slots: asyncio.Semaphore, pacer: Pacer) -> None:
        self.urls = urls
        self.slots = slots
        self.pacer = pacer
        self.in_flight = dict.fromkeys(urls, 0)
        self._turn = 0

    def pick(self, avoid: str | None) -> str:
        """The URL with the fewest calls in flight; ties go round-robin; a retry avoids the URL that just failed."""
        candidates = [u for u in self.urls if u != avoid] or self.urls
        self._turn += 1
        n = len(candidates)
        rotated = [candidates[(self._turn + i) % n] for i in range(n)]
        return min(rotated, key=lambda u: self.in_flight[u])


async def _reap(live: set[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
    """Wait for at least one task; re-raise what a finished one raised (an `emit` that failed stops the run)."""
    done, pending = await asyncio.wait(live, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()
    return pending


def candidate_scores(choice: dict[str, Any], candidates: Sequence[str]) -> dict[str, float | None] | None:
    """Log-probs of the candidates at the first reply token that is one of them (" A" counts as "A"), from the
    choice's `logprobs.content[].top_logprobs`; None when the endpoint sent no log-probs at all."""
    import math

    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    for position in content:
        if not isinstance(position, dict) or str(position.get("token", "")).strip() not in candidates:
            continue
        seen: dict[str, float] = {}  # token text -> log-prob, so the chosen token is not counted twice
        for alt in [*(position.get("top_logprobs") or []), position]:
            if isinstance(alt, dict) and isinstance(alt.get("logprob"), (int, float)):
                seen.setdefault(str(alt.get("token", "")), float(alt["logprob"]))
        found: dict[str, float | None] = dict.fromkeys(candidates)
        for token, value in seen.items():
            name = token.strip()
            if name in found:
                before = found[name]
                found[name] = value if before is None else math.log(math.exp(before) + math.exp(value))
        return found
    return dict.fromkeys(candidates)


def check_settings(cfg: TeacherConfig) -> None:
    """Values that would make the backend misbehave, as config errors (before anything is sent or written)."""
    for name in ("concurrency", "max_attempts"):
        if getattr(cfg, name) < 1:
            raise UserError(f"teacher.{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("rpm", "tpm", "backoff_base_s", "backoff_max_s"):
        if getattr(cfg, name) < 0:
            raise UserError(f"teacher.{name} must not be negative, got {getattr(cfg, name)}")
    if cfg.timeout_s <= 0:
        raise UserError(f"teacher.timeout_s must be positive, got {cfg.timeout_s}")
    if not cfg.model or cfg.model == "embedded":
        raise UserError("teacher.model: name the model the endpoint serves (e.g. gpt-4o-mini)")
    for i, url in enumerate(cfg.base_urls):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UserError(f"teacher.base_urls[{i}]: {display_url(url)!r} is not an http(s) URL")


def endpoint(url: str, path: str) -> str:
    """`path` under a base URL, before its query string: a gateway that wants `?api-key=...` keeps getting it."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"{parts.path.rstrip('/')}/{path}", parts.query, ""))


def display_url(url: str) -> str:
    """A URL fit for logs and journals: no user:password part, no query string (either may carry a secret)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _retry_after(headers: httpx.Headers) -> float | None:
    millis = headers.get("retry-after-ms")  # OpenAI sends this finer form beside Retry-After
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def _error_text(response: httpx.Response) -> str:
    """The server's own words about an error: error.message from a JSON body, else the start of the body."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if body.get("message"):
            return str(body["message"])
    text = re.sub(r"<[^>]+>", " ", response.text)  # an HTML error page: its words, not its tags (cut after scrub)
    return text.strip() or response.reason_phrase or "no detail"


def top_logprobs_of(choice: dict[str, Any]) -> TopK:
    """The token strings and top-K log-probs of a choice (`logprobs.content`); a TeacherError when there are none
    (the endpoint ignores or refuses top_logprobs: asking again would not help)."""
    content = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
    if not isinstance(content, list) or not content:
        raise TeacherError("no_logprobs: responses.top_logprobs is set but the endpoint returned no logprobs.content",
                           retryable=False)
    topk = TopK()
    try:
        for step in content:
            candidates = step.get("top_logprobs") or [{"token": step["token"], "logprob": step["logprob"]}]
            topk.sampled.append(str(step["token"]))
            topk.pieces.append([str(c["token"]) for c in candidates])
            topk.logprobs.append([float(c["logprob"]) for c in candidates])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise TeacherError("bad_logprobs: logprobs.content entries lack token / logprob") from None
    return topk


def _int(value: Any, fallback: int) -> int:
    """A token count from `usage`, or an estimate where the server sends none (so costs are never silently 0)."""
    try:
        return int(value) if value is not None else fallback
    except (TypeError, ValueError):
        return fallback
