"""What the teacher tests share: a fast-retrying openai teacher config and a run file for `herd responses`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from herd.config import TeacherConfig

# An openai teacher for the mock: quick backoff so that faults cost milliseconds; a timeout that a busy CI machine
# does not reach by accident (tests of hung calls set a shorter one).
FAST = {
    "backend": "openai", "model": "mock", "concurrency": 4, "timeout_s": 2.0, "backoff_base_s": 0.01,
    "backoff_max_s": 0.05, "max_attempts": 6,
}


def openai_config(*urls: str, **overrides: Any) -> TeacherConfig:
    return TeacherConfig(**{**FAST, "base_urls": list(urls), **overrides})


def write_instructions(path: Path, n: int) -> list[str]:
    """n instruction rows with ids q000..; returns the ids."""
    ids = [f"q{i:03d}" for i in range(n)]
    with path.open("w", encoding="utf-8") as fh:
        for i, row_id in enumerate(ids):
            fh.write(json.dumps({"id": row_id, "instruction": f"Tell me fact number {i} about rivers."}) + "\n")
    return ids


def write_run_file(path: Path, run_dir: Path, instructions: Path, url: str, **teacher: Any) -> Path:
    """A run file that answers `instructions` with the mock at `url`."""
    values = {**FAST, "base_urls": [url], **teacher}
    lines = ["[run]", f"dir = {json.dumps(str(run_dir))}", 'name = "t"', "quiet = true", "", "[teacher]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    lines += ["", "[responses]", f"input = {json.dumps(str(instructions))}", 'system_prompt = ""']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
