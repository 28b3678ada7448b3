"""herd export: the finished dataset as Parquet and JSONL shards that `datasets.load_dataset` opens, with a card.

Reads one stage output (default: the nearest of dedup, mix and responses in the run's chain, `herd.run.feeders`) and
writes `export/` (or `export.out`):

```text
export/
  README.md            dataset card: YAML front matter (configs/data_files for the Hub viewer, licence) + prose
  data/train-00000-of-00001.parquet
  jsonl/train-00000-of-00001.jsonl
  manifest.json
```

Two passes over the input: the first checks every row and gathers the card's numbers and the column types, the
second writes the shards. Everything is written to a sibling temp folder that replaces the output folder at the end,
so a failed export leaves the previous one untouched.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from herd.config import Config, ExportConfig
from herd.dataset_card import Scan, SourceStats, card_text
from herd.errors import UserError
from herd.records import numbered_rows
from herd.rundir import file_hash, publish, redact, run_path, versions, write_json

STAGE = "export"
FORMATS = ("parquet", "jsonl")
UPSTREAM = ("dedup", "mix", "responses")  # stages whose output export takes by default (the newest one)
BATCH = 10_000
SAMPLE = 1_000  # values per column used to infer its Parquet type


def run(cfg: Config) -> Path:
    """Export the dataset; returns the output folder."""
    ec = cfg.export
    started = time.time()
    source = input_path(cfg)
    check_options(ec)
    scan = scan_rows(source, ec.columns)
    out = Path(ec.out) if ec.out else run_path(cfg) / STAGE
    check_replaceable(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        files = write_shards(source, scan, tmp, ec)
        (tmp / "README.md").write_text(card_text(cfg, scan, source, files), encoding="utf-8")
        manifest = {
            "stage": STAGE, "config": redact(cfg.as_dict()), "versions": versions(), "input": str(source),
            "counts": {"rows": scan.rows, "rejects": 0, "by_source": {s: v.rows for s, v in scan.sources.items()}},
            "columns": scan.columns, "files": {f: file_hash(tmp / f) for f in files},
            "timings": {"started": started, "finished": time.time(), "seconds": time.time() - started},
        }
        write_json(tmp / "manifest.json", manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, out)


def input_path(cfg: Config) -> Path:
    """export.input, or the output of the nearest of dedup, mix and responses in the run's chain."""
    from herd.run import stage_input

    path = Path(cfg.export.input) if cfg.export.input else stage_input(cfg, STAGE)
    if not path.is_file():
        raise UserError(f"export.input: {path}: file not found" if cfg.export.input else
                        f"export.input: {path} not found (run the chain first, or set export.input)")
    return path


def check_options(ec: ExportConfig) -> None:
    bad = [f for f in ec.formats if f not in FORMATS]
    if bad or not ec.formats:
        raise UserError(f"export.formats = {ec.formats!r}: choose from {', '.join(FORMATS)}")
    if ec.rows_per_shard < 1:
        raise UserError("export.rows_per_shard must be >= 1")
    if not ec.split.replace("_", "").isalnum():
        raise UserError(f"export.split = {ec.split!r}: use letters, digits and _")


def check_replaceable(out: Path) -> None:
    """Only an empty folder or an earlier herd export may be replaced: never a folder of the user's own files."""
    if not out.exists():
        return
    manifest = out / "manifest.json"
    ours = manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")).get("stage") == STAGE
    if out.is_file() or not (ours or not any(out.iterdir())):
        raise UserError(f"export.out: {out} exists and is not a herd export; choose another folder")


def scan_rows(source: Path, wanted: list[str]) -> Scan:
    """First pass: check rows, count per source, collect columns and sample values for their types."""
    scan = Scan()
    seen_columns: dict[str, None] = {}
    for line, row in numbered_rows(source):
        text = row.get("instruction")
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{source}:{line}: field 'instruction' must be a non-empty string")
        scan.rows += 1
        stats = scan.sources.setdefault(str(row.get("instruction_source") or "unlabelled"), SourceStats())
        stats.rows += 1
        stats.instruction_words += len(text.split())
        if isinstance(row.get("response"), str):
            stats.responses += 1
            stats.response_words += len(row["response"].split())
        for key, value in row.items():
            seen_columns.setdefault(key, None)
            sample = scan.samples.setdefault(key, [])
            if len(sample) < SAMPLE and value not in (None, [], {}):
                sample.append(value)
    if not scan.rows:
        raise UserError(f"{source}: no rows to export")
    scan.columns = [c for c in wanted if c in seen_columns] if wanted else list(seen_columns)
    return scan


def arrow_schema(scan: Scan) -> Any:
    """A Parquet schema from the sampled values; a column whose sample has no single type is stored as JSON text."""
    import pyarrow as pa

    fields = []
    for column in scan.columns:
        values = scan.samples.get(column, [])
        try:
            kind = pa.array(values).type if values else pa.string()
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            kind = None
        fields.append(pa.field(column, kind if kind is not None and kind != pa.null() else pa.string(),
                               metadata={"json": "1"} if kind is None else None))
    return pa.schema(fields)


def shard_names(rows: int, ec: ExportConfig, fmt: str) -> list[str]:
    count = (rows + ec.rows_per_shard - 1) // ec.rows_per_shard
    folder, suffix = ("data", "parquet") if fmt == "parquet" else ("jsonl", "jsonl")
    return [f"{folder}/{ec.split}-{i:05d}-of-{count:05d}.{suffix}" for i in range(count)]


def projected(source: Path, scan: Scan, as_json: set[str]) -> Iterator[dict[str, Any]]:
    for _, row in numbered_rows(source):
        out = {c: row.get(c) for c in scan.columns}
        for c in as_json:
            out[c] = None if out[c] is None else json.dumps(out[c], ensure_ascii=False)
        yield out


def write_shards(source: Path, scan: Scan, folder: Path, ec: ExportConfig) -> list[str]:
    """Second pass: every row into its shard of every format; returns the files written (relative)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(scan)
    as_json = {f.name for f in schema if f.metadata and f.metadata.get(b"json")}
    names = {fmt: shard_names(scan.rows, ec, fmt) for fmt in ec.formats}
    for fmt_names in names.values():
        (folder / fmt_names[0]).parent.mkdir(parents=True, exist_ok=True)
    batch: list[dict[str, Any]] = []

    def flush(shard: int) -> None:
        if not batch:
            return
        if "parquet" in names:
            try:
                table = pa.Table.from_pylist(batch, schema=schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise UserError(f"{source}: a column changes type between rows ({exc}); see export.columns") from None
            writers[shard].write_table(table)
        if "jsonl" in names:
            with (folder / names["jsonl"][shard]).open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in batch)
        batch.clear()

    writers: dict[int, Any] = {}
    try:
        shard = 0
        for i, row in enumerate(projected(source, scan, as_json)):
            if i // ec.rows_per_shard != shard:
                flush(shard)
                if shard in writers:
                    writers.pop(shard).close()
                shard = i // ec.rows_per_shard
            if "parquet" in names and shard not in writers:
                writers[shard] = pq.ParquetWriter(folder / names["parquet"][shard], schema)
            batch.append(row)
            if len(batch) >= BATCH:
                flush(shard)
        flush(shard)
    finally:
        for writer in writers.values():
            writer.close()
    return [name for fmt in ec.formats for name in names[fmt]]
