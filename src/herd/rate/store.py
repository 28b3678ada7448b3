"""The study database of the rating app: one SQLite file in WAL mode, `<study>/study.sqlite`.

Reads an answers table (`{"id", "instruction_id", "instruction", "model", "answer", "kind"}` rows, as `herd answers`
writes them) when a study is created, and ratings rows (`{"id", "rater", "rating", "comment", "time"}`) when they are
imported; writes the database only. A study is created whole or not at all (built under a temporary name, then
renamed). Every rating is one row keyed by (rater, answer): saving again changes it, so a retried or doubled request
never makes a second row, and each save is its own committed transaction (synchronous=FULL: a saved rating survives
a crash). Tokens are stored only as SHA-256 hashes. CSV exports (`csv_text`) quote cells a spreadsheet would run
as formulas (OWASP's rule); JSON exports stay exact.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.rate import RATINGS

DB_NAME = "study.sqlite"
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE answers (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, instruction_id TEXT NOT NULL,
                      instruction TEXT NOT NULL, model TEXT NOT NULL, answer TEXT NOT NULL, kind TEXT NOT NULL);
CREATE TABLE raters (pk INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT UNIQUE);
CREATE TABLE assignments (rater INTEGER NOT NULL REFERENCES raters, position INTEGER NOT NULL,
                          answer INTEGER NOT NULL REFERENCES answers,
                          PRIMARY KEY (rater, position), UNIQUE (rater, answer));
CREATE TABLE ratings (rater INTEGER NOT NULL REFERENCES raters, answer INTEGER NOT NULL REFERENCES answers,
                      rating TEXT NOT NULL CHECK (rating IN ('A', 'B', 'C', 'D')), comment TEXT NOT NULL,
                      time TEXT NOT NULL, PRIMARY KEY (rater, answer));
"""
EXPORT_FIELDS = ("id", "instruction_id", "model", "rater", "rating", "comment", "time")
MAX_POSITION = 2**63 - 1  # the largest integer SQLite stores; positions in URLs above it are not found


def token_hash(token: str) -> str:
    # A plain hash is enough: tokens carry 256 random bits, so there is nothing to brute-force.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA foreign_keys=ON")
    return con


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE: take the write lock up front, so concurrent savers queue instead of failing mid-way."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@dataclass(frozen=True)
class Assignments:
    """Who rates what (herd.rate.design.assign): rater names and, for each, the answer ids they rate in the order
    they see them."""

    raters: list[str]
    items: list[list[str]]


@dataclass(frozen=True)
class Created:
    """A new study: where it is and the tokens to hand out (shown once; only their hashes are stored)."""

    path: Path
    admin_token: str
    rater_tokens: dict[str, str]


