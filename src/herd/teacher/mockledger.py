"""The mock teacher's fault kinds, its options and its call ledger: what herd.teacher.mockserver saw, per request
fingerprint (attempts, answers, repeats, faults), kept apart from the HTTP handler that records into it. Standard
library only."""

from __future__ import annotations

import collections
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("429", "500", "hang", "truncated", "empty", "no_content", "garbage")
COUNTS = ("requests", "answers", "over_concurrency", "over_rpm", "unauthorized")


def parse_faults(text: str) -> dict[str, float]:
    """'429=0.1,500=0.05' -> {'429': 0.1, '500': 0.05}."""
    out: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        kind, _, rate = item.partition("=")
        out[kind.strip()] = float(rate)
    return out


@dataclass
class MockOptions:
    latency_s: float = 0.05
    concurrency: int = 16
    rpm: int = 0
    rpm_window_s: float = 60.0
    retry_after: float = 1.0
    faults: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    api_key: str | None = None
    models: tuple[str, ...] = ("mock",)
    hang_s: float = 600.0
    response_format: bool = True  # False: a request with `response_format` gets a 400, as from an older server
    logprobs: str = "on"  # "on" | "ignored" | "refused"

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
        if sum(self.faults.values()) > 1.0:
            raise ValueError("fault rates add up to more than 1")


class Ledger:
    """Everything the server saw, safe to read from any thread; `snapshot()` is JSON-ready."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, dict[str, Any]] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: collections.deque[float] = collections.deque()

    def attempt(self, fingerprint: str, prompt: str) -> int:
        """Count an attempt; returns its number for this fingerprint (1-based). Call with `lock` held."""
        entry = self.calls.setdefault(
            fingerprint, {"prompt": prompt, "attempts": 0, "answers": 0, "repeats": 0, "faults": {}, "events": []}
        )
        entry["attempts"] += 1
        if entry["answers"]:
            entry["repeats"] += 1
        entry["events"].append([round(time.time(), 6), None])  # wall clock: comparable with other processes
        self.counts["requests"] += 1
        return int(entry["attempts"])

    def outcome(self, fingerprint: str, number: int, kind: str) -> None:
        """What attempt `number` of a call came to: 'answer', a fault kind, 'over_rpm' or 'over_concurrency'."""
        with self.lock:
            self.record(fingerprint, number, kind)

    def record(self, fingerprint: str, number: int, kind: str) -> None:
        """`outcome` for a caller that holds `lock`."""
        entry = self.calls[fingerprint]
        entry["events"][number - 1][1] = kind
        self.counts["answers" if kind == "answer" else kind] += 1
        if kind == "answer":
            entry["answers"] += 1
        elif kind in FAULT_KINDS:
            entry["faults"][kind] = entry["faults"].get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                **{k: self.counts.get(k, 0) for k in COUNTS},
                "faults": {k: self.counts[k] for k in FAULT_KINDS if self.counts.get(k)},
                "max_in_flight": self.max_in_flight,
                "calls": json.loads(json.dumps(self.calls)),
            }
