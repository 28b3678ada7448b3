"""Data stages: `herd instructions`, `herd responses`, `herd mix`, `herd dedup`, `herd stats`, `herd export`."""

from __future__ import annotations

from typing import Annotated

import typer

from herd.cli import ConfigOpt, QuietOpt, SetOpt, app, load, say

ShardOpt = Annotated[str | None, typer.Option("--shard", help="Run shard i/n of this stage (e.g. 0/4).")]


def _overrides(set_: list[str] | None, **pairs: object) -> list[str]:
    """--set values plus the command's own options that were given (None = not given)."""
    out = list(set_ or [])
    for key, value in pairs.items():
        if value is not None:
            out.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={str(value).lower()}")
    return out


@app.command()
def responses(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    input: Annotated[str | None, typer.Option("--input", "-i", help="Instruction file to answer.")] = None,
    source: Annotated[str | None, typer.Option(help="instruction_source for rows without one.")] = None,
    shard: ShardOpt = None,
) -> None:
    """The teacher answers every instruction, concisely (LaMini's system prompt by default)."""
    from herd import responses as stage

    cfg = load(config, _overrides(set_, **{"responses.input": input, "responses.source": source,
                                           "run.shard": shard}), quiet)
    out = stage.run(cfg)
    say(f"responses: {out}/data.jsonl")
