"""herd dedup: filter the pairs, then drop exact and near-duplicate instructions (LaMini leaves dedup open).

Reads the output of the stage before it in the run's chain (`mix/` when `run.stages` has mix, else `responses/`;
see `herd.run.feeders`) or `dedup.input`: rows with `id`,
`instruction` and `response`. Writes `dedup/data.jsonl` (kept rows, unchanged, in input order), `dedup/rejects.jsonl`
(each dropped row with `reason` and, for a duplicate, `duplicate_of`: the id of the kept row it repeats) and
`dedup/manifest.json`.

Order of the checks: row filters (length bounds, empty answers, refusals, optionally truncated answers), then exact
duplicates after normalisation, then near-duplicates by MinHash LSH, then optionally self-instruct's ROUGE-L rule.
A duplicate always points at a row that passed the filters and is kept; the first occurrence by input order wins.

The stage reads its input twice (decide, then copy) and keeps only hashes in memory between the passes, so 2.58M
rows fit in a few GB. It writes into `dedup.tmp/` and swaps the folder in at the end: a killed run leaves the old
output untouched, and running again recomputes the same output (the result depends only on the input and config).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from herd.config import Config, DedupConfig
from herd.dedup.core import KEEP, NearParams, Preparer, band_shape, exact_duplicates, near_duplicates
from herd.dedup.filters import Filters, compile_refusals, reject_reason
from herd.errors import UserError
from herd.progress import Progress
from herd.records import empty_input, iter_rows, numbered_rows
from herd.rundir import StageDir, publish, run_path

STAGE = "dedup"
_TICK = 10_000  # rows between progress updates
_BIG = 20 * 2**20  # input bytes above which progress is shown: smaller inputs take seconds


def run(cfg: Config) -> Path:
    """Filter and deduplicate; returns the stage folder."""
    dc = cfg.dedup
    source = input_path(cfg)
    check_params(dc)
    filters = Filters(instruction_min_words=dc.instruction_min_words, instruction_max_words=dc.instruction_max_words,
                      response_min_words=dc.response_min_words, response_max_words=dc.response_max_words,
                      drop_truncated=dc.drop_truncated, responses=not dc.instructions_only)
    refusal = compile_refusals(dc.refusal_patterns) if filters.responses else None
    # Everything is read and checked before a file is written: a bad row stops the stage with nothing half-done.
    scan = scan_rows(source, dc, filters, refusal, cfg.run.quiet)
    params = NearParams(dc.threshold, dc.num_perm, dc.shingle_size, cfg.run.seed)
    timings = decide(scan, dc, params)
    final = run_path(cfg) / STAGE
    tmp = final.with_name(STAGE + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    stage = StageDir(tmp, STAGE)
    copy_rows(source, scan, stage, cfg.run.quiet)
    bands, per_band = band_shape(dc.threshold, dc.num_perm) if dc.near else (0, 0)
    stage.finish(cfg, {"input": str(source), "rows_in": len(scan.ids), "seconds": timings,
                       "lsh": {"bands": bands, "rows_per_band": per_band}})
    return publish(tmp, final)


def input_path(cfg: Config) -> Path:
    from herd.run import stage_input

    path = Path(cfg.dedup.input) if cfg.dedup.input else stage_input(cfg, STAGE)
    if not path.is_file():
        raise UserError(f"{path}: input not found (run `herd responses` or `herd mix` first, or set dedup.input)")
    return path


def check_params(dc: DedupConfig) -> None:
    """Meaning of the numbers, checked where they are used (herd.config checks only their types)."""
    if not 0.0 < dc.threshold <= 1.0:
        raise UserError(f"dedup.threshold = {dc.threshold}: must be in (0, 1]")
    if dc.num_perm < 2:
        raise UserError(f"dedup.num_perm = {dc.num_perm}: must be at least 2")
    if dc.shingle_size < 1:
        raise UserError(f"dedup.shingle_size = {dc.shingle_size}: must be at least 1")
    if not 0.0 <= dc.rouge_l <= 1.0:
        raise UserError(f"dedup.rouge_l = {dc.rouge_l}: must be in [0, 1] (0 = off)")
    if dc.key == "pair" and dc.instructions_only:
        raise UserError("dedup.key = 'pair' needs responses, but dedup.instructions_only = true")


@dataclass
class Scan:
    """What pass 1 keeps per row: its id, why it is dropped (None = kept), and whom it duplicates."""

    ids: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    dup_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    texts: list[str] = field(default_factory=list)  # only for the ROUGE-L filter
    prep: Any = None


def scan_rows(source: Path, dc: DedupConfig, filters: Filters, refusal: Any, quiet: bool) -> Scan:
    """Pass 1: check every row, apply the filters, hash the compared text."""
    need = ["id", "instruction"] + ([] if dc.instructions_only else ["response"])
    scan = Scan()
    seen: dict[str, int] = {}
    prep = Preparer(dc.shingle_size)
    with Progress(f"{STAGE}: read", total=None, quiet=quiet, enabled=source.stat().st_size > _BIG) as bar:
        for number, row in numbered_rows(source, required=need):
            for name in need[1:]:
                if not isinstance(row[name], str):
                    raise UserError(f"{source}:{number}: field {name!r} must be a string")
            row_id = str(row["id"])
            if row_id in seen:
                raise UserError(f"{source}:{number}: duplicate id {row_id!r} (first on line {seen[row_id]})")
            seen[row_id] = number
            text = row["instruction"] if dc.key == "instruction" else f"{row['instruction']}\n{row['response']}"
            scan.ids.append(row_id)
            scan.reasons.append(reject_reason(row, filters, refusal))
            prep.add(text)
            if dc.rouge_l > 0:
                scan.texts.append(text)
            if number % _TICK == 0:
                bar.advance(_TICK)
    if not scan.ids:
        raise empty_input(source)  # before anything is written: the previous output stays as it was
    if dc.rouge_l > 0 and len(scan.ids) > dc.rouge_max_rows:
        raise UserError(f"dedup.rouge_l: {len(scan.ids)} rows > dedup.rouge_max_rows = {dc.rouge_max_rows}; "
                        "ROUGE-L compares all pairs (rely on MinHash, or raise rouge_max_rows)")
    scan.prep = prep.finish()
    scan.dup_of = np.full(len(scan.ids), KEEP, dtype=np.int64)
    return scan


def decide(scan: Scan, dc: DedupConfig, params: NearParams) -> dict[str, float]:
    """Mark exact, near and ROUGE-L duplicates among the rows the filters kept; returns seconds per step."""
    alive = np.array([r is None for r in scan.reasons], dtype=bool)
    timings: dict[str, float] = {}

    def mark(found: np.ndarray, reason: Any) -> None:
        for row in np.flatnonzero(found != KEEP).tolist():
            scan.dup_of[row] = found[row]
            scan.reasons[row] = reason(row)
        alive[found != KEEP] = False

    started = time.monotonic()
    if dc.exact:
        mark(exact_duplicates(scan.prep.keys, alive), lambda _row: "exact_duplicate")
        timings["exact"] = time.monotonic() - started
    if dc.near:
        started = time.monotonic()
        found, jaccard = near_duplicates(scan.prep, alive, params)
        mark(found, lambda row: f"near_duplicate: jaccard {jaccard[row]:.3f}")
        timings["near"] = time.monotonic() - started
    if dc.rouge_l > 0:
        from herd.dedup.rouge import rouge_duplicates

        started = time.monotonic()
        found, rouge = rouge_duplicates(scan.texts, alive, dc.rouge_l)
        mark(found, lambda row: f"rouge_l: {rouge[row]:.3f}")
        timings["rouge_l"] = time.monotonic() - started
    return timings


def copy_rows(source: Path, scan: Scan, stage: StageDir, quiet: bool) -> None:
    """Pass 2: each row, unchanged, to data.jsonl or (with reason and duplicate_of) to rejects.jsonl."""
    with Progress(f"{STAGE}: write", total=len(scan.ids), quiet=quiet, enabled=source.stat().st_size > _BIG) as bar:
        for index, row in enumerate(iter_rows(source)):
            reason = scan.reasons[index]
            if reason is None:
                stage.keep(row)
            else:
                twin = int(scan.dup_of[index])
                stage.reject({**row, "duplicate_of": scan.ids[twin]} if twin != KEEP else row, reason)
            if (index + 1) % _TICK == 0:
                bar.advance(_TICK)
