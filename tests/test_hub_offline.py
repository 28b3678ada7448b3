"""A Hub id with no Hub in reach (issue 15): `herd generate --model org/name` and `herd train --student gpt2` say so
at once, in one line, instead of waiting through huggingface_hub's retries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


@pytest.mark.parametrize(("args", "name"), [
    (["generate", "--model", "org/name", "--input", "in.jsonl", "--out", "gen"], "org/name"),
    (["train", "--student", "gpt2", "--data", "in.jsonl"], "gpt2"),
], ids=["generate", "train"])
@pytest.mark.parametrize("offline", [False, True], ids=["no-network", "offline-mode"])
def test_hub_id_without_a_hub_is_one_line_at_once(tmp_path, args, name, offline):
    (tmp_path / "in.jsonl").write_text('{"id": "a", "instruction": "hi", "response": "hello"}\n')
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    url = f"http://127.0.0.1:{closed_port()}"
    env |= {"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf"),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    out = subprocess.run([sys.executable, "-m", "herd", *args], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    why = "offline mode is on (HF_HUB_OFFLINE)" if offline else f"{url} cannot be reached: ConnectError"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"herd: error: {name}: not a local folder and not in the Hugging Face cache, and the "
                               f"Hub cannot be used ({why}")
    assert lines[0].endswith("; pass a model folder, or download the model first where there is a network")
    assert "Retrying" not in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "gen").exists() and not (tmp_path / "runs").exists()
