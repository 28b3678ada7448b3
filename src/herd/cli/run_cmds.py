"""The whole chain: `herd run CONFIG` and `herd plan CONFIG`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from herd.cli.command import QuietOpt, SetOpt, app, load, say

ConfigArg = Annotated[str, typer.Argument(help="Run file (TOML), e.g. configs/demo.toml.")]
FromOpt = Annotated[str | None, typer.Option("--from", help="Start at this stage (earlier ones are not touched).")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Stop after this stage.")]
OnlyOpt = Annotated[str | None, typer.Option("--only", help="Run just this stage.")]


@app.command()
def plan(config: ConfigArg, set_: SetOpt = None, start: FromOpt = None, until: UntilOpt = None,
         only: OnlyOpt = None) -> None:
    """What `herd run` would do: stages to run or skip, teacher calls, tokens and cost. Spends nothing."""
    from herd.plan import make_plan, render
    from herd.run import select

    cfg = load(config, set_)
    for line in render(cfg, make_plan(cfg, select(cfg, start, until, only))):
        say(line)


@app.command()
def run(
    config: ConfigArg,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    start: FromOpt = None,
    until: UntilOpt = None,
    only: OnlyOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before spending above run.confirm_above_usd.")]
    = False,
    force: Annotated[bool, typer.Option("--force", help="Re-run stages even when they are up to date.")] = False,
) -> None:
    """Run the whole chain the config names; re-runs skip finished stages and resume interrupted ones."""
    from herd.errors import UserError
    from herd.plan import make_plan, render, total_cost
    from herd.run import run_chain, select
    from herd.rundir import run_path

    cfg = load(config, set_, quiet)
    stages = select(cfg, start, until, only)
    estimates = make_plan(cfg, stages)
    cost = total_cost(estimates)
    if cfg.run.max_cost_usd and cost > cfg.run.max_cost_usd:
        raise UserError(f"run.max_cost_usd: estimated cost ${cost:.2f} is above the limit ${cfg.run.max_cost_usd:.2f}"
                        " (see `herd plan`); nothing was spent")
    if cost > cfg.run.confirm_above_usd and not yes:
        for line in render(cfg, estimates):
            typer.echo(line, err=True)
        if not sys.stdin.isatty():
            raise UserError(f"estimated cost ${cost:.2f} is above run.confirm_above_usd "
                            f"(${cfg.run.confirm_above_usd:.2f}); pass --yes to go ahead")
        typer.confirm(f"Spend about ${cost:.2f} on teacher calls?", abort=True, err=True)
    outcome = run_chain(cfg, stages, force=force)
    ran = sum(v == "ran" for v in outcome.values())
    say(f"run: {ran} stages ran, {len(outcome) - ran} up to date -> {run_path(cfg)}")
