"""What goes into a rating study, checked before anything is written: the answers, who rates what, imported ratings.

Reads an answers table (JSONL/CSV/Parquet rows `{"id", "instruction_id", "instruction", "model", "answer", "kind"}`)
or a ratings file (`{"id", "rater", "rating", "comment", "time"}`); writes nothing. Every problem is a `UserError`
naming file:line and the field.

Who rates what: the answers, grouped by instruction, are laid end to end `per_item` times and cut into consecutive
runs of `per_rater`; rater i gets run i. A run never holds the same answer twice (per_rater <= answers), so every
answer gets `per_item` different raters, and with `per_rater` a multiple of the number of models each rater sees
every model's answer to the same instructions, as in the paper. Each rater's order is then shuffled with a seed of
their own, so neighbours in the list are not the same instruction and no two raters see the same order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.rate import RATINGS
from herd.rate.store import Assignments, csv_uncell, now
from herd.records import numbered_rows

ANSWER_FIELDS = ("id", "instruction_id", "instruction", "model", "answer")
MAX_NAME = 64


def load_answers(path: Path, allow_incomplete: bool = False) -> list[dict[str, Any]]:
    """The answers table, checked: every field present, ids unique, and every instruction answered by every model."""
    rows: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    for line, row in numbered_rows(path, required=ANSWER_FIELDS):
        for name in ANSWER_FIELDS:
            if not isinstance(row[name], str) or (name != "answer" and not row[name].strip()):
                raise UserError(f"{path}:{line}: field {name!r} must be a non-empty string")
        if row["id"] in first_line:
            raise UserError(f"{path}:{line}: duplicate id {row['id']!r} (first on line {first_line[row['id']]})")
        first_line[row["id"]] = line
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no answers to rate")
    if not allow_incomplete:
        _check_complete(path, rows)
    return rows


def _check_complete(path: Path, rows: list[dict[str, Any]]) -> None:
    """Per-model counts only compare when every model answered every instruction."""
    models = sorted({r["model"] for r in rows})
    answered: dict[str, set[str]] = {}
    for row in rows:
        answered.setdefault(row["instruction_id"], set()).add(row["model"])
    for instruction, have in answered.items():
        missing = [m for m in models if m not in have]
        if missing:
            raise UserError(
                f"{path}: instruction {instruction!r} has no answer from model(s) {', '.join(missing)} "
                "(rate_app.allow_incomplete=true rates it anyway)"
            )


def assign(
    answers: Sequence[dict[str, Any]], per_item: int, per_rater: int, raters: int, names: Sequence[str], seed: int
) -> Assignments:
    """Who rates what (see the module docstring); per_rater 0 means: derived from the number of raters."""
    n = len(answers)
    if per_item < 1:
        raise UserError(f"rate_app.per_item = {per_item}: need at least 1 rater per answer")
    count = len(names) or raters
    if per_rater <= 0:
        if count < per_item:
            raise UserError(f"rate_app.raters = {count}: need at least per_item = {per_item} raters")
        per_rater = math.ceil(n * per_item / count)
    elif names and math.ceil(n * per_item / per_rater) != len(names):
        need = math.ceil(n * per_item / per_rater)
        raise UserError(f"rate_app.rater_names: {len(names)} names, but per_rater = {per_rater} needs {need} raters")
    if per_rater > n:
        raise UserError(f"rate_app.per_rater = {per_rater}: more than the {n} answers in the table")
    count = math.ceil(n * per_item / per_rater)
    names = list(names) or [f"rater-{i:02d}" for i in range(1, count + 1)]
    _check_names(names)
    rank = _group_rank(answers)
    order = sorted(range(n), key=lambda i: (rank[answers[i]["instruction_id"]], i))
    laid = [answers[i]["id"] for i in order] * per_item
    items = []
    for index in range(count):
        run = laid[index * per_rater:(index + 1) * per_rater]
        random.Random(f"herd-rate:{seed}:{index}").shuffle(run)
        items.append(run)
    return Assignments(names, items)


def _group_rank(answers: Sequence[dict[str, Any]]) -> dict[str, int]:
    rank: dict[str, int] = {}
    for row in answers:
        rank.setdefault(row["instruction_id"], len(rank))
    return rank


def _check_names(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if not name.strip() or len(name) > MAX_NAME:
            raise UserError(f"rate_app.rater_names: {name!r} must be 1 to {MAX_NAME} characters")
        if name in seen:
            raise UserError(f"rate_app.rater_names: {name!r} appears twice")
        seen.add(name)


def load_ratings(path: Path, known: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A ratings file checked against a study's answers: ids known, ratings A–D, one row per (rater, answer)."""
    rows: list[dict[str, Any]] = []
    first: dict[tuple[str, str], int] = {}
    from_csv = path.suffix.lower() in (".csv", ".tsv")  # herd's CSV export quotes formula-like cells: undo that
    for line, row in numbered_rows(path, required=("id", "rater", "rating")):
        if from_csv:
            row = {k: csv_uncell(v) if isinstance(v, str) else v for k, v in row.items()}
        answer_id, rater = str(row["id"]), str(row["rater"]).strip()
        if answer_id not in known:
            raise UserError(f"{path}:{line}: unknown answer id {answer_id!r} (not in this study)")
        for name in ("model", "instruction_id"):
            if row.get(name) not in (None, "") and str(row[name]) != known[answer_id][name]:
                raise UserError(f"{path}:{line}: field {name!r} is {row[name]!r}, the study has "
                                f"{known[answer_id][name]!r} for {answer_id!r}")
        rating = str(row["rating"]).strip().upper()
        if rating not in RATINGS:
            raise UserError(f"{path}:{line}: field 'rating' is {row['rating']!r}, not one of A, B, C, D")
        if not rater or len(rater) > MAX_NAME:
            raise UserError(f"{path}:{line}: field 'rater' must be 1 to {MAX_NAME} characters")
        if (rater, answer_id) in first:
            earlier = first[rater, answer_id]
            raise UserError(f"{path}:{line}: rater {rater!r} already rated {answer_id!r} on line {earlier}")
        first[rater, answer_id] = line
        rows.append({"id": answer_id, "rater": rater, "rating": rating,
                     "comment": str(row.get("comment") or ""), "time": str(row.get("time") or now())})
    return rows
