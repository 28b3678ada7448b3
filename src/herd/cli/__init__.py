"""The `herd` command. Thin: parse options, load the config, call one stage's `run()`, print one summary line.

Each group of commands lives in its own module below (teacher, data, train, use, eval, run) and registers itself on
`app`; nothing here imports torch (a test checks that `herd --help` stays fast).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from herd.errors import UserError

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


# Command modules register themselves on `app` when imported; one line per group.
from herd.cli import data_cmds, eval_cmds, judge_cmds, rate_cmds, run_cmds, teacher_cmds, train_cmds, use_cmds  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """Entry point: a user's mistake is one line on stderr and exit status 2; `--debug` shows the traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    click_error, aborts = _click_exceptions()
    stdout = sys.stdout
    sys.stdout = _ClosedPipeSafe(stdout)  # type: ignore[assignment]
    try:
        code = app(args=args, prog_name="herd", standalone_mode=False)
    except UserError as exc:
        if debug:
            raise
        typer.echo(f"herd: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click_error as exc:  # usage mistakes: typer's short usage message, exit 2
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 2))
    except aborts:
        typer.echo("herd: aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("herd: interrupted; run the same command again to continue", err=True)
        sys.exit(130)
    finally:
        sys.stdout = stdout
    sys.exit(code if isinstance(code, int) else 0)


def _click_exceptions() -> tuple[type[Exception], tuple[type[BaseException], ...]]:
    """(ClickException, abort classes) of the click that typer raises: its own vendored copy (typer >= 0.2x) or
    click itself (older typer, which depends on click)."""
    try:
        from typer._click import exceptions as vendored  # type: ignore[import-not-found,unused-ignore]

        return vendored.ClickException, (typer.Abort,)
    except ImportError:
        import click

        return click.exceptions.ClickException, (click.exceptions.Abort, typer.Abort)


class _ClosedPipeSafe:
    """sys.stdout for one command: a reader that went away (`herd config --explain | head`) ends the output
    quietly; the command still finishes and exits 0."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()

    def _discard(self) -> None:
        """Point the file descriptor at /dev/null, so buffered and later output (and the flush at exit) go nowhere."""
        import os

        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
