"""Seed pools: the human-written tasks shown to the teacher as examples.

A pool is a JSONL/CSV/Parquet file, a local dataset folder or a Hugging Face dataset id (loaded with `datasets`),
read through a field mapping that knows the common layouts: self-instruct's seed tasks (`instruction` plus
`instances[{input, output}]`), Alpaca (`instruction`, `input`, `output`) and P3/FLAN-style rows (`inputs`, `targets`).
'' is herd's own seed set (src/herd/assets/seed_tasks.jsonl), written for herd, so a demo needs no download.

Every row is checked before anything is written: a broken line, a missing or empty field or an empty pool is a
`UserError` naming file:line and the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.records import numbered_rows, stable_id

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
_MISSING = object()


@dataclass(frozen=True)
class Seed:
    id: str
    instruction: str
    input: str = ""
    group: str = ""

    def shown(self, input_format: str) -> str:
        """The seed as the prompt shows it: the instruction, or `instruction:input` in the configured form."""
        if not self.input.strip():
            return self.instruction.strip()
        stem = self.instruction.strip().rstrip(".:").rstrip()
        return input_format.format(instruction=self.instruction.strip(), stem=stem, input=self.input.strip())


@dataclass(frozen=True)
class FieldMap:
    """Where a row keeps each part of a seed; '' picks the usual field of the known layouts."""

    id: str = "id"
    instruction: str = ""
    input: str = ""
    group: str = ""


@dataclass(frozen=True)
class Pool:
    seeds: list[Seed]
    origin: str  # a path or a dataset id, for the manifest
    path: Path | None  # the file behind it, when there is one (its hash goes in the manifest)


def own_seeds_path() -> Path:
    return Path(str(resources.files("herd.assets").joinpath("seed_tasks.jsonl")))


def load_pool(spec: str, fields: FieldMap, split: str = "train", subset: str = "") -> Pool:
    """Read and check a whole seed pool; an empty pool is a `UserError`."""
    if not spec:
        path: Path | None = own_seeds_path()
        where, rows = str(path), numbered_rows(path)  # type: ignore[arg-type]
    elif Path(spec).is_file() or Path(spec).suffix.lower() in FILE_SUFFIXES:
        path = Path(spec)
        where, rows = str(path), numbered_rows(path)
    else:
        path = None
        where, rows = f"{spec}[{split}]", hub_rows(spec, split, subset)
    seeds: list[Seed] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        seed = to_seed(row, fields, f"{where}:{line}")
        if seed.id in seen:
            if fields.id and field_value(row, fields.id) not in (_MISSING, None, ""):
                raise UserError(f"{where}:{line}: duplicate seed id {seed.id!r} (first on line {seen[seed.id]})")
            continue  # the same text twice in a pool without ids: keep one
        seen[seed.id] = line
        seeds.append(seed)
    if not seeds:
        raise UserError(f"{where}: the seed pool is empty")
    return Pool(seeds, str(path) if path else spec, path)


def hub_rows(spec: str, split: str, subset: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a Hugging Face dataset (a Hub id or a local dataset folder), numbered from 1.

    `subset` may name several configurations, comma-separated (P3 has one per prompted task): their rows follow
    each other, each with its configuration's name in `_subset`.
    """
    import datasets

    names = [x.strip() for x in subset.split(",") if x.strip()]
    number = 0
    for name in names or [""]:
        try:
            data = datasets.load_dataset(spec, name or None, split=split)
        except Exception as exc:  # datasets raises many types (not found, offline, bad split); all are the user's
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            shown = f"{spec!r}" + (f" (configuration {name!r})" if name else "")
            raise UserError(f"dataset {shown}, split {split!r}: cannot load it ({first[:200]})") from None
        for row in data:
            number += 1
            yield number, ({**dict(row), "_subset": name} if len(names) > 1 else dict(row))


def to_seed(row: dict[str, Any], fields: FieldMap, where: str) -> Seed:
    """One checked seed; `where` is file:line for the error message."""
    name = fields.instruction or ("instruction" if "instruction" in row else "inputs" if "inputs" in row else "")
    if not name:
        raise UserError(f"{where}: missing field 'instruction' (or 'inputs'; set instructions.instruction_field)")
    instruction = field_value(row, name)
    if instruction is _MISSING:
        raise UserError(f"{where}: missing field {name!r}")
    if not isinstance(instruction, str) or not instruction.strip():
        raise UserError(f"{where}: field {name!r} must be a non-empty string")
    input_name = fields.input or ("input" if "input" in row else "instances.0.input" if "instances" in row else "")
    text = field_value(row, input_name) if input_name else ""
    if text is _MISSING:
        if fields.input:
            raise UserError(f"{where}: missing field {input_name!r}")
        text = ""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise UserError(f"{where}: field {input_name!r} must be a string")
    group = ""
    if fields.group:
        value = field_value(row, fields.group)
        if value is _MISSING or value is None:
            raise UserError(f"{where}: missing field {fields.group!r}")
        group = str(value)
    raw_id = field_value(row, fields.id) if fields.id else _MISSING
    seed_id = str(raw_id) if raw_id not in (_MISSING, None, "") else stable_id("seed", instruction, text)
    return Seed(seed_id, instruction, text, group)


def field_value(row: Any, path: str) -> Any:
    """`a.b.0.c` looks up nested fields and list items; `_MISSING` when any step is absent."""
    node = row
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node
