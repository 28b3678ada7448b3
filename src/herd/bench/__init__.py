"""herd bench: zero-shot lm-evaluation-harness scores of students and base models, beside the LaMini paper's.

Reads models (herd checkpoints, any Hugging Face folder or Hub id) and a suite (`lamini15`: the paper's 15 tasks and
metric rule) or `--tasks` (lm-eval names, task YAML files, folders of them). Writes to `bench.out`
(default `<run>/bench/`): `results.json` (settings, scores and each model's raw harness output), `scores.csv`,
`table.md` (the paper's rows for the same base model beside ours), `per_task.png`, `size_vs_score.png` and
`manifest.json`. Scores are cached per (model hash, task, harness version, ...) in `bench.cache_dir`, so a second
model added to a comparison runs alone. Every input is checked (tasks, metrics, models) before a model is loaded.
A task that cannot be built (its dataset is not in the cache, its code fails to load) or fails while it runs is one
line on stderr naming the task and the cause; the other tasks still run, and the outputs mark it as failed (failures
are not cached, so the next run tries again). Each task is one harness call, so its score is cached as it finishes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from herd.bench import cache
from herd.bench.model_specs import ModelSpec, default_cache_dir, resolve_models
from herd.bench.report import Scored, lamini_decoders, paper_table, score_of
from herd.bench.tasks import TaskSpec, build_tasks, load_suite, resolve
from herd.config import BenchConfig, Config
from herd.errors import UserError
from herd.progress import note
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
    if bc.bootstrap_iters < 0:
        raise UserError(f"bench.bootstrap_iters = {bc.bootstrap_iters}: must be 0 (no stderr) or a positive count")
    paper = paper_table()
    models = resolve_models(list(bc.models), bc.wrapper, cache_dir, lamini_decoders(paper))
    harness = harness_version()
    keys = {(m.label, t.name): cache.cache_key(m, t, harness=harness, num_fewshot=bc.num_fewshot, limit=limit,
                                               bootstrap_iters=bc.bootstrap_iters)
            for m in models for t in tasks}
    todo = {m.label: [t for t in tasks if cache.get(cache_dir, keys[m.label, t.name]) is None] for m in models}
    built, unbuilt = build_needed(manager, tasks, todo)
    failed: dict[str, dict[str, str]] = {}
    for model in models:
        runnable = [t for t in todo[model.label] if t.name in built]
        failed[model.label] = {t.name: unbuilt[t.name] for t in todo[model.label] if t.name in unbuilt}
        note(f"[bench] {model.label}: {len(tasks) - len(todo[model.label])} of {len(tasks)} tasks cached"
            + (f", running {', '.join(t.name for t in runnable)}" if runnable else ""))
        if runnable:
            failed[model.label].update(score_model(
                model, [(t, built[t.name]) for t in runnable], manager, bc, batch_size, limit,
                lambda task, piece, m=model: cache.put(cache_dir, keys[m.label, task], piece)))
    scored = [collect(m, tasks, [cache.get(cache_dir, keys[m.label, t.name]) for t in tasks], failed[m.label])
              for m in models]
    if not any(s.scores for s in scored):  # every task failed on every model: a failure, not a table of blanks
        first = next((line for lines in failed.values() for line in lines.values()), "none recorded")
        raise RuntimeError(f"no task produced a score (the first failure: {first})")
    meta = {"suite": suite.name if suite else "", "lm_eval_version": harness, "num_fewshot": bc.num_fewshot,
            "limit": limit, "wrapper_mode": bc.wrapper, "bootstrap_iters": bc.bootstrap_iters}
    write_outputs(out, scored, tasks, paper, meta, bc.figures)
    write_json(out / "manifest.json", {
        "stage": STAGE, "config": redact(cfg.as_dict()), "versions": versions(), **meta,
        "models": {m.label: {"model": m.name, "hash": m.hash, "wrapped": bool(m.wrapper)} for m in models},
        "tasks": {t.name: t.metric for t in tasks}, "cache_dir": str(cache_dir),
        "ran": {label: [t.name for t in todo_tasks if t.name not in failed[label]]
                for label, todo_tasks in todo.items()},
        "failed": failed,
        "timings": {"started": started, "finished": time.time(), "seconds": time.time() - started},
    })
    return out


def build_needed(manager: Any, tasks: list[TaskSpec], todo: dict[str, list[TaskSpec]]
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """The tasks some model still needs, built; each one that cannot be is a line on stderr (an error when no score
    at all could come out of the run: then nothing is written)."""
    needed = [t for t in tasks if any(t in wanted for wanted in todo.values())]
    if not needed:
        return {}, {}
    built, unbuilt = build_tasks(manager, needed)
    if unbuilt and not built and all(len(wanted) == len(tasks) for wanted in todo.values()):
        more = f" (and {len(unbuilt) - 1} more task(s) that cannot be built)" if len(unbuilt) > 1 else ""
        raise UserError(next(iter(unbuilt.values())) + more)
    for message in unbuilt.values():
        note(f"[bench] {message}")
    return built, unbuilt


def score_model(model: ModelSpec, tasks: list[tuple[TaskSpec, Any]], manager: Any, bc: BenchConfig,
                batch_size: int | str, limit: int | float | None, store: Any) -> dict[str, str]:
    """Load one model into lm-eval and run its missing tasks one harness call each, caching each result as it
    comes; returns one line per task that failed (the others still run)."""
    from herd.bench.harness import evaluate_reported, load_lm, split_by_task
    from herd.bench.tasks import one_line
    from herd.students import pick_device

    lm = load_lm(model.source, model.family, model.wrapper, revision=model.revision, gguf_file=model.gguf_file,
                 device=pick_device(bc.device), dtype=bc.dtype, batch_size=batch_size,
                 max_batch_size=bc.max_batch_size)
    failed: dict[str, str] = {}
    for spec, task in tasks:
        try:
            output = evaluate_reported(lm, task, spec.metric, manager, num_fewshot=bc.num_fewshot, limit=limit,
                                       bootstrap_iters=bc.bootstrap_iters)
        except Exception as exc:  # noqa: BLE001 - one task's data, code or size must not stop the other tasks
            failed[spec.name] = f"task {spec.name}: failed on {model.label} ({one_line(exc)})"
            note(f"[bench] {failed[spec.name]}")
            continue
        for name, piece in split_by_task(output).items():
            store(name, piece)
    del lm  # free the weights before the next model loads
    return failed


def collect(model: ModelSpec, tasks: list[TaskSpec], pieces: list[dict[str, Any] | None],
            failed: dict[str, str]) -> Scored:
    from herd.bench.harness import merge_pieces

    missing = [t.name for t, p in zip(tasks, pieces, strict=True) if p is None and t.name not in failed]
    if missing:
        raise RuntimeError(f"{model.label}: the harness returned no result for {', '.join(missing)}")
    output = merge_pieces([p for p in pieces if p is not None])
    values = {t.name: score_of(output, t) for t in tasks if t.name not in failed}
    params = int(output.get("config", {}).get("model_num_parameters") or 0)
    return Scored(model, {k: v[0] for k, v in values.items()}, {k: v[1] for k, v in values.items()}, params, output,
                  failed=dict(failed))


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
