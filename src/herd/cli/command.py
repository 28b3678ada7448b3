"""What every `herd` command is made of: the typer app it registers on, the shared options (--config, --set,
--quiet), `options` (a command's flags as config overrides, the one way the CLI makes them), `load` (the resolved
config) and `say` (the one summary line). A module of its own so that the command modules and herd.cli, which
imports them, both take these from here (no import cycle).
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="herd",
    help="Distil one teacher LLM into a herd of small instruction-following models (the LaMini method).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="Run file (TOML). Without it, defaults apply."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one key: section.key=value (repeatable)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Plain log lines instead of progress bars.")]


def load(config: str | None, overrides: list[str] | None, quiet: bool = False):  # type: ignore[no-untyped-def]
    """The resolved config for a command (imported here so `herd --help` stays light)."""
    from herd.config import load_config

    cfg = load_config(config, options(overrides, "run", quiet=True if quiet else None))
    if cfg.run.quiet:
        import os

        # Loading and saving bars of transformers/huggingface_hub read this when they are first imported, which is
        # after this point: the CLI imports no model code before a stage runs.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return cfg


def options(set_: list[str] | None, section: str = "", **values: object) -> list[str]:
    """A command's overrides, the one way the CLI makes them: its --set values first, then each of its own options
    that was given (None or [] = not given) as `section.key=<TOML value>` (section '' = the keys are already
    dotted). `herd.config.load_config` reads both kinds with the same parser, so a value means what it says
    (`--data C:\\data` is the string C:\\data)."""
    from herd.config import override

    out = list(set_ or [])
    for key, value in values.items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        out.append(override(f"{section}.{key}" if section else key, value))
    return out


def say(message: str) -> None:
    """The one summary line a command prints when it is done."""
    typer.echo(message)
