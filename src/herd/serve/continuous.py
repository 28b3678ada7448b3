"""The event-loop side of continuous batching: turns requests into rows of a `decode.DecodeLoop` and its results back
into `GenOutput`s or stream pieces.

A request with n prompts and `n` choices becomes n x choices rows (greedy: one row per prompt, its answer repeated,
as generating the same greedy answer n times would). Rows join the running batch at the next decoding step, so a
short request is never held behind a long one. Each sampled choice gets its own generator (seed + choice index when
the request has a seed), so a seeded answer is the same whoever shares the batch. The same interface as
`batcher.Batcher` (the request-level batcher encoder-decoders use): `generate`, `stream`, `score`, `stats`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from herd.serve.batcher import Overloaded, Stats, StreamHandle
from herd.serve.decode import DecodeLoop, Row, Score
from herd.textgen import GenOutput, GenParams


class ContinuousBatcher:
    """Rows of every request share one step loop; `start()` inside the server's event loop, `close()` at the end."""

    continuous = True

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 32, batch_tokens: int = 8192,
                 max_queue: int = 256) -> None:
        self.stats = Stats()
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.loop_thread = DecodeLoop(model, tokenizer, max_batch=max_batch, batch_tokens=batch_tokens,
                                      on_step=self._count)
        self._events: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._events = asyncio.get_running_loop()
        self.loop_thread.start()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.loop_thread.stop)

    @property
    def waiting(self) -> int:
        return len(self.loop_thread.waiting) + self.loop_thread.inbox.qsize()

    def _count(self, width: int, seconds: float) -> None:  # loop thread; plain counters, read by /health
        self.stats.batches += 1  # forward passes (decoding steps and prefills)
        self.stats.sequences += width
        self.stats.largest_batch = max(self.stats.largest_batch, width)
        self.stats.busy_s += seconds

    def _rows(self, prompts: list[list[int]], params: GenParams, logprobs: int | None,
              on_event: Any) -> list[list[Row]]:
        if self.waiting >= self.max_queue:
            self.stats.rejected += 1
            raise Overloaded(retry_after=1)
        self.stats.requests += 1
        choices = params.num_return_sequences if params.temperature > 0 else 1
        assert self._events is not None, "ContinuousBatcher.start() was not called"
        loop = self._events
        rows = []
        for p, ids in enumerate(prompts):
            mine = []
            for j in range(choices):
                seed = None if params.seed is None else params.seed + j
                index = p * choices + j

                def emit(kind: str, row: Row, index: int = index) -> None:
                    loop.call_soon_threadsafe(on_event, index, kind, row.text, row.finish)

                mine.append(Row(list(ids), params, emit, top_logprobs=logprobs, seed=seed))
            rows.append(mine)
        for mine in rows:
            for row in mine:
                self.loop_thread.submit(row)
        return rows

    async def generate(self, prompts: list[list[int]], params: GenParams,
                       logprobs: int | None = None) -> list[GenOutput]:
        """Answer prompts (in order); each prompt's rows join the running batch at the next step."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        left = [0]

        def on_event(index: int, kind: str, text: str, finish: str) -> None:
            if kind == "done":
                left[0] -= 1
                if left[0] == 0 and not done.done():
                    done.set_result(None)

        rows = self._rows(prompts, params, logprobs, on_event)
        left[0] = sum(len(mine) for mine in rows)
        try:
            await done
        finally:
            for mine in rows:
                for row in mine:
                    row.cancel.set()  # no-op for finished rows; a client that went away frees its rows
        failed = [r.finish for mine in rows for r in mine if r.finish.startswith("error")]
        if failed:
            self.stats.failed += 1
            raise RuntimeError(failed[0].removeprefix("error: "))
        return [_output(mine, params) for mine in rows]

    def stream(self, prompt: list[int], params: GenParams) -> StreamHandle:
        """Queue one prompt's rows now (a full queue is a 503 before any byte is sent); iterate the handle."""
        handle = StreamHandle(params.stop)
        n = max(1, params.num_return_sequences)
        on_event = handle.event
        if params.temperature == 0 and n > 1:  # one greedy row stands for all n identical choices

            def on_event(index: int, kind: str, text: str, finish: str) -> None:
                for choice in range(n):
                    handle.event(choice, kind, text, finish)

        rows = self._rows([prompt], params, None, on_event)
        for row in rows[0]:
            row.streaming = True
        def close() -> None:
            for row in rows[0]:
                row.cancel.set()

        handle.on_close = close
        handle.expect(n)
        return handle

    async def score(self, rows: list[list[int]], k: int) -> Any:
        """Prompt-token log-probs (echo), run by the loop thread between two steps."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()

        def done(result: Any) -> None:
            loop.call_soon_threadsafe(_settle, future, result)

        self.loop_thread.submit(Score(rows, k, done))
        return await future


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _output(rows: list[Row], params: GenParams) -> GenOutput:
    copies = params.num_return_sequences if params.temperature == 0 else 1
    texts = [r.text for r in rows] * copies
    return GenOutput(
        text=texts[0], finish_reason=rows[0].finish, prompt_tokens=len(rows[0].ids),
        completion_tokens=sum(len(r.out) for r in rows), texts=texts,
        logprobs=[_kept_logprobs(r) for r in rows] * copies,
    )


def _kept_logprobs(row: Row) -> list[tuple[int, float, list[tuple[int, float]]]]:
    """Log-probs of the tokens of the answer (an EOS that ended it is not part of the text)."""
    return row.logprobs[: len(row.out) - (1 if row.eos else 0)]
