"""herd checkpoints under transformers 4.x: the LaMini README's two snippets, as printed in each model card.

transformers 5 removed `text2text-generation`, so this runs them with the interpreter of `.venv-tf4` (transformers<5,
made by `make test`; HERD_TF4_PYTHON points elsewhere). The checkpoints are trained here, with transformers 5.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.test_train import build_gpt2_long, make_config, snippets, write_pairs

REPO = Path(__file__).resolve().parents[1]
TF4 = Path(os.environ.get("HERD_TF4_PYTHON", str(REPO / ".venv-tf4" / "bin" / "python")))


@pytest.fixture
def tf4_python() -> Path:
    if not TF4.is_file():
        pytest.skip(f"{TF4} not found: `make test` creates the transformers-4 virtualenv")
    version = subprocess.run([str(TF4), "-c", "from importlib.metadata import version; print(version('transformers'))"],
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("4."), version.stdout + version.stderr
    return TF4


def test_lamini_readme_snippets_run_under_transformers_4(tiny_models, tmp_path, tf4_python):
    import torch

    from herd.train import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine
    try:
        data = write_pairs(tmp_path / "pairs.jsonl")
        gpt2_long = build_gpt2_long(tmp_path / "gpt2-long")
        out = run(make_config(tmp_path, [{"base": str(tiny_models["t5"]), "name": "t5"},
                                         {"base": str(gpt2_long), "name": "gpt2"}], data=str(data)))
    finally:
        torch.set_num_threads(threads)
    # the LaMini README's snippet for each family, then the chat template; one interpreter (transformers loads slowly)
    blocks = [next(b for b in snippets(out / name) if task in b)
              for name, task in (("t5", '"text2text-generation"'), ("gpt2", '"text-generation"'))]
    chat = ("from transformers import pipeline\n"
            f"g = pipeline('text-generation', model={str(out / 'gpt2')!r})\n"
            "print(repr(g.tokenizer.apply_chat_template([{'role': 'user', 'content': 'hi'}], tokenize=False,"
            " add_generation_prompt=True)))\n")
    script = "\n".join([*blocks, chat])
    done = subprocess.run([str(tf4_python), "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert sum(line.startswith("Response ") for line in lines) == 2
    assert lines[-1].endswith(repr("### Instruction:\nhi\n\n### Response:")[1:])  # wrapper = chat template there too
