"""Evaluation: `herd bench` (lm-evaluation-harness, the paper's 15 NLP tasks beside its numbers)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from herd.cli import ConfigOpt, QuietOpt, SetOpt, app, load, say


def _bench_overrides(set_: list[str] | None, lists: dict[str, list[str] | None],
                     scalars: dict[str, object]) -> list[str]:
    """--set values plus the options given; lists travel as TOML arrays (JSON string arrays are valid TOML)."""
    out = list(set_ or [])
    for key, values in lists.items():
        if values:
            items = [part.strip() for value in values for part in value.split(",") if part.strip()]
            out.append(f"{key}={json.dumps(items)}")
    for key, value in scalars.items():
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")
    return out


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

    overrides = _bench_overrides(
        set_,
        {"bench.models": model, "bench.tasks": tasks, "bench.include_path": include_path},
        {"bench.suite": suite, "bench.limit": limit, "bench.wrapper": wrapper, "bench.out": out,
         "bench.bootstrap_iters": bootstrap_iters},
    )
    cfg = load(config, overrides, quiet)
    folder = stage.run(cfg)
    failed = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("failed", {})
    lost = sorted({task for tasks_ in failed.values() for task in tasks_})
    say(f"bench: {folder}/table.md ({len(cfg.bench.models)} model(s)"
        + (f"; failed, marked in the table: {', '.join(lost)})" if lost else ")"))