def create_study(folder: Path, answers: list[dict[str, Any]], assignments: Assignments,
                 meta: dict[str, str]) -> Created:
    """Write a new study database; nothing is left behind if this fails."""
    path = Path(folder) / DB_NAME
    if path.exists():
        raise UserError(f"{path}: a study already exists here (choose another --study folder)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(DB_NAME + ".tmp")
    tmp.unlink(missing_ok=True)
    admin = secrets.token_urlsafe(32)
    tokens = {name: secrets.token_urlsafe(32) for name in assignments.raters}
    with closing(connect(tmp)) as con:
        con.execute("PRAGMA journal_mode=WAL")  # stored in the file: every later connection is in WAL mode
        con.executescript(SCHEMA)
        with transaction(con):
            values = {**meta, "created": now(), "secret": secrets.token_urlsafe(32), "admin_hash": token_hash(admin)}
            con.executemany("INSERT INTO meta VALUES (?, ?)", sorted(values.items()))
            con.executemany(
                "INSERT INTO answers (id, instruction_id, instruction, model, answer, kind) VALUES (?, ?, ?, ?, ?, ?)",
                [(a["id"], a["instruction_id"], a["instruction"], a["model"], a["answer"], a.get("kind") or "")
                 for a in answers],
            )
            pk = {row["id"]: row["pk"] for row in con.execute("SELECT id, pk FROM answers")}
            for name, items in zip(assignments.raters, assignments.items, strict=True):
                cur = con.execute("INSERT INTO raters (name, token_hash) VALUES (?, ?)",
                                  (name, token_hash(tokens[name])))
                con.executemany(
                    "INSERT INTO assignments VALUES (?, ?, ?)",
                    [(cur.lastrowid, position, pk[answer_id]) for position, answer_id in enumerate(items, start=1)],
                )
    os.replace(tmp, path)
    return Created(path, admin, tokens)


@dataclass(frozen=True)
class Rater:
    pk: int
    name: str


@dataclass(frozen=True)
class Item:
    """What a rater sees at one position: never the model or the answer id."""

    position: int
    total: int
    instruction: str
    answer: str
    rating: str | None
    comment: str
    rated: frozenset[int]


class Study:
    """One study database; every call opens its own connection, so the object is safe to share between threads."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / DB_NAME
        if not self.path.is_file():
            raise UserError(f"{self.path}: no study here (create one with `herd rate-app create`)")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(connect(self.path)) as con:
            yield con

    def meta(self) -> dict[str, str]:
        with self._db() as con:
            return {row["key"]: row["value"] for row in con.execute("SELECT key, value FROM meta")}

    # ------------------------------------------------------------------------------------------- who is it
    def rater(self, token: str) -> Rater | None:
        with self._db() as con:
            row = con.execute("SELECT pk, name FROM raters WHERE token_hash = ?", (token_hash(token),)).fetchone()
        return Rater(row["pk"], row["name"]) if row else None

    def is_admin(self, token: str) -> bool:
        return secrets.compare_digest(token_hash(token), self.meta()["admin_hash"])

    def relink(self, rater: str | None) -> str:
        """A fresh token for a rater (or the admin, when None); the old one stops working."""
        token = secrets.token_urlsafe(32)
        with self._db() as con, transaction(con):
            if rater is None:
                con.execute("UPDATE meta SET value = ? WHERE key = 'admin_hash'", (token_hash(token),))
                return token
            found = con.execute("UPDATE raters SET token_hash = ? WHERE name = ?", (token_hash(token), rater))
            if not found.rowcount:
                raise UserError(f"{self.path}: no rater named {rater!r}")
        return token

    # ------------------------------------------------------------------------------------------- a rater's view
    def item(self, rater: Rater, position: int) -> Item | None:
        if not 1 <= position <= MAX_POSITION:
            return None  # SQLite integers are 64-bit: a larger number in a URL is simply not a position
        with self._db() as con:
            total = con.execute("SELECT COUNT(*) FROM assignments WHERE rater = ?", (rater.pk,)).fetchone()[0]
            row = con.execute(
                "SELECT a.instruction, a.answer, r.rating, r.comment"
                " FROM assignments s JOIN answers a ON a.pk = s.answer"
                " LEFT JOIN ratings r ON r.rater = s.rater AND r.answer = s.answer"
                " WHERE s.rater = ? AND s.position = ?",
                (rater.pk, position),
            ).fetchone()
            rated = self._rated(con, rater)
        if row is None:
            return None
        return Item(position, total, row["instruction"], row["answer"], row["rating"], row["comment"] or "", rated)

    def _rated(self, con: sqlite3.Connection, rater: Rater) -> frozenset[int]:
        rows = con.execute(
            "SELECT s.position FROM assignments s JOIN ratings r ON r.rater = s.rater AND r.answer = s.answer"
            " WHERE s.rater = ?",
            (rater.pk,),
        )
        return frozenset(row[0] for row in rows)

    def next_unrated(self, rater: Rater, after: int = 0) -> int | None:
        """The first unrated position after `after`, wrapping round; None when everything is rated."""
        with self._db() as con:
            total = con.execute("SELECT COUNT(*) FROM assignments WHERE rater = ?", (rater.pk,)).fetchone()[0]
            rated = self._rated(con, rater)
        for step in range(1, total + 1):
            position = (after + step - 1) % total + 1
            if position not in rated:
                return position
        return None

    def save(self, rater: Rater, position: int, rating: str, comment: str) -> bool:
        """Save (or change) the rater's rating at a position; False if the position is not theirs."""
        if rating not in RATINGS:
            raise ValueError(f"rating must be one of {RATINGS}")
        if not 1 <= position <= MAX_POSITION:
            return False
        with self._db() as con, transaction(con):
            cur = con.execute(
                "INSERT INTO ratings (rater, answer, rating, comment, time)"
                " SELECT rater, answer, ?, ?, ? FROM assignments WHERE rater = ? AND position = ?"
                " ON CONFLICT (rater, answer) DO UPDATE SET rating = excluded.rating, comment = excluded.comment,"
                " time = excluded.time",
                (rating, comment, now(), rater.pk, position),
            )
        return cur.rowcount == 1

    # ------------------------------------------------------------------------------------------- the admin's view
    def _rows(self, sql: str) -> list[dict[str, Any]]:
        with self._db() as con:
            return [dict(row) for row in con.execute(sql)]

    def progress(self) -> list[dict[str, Any]]:
        """Per rater: assigned, rated (of the assigned), last save, whether a link exists."""
        return self._rows(
            "SELECT w.name, w.token_hash IS NOT NULL AS linked,"
            " (SELECT COUNT(*) FROM assignments s WHERE s.rater = w.pk) AS assigned,"
            " (SELECT COUNT(*) FROM assignments s JOIN ratings r ON r.rater = s.rater AND r.answer = s.answer"
            "  WHERE s.rater = w.pk) AS rated,"
            " (SELECT MAX(time) FROM ratings r WHERE r.rater = w.pk) AS last"
            " FROM raters w ORDER BY w.pk"
        )

    def counts(self) -> dict[str, int]:
        return self._rows(
            "SELECT (SELECT COUNT(*) FROM answers) AS answers,"
            " (SELECT COUNT(DISTINCT model) FROM answers) AS models,"
            " (SELECT COUNT(*) FROM raters) AS raters, (SELECT COUNT(*) FROM assignments) AS assigned,"
            " (SELECT COUNT(*) FROM ratings) AS ratings"
        )[0]

    def export_rows(self) -> list[dict[str, Any]]:
        """Every rating as a ratings row (the brief's format), by rater then answer."""
        return self._rows(
            "SELECT a.id, a.instruction_id, a.model, w.name AS rater, r.rating, r.comment, r.time"
            " FROM ratings r JOIN answers a ON a.pk = r.answer JOIN raters w ON w.pk = r.rater"
            " ORDER BY w.pk, a.pk"
        )

    def answers(self) -> dict[str, dict[str, Any]]:
        """Answer id -> its instruction_id and model (what an imported row is checked against)."""
        return {row["id"]: row for row in self._rows("SELECT id, instruction_id, model FROM answers")}

    def import_rows(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Store checked ratings rows in one transaction (new raters are added without a link)."""
        added = changed = same = 0
        with self._db() as con, transaction(con):
            answer_pk = {row["id"]: row["pk"] for row in con.execute("SELECT id, pk FROM answers")}
            for row in rows:
                con.execute("INSERT OR IGNORE INTO raters (name) VALUES (?)", (row["rater"],))
                rater_pk = con.execute("SELECT pk FROM raters WHERE name = ?", (row["rater"],)).fetchone()[0]
                key = (rater_pk, answer_pk[row["id"]])
                old = con.execute("SELECT rating, comment FROM ratings WHERE rater = ? AND answer = ?", key).fetchone()
                if old is not None and (old["rating"], old["comment"]) == (row["rating"], row["comment"]):
                    same += 1
                    continue
                added, changed = (added + 1, changed) if old is None else (added, changed + 1)
                con.execute(
                    "INSERT INTO ratings VALUES (?, ?, ?, ?, ?) ON CONFLICT (rater, answer) DO UPDATE SET"
                    " rating = excluded.rating, comment = excluded.comment, time = excluded.time",
                    (*key, row["rating"], row["comment"], row["time"]),
                )
        return {"added": added, "changed": changed, "unchanged": same}


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Ratings rows as CSV text with the export columns in order; cells a spreadsheet would run as a formula are
    neutralised (`csv_cell`)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """OWASP's rule against CSV formula injection: a text cell that starts with = + - @, a tab or a carriage return
    gets a leading single quote, so a spreadsheet shows it as text. A cell that already starts with a quote gets
    one more, so `csv_uncell` (used by `herd rate-app import`) gives back exactly what was rated."""
    if isinstance(value, str) and value.startswith((*FORMULA_START, "'")):
        return "'" + value
    return value


def csv_uncell(value: str) -> str:
    """The inverse of `csv_cell` for a cell read back from herd's own CSV export."""
    return value[1:] if value.startswith("'") and value[1:].startswith((*FORMULA_START, "'")) else value
