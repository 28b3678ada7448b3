"""Prompt, rubric and wrapper files, read with importlib.resources (no long prompt strings in code).

The LaMini defaults reproduce the paper's method exactly (its Figures 6-8 and the decoder-only wrapper of §4.1);
`prompt_path(name)` gives a file's path so manifests can record its hash.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def prompt_path(name: str) -> Path:
    """Path of a shipped prompt file, or of a user's file when `name` is a path that exists."""
    user = Path(name)
    if user.is_file():
        return user
    return Path(str(resources.files("herd.prompts").joinpath(name)))


def read_prompt(name: str) -> str:
    path = prompt_path(name)
    if not path.is_file():
        from herd.errors import UserError

        raise UserError(f"prompt file not found: {name}")
    return path.read_text(encoding="utf-8")
