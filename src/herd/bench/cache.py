"""Score cache: one JSON file per (model hash, task, harness version, and what else changes a score).

`<cache_dir>/<model hash>/<task>-<key>.json` holds that task's piece of lm-eval's output. Adding a model to a
comparison, or a task to a model, runs only what no file holds yet; a changed task definition, wrapper, limit,
few-shot count, harness version, reported metric or bootstrap count (only the reported metric gets a stderr) is a new
key. Files are written atomically, so a killed run leaves whole ones.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from herd.bench.model_specs import ModelSpec
from herd.bench.tasks import TaskSpec
from herd.rundir import write_json


def cache_key(model: ModelSpec, task: TaskSpec, *, harness: str, num_fewshot: int, limit: float | None,
              bootstrap_iters: int) -> dict[str, Any]:
    wrapper = hashlib.sha256(model.wrapper.encode()).hexdigest()[:16] if model.wrapper else None
    return {"model": model.hash, "backend": model.family, "task": task.name, "task_digest": task.digest,
            "metric": task.metric, "lm_eval": harness, "wrapper": wrapper, "num_fewshot": num_fewshot,
            "limit": limit, "bootstrap_iters": bootstrap_iters}


def key_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe_model = key["model"].replace("/", "_").replace(":", "_").replace("@", "_")
    return cache_dir / safe_model / f"{key['task']}-{digest}.json"


def get(cache_dir: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    path = key_path(cache_dir, key)
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return entry.get("output") if entry.get("key") == key else None


def put(cache_dir: Path, key: dict[str, Any], output: dict[str, Any]) -> Path:
    path = key_path(cache_dir, key)
    write_json(path, {"key": key, "output": output})
    return path
