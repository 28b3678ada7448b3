"""Progress you can watch: a rich bar with rows/s, tokens/s, ETA, errors and cost so far; or, in quiet mode (CI
logs, no terminal), one plain line every few seconds with the same numbers.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """`with Progress("responses", total=n) as p: p.advance(tokens=..., cost=..., error=...)`."""

    def __init__(
        self, label: str, total: int | None, quiet: bool = False, every_s: float = 10.0, enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self.label = label
        self.total = total
        self.quiet = quiet or not sys.stderr.isatty()
        self.every_s = every_s
        self.done = 0
        self.errors = 0
        self.tokens = 0
        self.cost = 0.0
        self.started = time.monotonic()
        self._last_log = self.started
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled and not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[extra]}"),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, rate="", extra="")
        return self

    def advance(self, n: int = 1, tokens: int = 0, cost: float = 0.0, error: bool = False) -> None:
        self.done += n
        self.tokens += tokens
        self.cost += cost
        self.errors += int(error)
        if self._bar is not None:
            self._bar.update(self._task, advance=n, rate=self.rates(), extra=self.extras())
        elif self.enabled and time.monotonic() - self._last_log >= self.every_s:
            self.log()

    def rates(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return f"{self.done / elapsed:.2f} rows/s {self.tokens / elapsed:.0f} tok/s"

    def extras(self) -> str:
        return f"errors {self.errors} ${self.cost:.4f}"

    def eta(self) -> str:
        if not self.total or not self.done:
            return "?"
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        return time.strftime("%H:%M:%S", time.gmtime(left))

    def log(self) -> None:
        self._last_log = time.monotonic()
        total = self.total if self.total is not None else "?"
        print(f"[{self.label}] {self.done}/{total} {self.rates()} eta {self.eta()} {self.extras()}",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.enabled:
            self.log()
