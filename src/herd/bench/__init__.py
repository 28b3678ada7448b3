"""herd bench: zero-shot lm-evaluation-harness scores of students and base models, beside the LaMini paper's.

Reads models (herd checkpoints, any Hugging Face folder or Hub id) and a suite (`lamini15`: the paper's 15 tasks and
metric rule) or `--tasks` (lm-eval names, task YAML files, folders of them). Writes to `bench.out`
(default `<run>/bench/`): `results.json` (settings, scores and each model's raw harness output), `scores.csv`,
`table.md` (the paper's rows for the same base model beside ours), `per_task.png`, `size_vs_score.png` and
`manifest.json`. Scores are cached per (model hash, task, harness version, ...) in `bench.cache_dir`, so a second
model added to a comparison runs alone. Every input is checked (tasks, metrics, models, datasets) before a model is
loaded; outputs are written only when every score is there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from herd.bench import cache
from herd.bench.models import ModelSpec, default_cache_dir, resolve_models
from herd.bench.report import Scored, lamini_decoders, paper_table, score_of
from herd.bench.tasks import TaskSpec, build_tasks, load_suite, resolve
from herd.config import BenchConfig, Config
from herd.errors import UserError
from herd.rundir import redact, run_path, versions, write_json

STAGE = "bench"


def run(cfg: Config) -> Path:
    """Score every model on every task (cached ones are read back); returns the output folder."""
    from herd.bench.harness import harness_version

    bc = cfg.bench
    if not bc.models:
        raise UserError("bench.models is empty: give at least one --model")
    started = time.time()
    out = Path(bc.out) if bc.out else run_path(cfg) / STAGE
    cache_dir = Path(bc.cache_dir).expanduser() if bc.cache_dir else default_cache_dir()
    suite = None if bc.tasks else load_suite(bc.suite)
    manager, tasks = resolve(suite, list(bc.tasks), list(bc.include_path))
    limit, batch_size = parse_limit(bc.limit), parse_batch(bc.batch_size)
    paper = paper_table()
    models = resolve_models(list(bc.models), bc.wrapper, cache_dir, lamini_decoders(paper))
    harness = harness_version()
    keys = {(m.label, t.name): cache.cache_key(m, t, harness=harness, num_fewshot=bc.num_fewshot, limit=limit)
            for m in models for t in tasks}
    todo = {m.label: [t for t in tasks if cache.get(cache_dir, keys[m.label, t.name]) is None] for m in models}
    needed = [t for t in tasks if any(t in todo[m.label] for m in models)]
    built = build_tasks(manager, needed) if needed else {}  # a dataset that cannot be fetched stops us here
    for model in models:
        say(f"{model.label}: {len(tasks) - len(todo[model.label])} of {len(tasks)} tasks cached"
            + (f", running {', '.join(t.name for t in todo[model.label])}" if todo[model.label] else ""))
        if todo[model.label]:
            score_model(model, [built[t.name] for t in todo[model.label]], manager, bc, batch_size, limit,
                        lambda task, piece, m=model: cache.put(cache_dir, keys[m.label, task], piece))
    scored = [collect(m, tasks, [cache.get(cache_dir, keys[m.label, t.name]) for t in tasks]) for m in models]
    meta = {"suite": suite.name if suite else "", "lm_eval_version": harness, "num_fewshot": bc.num_fewshot,
            "limit": limit, "wrapper_mode": bc.wrapper}
    write_outputs(out, scored, tasks, paper, meta, bc.figures)
    write_json(out / "manifest.json", {
        "stage": STAGE, "config": redact(cfg.as_dict()), "versions": versions(), **meta,
        "models": {m.label: {"model": m.name, "hash": m.hash, "wrapped": bool(m.wrapper)} for m in models},
        "tasks": {t.name: t.metric for t in tasks}, "cache_dir": str(cache_dir),
        "ran": {label: [t.name for t in todo_tasks] for label, todo_tasks in todo.items()},
        "timings": {"started": started, "finished": time.time(), "seconds": time.time() - started},
    })
    return out


def score_model(model: ModelSpec, tasks: list[Any], manager: Any, bc: BenchConfig, batch_size: int | str,
                limit: int | float | None, store: Any) -> None:
    """Load one model into lm-eval, run its missing tasks in one harness call, and cache each task's piece."""
    from herd.bench.harness import evaluate, load_lm, split_by_task
    from herd.students import pick_device

    lm = load_lm(model.source, model.family, model.wrapper, revision=model.revision, gguf_file=model.gguf_file,
                 device=pick_device(bc.device), dtype=bc.dtype, batch_size=batch_size,
                 max_batch_size=bc.max_batch_size)
    output = evaluate(lm, tasks, manager, num_fewshot=bc.num_fewshot, limit=limit, bootstrap_iters=bc.bootstrap_iters)
    for task, piece in split_by_task(output).items():
        store(task, piece)
    del lm  # free the weights before the next model loads


def collect(model: ModelSpec, tasks: list[TaskSpec], pieces: list[dict[str, Any] | None]) -> Scored:
    from herd.bench.harness import merge_pieces

    missing = [t.name for t, p in zip(tasks, pieces, strict=True) if p is None]
    if missing:
        raise RuntimeError(f"{model.label}: the harness returned no result for {', '.join(missing)}")
    output = merge_pieces([p for p in pieces if p is not None])
    values = {t.name: score_of(output, t) for t in tasks}
    params = int(output.get("config", {}).get("model_num_parameters") or 0)
    return Scored(model, {k: v[0] for k, v in values.items()}, {k: v[1] for k, v in values.items()}, params, output)


def write_outputs(out: Path, scored: list[Scored], tasks: list[TaskSpec], paper: list[dict[str, Any]],
                  meta: dict[str, Any], figures: bool) -> None:
    from herd.bench import report

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", report.results_json(scored, tasks, meta))
    report.write_text(out / "scores.csv", report.scores_csv(scored, tasks))
    report.write_text(out / "table.md", report.markdown(scored, tasks, paper, table_note(meta, scored)))
    if figures:
        from herd.bench.figures import per_task, size_vs_score

        per_task(out / "per_task.png", scored, tasks, paper)
        size_vs_score(out / "size_vs_score.png", scored, tasks, paper)


def table_note(meta: dict[str, Any], scored: list[Scored]) -> str:
    wrapped = [s.model.label for s in scored if s.model.wrapper]
    parts = [f"Zero-shot lm-evaluation-harness {meta['lm_eval_version']} scores (%)"
             + (f", suite {meta['suite']}" if meta["suite"] else "")
             + f", {meta['num_fewshot']}-shot. Metric per column in brackets; the average is the plain mean.",
             "Wrapped in the instruction wrapper: " + (", ".join(wrapped) if wrapped else "none") + "."]
    if meta["limit"]:
        parts.append(f"**limit = {meta['limit']} documents per task: a smoke test, not comparable to the paper.**")
    return "  \n".join(parts)


def parse_limit(limit: float) -> int | float | None:
    if limit < 0:
        raise UserError(f"bench.limit = {limit}: must be 0 (all), a fraction below 1, or a count")
    if limit == 0:
        return None
    return limit if limit < 1 else int(limit)


def parse_batch(value: str) -> int | str:
    if value == "auto" or value.startswith("auto:"):
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise UserError(f"bench.batch_size = {value!r}: expected auto or a positive whole number")


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
