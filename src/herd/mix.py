"""herd mix: one dataset from several stage outputs, with target counts or shares per `instruction_source`.

Reads JSONL stage outputs (`mix.inputs`, else what feeds the mix in the run's chain: its responses, or with
`[[sources]]` every source's responses and counts; files, or stage folders with `data.jsonl` and
`shard-*/data.jsonl`); writes `mix/data.jsonl` (the chosen rows, byte for byte as they were, ids kept),
`mix/rejects.jsonl` (rows whose id was already seen, with `reason`) and `mix/manifest.json` (per source: rows
available, target, rows taken).

Targets come from `counts`, or from shares (`proportions`, or the `lamini` preset: Table 1 of the paper) times `total`.
Sampling is seeded per source by `run.seed`. It scales to millions of rows: one pass keeps only each row's file and
byte offset, per-source samples cost O(rows taken), and the chosen rows are copied by seeking to them.
"""

from __future__ import annotations

import json
import os
import random
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from herd.config import Config, MixConfig
from herd.errors import UserError
from herd.rundir import count_rows, redact, run_path, versions, write_json

STAGE = "mix"
# LaMini §1, Table 1: pairs per instruction_source, in millions (2.58M in all).
LAMINI_TABLE1 = {
    "self_instruct_without_topic": 0.27, "self_instruct_with_topic": 0.28, "generated_p3": 0.30,
    "generated_flan": 0.29, "alpaca": 0.05, "original_p3": 0.46, "original_flan": 0.93,
}


@dataclass
class Index:
    """Where every row is: per source, parallel arrays of file number and byte offset (a few bytes per row)."""

    files: list[Path]
    where: dict[str, tuple[array, array]] = field(default_factory=dict)
    duplicates: list[tuple[int, int, str]] = field(default_factory=list)  # (file, offset, where the id came first)

    def available(self) -> dict[str, int]:
        return {source: len(files) for source, (files, _) in self.where.items()}


def run(cfg: Config) -> Path:
    """Build the mix; returns the stage folder."""
    inputs = list(cfg.mix.inputs)
    if not inputs:  # what feeds the mix in the run's chain: its responses, or every source's (with their counts)
        from herd.run import STAGES, feeders, stage_config, stage_folder

        cfg = stage_config(cfg, STAGES[STAGE])
        inputs = list(cfg.mix.inputs) or [str(stage_folder(cfg, f)) for f in feeders(cfg, STAGE)]
    mc = cfg.mix
    started = time.time()
    files = input_files(inputs)
    index = build_index(files)
    shares, requested = wanted(mc)
    targets, notes = plan_targets(index.available(), shares, requested, mc)
    chosen = sample(index, targets, cfg.run.seed, mc.shuffle)
    out = run_path(cfg) / STAGE
    out.mkdir(parents=True, exist_ok=True)
    write_lines(out / "data.jsonl", copy_rows(index.files, chosen))
    write_lines(out / "rejects.jsonl", duplicate_rows(index))
    table = {s: {"available": n, "target": targets.get(s, 0),
                 "selected": min(targets.get(s, 0), n)} for s, n in sorted(index.available().items())}
    manifest = {
        "stage": STAGE, "config": redact(cfg.as_dict()), "versions": versions(), "prompts": {},
        "counts": count_rows(out), "inputs": [str(f) for f in files], "sources": table, "shares": shares,
        "requested_total": requested, "notes": notes,
        "timings": {"started": started, "finished": time.time(), "seconds": time.time() - started},
    }
    write_json(out / "manifest.json", manifest)
    return out


def input_files(inputs: list[str]) -> list[Path]:
    """JSONL files behind the inputs: a file as is; a folder's data.jsonl and shard-*/data.jsonl."""
    files: list[Path] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            found = ([p / "data.jsonl"] if (p / "data.jsonl").is_file() else []) + sorted(p.glob("shard-*/data.jsonl"))
            if not found:
                raise UserError(f"mix.inputs: {p}: no data.jsonl in this folder or in its shard-*/ folders")
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in (".jsonl", ".json"):
                raise UserError(f"mix.inputs: {p}: expected a JSONL stage output")
            files.append(p)
        else:
            raise UserError(f"mix.inputs: {p}: not found")
    return files


def build_index(files: list[Path]) -> Index:
    """One pass over every input: check each row, note where it is, spot repeated ids."""
    index = Index(files)
    first: dict[str, int] = {}  # id -> file number << 32 | line: an int per row, not a string
    for number, path in enumerate(files):
        offset = 0
        with path.open("rb") as fh:
            for line_no, line in enumerate(fh, start=1):
                start, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                row_id, source = id_and_source(line, f"{path}:{line_no}")
                if row_id in first:
                    seen = first[row_id]
                    index.duplicates.append((number, start, f"{files[seen >> 32]}:{seen & 0xFFFFFFFF}"))
                    continue
                first[row_id] = number << 32 | line_no
                slot = index.where.setdefault(source, (array("i"), array("q")))
                slot[0].append(number)
                slot[1].append(start)
    return index


