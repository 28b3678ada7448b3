"""The call journal: SQLite (WAL), one row per teacher call, keyed by `Request.key(model)`.

It is the cache (a call finished in this run or an earlier one is answered from here), the resume point (a stage
killed at any moment finds its finished calls here) and the cost ledger (`herd usage`). The schema only grows:
`MIGRATIONS` is append-only, and `PRAGMA user_version` records how many have run.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from herd.teacher.base import Request, Result, TopK

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE calls (
        key TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        stage TEXT NOT NULL DEFAULT '',
        request TEXT NOT NULL,
        text TEXT,
        finish_reason TEXT,
        raw TEXT,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        latency_s REAL NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1,
        error TEXT NOT NULL DEFAULT '',
        cost REAL NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    CREATE INDEX calls_model ON calls(model);
    """,
    # The top-K log-probs of a call (responses.top_logprobs), written in the same transaction as its calls row.
    """
    CREATE TABLE topk (
        key TEXT PRIMARY KEY,
        data BLOB NOT NULL
    );
    """,
)


class Journal:
    """Thread-safe access to one journal file. A finished ('ok') row is never overwritten."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (the OS has the pages); only power loss can drop the tail.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            (done,) = self._db.execute("PRAGMA user_version").fetchone()
            for number, script in enumerate(MIGRATIONS[done:], start=done + 1):
                self._db.executescript(script)
                self._db.execute(f"PRAGMA user_version = {number}")
            self._db.commit()

    def lookup(self, model: str, requests: Iterable[Request]) -> dict[str, Result]:
        """Finished calls among `requests`, as cached results keyed by request key."""
        wanted = {r.key(model): r for r in requests}
        found: dict[str, Result] = {}
        keys = list(wanted)
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    "SELECT key, text, finish_reason, prompt_tokens, completion_tokens, latency_s, attempts, cost, raw "
                    f"FROM calls WHERE status = 'ok' AND key IN ({marks})",
                    chunk,
                ).fetchall()
                for key, text, finish, pt, ct, lat, attempts, cost, raw in rows:
                    found[key] = Result(
                        request=wanted[key], ok=True, text=text or "", finish_reason=finish or "",
                        prompt_tokens=pt, completion_tokens=ct, latency_s=lat, attempts=attempts,
                        cached=True, key=key, cost=cost, raw=json.loads(raw) if raw else {},
                    )
        return found

    def record(self, model: str, result: Result, stage: str = "") -> None:
        """Store one finished or failed call. A failed attempt never replaces an earlier success."""
        req = result.request
        row = (
            result.key or req.key(model), model, stage,
            json.dumps({"messages": req.message_dicts(), "params": req.params(), "sample_index": req.sample_index,
                        **({"score": list(req.score)} if req.score else {})}),
            result.text, result.finish_reason, json.dumps(result.raw) if result.raw else None,
            result.prompt_tokens, result.completion_tokens, result.latency_s,
            "ok" if result.ok else "failed", result.attempts, result.error, result.cost, time.time(),
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO calls (key, model, stage, request, text, finish_reason, raw, prompt_tokens, "
                "completion_tokens, latency_s, status, attempts, error, cost, created) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET text=excluded.text, finish_reason=excluded.finish_reason, "
                "raw=excluded.raw, prompt_tokens=excluded.prompt_tokens, completion_tokens=excluded.completion_tokens, "
                "latency_s=excluded.latency_s, status=excluded.status, attempts=calls.attempts + excluded.attempts, "
                "error=excluded.error, cost=excluded.cost, created=excluded.created, stage=excluded.stage "
                "WHERE calls.status != 'ok'",
                row,
            )
            if result.ok and result.topk is not None:
                # same transaction as the call: a kill leaves both or neither, so a resume never pays twice
                self._db.execute("INSERT OR IGNORE INTO topk (key, data) VALUES (?, ?)", (row[0], _pack(result.topk)))
            self._db.commit()

    def topk(self, keys: Iterable[str]) -> dict[str, TopK]:
        """The stored top-K log-probs of finished calls, by key (calls made without top_logprobs have none)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, TopK] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, data in self._db.execute(f"SELECT key, data FROM topk WHERE key IN ({marks})", chunk):
                    found[key] = _unpack(data)
        return found

    def usage(self) -> list[dict[str, Any]]:
        """Calls, tokens and cost per (stage, model), for `herd usage` and manifests."""
        with self._lock:
            rows = self._db.execute(
                "SELECT stage, model, status, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), "
                "SUM(attempts) FROM calls GROUP BY stage, model, status ORDER BY stage, model, status"
            ).fetchall()
        return [
            {
                "stage": stage, "model": model, "status": status, "calls": n, "prompt_tokens": pt or 0,
                "completion_tokens": ct or 0, "cost": cost or 0.0, "attempts": attempts or 0,
            }
            for stage, model, status, n, pt, ct, cost, attempts in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _pack(topk: TopK) -> bytes:
    import zlib

    body = {"tokens": topk.tokens, "ids": topk.ids, "pieces": topk.pieces, "sampled": topk.sampled,
            "logprobs": [[round(float(v), 5) for v in row] for row in topk.logprobs]}
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode("utf-8"))


def _unpack(data: bytes) -> TopK:
    import zlib

    body = json.loads(zlib.decompress(data).decode("utf-8"))
    return TopK(body["tokens"], body["ids"], body["logprobs"], body.get("pieces", []), body.get("sampled", []))
