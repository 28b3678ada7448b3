"""Request-level batching for one served model (encoder-decoders, and decoders the step loop cannot run): requests
that arrive close together run as one `generate` call, so their encoder pass and their decoding run together.
Decoder-only models get continuous batching instead (continuous.py).

Each model has one `Batcher` and one worker thread (so two batches never fight over the same weights). Requests
wait in a queue; when the worker is idle and a request arrives it waits for company (`wait_s`, longer while more
keep arriving), then takes the oldest request and every other waiting request with the same sampling parameters, up
to `max_batch` sequences, and runs them through the pluggable batch function (`generate_texts` in production).
Requests that arrive while a batch runs form the next one. Streaming requests run alone, through the stream
function, one choice after another (each with its own seed, seed + choice index). A sampled request with a seed also
runs alone, so its answer does not depend on who else was in the batch.

A full queue raises `Overloaded` (the server answers 503 with Retry-After). A request whose client went away before
its turn is dropped without running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from herd.textgen import GenOutput, GenParams

Ids = list[int]
BatchFn = Callable[[list[Ids], GenParams], list[GenOutput]]
StreamFn = Callable[[Ids, GenParams], Iterator[str]]
ScoreFn = Callable[[list[Ids], int], Any]


class Overloaded(Exception):
    """The queue is full; try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"server busy: queue full, retry after {retry_after}s")
        self.retry_after = retry_after


@dataclass
class _Job:
    prompts: list[Ids]
    params: GenParams
    future: asyncio.Future[Any]
    stream: StreamHandle | None = None  # streaming jobs hand their pieces to it
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def width(self) -> int:
        return len(self.prompts) * max(1, self.params.num_return_sequences)

    @property
    def solo(self) -> bool:
        return self.stream is not None or (self.params.temperature > 0 and self.params.seed is not None)


@dataclass
class Stats:
    """What /health reports per model."""

    requests: int = 0
    batches: int = 0
    sequences: int = 0
    largest_batch: int = 0
    rejected: int = 0
    failed: int = 0
    busy_s: float = 0.0

    def as_dict(self, waiting: int) -> dict[str, Any]:
        mean = self.sequences / self.batches if self.batches else 0.0
        return {**self.__dict__, "waiting": waiting, "mean_batch": round(mean, 2), "busy_s": round(self.busy_s, 3)}


