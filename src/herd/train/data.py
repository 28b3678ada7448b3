"""Training pairs for `herd train`: find them, check them, describe them, and tokenise them for one student.

Reads a herd stage output (default: what feeds train in the run's chain: dedup, else mix, else responses), any
JSONL / CSV / Parquet file, a folder saved with `datasets.save_to_disk`, or a Hub dataset id; keeps the instruction
and response columns, each row's `id` and its `instruction_source` (for the composition table). Writes nothing into
the run: tokenised datasets go to the `datasets` cache, so a restarted run does not tokenise again.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.config import Config
from herd.errors import UserError
from herd.records import iter_rows, numbered_rows
from herd.students import Family, family_spec
from herd.students.training import encode_pairs
from herd.train.collate import label_tokens
from herd.train.record import Encoding

# LaMini's evaluation sets (../shared/data): herd refuses to train on them
EVAL_SETS = ("self_instruct_user_oriented_instructions", "lamini_paper_hallucination_questions")
SOURCE_COLUMN = "instruction_source"
ROW_COLUMN = "source_row"  # the pair's line in its file (1-based), or its index + 1 in a dataset
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


@dataclass
class Pairs:
    """The raw pairs (a `datasets.Dataset` with instruction, response, instruction_source) and where they came from."""

    dataset: Any
    source: str
    manifest: dict[str, Any] = field(default_factory=dict)
    heldout: Any = None  # pairs split off by train.heldout_rows (herd.train.heldout): never trained on


@dataclass
class Tokenised:
    train: Any
    eval: Any | None
    lengths: list[int]
    composition: dict[str, dict[str, float]]
    dropped: int
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (input tokens, label tokens) per training example
    where: list[str] = field(default_factory=list)  # "file:line" (or "dataset row N") per training example
    kd: dict[str, Any] = field(default_factory=dict)  # objective kd: how many response tokens have a teacher target


def default_source(cfg: Config) -> Path:
    """The file that feeds train in this config's chain (`herd.run.feeders`: dedup, else mix, else responses)."""
    from herd.run import stage_input

    path = stage_input(cfg, "train")
    if not path.is_file():
        raise UserError(f"{path}: not written yet (run `herd run` up to {path.parent.name}, or set train.data)")
    return path


def load_pairs(data: str, cfg: Config, columns: tuple[str, str], split: str = "train") -> Pairs:
    """Read and check the training pairs ('' = `default_source`); UserError (one line) for a missing column or an
    empty dataset."""
    source = data or str(default_source(cfg))
    if any(name in Path(source).name for name in EVAL_SETS):
        raise UserError(f"{source}: an evaluation set; herd never trains on evaluation data")
    path = Path(source)
    if path.is_dir() and (path / "data.jsonl").is_file():
        path = path / "data.jsonl"  # a stage folder
    if path.is_file():
        dataset = _from_file(path, columns)
        manifest = _file_manifest(path)
    else:
        dataset = _from_datasets(source, columns, split)
        manifest = {"source": source, "split": split}
    if len(dataset) == 0:
        raise UserError(f"{source}: no training pairs (empty dataset)")
    manifest["rows"] = len(dataset)
    return Pairs(dataset, str(path if path.is_file() else source), manifest)


def _rows(path: str, columns: tuple[str, str], stamp: str) -> Any:
    """Rows with the two columns (renamed to instruction/response); `stamp` only makes the datasets cache key."""
    instruction, response = columns
    for number, row in numbered_rows(path, required=columns):
        for name in columns:
            if not isinstance(row[name], str):
                raise UserError(f"{path}:{number}: field {name!r} must be a string")
        yield {"id": str(row.get("id") or f"line-{number}"), "instruction": row[instruction],
               "response": row[response], SOURCE_COLUMN: str(row.get(SOURCE_COLUMN) or "unknown"), ROW_COLUMN: number}


def _from_file(path: Path, columns: tuple[str, str]) -> Any:
    import datasets

    if path.suffix.lower() not in FILE_SUFFIXES:
        raise UserError(f"{path}: not a JSONL, CSV or Parquet file")
    # a missing column names file:line, and an empty file says so, before datasets sees either
    if next(iter(iter_rows(path, required=columns)), None) is None:
        raise UserError(f"{path}: no training pairs (empty dataset)")
    info = path.stat()
    stamp = f"{path.resolve()}:{info.st_size}:{info.st_mtime_ns}"
    datasets.disable_progress_bars()
    try:
        return datasets.Dataset.from_generator(_rows, gen_kwargs={"path": str(path), "columns": columns,
                                                                  "stamp": stamp})
    except datasets.exceptions.DatasetGenerationError as exc:
        if isinstance(exc.__cause__, UserError):  # a bad row deep inside the generator: report it as itself
            raise exc.__cause__ from None
        raise


