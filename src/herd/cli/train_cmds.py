"""`herd train`: fine-tune the students of `[train]` on the run's instruction-response pairs."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from herd.cli.command import ConfigOpt, QuietOpt, SetOpt, app, load, options, say


@app.command()
def train(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    student: Annotated[str | None, typer.Option(help="Train this one base model (Hub id or folder).")] = None,
    data: Annotated[str | None, typer.Option(help="Training pairs: JSONL/CSV/Parquet file or dataset id.")] = None,
    output: Annotated[str | None, typer.Option(help="Folder for the students (default <run>/train).")] = None,
) -> None:
    """Fine-tune encoder-decoder and decoder-only students on the pairs (LaMini's recipe by default)."""
    from herd.train import run

    out = run(load(config, options(set_, "train", student=student, data=data, output=output), quiet))
    if int(os.environ.get("RANK", "0")) == 0:  # under accelerate launch, one summary line, not one per process
        say(f"train: {out}")
