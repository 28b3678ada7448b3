"""What `herd bench` writes from the scores: results.json, scores.csv and table.md with the paper's rows beside.

The paper's numbers ship with herd (herd/assets/lamini_nlp_results.csv, from the LaMini paper's Tables 9-14: every
LaMini model, its base model, LLaMA-7B and Alpaca-7B on the 15 tasks, in %), with each row's architecture, size in
millions of parameters, Hub id and base row, so a model is matched to the paper's rows by its (base) Hub id.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from herd.bench.model_specs import ModelSpec, short_id
from herd.bench.tasks import PAPER_TASKS, TaskSpec

PAPER_FILE = "lamini_nlp_results.csv"


@dataclass
class Scored:
    """One model's scores in % (task -> value), with what the tables and figures need to know about it."""

    model: ModelSpec
    scores: dict[str, float]
    stderr: dict[str, float]
    params: int
    output: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # task -> one line: why it has no score

    @property
    def average(self) -> float | None:
        """The plain mean over the tasks scored (a failed task is left out, and said so wherever this is shown)."""
        return sum(self.scores.values()) / len(self.scores) if self.scores else None

    def mean_over(self, names: list[str]) -> float | None:
        values = [self.scores[n] for n in names if n in self.scores]
        return sum(values) / len(values) if values and len(values) == len(names) else None


def scored_by_all(scored: list[Scored], tasks: list[TaskSpec]) -> list[str]:
    """The tasks every model has a score for: what the averages of a table with failed tasks are taken over."""
    return [t.name for t in tasks if all(t.name in s.scores for s in scored)]


def paper_table() -> list[dict[str, Any]]:
    """The paper's rows: numbers as floats (%), params_m as float, the rest as text."""
    text = resources.files("herd").joinpath("assets", PAPER_FILE).read_text(encoding="utf-8")
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        numeric = (*PAPER_TASKS, "average", "params_m")
        rows.append({k: (float(v) if k in numeric else v) for k, v in row.items()})
    return rows


def lamini_decoders(paper: list[dict[str, Any]]) -> set[str]:
    """Short Hub ids of the published decoder-only LaMini models (the paper scored them wrapped)."""
    return {short_id(r["hub_id"]) for r in paper
            if r["kind"] == "lamini" and r["architecture"] == "decoder-only" and r["hub_id"]}


def paper_rows_for(base: str, paper: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's base-model row and LaMini row(s) for a model whose base (or own) Hub id is `base`."""
    if not base:
        return []
    hits = [r for r in paper if r["hub_id"] and short_id(r["hub_id"]) == short_id(base)]
    if not hits:
        return []
    root = hits[0]["base"] or hits[0]["model"]
    return [r for r in paper if r["model"] == root or r["base"] == root]


def score_of(output: dict[str, Any], task: TaskSpec) -> tuple[float, float]:
    """(score, stderr) in % of `task.metric` from the harness output (first filter that reports it)."""
    found = output.get("results", {}).get(task.name, {})
    for key, value in found.items():
        name, _, flt = key.partition(",")
        if name == task.metric and isinstance(value, (int, float)):
            err = found.get(f"{task.metric}_stderr,{flt}")
            return 100.0 * float(value), 100.0 * float(err) if isinstance(err, (int, float)) else float("nan")
    from herd.errors import UserError

    raise UserError(f"task {task.name} reported no {task.metric!r} (it reports {', '.join(found) or 'nothing'})")


def comparison_rows(scored: list[Scored], tasks: list[TaskSpec], paper: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for table.md, per model: the paper's rows for its base first (once each), then ours."""
    rows: list[dict[str, Any]] = []
    shown: set[str] = set()
    names = scored_by_all(scored, tasks)  # all tasks unless one failed: then every average skips it alike
    full = set(PAPER_TASKS) <= set(names)
    for s in scored:
        for r in paper_rows_for(s.model.base, paper):
            if r["model"] in shown:
                continue
            shown.add(r["model"])
            values = {t.name: r[t.name] for t in tasks if t.name in r}
            common = [values[n] for n in names if n in values]
            average = r["average"] if full else (sum(common) / len(common) if common else None)
            rows.append({"model": r["model"], "source": f"paper ({r['kind']})", "scores": values,
                         "average": average, "failed": {}})
        rows.append({"model": s.model.label, "source": "herd" + (", wrapped" if s.model.wrapper else ""),
                     "scores": s.scores, "average": s.mean_over(names), "failed": s.failed})
    return rows


def markdown(scored: list[Scored], tasks: list[TaskSpec], paper: list[dict[str, Any]], note: str) -> str:
    def cell(v: float | None) -> str:
        return "–" if v is None else f"{v:.1f}"

    common = scored_by_all(scored, tasks)
    over = f"{len(tasks)}" if len(common) == len(tasks) else f"{len(common)} of {len(tasks)}: failed tasks left out"
    header = ["model", "source", *[f"{t.name} ({t.metric})" for t in tasks], f"average ({over})"]
    lines = [note, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in comparison_rows(scored, tasks, paper):
        values = ["**failed**" if t.name in row["failed"] else cell(row["scores"].get(t.name)) for t in tasks]
        lines.append("| " + " | ".join([row["model"], row["source"], *values, cell(row["average"])]) + " |")
    failures = [f"- {s.model.label}: {line}" for s in scored for line in s.failed.values()]
    if failures:
        lines += ["", "**Failed** (no score; the next run tries again):", *failures]
    return "\n".join(lines) + "\n"


def scores_csv(scored: list[Scored], tasks: list[TaskSpec]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["model", "path", "family", "wrapped", "params", *[t.name for t in tasks], "average", "failed"])
    for s in scored:
        values = [f"{s.scores[t.name]:.2f}" if t.name in s.scores else "" for t in tasks]
        average = f"{s.average:.2f}" if s.average is not None else ""  # over the tasks scored; `failed` names the rest
        writer.writerow([s.model.label, s.model.name, s.model.family, str(bool(s.model.wrapper)).lower(), s.params,
                         *values, average, " ".join(t.name for t in tasks if t.name in s.failed)])
    return out.getvalue()


def results_json(scored: list[Scored], tasks: list[TaskSpec], meta: dict[str, Any]) -> dict[str, Any]:
    """Everything: the run's settings, the metric per task, and per model its scores and the raw harness output."""
    return {
        **meta,
        "tasks": [{"name": t.name, "metric": t.metric, "dataset": t.dataset} for t in tasks],
        "models": [{
            "label": s.model.label, "model": s.model.name, "hash": s.model.hash, "family": s.model.family,
            "wrapper": s.model.wrapper, "base_model": s.model.base, "params": s.params,
            "scores": s.scores, "stderr": s.stderr, "average": s.average, "failed": s.failed,
            "harness_output": s.output,
        } for s in scored],
    }


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