def _from_datasets(source: str, columns: tuple[str, str], split: str) -> Any:
    import datasets

    datasets.disable_progress_bars()
    try:
        saved = any((Path(source) / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json"))
        if Path(source).is_dir() and saved:
            found = datasets.load_from_disk(source)
        else:
            found = datasets.load_dataset(source, split=split)
    except (OSError, ValueError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{source}: cannot read training data ({first[:160]})") from None
    if isinstance(found, datasets.DatasetDict):
        if split not in found:
            raise UserError(f"{source}: no split {split!r} (has {', '.join(found)})")
        found = found[split]
    missing = [c for c in columns if c not in found.column_names]
    if missing:
        raise UserError(f"{source}: no column {missing[0]!r} (columns: {', '.join(found.column_names)})")
    extra = [c for c in ("id", SOURCE_COLUMN) if c in found.column_names and c not in columns]
    keep = found.select_columns([*columns, *extra])
    keep = keep.rename_columns({columns[0]: "instruction", columns[1]: "response"})
    if SOURCE_COLUMN not in keep.column_names:
        keep = keep.add_column(SOURCE_COLUMN, ["unknown"] * len(keep))
    keep = keep.add_column(ROW_COLUMN, list(range(1, len(keep) + 1)))
    return keep.filter(lambda i, r: bool(i) and bool(r), input_columns=["instruction", "response"])


def _file_manifest(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    found: dict[str, Any] = {"source": str(path), "sha256": digest.hexdigest()}
    stage_manifest = path.parent / "manifest.json"
    if stage_manifest.is_file():
        stage = json.loads(stage_manifest.read_text(encoding="utf-8"))
        found["stage"] = {k: v for k, v in stage.items() if k != "config"}  # the resolved config is in the run dir
    return found


def tokenise(
    pairs: Pairs, family: Family, tokenizer: Any, wrapper: str | None, encoding: Encoding, eval_fraction: float,
    seed: int, *, kd: tuple[dict[str, Any], int] | None = None,
) -> Tokenised:
    """Tokenise for one student; pairs whose prompt leaves no room for a response are dropped and counted.

    `kd` = (top-K targets by row id, K): each example also gets its teacher targets (herd.train.kd_data)."""
    raw = pairs.dataset
    evaluation = None
    if eval_fraction > 0:
        held = max(1, round(len(raw) * eval_fraction))
        if held >= len(raw):
            raise UserError(f"train.eval_fraction = {eval_fraction}: leaves no pairs to train on")
        split = raw.train_test_split(test_size=held, seed=seed)
        raw, evaluation = split["train"], split["test"]
    train, dropped = _encode(raw, family, tokenizer, wrapper, encoding)
    if len(train) == 0:
        raise UserError(f"{pairs.source}: no pair fits train.max_length = {encoding.max_length} tokens")
    composition = _composition(train)
    lengths = list(train["length"])
    counts = train.select_columns(["prompt_tokens", "response_tokens", ROW_COLUMN]).to_dict()
    spec = family_spec(family)
    if spec.separate_decoder:  # encoder input, labels
        sizes = list(zip(counts["prompt_tokens"], counts["response_tokens"], strict=True))
    else:
        sizes = [(n, n) for n in lengths]
    label = "line" if Path(pairs.source).is_file() else "row"
    where = [f"{pairs.source} {label} {n}" if label == "row" else f"{pairs.source}:{n}" for n in counts[ROW_COLUMN]]
    keep = ["input_ids", "labels", "loss_tokens", *(["id"] if "id" in train.column_names else [])]
    coverage: dict[str, Any] = {}
    if kd is not None:
        from herd.train.kd import KD_FIELDS
        from herd.train.kd_data import attach

        train, coverage = attach(train, kd[0], kd[1], spec.separate_decoder)
        keep += list(KD_FIELDS)
    train = train.select_columns(keep)
    if evaluation is not None:
        evaluation = _encode(evaluation, family, tokenizer, wrapper, encoding)[0]
        if kd is not None:
            evaluation = attach(evaluation, kd[0], kd[1], spec.separate_decoder)[0]
        evaluation = evaluation.select_columns(keep)
    return Tokenised(train, evaluation, lengths, composition, dropped, sizes, where, coverage)


def _encode(raw: Any, family: Family, tokenizer: Any, wrapper: str | None, encoding: Encoding) -> tuple[Any, int]:
    options = encoding.kwargs()

    def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out = encode_pairs(family, tokenizer, wrapper, (batch["instruction"], batch["response"]), **options)
        out[SOURCE_COLUMN] = batch[SOURCE_COLUMN]
        if "id" in batch:
            out["id"] = batch["id"]  # each training row names the dataset row it came from
        out[ROW_COLUMN] = batch[ROW_COLUMN]
        shift = family_spec(family).shifts_labels
        out["loss_tokens"] = [label_tokens(labels, shift) for labels in out["labels"]]
        return out

    procs = min(8, max(1, len(raw) // 50_000))  # a process per 50K rows: tokenising LaMini's 2.6M takes minutes
    mapped = raw.map(encode, batched=True, remove_columns=raw.column_names, num_proc=procs if procs > 1 else None)
    kept = mapped.filter(lambda n: n > 0, input_columns="length")
    return kept, len(mapped) - len(kept)


def _composition(train: Any) -> dict[str, dict[str, float]]:
    """Per instruction_source: pairs, average prompt and response tokens (the student's tokenizer): LaMini Table 1."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0])
    columns = train.select_columns([SOURCE_COLUMN, "prompt_tokens", "response_tokens"])
    for batch in columns.iter(batch_size=10_000):
        for source, prompt, response in zip(batch[SOURCE_COLUMN], batch["prompt_tokens"], batch["response_tokens"],
                                            strict=True):
            row = sums[source]
            row[0] += 1
            row[1] += prompt
            row[2] += response
    return {source: {"pairs": int(n), "avg_prompt_tokens": round(p / n, 1), "avg_response_tokens": round(r / n, 1)}
            for source, (n, p, r) in sorted(sums.items())}
