"""Evaluation by answers: `herd answers`, `herd judge`, `herd probe hallucination`."""

from __future__ import annotations

from typing import Annotated

import typer

from herd.cli.command import ConfigOpt, QuietOpt, SetOpt, app, load, options, say

ModelsOpt = Annotated[
    list[str] | None,
    typer.Option("--models", "-m", help="teacher | students | a checkpoint folder or Hub id | endpoint:NAME@URL "
                 "(repeatable)."),
]



@app.command()
def answers(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    models: ModelsOpt = None,
    instructions: Annotated[str | None, typer.Option("--instructions", "-i", help="Evaluation instructions.")] = None,
) -> None:
    """Every model answers the evaluation instructions (selected by the paper's rule) into one table."""
    from herd.rate import answers as stage

    overrides = options(set_, "answers", models=models, instructions=instructions)
    out = stage.run(load(config, overrides, quiet))
    say(f"answers: {out}/data.jsonl")


@app.command()
def judge(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    answers: Annotated[str | None, typer.Option("--answers", "-a", help="Answers table to grade.")] = None,
    human: Annotated[str | None, typer.Option(help="Human ratings export, for Cohen's kappa.")] = None,
    method: Annotated[str | None, typer.Option(help="How a grade is read: auto, probabilities or text.")] = None,
) -> None:
    """An LLM judge grades each answer A-D with the paper's rubric (from its log-probs where it has them)."""
    from herd.rate import judge as stage

    overrides = options(set_, "judge", answers=answers, human=human, method=method)
    out = stage.run(load(config, overrides, quiet))
    say(f"judge: {out}/summary.md")


probe_app = typer.Typer(help="Probes of model behaviour.", no_args_is_help=True)
app.add_typer(probe_app, name="probe")


@probe_app.command("hallucination")
def hallucination(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    models: ModelsOpt = None,
    questions: Annotated[str | None, typer.Option(help="Questions JSONL (id, question, category).")] = None,
) -> None:
    """Trick questions: the judge marks each answer as rejecting the premise or hallucinating."""
    from herd.rate import probe as stage

    overrides = options(set_, "probe", models=models, questions=questions)
    out = stage.run(load(config, overrides, quiet))
    say(f"probe: {out}/summary.md")
