"""Evaluation: `herd bench` (lm-evaluation-harness, the paper's 15 NLP tasks beside its numbers)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from herd.cli.command import ConfigOpt, QuietOpt, SetOpt, app, load, options, say


def _items(values: list[str] | None) -> list[str] | None:
    """A repeatable option whose values may also be comma-separated: `--tasks a,b --tasks c` = [a, b, c]."""
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@app.command()
def bench(
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="A model to score: herd checkpoint, HF folder or Hub id (repeatable).")] = None,
    suite: Annotated[str | None, typer.Option(help="lamini15 (the paper's 15 tasks) or a suite TOML file.")] = None,
    tasks: Annotated[list[str] | None, typer.Option(
        "--tasks", "-t", help="Instead of the suite: lm-eval task names, task YAML files or folders (repeatable, "
                              "or comma-separated).")] = None,
    include_path: Annotated[list[str] | None, typer.Option(
        "--include-path", help="A folder of lm-eval task YAMLs whose names --tasks may use (repeatable).")] = None,
    limit: Annotated[float | None, typer.Option(help="Documents per task (a smoke test; 0 = all).")] = None,
    wrapper: Annotated[str | None, typer.Option(
        help="on | off | auto (auto: wrap herd's decoder-only students only, as the paper did).")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Output folder (default <run>/bench).")] = None,
    bootstrap_iters: Annotated[int | None, typer.Option(
        help="Bootstrap resamples for the stderr of a reported metric that is not a mean (default 1000; 0 = no "
             "stderr).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Score models with lm-evaluation-harness, zero-shot, and compare them with the LaMini paper's numbers."""
    from herd import bench as stage

    overrides = options(set_, "bench", models=_items(model), tasks=_items(tasks), include_path=_items(include_path),
                        suite=suite, limit=limit, wrapper=wrapper, out=out, bootstrap_iters=bootstrap_iters)
    cfg = load(config, overrides, quiet)
    folder = stage.run(cfg)
    failed = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("failed", {})
    lost = sorted({task for tasks_ in failed.values() for task in tasks_})
    say(f"bench: {folder}/table.md ({len(cfg.bench.models)} model(s)"
        + (f"; failed, marked in the table: {', '.join(lost)})" if lost else ")"))