class Batcher:
    """Queue + worker for one model. `start()` inside the server's event loop; `close()` on shutdown."""

    continuous = False

    def __init__(
        self, batch_fn: BatchFn, stream_fn: StreamFn | None = None, *, max_batch: int = 32, wait_s: float = 0.005,
        max_queue: int = 256, score_fn: ScoreFn | None = None,
    ) -> None:
        self.batch_fn = batch_fn
        self.stream_fn = stream_fn
        self.score_fn = score_fn
        self.max_batch = max(1, max_batch)
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.stats = Stats()
        self._pending: deque[_Job] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="herd-model")

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._pending:
            job.cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    async def generate(self, prompts: list[Ids], params: GenParams, logprobs: int | None = None) -> list[GenOutput]:
        """Answer prompts (in order) as part of whatever batch the worker forms next (no log-probs here)."""
        if logprobs is not None:
            raise ValueError("log-probs of generated tokens need the continuous batcher")
        job = self._enqueue(prompts, params, stream=None)
        try:
            return await job.future
        finally:
            job.cancel.set()  # a client that went away cancels this await; the worker then skips the job

    def stream(self, prompt: Ids, params: GenParams) -> StreamHandle:
        """Queue a streaming request now (so a full queue is known before any byte is sent); iterate the handle."""
        handle = StreamHandle(())
        job = self._enqueue([prompt], params, stream=handle)
        handle.expect(max(1, params.num_return_sequences))
        handle.on_close = job.cancel.set
        return handle

    async def score(self, rows: list[Ids], k: int) -> Any:
        """Prompt-token log-probs (echo), in the model's worker thread."""
        if self.score_fn is None:
            raise ValueError("this model cannot score prompts")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.score_fn, rows, k)

    def _enqueue(self, prompts: list[Ids], params: GenParams, stream: StreamHandle | None) -> _Job:
        if len(self._pending) >= self.max_queue:
            self.stats.rejected += 1
            raise Overloaded(retry_after=1)
        job = _Job(prompts, params, asyncio.get_running_loop().create_future(), stream)
        self._pending.append(job)
        self.stats.requests += 1
        assert self._wake is not None, "Batcher.start() was not called"
        self._wake.set()
        return job

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                await self._gather()
            group = self._take()
            if group:
                await self._run(group)

    async def _gather(self) -> None:
        """Idle until now: wait for company while requests keep arriving (each arrival buys another `wait_s`, up to
        ten in all) and the batch has room. Clients that each send their next request as soon as their last answer
        comes back arrive a few ms apart; one fixed short window would split them into small batches."""
        if self.wait_s <= 0 or self.max_batch <= 1:
            return
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 10 * self.wait_s
        seen = -1
        while len(self._pending) != seen and loop.time() < give_up:
            if sum(job.width for job in self._pending) >= self.max_batch:
                return
            seen = len(self._pending)
            await asyncio.sleep(self.wait_s)

    def _take(self) -> list[_Job]:
        """The oldest live job plus every waiting job that can share its batch (same parameters, room left)."""
        while self._pending and self._pending[0].cancel.is_set():
            self._pending.popleft()
        if not self._pending:
            return []
        head = self._pending.popleft()
        group, width = [head], head.width
        if head.solo:
            return group
        keep: deque[_Job] = deque()
        while self._pending:
            job = self._pending.popleft()
            if job.cancel.is_set():
                continue
            if not job.solo and job.params == head.params and width + job.width <= self.max_batch:
                group.append(job)
                width += job.width
            else:
                keep.append(job)
        self._pending = keep
        return group

    async def _run(self, group: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        head = group[0]
        try:
            if head.stream is not None:
                try:
                    await loop.run_in_executor(self._pool, self._stream_job, head, loop)
                except Exception as exc:  # the stream tells its client; nobody awaits the future of a stream
                    self.stats.failed += 1
                    head.stream.fail(exc)
                    _settle(head.future, result=[])
                    return
                results: list[list[GenOutput]] = [[]]
            else:
                prompts = [p for job in group for p in job.prompts]
                outputs = await loop.run_in_executor(self._pool, self._batch, prompts, head.params)
                results, at = [], 0
                for job in group:
                    results.append(outputs[at : at + len(job.prompts)])
                    at += len(job.prompts)
        except Exception as exc:  # the requests fail; the worker and the server carry on
            self.stats.failed += len(group)
            for job in group:
                _settle(job.future, exc=exc)
            return
        finally:
            self._count(group, time.monotonic() - started)
        for job, result in zip(group, results, strict=True):
            _settle(job.future, result=result)

    def _batch(self, prompts: list[Ids], params: GenParams) -> list[GenOutput]:
        """Worker thread: one batch; a seeded sampled request with n > 1 runs choice by choice (seed + choice index),
        so its answers equal the streamed ones."""
        n = params.num_return_sequences
        if params.seed is None or params.temperature == 0 or n <= 1:
            return self.batch_fn(prompts, params)
        runs = [self.batch_fn(prompts, dataclasses.replace(params, seed=params.seed + j, num_return_sequences=1))
                for j in range(n)]
        merged = []
        for p in range(len(prompts)):
            outs = [run[p] for run in runs]
            merged.append(GenOutput(text=outs[0].text, finish_reason=outs[0].finish_reason,
                                    prompt_tokens=outs[0].prompt_tokens,
                                    completion_tokens=sum(o.completion_tokens for o in outs),
                                    texts=[o.text for o in outs]))
        return merged

    def _count(self, group: list[_Job], seconds: float) -> None:
        width = sum(job.width for job in group)
        self.stats.batches += 1
        self.stats.sequences += width
        self.stats.largest_batch = max(self.stats.largest_batch, width)
        self.stats.busy_s += seconds

    def _stream_job(self, job: _Job, loop: asyncio.AbstractEventLoop) -> None:
        """Worker thread: run the stream function for each of the n choices in turn (one sequence each), handing
        pieces to the event loop."""
        assert self.stream_fn is not None and job.stream is not None
        handle = job.stream
        for index in range(max(1, job.params.num_return_sequences)):
            seed = None if job.params.seed is None else job.params.seed + index  # each choice its own sample
            params = dataclasses.replace(job.params, seed=seed, num_return_sequences=1)
            pieces = self.stream_fn(job.prompts[0], params)
            try:
                for piece in pieces:
                    if job.cancel.is_set():
                        return
                    loop.call_soon_threadsafe(handle.piece, index, piece)
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()
            loop.call_soon_threadsafe(handle.end, index, None)


def _settle(future: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class StreamHandle:
    """The pieces of a streaming request, fed from the worker through the event loop; iterate `pieces()`.

    `pieces()` yields (choice index, text, None) for each piece and (choice index, None, finish reason or None) when
    a choice ends. A producer either hands ready pieces (`piece`) or the whole answer so far (`event`, continuous
    batching): then text that could still be cut by a stop string, and a character whose bytes are not all
    generated yet, are held back until they are clear.
    """

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.queue: asyncio.Queue[tuple[int, str | None, str | None]] = asyncio.Queue()
        self.hold = max((len(s) for s in stop if s), default=1) - 1
        self.sent: dict[int, str] = {}
        self.left = 1
        self.error: BaseException | None = None
        self.on_close: Callable[[], Any] | None = None

    def expect(self, choices: int) -> None:
        self.left = choices

    def piece(self, index: int, text: str) -> None:
        self.queue.put_nowait((index, text, None))

    def end(self, index: int, finish: str | None) -> None:
        self.queue.put_nowait((index, None, finish))

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.queue.put_nowait((-1, None, None))

    def event(self, index: int, kind: str, text: str, finish: str) -> None:
        sent = self.sent.get(index, "")
        if kind == "done":
            if finish.startswith("error"):
                self.fail(RuntimeError(finish.removeprefix("error: ")))
                return
            if text.startswith(sent) and len(text) > len(sent):
                self.piece(index, text[len(sent):])
            self.end(index, finish)
            return
        ready = text.rstrip("\ufffd")  # a character whose bytes are not all decoded yet
        ready = ready[: max(0, len(ready) - self.hold)]
        if ready.startswith(sent) and len(ready) > len(sent):
            self.sent[index] = ready
            self.piece(index, ready[len(sent):])

    async def pieces(self) -> Any:
        try:
            while self.left > 0:
                index, text, finish = await self.queue.get()
                if self.error is not None:
                    raise self.error
                if text is None:
                    self.left -= 1
                yield index, text, finish
        finally:
            if self.on_close is not None:
                self.on_close()
