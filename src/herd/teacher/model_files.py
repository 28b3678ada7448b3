"""A local model's files, read without loading the model: its content-based identity and the GGUF check.

Identity (`model_id` of the local and llamacpp backends, part of every journal key): 'local:<name>:<hash>', where the
hash covers the size and first MiB of each weights file plus the config and chat template files. Editing the weights
or the template gives a new identity (the cache no longer answers); moving or renaming the folder does not. A Hub id
is 'local:<id>'. The embedded teacher's converted copy is named by the same hash of its .gguf file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from herd.errors import UserError

GGUF_MAGIC = b"GGUF"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
IDENTITY_FILES = ("config.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json")
HEAD_BYTES = 1 << 20


def identity(source: str, name: str) -> str:
    """'local:<name>:<hash>' for files and folders (content-based, location-free); 'local:<id>' for a Hub id."""
    path = Path(source)
    if not path.exists():
        return f"local:{name}"
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in IDENTITY_FILES)
    )
    digest = hashlib.sha256()
    for item in files:
        digest.update(f"{item.name if path.is_dir() else ''}|{item.stat().st_size}|".encode())
        with item.open("rb") as fh:
            digest.update(fh.read(HEAD_BYTES))
    return f"local:{name}:{digest.hexdigest()[:12]}"


def check_gguf(path: Path, key: str) -> None:
    if not path.is_file():
        raise UserError(f"{key} = {str(path)!r}: GGUF file not found")
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise UserError(f"{key} = {str(path)!r}: not a GGUF file (it does not start with the GGUF magic bytes)")
