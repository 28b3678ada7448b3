"""The evaluation instructions: a user-oriented instruction file, filtered by the paper's rule.

LaMini kept 114 of self-instruct's 252 user-oriented instructions: at most 2 per app, NLP-style tasks (NLI,
sentiment, summarisation) removed. The exact list was never published, so herd's selection is seeded and written
down (`answers/instructions.jsonl`) with the reason each dropped row was dropped.
"""

from __future__ import annotations

import random
import re
from importlib import resources
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.records import numbered_rows

# What marks an NLP-benchmark-style task rather than a user's request.
NLP_STYLE = re.compile(
    r"\b(sentiment|entail(s|ment)?|contradict(s|ion)|natural language inference|nli\b|summari[sz]e|summary|"
    r"summarization|summarisation|paraphrase|part[- ]of[- ]speech|named entit)",
    re.I,
)


def default_path() -> Path:
    return Path(str(resources.files("herd.assets").joinpath("eval_instructions.jsonl")))


def load(path: str | Path | None) -> list[dict[str, Any]]:
    """Rows with `id`, `instruction` (input inlined), `app`; bad rows stop with file:line."""
    source = Path(path) if path else default_path()
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, (line, row) in enumerate(numbered_rows(source, required=["instruction"]), start=1):
        row_id = str(row.get("id", f"{source.stem}_{index}"))
        if row_id in seen:
            raise UserError(f"{source}:{line}: duplicate id {row_id!r}")
        seen.add(row_id)
        text = str(row["instruction"]).strip()
        extra = row.get("input") or _first_input(row)
        if extra:
            text = f"{text}\n\n{extra}"
        rows.append({"id": row_id, "instruction": text, "app": str(row.get("motivation_app") or row.get("app") or ""),
                     "base_instruction": str(row["instruction"])})
    if not rows:
        raise UserError(f"{source}: no instructions")
    return rows


def _first_input(row: dict[str, Any]) -> str:
    instances = row.get("instances")
    if isinstance(instances, list) and instances and isinstance(instances[0], dict):
        return str(instances[0].get("input") or "").strip()
    return ""


def select(
    rows: list[dict[str, Any]], per_app: int, drop_nlp: bool, limit: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, dropped-with-reason), both seeded and deterministic."""
    rng = random.Random(seed)
    order = list(rows)
    rng.shuffle(order)
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    per: dict[str, int] = {}
    for row in order:
        if drop_nlp and NLP_STYLE.search(row["base_instruction"]):
            dropped.append({**row, "reason": "nlp_style_task"})
        elif per_app and row["app"] and per.get(row["app"], 0) >= per_app:
            dropped.append({**row, "reason": "app_quota"})
        elif limit and len(kept) >= limit:
            dropped.append({**row, "reason": "over_limit"})
        else:
            per[row["app"]] = per.get(row["app"], 0) + 1
            kept.append(row)
    position = {row["id"]: i for i, row in enumerate(rows)}
    kept.sort(key=lambda r: position[r["id"]])
    return kept, dropped
