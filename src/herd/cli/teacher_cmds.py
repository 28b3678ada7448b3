"""Commands about teachers and runs: `herd ask`, `herd teachers`, `herd usage`, `herd config`."""

from __future__ import annotations

from typing import Annotated

import typer

from herd.cli.command import ConfigOpt, QuietOpt, SetOpt, app, load, say


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="What to ask the teacher.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 256,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")] = 0.0,
    no_journal: Annotated[bool, typer.Option("--no-journal", help="Do not read or write the run's journal.")] = False,
) -> None:
    """Print one answer from the configured teacher (default: the embedded SmolLM2-135M-Instruct)."""
    from herd.rundir import journal_path
    from herd.teacher import Request, open_engine

    cfg = load(config, set_)
    engine = open_engine(cfg.teacher, None if no_journal else journal_path(cfg), stage="ask")
    try:
        result = engine.ask(Request.chat(prompt, system, max_tokens=max_tokens, temperature=temperature))
    finally:
        engine.close()
    if not result.ok:
        typer.echo(f"herd: teacher failed: {result.error}", err=True)
        raise typer.Exit(1)
    say(result.text)


@app.command()
def teachers(config: ConfigOpt = None, set_: SetOpt = None, quiet: QuietOpt = False) -> None:
    """List the configured teacher backends (the teacher and, where set, the judge) and check each answers."""
    from herd.teacher.health import check_teachers

    cfg = load(config, set_, quiet)
    failed = 0
    for line, ok in check_teachers(cfg):
        say(line)
        failed += not ok
    if failed:
        raise typer.Exit(1)


@app.command()
def usage(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Calls, tokens and cost per stage and model, from the run's journal."""
    from herd.rundir import journal_path
    from herd.teacher.journal import Journal

    cfg = load(config, set_)
    path = journal_path(cfg)
    if not path.exists():
        say(f"{path}: no teacher calls yet")
        return
    rows = Journal(path).usage()
    say(f"{'stage':<14} {'model':<34} {'status':<7} {'calls':>8} {'prompt tok':>11} {'compl tok':>10} {'cost $':>9}")
    for r in rows:
        say(f"{r['stage']:<14} {r['model'][:34]:<34} {r['status']:<7} {r['calls']:>8} {r['prompt_tokens']:>11} "
            f"{r['completion_tokens']:>10} {r['cost']:>9.4f}")
    say(f"total: {sum(r['calls'] for r in rows)} calls, ${sum(r['cost'] for r in rows):.4f}")


@app.command("config")
def config_cmd(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    explain: Annotated[bool, typer.Option("--explain", help="Every key with its type, default and doc.")] = False,
) -> None:
    """Show the resolved config as TOML (checks the file), or explain every key."""
    from herd.config import Config, to_toml
    from herd.config import explain as explain_keys

    if explain:
        for key, tp, default, doc in explain_keys(Config):
            say(f"{key} ({tp}, default {default}): {doc}")
        return
    say(to_toml(load(config, set_)).rstrip())


@app.command(
    "mock-teacher",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def mock_teacher(ctx: typer.Context) -> None:
    """An OpenAI-compatible mock teacher on 127.0.0.1 with injected faults, for trying configs and CI
    (options: --port, --latency, --concurrency, --rpm, --faults 429=0.1,500=0.05,...; --help for all)."""
    from herd.teacher.mockserver import main as serve_mock

    serve_mock(list(ctx.args))
