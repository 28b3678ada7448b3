"""Shared test fixtures: paths to the reference data in ../shared/data (read there, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HERD_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny checkpoints of every student family, built once per test session: gpt2, gptneo, llama, t5."""
    from tests.tiny import tiny_gpt2, tiny_gptneo, tiny_llama, tiny_t5

    root = tmp_path_factory.mktemp("tiny")
    return {
        "gpt2": tiny_gpt2(root / "gpt2"),
        "gptneo": tiny_gptneo(root / "gptneo"),
        "llama": tiny_llama(root / "llama"),
        "t5": tiny_t5(root / "t5"),
    }
