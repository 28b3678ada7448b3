"""Progress you can watch: a rich bar with rows/s, tokens/s, ETA, errors and cost so far; or, in quiet mode (CI
logs, no terminal), one plain line when the work starts and then every few seconds with the same numbers. Stages
count rows (teacher calls, with errors and cost); training counts optimizer steps and shows the loss (`status`).

Quiet lines come from a timer thread, not from `advance`: a local teacher finishes a whole batch of rows at once after
minutes of work, and a line written at the batch's first row would say "1 done" and extrapolate an ETA of hours.
The timer also keeps a line coming while a long first batch is still running ("0/48 ... eta ?").
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any


def note(line: str) -> None:
    """One status line on stderr, beside the bars (stdout holds a command's result); from the main process only,
    since under `accelerate launch` every process runs the same code."""
    if os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr, flush=True)


class Progress:
    """`with Progress("responses", total=n) as p: p.advance(tokens=..., cost=..., error=...)`.

    `unit` names what is counted; `start` is work done before this run (a resumed training: its ETA and rates come
    from this run's own pace); `costs=False` leaves out errors and dollars; `status` is free text shown last."""

    def __init__(
        self, label: str, total: int | None, quiet: bool = False, every_s: float = 10.0, enabled: bool = True,
        *, unit: str = "rows", start: int = 0, costs: bool = True,
    ) -> None:
        self.enabled = enabled
        self.label = label
        self.total = total
        self.quiet = quiet or not sys.stderr.isatty()
        self.every_s = every_s
        self.unit = unit
        self.start = start
        self.costs = costs
        self.status = ""
        self.done = start
        self.errors = 0
        self.tokens = 0
        self.cost = 0.0
        self.started = time.monotonic()
        self._last_log = self.started
        self._bar: Any = None
        self._task: Any = None
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    def __enter__(self) -> Progress:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> Progress:
        """Show the bar (or the first quiet line); `with` calls this, a callback-driven loop calls it itself."""
        if self.enabled and not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[extra]}"),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.start, rate="", extra="")
        elif self.enabled:
            self.log()
            self._timer = threading.Thread(target=self._tick, daemon=True, name=f"progress-{self.label}")
            self._timer.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            self.log()

    def advance(self, n: int = 1, tokens: int = 0, cost: float = 0.0, error: bool = False) -> None:
        self.done += n
        self.tokens += tokens
        self.cost += cost
        self.errors += int(error)
        if self._bar is not None:
            self._bar.update(self._task, advance=n, rate=self.rates(), extra=self.extras())

    def rates(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return f"{(self.done - self.start) / elapsed:.2f} {self.unit}/s {self.tokens / elapsed:.0f} tok/s"

    def extras(self) -> str:
        money = f"errors {self.errors} ${self.cost:.4f}" if self.costs else ""
        return " ".join(part for part in (money, self.status) if part)

    def eta(self) -> str:
        if not self.total or self.done <= self.start:
            return "?"
        elapsed = time.monotonic() - self.started
        left = elapsed / (self.done - self.start) * (self.total - self.done)
        return time.strftime("%H:%M:%S", time.gmtime(left))

    def log(self) -> None:
        self._last_log = time.monotonic()
        total = self.total if self.total is not None else "?"
        print(f"[{self.label}] {self.done}/{total} {self.rates()} eta {self.eta()} {self.extras()}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.enabled:
            self._stop.set()
            if self._timer is not None:
                self._timer.join()
            self.log()