def id_and_source(line: bytes, where: str) -> tuple[str, str]:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise UserError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object")
    for name in ("id", "instruction_source"):
        if row.get(name) in (None, ""):
            raise UserError(f"{where}: missing field {name!r}")
    return str(row["id"]), str(row["instruction_source"])


def wanted(mc: MixConfig) -> tuple[dict[str, float], int | None]:
    """Shares per source (summing to 1) and the requested total (None = as many as the shares allow)."""
    if mc.counts:
        if any(v < 0 for v in mc.counts.values()) or sum(mc.counts.values()) == 0:
            raise UserError("mix.counts: need counts >= 0 and at least one above 0")
        total = sum(mc.counts.values())
        return {s: v / total for s, v in mc.counts.items()}, total
    raw = dict(mc.proportions) if mc.proportions else dict(LAMINI_TABLE1) if mc.preset == "lamini" else {}
    if mc.total < 0:
        raise UserError("mix.total must be >= 0")
    if not raw:
        return {}, None  # no targets: every row of every source
    if any(v < 0 for v in raw.values()) or sum(raw.values()) <= 0:
        raise UserError("mix.proportions: need shares >= 0 and at least one above 0")
    norm = sum(raw.values())
    return {s: v / norm for s, v in raw.items()}, mc.total or None


def plan_targets(
    available: dict[str, int], shares: dict[str, float], requested: int | None, mc: MixConfig
) -> tuple[dict[str, int], list[str]]:
    """Rows to take per source, honouring `missing` and `short`; notes say what had to give."""
    if not shares:
        return dict(available), []
    notes: list[str] = []
    absent = [s for s, v in shares.items() if v > 0 and not available.get(s)]
    if absent and mc.missing == "error":
        raise UserError(f"mix: no rows with instruction_source {absent[0]!r} in the inputs (see mix.missing)")
    if absent:
        notes.append(f"no rows for {', '.join(absent)}: left out, the other sources keep their relative shares")
    live = {s: v for s, v in shares.items() if v > 0 and s not in absent}
    if not live:
        raise UserError("mix: none of the targeted sources has rows in the inputs")
    norm = sum(live.values())
    live = {s: v / norm for s, v in live.items()}
    most = min(int(available[s] / v) for s, v in live.items())  # the largest total every source can fill
    total = requested if requested is not None else most
    if total > most:
        need = round_shares(live, total)
        short = sorted(s for s in live if need[s] > available[s])
        if mc.short == "error":
            s = short[0]
            raise UserError(f"mix: {s!r} has {available[s]} rows, the target needs {need[s]} (see mix.short)")
        if mc.short == "shrink":
            notes.append(f"total {total} shrunk to {most}: not enough rows in {', '.join(short)}")
            total = most
        else:
            notes.append(f"took every row of {', '.join(short)} (fewer than the target)")
    targets = round_shares(live, total)
    return {s: min(n, available[s]) for s, n in targets.items()}, notes


def round_shares(shares: dict[str, float], total: int) -> dict[str, int]:
    """Integer counts that sum to `total`: floors, then the largest remainders get one more (ties by name)."""
    exact = {s: v * total for s, v in shares.items()}
    counts = {s: int(x) for s, x in exact.items()}
    left = total - sum(counts.values())
    for s in sorted(exact, key=lambda s: (-(exact[s] - counts[s]), s))[:left]:
        counts[s] += 1
    return counts


def sample(index: Index, targets: dict[str, int], seed: int, shuffle: bool) -> list[tuple[int, int]]:
    """(file, offset) of the chosen rows: a seeded sample per source, then shuffled or in input order."""
    chosen: list[tuple[int, int]] = []
    for source in sorted(targets):
        files, offsets = index.where.get(source, (array("i"), array("q")))
        k = min(targets[source], len(files))
        picks = random.Random(f"herd-mix:{seed}:{source}").sample(range(len(files)), k)
        chosen.extend((files[i], offsets[i]) for i in picks)
    if shuffle:
        random.Random(f"herd-mix:{seed}:order").shuffle(chosen)
    else:
        chosen.sort()
    return chosen


def copy_rows(files: list[Path], chosen: list[tuple[int, int]]) -> Iterator[bytes]:
    handles = [path.open("rb") for path in files]
    try:
        for number, offset in chosen:
            fh = handles[number]
            fh.seek(offset)
            line = fh.readline()
            yield line if line.endswith(b"\n") else line + b"\n"
    finally:
        for fh in handles:
            fh.close()


def duplicate_rows(index: Index) -> Iterator[bytes]:
    """Rows whose id was seen before, each with its reason (where the id first appeared)."""
    places = [(number, offset) for number, offset, _ in index.duplicates]
    for line, (_, _, first) in zip(copy_rows(index.files, places), index.duplicates, strict=True):
        row = json.loads(line)
        row["reason"] = f"duplicate_id: first at {first}"
        yield (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


def write_lines(path: Path, lines: Iterator[bytes]) -> int:
    """Write lines to a temp file, then rename: a reader never sees half a mix."""
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("wb") as fh:
        for line in lines:
            fh.write(line)
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return n

