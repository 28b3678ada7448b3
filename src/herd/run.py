"""herd run: the whole LaMini chain from one config, resumable; herd plan: what it will do and cost first.

```text
instructions -> responses -> mix -> dedup -> stats -> train -> answers -> bench -> judge -> report
```

Each stage's output is keyed by a hash of the config sections it reads and the keys of the stages it reads from
(`stage_keys`). `runs/NAME/.herd/state.json` records the key of every finished stage: a re-run skips a stage whose key
is unchanged, re-runs one whose key changed (its old folder is moved aside, never deleted; teacher calls still come
from the journal, so nothing is paid twice) and everything downstream of it. A stage killed mid-way has no entry and
simply runs again: every stage resumes on its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.config import Config
from herd.errors import UserError
from herd.rundir import run_path, write_json


@dataclass(frozen=True)
class StageSpec:
    """One link of the chain: where its `run(cfg)` lives, what it reads, and whether it calls a teacher."""

    name: str
    module: str
    sections: tuple[str, ...]
    after: tuple[str, ...]
    teacher: str = ""  # "teacher" or "judge": which teacher it pays for


CHAIN: tuple[StageSpec, ...] = (
    StageSpec("instructions", "herd.instructions", ("teacher", "instructions", "run.seed"), (), "teacher"),
    StageSpec("responses", "herd.responses", ("teacher", "responses"), ("instructions",), "teacher"),
    StageSpec("mix", "herd.mix", ("mix", "run.seed"), ("responses",)),
    StageSpec("dedup", "herd.dedup", ("dedup",), ("mix", "responses")),
    StageSpec("stats", "herd.stats", ("stats",), ("dedup",)),
    StageSpec("train", "herd.train", ("train", "run.seed"), ("dedup",)),
    StageSpec("answers", "herd.rate.answers", ("answers", "teacher"), ("train",), "teacher"),
    StageSpec("bench", "herd.bench", ("bench",), ("train",)),
    StageSpec("judge", "herd.rate.judge", ("judge",), ("answers",), "judge"),
    StageSpec("report", "herd.report", ("report",), ()),
)
STAGES = {spec.name: spec for spec in CHAIN}


def select(cfg: Config, start: str | None = None, until: str | None = None, only: str | None = None) -> list[StageSpec]:
    """The stages of the config's chain to consider, in order, after --from/--until/--only."""
    names = list(cfg.run.stages)
    for name in [*names, *(x for x in (start, until, only) if x)]:
        if name not in STAGES:
            from difflib import get_close_matches

            close = get_close_matches(name, list(STAGES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"run.stages: unknown stage {name!r}{hint}; stages are {', '.join(STAGES)}")
    ordered = [spec for spec in CHAIN if spec.name in names]
    if only:
        return [STAGES[only]]
    if start:
        ordered = ordered[[s.name for s in ordered].index(start):] if start in names else []
    if until:
        ordered = ordered[: [s.name for s in ordered].index(until) + 1] if until in names else ordered
    return ordered


def section_value(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part, None)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return dataclasses.asdict(node)
    return node


def stage_keys(cfg: Config) -> dict[str, str]:
    """Key of every stage in the chain: its config sections plus the keys of the stages it reads."""
    keys: dict[str, str] = {}
    enabled = set(cfg.run.stages)
    for spec in CHAIN:
        parts = {s: section_value(cfg, s) for s in spec.sections}
        if spec.name == "judge":
            parts["judge.teacher"] = section_value(cfg, "judge.teacher")
        upstream = {a: keys[a] for a in spec.after if a in keys and a in enabled}
        blob = json.dumps([spec.name, parts, upstream], sort_keys=True, default=str)
        keys[spec.name] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    # The report depends on everything before it.
    keys["report"] = hashlib.sha256(json.dumps(sorted(keys.items())).encode()).hexdigest()[:16]
    return keys


class State:
    """`.herd/state.json`: the key, path and time of every finished stage."""

    def __init__(self, cfg: Config) -> None:
        self.folder = run_path(cfg) / ".herd"
        self.path = self.folder / "state.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def finished(self, name: str, key: str) -> bool:
        entry: dict[str, Any] = self.data.get(name) or {}
        return entry.get("key") == key

    def mark(self, name: str, key: str, path: Path, seconds: float) -> None:
        self.data[name] = {"key": key, "path": str(path), "seconds": round(seconds, 3), "finished": time.time()}
        write_json(self.path, self.data)

    def forget(self, name: str) -> None:
        if self.data.pop(name, None) is not None:
            write_json(self.path, self.data)


def stage_runner(spec: StageSpec) -> Callable[[Config], Path]:
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name and spec.module.startswith(exc.name):
            raise UserError(f"run.stages: stage {spec.name!r} is not available in this herd install") from None
        raise
    return module.run  # type: ignore[no-any-return]


def set_aside(cfg: Config, name: str) -> None:
    """Move a stale stage folder aside (never delete a user's data)."""
    folder = run_path(cfg) / name
    if folder.exists():
        dest = run_path(cfg) / ".herd" / "stale" / f"{name}-{int(time.time())}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder), str(dest))


def run_chain(
    cfg: Config, stages: list[StageSpec], force: bool = False, echo: Callable[[str], None] | None = None
) -> dict[str, str]:
    """Run the selected stages in order; returns {stage: 'ran' | 'skipped'}."""
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    keys = stage_keys(cfg)
    state = State(cfg)
    outcome: dict[str, str] = {}
    runners = {spec.name: stage_runner(spec) for spec in stages}  # fail before anything runs
    for number, spec in enumerate(stages, start=1):
        tag = f"[{number}/{len(stages)}] {spec.name}"
        if not force and state.finished(spec.name, keys[spec.name]) and spec.name != "report":
            say(f"{tag}: up to date, skipped")
            outcome[spec.name] = "skipped"
            continue
        previous: dict[str, Any] = state.data.get(spec.name) or {}
        if previous and previous.get("key") != keys[spec.name] and spec.name != "report":
            say(f"{tag}: config changed, old output moved to .herd/stale/")
            state.forget(spec.name)
            set_aside(cfg, spec.name)
        say(f"{tag}: running")
        started = time.monotonic()
        path = runners[spec.name](cfg)
        seconds = time.monotonic() - started
        state.mark(spec.name, keys[spec.name], path, seconds)
        say(f"{tag}: done in {seconds:.1f}s -> {path}")
        outcome[spec.name] = "ran"
    return outcome
