"""rundir.publish: a finished folder replaces the earlier one by renames only. A kill at any step leaves the old
folder or the new one (never a mix), with and without the atomic swap; a failed rename puts the old one back; and a
stage that fails before publishing leaves its earlier output as it was."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest

from herd import rundir
from herd.config import load_config
from herd.rundir import publish, recover_published

OLD = {"data.jsonl": "old rows\n", "manifest.json": "{\"v\": 1}\n", "only-old.txt": "x"}
NEW = {"data.jsonl": "new rows\n", "manifest.json": "{\"v\": 2}\n", "plots/a.png": "png"}


class Killed(BaseException):
    """What a kill -9 looks like to the code after it: nothing else runs."""


def make(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def contents(folder: Path) -> dict[str, str] | None:
    if not folder.is_dir():
        return None
    return {p.relative_to(folder).as_posix(): p.read_bytes().decode(errors="replace") for p in folder.rglob("*")
            if p.is_file()}


def kill_at(monkeypatch: pytest.MonkeyPatch, step: int, seen: list[str], final: Path) -> None:
    """Die just before the `step`-th file-system change publish makes; record what `final` holds before each one."""
    calls = {"n": 0}

    def wrap(name: str, real):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            state = contents(final)
            seen.append("old" if state == OLD else "new" if state == NEW else "missing" if state is None else "MIX")
            calls["n"] += 1
            if calls["n"] == step:
                raise Killed
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(rundir, "_exchange", wrap("exchange", rundir._exchange))
    monkeypatch.setattr(rundir.os, "replace", wrap("replace", os.replace))
    monkeypatch.setattr(rundir.shutil, "rmtree", wrap("rmtree", shutil.rmtree))


@pytest.mark.parametrize("atomic", [True, False])
@pytest.mark.parametrize("step", range(1, 6))
def test_a_kill_at_any_step_leaves_the_old_folder_or_the_new_one(tmp_path, monkeypatch, atomic, step):
    final, built = make(tmp_path / "dedup", OLD), make(tmp_path / "dedup.tmp", NEW)
    if not atomic:
        monkeypatch.setattr(rundir, "_exchange", lambda a, b: False)
    seen: list[str] = []
    kill_at(monkeypatch, step, seen, final)
    with contextlib.suppress(Killed):
        publish(built, final)
    monkeypatch.undo()
    state = contents(final)
    assert "MIX" not in seen
    if atomic:  # the swap is one step: `final` names a whole folder at every moment
        assert "missing" not in seen and state in (OLD, NEW)
    else:  # between the two renames the old folder waits as dedup.old, whole
        assert state in (OLD, NEW) or (state is None and contents(tmp_path / "dedup.old") == OLD)
    recover_published(final)
    assert contents(final) in (OLD, NEW)
    publish(make(tmp_path / "again.tmp", NEW), final)  # the next run finishes the job
    assert contents(final) == NEW and not (tmp_path / "dedup.old").exists()


def test_publish_fills_an_empty_place_and_replaces_an_earlier_folder(tmp_path):
    final = tmp_path / "out"
    assert publish(make(tmp_path / "a", OLD), final) == final and contents(final) == OLD
    publish(make(tmp_path / "b", NEW), final)
    assert contents(final) == NEW and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    final, built = make(tmp_path / "out", OLD), make(tmp_path / "out.tmp", NEW)
    monkeypatch.setattr(rundir, "_exchange", lambda a, b: False)
    real = os.replace

    def refuse_the_new_one(src, dst):  # type: ignore[no-untyped-def]
        if Path(src) == built:
            raise OSError("disk on fire")
        return real(src, dst)

    monkeypatch.setattr(rundir.os, "replace", refuse_the_new_one)
    with pytest.raises(OSError, match="disk on fire"):
        publish(built, final)
    assert contents(final) == OLD and not (tmp_path / "out.old").exists()


def test_a_stage_that_fails_before_publishing_keeps_its_earlier_output(tmp_path, monkeypatch):
    from herd import export, stats

    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"id": f"r{i}", "instruction": f"Say {i} things.", "response": "Done."})
                            + "\n" for i in range(6)))
    cfg = load_config(None, [f"run.dir={json.dumps(str(tmp_path / 'runs'))}", f"export.input={json.dumps(str(rows))}",
                             f"stats.input={json.dumps(str(rows))}", "stats.tokenizer='words'"])
    for stage, write in ((export, "write_shards"), (stats, "describe")):
        first = contents(stage.run(cfg))

        def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise RuntimeError("failed half-way")

        monkeypatch.setattr(stage, write, broken)
        with pytest.raises(RuntimeError, match="half-way"):
            stage.run(cfg)
        monkeypatch.undo()
        folder = tmp_path / "runs" / "default" / stage.STAGE
        assert contents(folder) == first
