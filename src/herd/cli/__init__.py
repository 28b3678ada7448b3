"""The `herd` command. Thin: parse options, load the config, call one stage's `run()`, print one summary line.

Each group of commands lives in its own module below (teacher, data, train, use, eval, run) and registers itself on
`app`, which it takes, with the shared options, `load`, `options` and `say`, from herd.cli.command; this module
runs it (`main`: how errors end). Nothing here imports torch (a test checks that `herd --help` stays fast).
"""

from __future__ import annotations

import sys
from typing import Any

import typer

# Command modules register themselves on `app` when imported; one line per group.
from herd.cli import data_cmds, eval_cmds, judge_cmds, rate_cmds, run_cmds, teacher_cmds, train_cmds, use_cmds  # noqa: F401
from herd.cli.command import ConfigOpt, QuietOpt, SetOpt, app, load, options, say
from herd.errors import UserError

INTERRUPTED = 130  # the shell's status for a process ended by Ctrl-C (128 + SIGINT)

__all__ = ["ConfigOpt", "QuietOpt", "SetOpt", "app", "load", "main", "options", "say"]


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
        code = INTERRUPTED
    finally:
        sys.stdout = stdout
    if code == INTERRUPTED:  # typer itself turns a Ctrl-C inside a command into exit code 130 (typer.core._main)
        typer.echo("herd: interrupted; run the same command again to continue", err=True)
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
