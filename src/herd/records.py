"""The format between stages: rows as JSON objects, one per line, with a stable `id`.

`read_rows` opens JSONL, CSV or Parquet and reports a broken line as `file:line`. `RowWriter` appends rows and
survives kill -9: a torn last line (a write cut short) is cut off when the file is opened again, and `ids()` tells a
restarted stage which rows are already done.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from herd.errors import UserError

Row = dict[str, Any]


def stable_id(*parts: Any, length: int = 16) -> str:
    """A short id that is the same for the same parts on every machine and run."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def read_rows(path: str | Path, required: Iterable[str] = ()) -> list[Row]:
    """All rows of a JSONL, CSV or Parquet file; a bad line or a missing field names file:line and field."""
    return list(iter_rows(path, required))


def iter_rows(path: str | Path, required: Iterable[str] = ()) -> Iterator[Row]:
    for _, row in numbered_rows(path, required):
        yield row


def numbered_rows(path: str | Path, required: Iterable[str] = ()) -> Iterator[tuple[int, Row]]:
    """(line, row) pairs of a JSONL, CSV or Parquet file (row number for Parquet); a row without a `required`
    field is a UserError naming file:line and field."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: file not found")
    need = tuple(required)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        source = _parquet_rows(p)
    elif suffix in (".csv", ".tsv"):
        source = _csv_rows(p, "\t" if suffix == ".tsv" else ",")
    else:
        source = _jsonl_rows(p)
    for line, row in source:
        for name in need:
            if name not in row or row[name] is None:
                raise UserError(f"{p}:{line}: missing field {name!r}")
        yield line, row


def _jsonl_rows(p: Path) -> Iterator[tuple[int, Row]]:
    for number, line in text_lines(p):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{p}:{number}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def _csv_rows(p: Path, delimiter: str) -> Iterator[tuple[int, Row]]:
    reader = csv.DictReader((line for _, line in text_lines(p)), delimiter=delimiter)
    for row in reader:
        yield reader.line_num, dict(row)


def text_lines(p: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, line endings kept; bytes that are not UTF-8 are a UserError naming
    file:line (a binary file or another encoding), never a traceback."""
    with p.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(not_utf8(p, number, exc)) from None


def not_utf8(p: str | Path, line: int, exc: UnicodeDecodeError) -> str:
    """The one-line message for bytes that are not UTF-8 at `line` of `p`."""
    byte = exc.object[exc.start : exc.start + 1].hex()
    return f"{p}:{line}: not UTF-8 text (byte 0x{byte} at column {exc.start + 1}); save the file as UTF-8"


def empty_input(p: str | Path) -> UserError:
    """The one refusal every stage gives for an input with no rows: exit 2, nothing written or replaced."""
    return UserError(f"{p}: empty input (no rows); nothing was written")


def _parquet_rows(p: Path) -> Iterator[tuple[int, Row]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"{p}: reading Parquet needs pyarrow (pip install 'herd[data]')") from None

    table = pq.read_table(p)
    yield from enumerate(table.to_pylist(), start=1)


class RowWriter:
    """Append-only JSONL that a restarted stage can trust.

    Opening repairs a torn last line; `write` appends one row; `flush(sync=True)` makes the rows durable. Rows are
    written with one `write()` call each so a crash leaves at most one torn line, which the next open removes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, row: Row) -> None:
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def flush(self, sync: bool = False) -> None:
        self._fh.flush()
        if sync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.flush(sync=True)
            self._fh.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def repair_tail(path: Path) -> None:
    """Cut a torn last line (no trailing newline, or not valid JSON) left by a kill mid-write.

    Reads only the file's tail, so opening a large finished file for appending costs no memory.
    """
    if not path.exists():
        return
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb+") as fh:
        window = 1 << 16
        while True:
            start = max(0, size - window)
            fh.seek(start)
            tail = fh.read()
            body = tail[:-1] if tail.endswith(b"\n") else tail
            cut = body.rfind(b"\n")
            if cut >= 0 or start == 0:
                break
            window *= 4  # the last line is longer than the window: look further back
        last_start = start + cut + 1
        if tail.endswith(b"\n"):
            try:
                json.loads(tail[last_start - start :])
                return
            except ValueError:
                pass
        fh.truncate(last_start)


def stage_files(path: Path) -> list[Path]:
    """The row files of a stage: a file itself, or a stage folder's data.jsonl plus every shard-*/data.jsonl."""
    if not path.is_dir():
        return [path]
    found = [path / "data.jsonl"] if (path / "data.jsonl").exists() else []
    return found + sorted(path.glob("shard-*/data.jsonl"))


def ids(path: str | Path) -> set[str]:
    """The ids already written to a JSONL file (empty if it does not exist)."""
    p = Path(path)
    if not p.exists():
        return set()
    repair_tail(p)
    found: set[str] = set()
    with p.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                found.add(str(json.loads(line)["id"]))
    return found


def write_rows(path: str | Path, rows: Iterable[Row]) -> int:
    """Write rows to a new file atomically (temp file + rename); returns the count."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)
    return n


def parse_shard(spec: str) -> tuple[int, int]:
    """'i/n' -> (i, n); '' -> (0, 1)."""
    if not spec:
        return 0, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UserError(f"run.shard = {spec!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"run.shard = {spec!r}: need 0 <= i < n")
    return i, n


def in_shard(row_id: str, shard: tuple[int, int]) -> bool:
    """Whether a row belongs to a shard: by a hash of its id, so every machine agrees without talking."""
    i, n = shard
    if n == 1:
        return True
    return int(hashlib.sha256(row_id.encode("utf-8")).hexdigest()[:8], 16) % n == i
