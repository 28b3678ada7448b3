"""Run directories: `<run.dir>/<run.name>/` holds one folder per stage and the run's teacher journal.

```text
runs/NAME/
  journal.sqlite        every teacher call of every stage (cache, resume point, cost ledger)
  instructions/         data.jsonl  rejects.jsonl  manifest.json
  responses/ ...
```

`StageDir` opens a stage's two row files for appending and writes `manifest.json` (resolved config, versions,
prompt hashes, counts, timings, teacher usage; never a secret) atomically when the stage finishes. A stage that
builds its whole output in a sibling folder (`<stage>.tmp`) puts it in place with `publish`: renames only, so a kill
at any moment leaves the earlier folder or the new one, never a mix of both, and a failure before `publish` leaves
the earlier output as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from herd import __version__
from herd.config import Config
from herd.records import RowWriter, ids
from herd.secrets import REDACTED, looks_like_key, redact_urls

DEPENDENCIES = (
    "torch", "transformers", "accelerate", "peft", "datasets", "datasketch", "httpx", "lm-eval", "gguf", "fastapi",
)
_SECRETISH = re.compile(r"(key|token|secret|password)", re.I)


def run_path(cfg: Config) -> Path:
    return Path(cfg.run.dir) / cfg.run.name


def journal_path(cfg: Config) -> Path:
    return run_path(cfg) / "journal.sqlite"


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def versions() -> dict[str, str]:
    found = {"herd": __version__, "python": platform.python_version()}
    for name in DEPENDENCIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def redact(obj: Any) -> Any:
    """Drop anything that looks like a secret value, and credentials and query values inside URLs."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            # api_key_env names a variable, which is not a secret; a value under a key-like name would be, and so
            # would a key pasted where the variable's name goes.
            env = str(k).endswith("_env")
            if isinstance(v, str) and v and _SECRETISH.search(str(k)) and (not env or looks_like_key(v)):
                out[k] = REDACTED
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_urls(obj)
    return obj


@dataclass
class StageDir:
    """One stage's output folder under the run, opened for appending (resumable)."""

    path: Path
    stage: str
    started: float = field(default_factory=time.time)
    prompts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.data = RowWriter(self.path / "data.jsonl")
        self.rejects = RowWriter(self.path / "rejects.jsonl")

    def done_ids(self) -> set[str]:
        """Ids already in data.jsonl or rejects.jsonl: a restarted stage skips them."""
        return ids(self.path / "data.jsonl") | ids(self.path / "rejects.jsonl")

    def keep(self, row: dict[str, Any]) -> None:
        self.data.write(row)

    def reject(self, row: dict[str, Any], reason: str) -> None:
        self.rejects.write({**row, "reason": reason})

    def checkpoint(self) -> None:
        self.data.flush(sync=True)
        self.rejects.flush(sync=True)

    def add_prompt(self, name: str, path: str | Path) -> None:
        self.prompts[name] = file_hash(path)

    def finish(self, cfg: Config, extra: dict[str, Any] | None = None, usage: dict[str, Any] | None = None) -> Path:
        """Close the row files and write manifest.json; returns the stage folder."""
        self.data.close()
        self.rejects.close()
        manifest = {
            "stage": self.stage,
            "config": redact(cfg.as_dict()),
            "versions": versions(),
            "prompts": self.prompts,
            "counts": count_rows(self.path),
            "timings": {"started": self.started, "finished": time.time(), "seconds": time.time() - self.started},
            "usage": usage or {},
            **(extra or {}),
        }
        write_json(self.path / "manifest.json", manifest)
        return self.path


def open_stage(cfg: Config, stage: str) -> StageDir:
    return StageDir(run_path(cfg) / stage, stage)


def count_rows(folder: Path) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    rejects = folder / "rejects.jsonl"
    if rejects.exists():
        with rejects.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    reasons[str(json.loads(line).get("reason", "?")).split(":")[0]] += 1
    data = folder / "data.jsonl"
    kept = sum(1 for line in data.open(encoding="utf-8") if line.strip()) if data.exists() else 0
    return {"rows": kept, "rejects": sum(reasons.values()), "rejects_by_reason": dict(reasons)}


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically: a reader never sees half a manifest."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, p)


RENAME_EXCHANGE = 2  # renameat2 flag (Linux >= 3.15): swap two paths in one atomic step
AT_FDCWD = -100


def publish(built: Path, final: Path) -> Path:
    """Put the finished folder `built` in place as `final`, replacing an earlier `final`; returns `final`.

    Where the file system can swap two paths atomically (Linux renameat2), `final` is never missing: it names the old
    folder until the swap and the new one after it. Elsewhere the old folder is first renamed to `<final>.old`; a
    kill between the two renames leaves it there, and the next `publish` (or `recover_published`) renames it back
    before anything else happens."""
    recover_published(final)
    if final.exists() and _exchange(built, final):
        shutil.rmtree(built, ignore_errors=True)  # `built` now holds the old folder
        return final
    old = final.with_name(final.name + ".old")
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(built, final)
    except BaseException:
        recover_published(final)  # a failed rename: the earlier folder goes back
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


def recover_published(final: Path) -> None:
    """Finish what a killed `publish` left: the old folder back in place, or the old copy gone."""
    old = final.with_name(final.name + ".old")
    if not old.exists():
        return
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(old, final)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; False where the system or file system cannot (then nothing changed)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # a C library without renameat2 (glibc < 2.28, musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return bool(renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0)
