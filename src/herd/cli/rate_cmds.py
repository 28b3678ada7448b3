"""`herd rate-app`: the web app in which people rate answers A–D (create a study, serve it, export, import, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from herd.cli.command import ConfigOpt, SetOpt, app, load, options, say

rate_app = typer.Typer(help="The web app in which people rate answers A-D, blind.", no_args_is_help=True)
app.add_typer(rate_app, name="rate-app")

StudyOpt = Annotated[str | None, typer.Option("--study", help="Study folder (default: <run>/rate-app).")]



@rate_app.command()
def create(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    answers: Annotated[str | None, typer.Option("--answers", "-a", help="Answers table (answers.jsonl).")] = None,
    study: StudyOpt = None,
    per_item: Annotated[int | None, typer.Option(help="People who rate each answer.")] = None,
    per_rater: Annotated[int | None, typer.Option(help="Answers per rater (sets the number of raters).")] = None,
    raters: Annotated[int | None, typer.Option(help="Number of raters (when --per-rater is not given).")] = None,
    rater: Annotated[list[str] | None, typer.Option("--rater", help="A rater's name (repeatable).")] = None,
    url: Annotated[str | None, typer.Option(help="Base URL for the links (default http://127.0.0.1:PORT).")] = None,
    port: Annotated[int | None, typer.Option(help="Port the links point to.")] = None,
) -> None:
    """Create a study from an answers table; prints the admin link and one link per rater (shown only now)."""
    from herd.rate import study as stage

    cfg = load(config, options(set_, "rate_app", answers=answers, study=study, per_item=per_item, per_rater=per_rater,
                                  raters=raters, rater_names=rater or None, url=url, port=port))
    created = stage.create(cfg)
    url_ = stage.base_url(cfg)
    say(f"admin: {stage.admin_link(url_, created.admin_token)}")
    for name, token in created.rater_tokens.items():
        say(f"{name}: {stage.rater_link(url_, token)}")
    say(f"rate-app: {created.path} ({len(created.rater_tokens)} raters); serve it with "
        f"`herd rate-app serve --study {created.path.parent}`")


@rate_app.command()
def serve(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    study: StudyOpt = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
) -> None:
    """Serve the rating app until interrupted."""
    from herd.rate import study as stage
    from herd.rate.app import serve as run_server

    cfg = load(config, options(set_, "rate_app", study=study, port=port, host=host))
    folder = stage.study_folder(cfg)
    say(f"rate-app: serving {folder} on http://{cfg.rate_app.host}:{cfg.rate_app.port}/ (Ctrl-C stops)")
    run_server(folder, cfg.rate_app.host, cfg.rate_app.port, cfg.rate_app.url)


@rate_app.command()
def export(
    out: Annotated[str, typer.Argument(help="Output file: .csv or .jsonl.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    study: StudyOpt = None,
) -> None:
    """Write every rating (id, instruction_id, model, rater, rating, comment, time) to a CSV or JSONL file."""
    from herd.rate import study as stage

    n = stage.export(load(config, options(set_, "rate_app", study=study)), Path(out))
    say(f"rate-app: {n} ratings -> {out}")


@rate_app.command("import")
def import_(
    ratings: Annotated[str, typer.Argument(help="Ratings file (CSV/JSONL): id, rater, rating[, comment, time].")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    study: StudyOpt = None,
) -> None:
    """Add ratings to the study; a file with an unknown id or a bad rating changes nothing."""
    from herd.rate import study as stage

    counts = stage.import_ratings(load(config, options(set_, "rate_app", study=study)), Path(ratings))
    say(f"rate-app: imported {ratings}: {counts['added']} added, {counts['changed']} changed, "
        f"{counts['unchanged']} unchanged")


@rate_app.command()
def relink(
    rater: Annotated[str | None, typer.Option("--rater", help="The rater who needs a new link.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="A new admin link.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    study: StudyOpt = None,
) -> None:
    """A new link for a rater or the admin; the old link stops working."""
    from herd.errors import UserError
    from herd.rate import study as stage

    if admin == (rater is not None):
        raise UserError("rate-app relink: give exactly one of --rater NAME or --admin")
    say(stage.relink(load(config, options(set_, "rate_app", study=study)), rater))


@rate_app.command()
def status(config: ConfigOpt = None, set_: SetOpt = None, study: StudyOpt = None) -> None:
    """Progress per rater and agreement so far."""
    from herd.rate import study as stage

    for line in stage.status(load(config, options(set_, "rate_app", study=study))):
        say(line)


@rate_app.command()
def chart(
    out: Annotated[str, typer.Argument(help="PNG file to write.")],
    ratings: Annotated[str, typer.Option(help="People's ratings file (default: the study's).")] = "",
    judge: Annotated[str, typer.Option(help="Judge rows (judge/data.jsonl) for a panel beside people's.")] = "",
    paper: Annotated[bool, typer.Option("--paper", help="Add the LaMini paper's counts as a panel.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    study: StudyOpt = None,
) -> None:
    """The paper's stacked A-D bars per model: people, the judge and the paper, side by side."""
    from herd.rate import study as stage

    panels = stage.chart(load(config, options(set_, "rate_app", study=study)), Path(out), ratings, judge, paper)
    say(f"rate-app: {', '.join(panels)} -> {out}")
