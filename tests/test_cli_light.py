"""`herd --help` and every `herd <command> --help` stay fast: they import no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest


def commands() -> list[str]:
    import typer.main

    from herd.cli import app

    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def run_herd(*args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from herd.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
        "    heavy = [m for m in ('torch', 'transformers', 'datasets', 'matplotlib') if m in sys.modules]\n"
        "    print('HEAVY=' + ','.join(heavy), file=sys.stderr); raise\n"
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_main_help_imports_no_torch():
    out = run_herd("--help")
    assert out.returncode == 0
    assert "ask" in out.stdout
    assert "HEAVY=\n" in out.stderr


@pytest.mark.parametrize("command", commands())
def test_command_help_imports_no_torch(command):
    out = run_herd(command, "--help")
    assert out.returncode == 0, out.stderr
    assert "HEAVY=\n" in out.stderr, f"herd {command} --help imported {out.stderr}"


def test_user_error_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "run.toml"
    bad.write_text("[teacher]\nbakend = 1\n")
    out = run_herd("config", "-c", str(bad))
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if not line.startswith("HEAVY=")]
    assert lines == [f"herd: error: {bad}:2: unknown key 'teacher.bakend' (did you mean 'backend'?)"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("run",), "Error: Missing argument 'config'."),
        (("bogus",), "Error: No such command 'bogus'."),
        (("dedup", "--nope"), "Error: No such option: --nope"),
        (("dedup", "--threshold", "abc"), "Error: Invalid value for '--threshold'"),
    ],
)
def test_usage_mistake_is_typers_usage_message_exit_2(args, error):
    out = run_herd(*args)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("Usage: herd")
    assert error in out.stderr


def test_closed_pipe_is_not_an_error():
    """`herd config --explain | head -1`: the reader goes away before herd writes; herd still exits 0, silently."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "herd", "config", "--explain"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert err == ""


def test_ctrl_c_inside_a_command_says_how_to_continue(tmp_path, monkeypatch, capsys):
    """typer turns a KeyboardInterrupt inside a command into exit code 130 without a word; herd says what to do."""
    import pytest

    import herd.run
    from herd.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(herd.run, "run_chain", interrupted)
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"[run]\nname = 'c'\ndir = {str(tmp_path / 'runs')!r}\nstages = ['responses']\n"
                   "[teacher]\nbackend = 'fake'\n")
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(cfg), "-q"])
    assert exit_.value.code == 130
    assert capsys.readouterr().err.strip().endswith("herd: interrupted; run the same command again to continue")
