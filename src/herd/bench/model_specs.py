"""The models `herd bench` scores: family, wrapper decision, content hash and display label of each.

The wrapper rule (`bench.wrapper`): `auto` wraps herd's decoder-only students (herd.json holds a wrapper) and the
paper's published decoder-only LaMini models, as the paper did; base models and encoder-decoder models are not
wrapped. `on` wraps every model (its own wrapper, else the paper's), `off` none.

A model's hash names its weights: a local folder hashes the contents of its top-level files (so retraining into the
same folder is a new model), a Hub id is its resolved commit. Digests of big files are remembered by
(path, size, mtime) in the cache folder, so a second run does not read gigabytes again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.rundir import write_json


@dataclass(frozen=True)
class ModelSpec:
    name: str  # as the user gave it
    label: str  # short name in tables and figures
    source: str  # folder or Hub id handed to lm-eval
    family: str  # "causal" | "seq2seq"
    wrapper: str | None
    hash: str
    base: str  # Hub id of the base model, for the paper's rows ('' = unknown)
    herd: bool  # a herd checkpoint (has herd.json)
    revision: str | None = None
    gguf_file: str | None = None


def resolve_models(names: list[str], mode: str, cache_dir: Path, lamini_decoders: set[str]) -> list[ModelSpec]:
    """Check every model before anything runs; a folder that is not a model is one line (students.family_of)."""
    from herd.students import family_of, read_meta, source_args

    specs = []
    for name in dict.fromkeys(names):
        family = family_of(name)
        meta = read_meta(name) or {}
        source, extra = source_args(name)
        local = Path(source).exists()
        revision = None if local else hub_revision(name)
        digest = folder_hash(Path(source), cache_dir) if local else f"hub:{name}@{revision}"
        wrapper = pick_wrapper(mode, family, meta, short_id(name) in lamini_decoders)
        base = str(meta.get("base_model") or ("" if local else name))
        specs.append(ModelSpec(name, "", source, family, wrapper, digest, base, bool(meta), revision,
                               extra.get("gguf_file")))
    return with_labels(specs)


def pick_wrapper(mode: str, family: str, meta: dict[str, Any], published_lamini_decoder: bool) -> str | None:
    from herd.students import check_wrapper, default_wrapper, family_spec

    own = meta.get("wrapper") or None
    if mode == "off":
        return None
    if mode == "on":
        return check_wrapper(own or default_wrapper(), "bench.wrapper")
    if not family_spec(family).wraps_prompts:
        return None
    if own:
        return check_wrapper(str(own), "herd.json wrapper")
    return default_wrapper() if published_lamini_decoder else None


def short_id(name: str) -> str:
    """`openai-community/gpt2` and `gpt2` alike: the last path part, lower case (how paper rows are matched)."""
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


def with_labels(specs: list[ModelSpec]) -> list[ModelSpec]:
    """Folder name (or Hub id) as label; parent/name where two folders share a name."""
    from dataclasses import replace

    def label(spec: ModelSpec, depth: int) -> str:
        if not Path(spec.source).exists():
            return spec.name
        parts = Path(spec.name).resolve().parts
        return "/".join(parts[-depth:])

    depth = 1
    while depth < 4 and len({label(s, depth) for s in specs}) < len(specs):
        depth += 1
    return [replace(s, label=label(s, depth)) for s in specs]


def hub_revision(name: str) -> str:
    """The commit a Hub id resolves to now (or in the local Hub cache when offline)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=["config.json"])).name
    except Exception as exc:  # offline without a cached copy, a typo, a private repo: all the user's to fix
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"{name}: not a local model folder and its Hub revision cannot be resolved ({first})") from None


def folder_hash(path: Path, cache_dir: Path) -> str:
    """sha256 over the top-level files of a model folder (or one file): names and contents."""
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if path.is_dir() \
        else [path]
    memo_path = cache_dir / "file_hashes.json"
    try:
        memo: dict[str, str] = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    h = hashlib.sha256()
    changed = False
    for file in files:
        st = file.stat()
        key = f"{file.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if key not in memo:
            memo[key] = file_digest(file)
            changed = True
        h.update(f"{file.name}\0{memo[key]}\n".encode())
    if changed:
        write_json(memo_path, memo)
    return h.hexdigest()[:20]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "herd" / "bench"
