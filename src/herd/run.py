"""herd run: the whole LaMini chain from one config, resumable; herd plan: what it will do and cost first.

```text
instructions -> responses -> mix -> dedup -> stats -> train -> answers -> bench -> judge -> report
```

With `[[sources]]` each source has its own stages in place of instructions and responses (`instructions:NAME` or,
for a prompt set that is re-answered, `prompts:NAME`, then `responses:NAME`, in `runs/NAME/sources/<source>/`), all
sharing the run's journal; mix joins them with their counts. `feeders` is the one rule for which folder feeds a
stage: every stage's default input, the stage keys and `herd plan` all ask it.

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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.config import Config
from herd.errors import UserError
from herd.progress import note
from herd.rundir import run_path, write_json


@dataclass(frozen=True)
class StageSpec:
    """One link of the chain: where its `run(cfg)` lives, the config it reads, the stages that may feed it, and
    whether it calls a teacher. `reads` lists upstream stages by preference: the first one in the run's chain feeds
    this stage (`feeders`); a per-source stage (`source` set) is one [[sources]] entry's copy of `step`."""

    name: str
    module: str
    sections: tuple[str, ...]
    reads: tuple[str, ...]
    teacher: str = ""  # "teacher" or "judge": which teacher it pays for
    step: str = ""  # the chain link this is a copy of ('' = name)
    source: str = ""  # the [[sources]] entry of a per-source stage
    function: str = "run"

    @property
    def kind(self) -> str:
        return self.step or self.name


CHAIN: tuple[StageSpec, ...] = (
    StageSpec("instructions", "herd.instructions", ("teacher", "instructions", "run.seed"), (), "teacher"),
    StageSpec("responses", "herd.responses", ("teacher", "responses"), ("instructions",), "teacher"),
    StageSpec("mix", "herd.mix", ("mix", "run.seed"), ("responses",)),
    StageSpec("dedup", "herd.dedup", ("dedup",), ("mix", "responses")),
    StageSpec("stats", "herd.stats", ("stats",), ("dedup", "mix", "responses")),
    StageSpec("train", "herd.train", ("train", "run.seed"), ("dedup", "mix", "responses")),
    StageSpec("answers", "herd.rate.answers", ("answers", "teacher"), ("train",), "teacher"),
    StageSpec("bench", "herd.bench", ("bench",), ("train",)),
    StageSpec("judge", "herd.rate.judge", ("judge", "teacher"), ("answers",), "judge"),
    StageSpec("report", "herd.report", ("report",), ()),
)
STAGES = {spec.name: spec for spec in CHAIN}
# Stages outside the chain that read its data the same way.
EXTRA = {"export": StageSpec("export", "herd.export", ("export",), ("dedup", "mix", "responses"))}
# A user-set input replaces the stage's feeder: then no upstream stage feeds it.
OWN_INPUT = {"responses": "responses.input", "mix": "mix.inputs", "dedup": "dedup.input", "stats": "stats.input",
             "train": "train.data", "export": "export.input", "judge": "judge.answers"}


def expand(cfg: Config) -> list[StageSpec]:
    """Every stage this config can run, in chain order: with [[sources]], each source's own stages stand where
    instructions and responses stand, and mix joins them."""
    if not cfg.sources:
        return list(CHAIN)
    from herd import sources

    out: list[StageSpec] = []
    for spec in CHAIN:
        if spec.name == "instructions":
            for src in cfg.sources:
                name = sources.name_of(src)
                if src.kind == "answer":
                    out.append(StageSpec(f"prompts:{name}", "herd.sources", ("instructions", "run.seed"), (),
                                         step="prompts", source=name, function="run_prompts"))
                else:
                    out.append(dataclasses.replace(spec, name=f"instructions:{name}", step="instructions",
                                                   source=name))
                out.append(dataclasses.replace(STAGES["responses"], name=f"responses:{name}", step="responses",
                                               source=name, reads=(out[-1].name,)))
        elif spec.name != "responses":
            out.append(spec)
    return out


def configured(cfg: Config) -> list[StageSpec]:
    """The stages `run.stages` names, expanded; with [[sources]] mix is always in (it joins the sources)."""
    names = set(cfg.run.stages)
    if cfg.sources and names & {"instructions", "responses"}:
        names.add("mix")
    every = expand(cfg)
    picked = [s for s in every if s.kind in names]
    if cfg.sources and "responses" in names:  # an answer source's prompts are part of its responses
        picked = [s for s in every if s in picked or s.kind == "prompts"]
    return picked


def feeders(cfg: Config, name: str) -> list[StageSpec]:
    """The stages whose output `name` reads by default, from the chain's description; [] when it reads a user's
    input (`OWN_INPUT`) or nothing. The one rule for every stage's default input, for stage keys and `herd plan`."""
    every = {s.name: s for s in expand(cfg)}
    spec = every.get(name) or EXTRA[name]
    if spec.source:
        return [every[r] for r in spec.reads]
    own = OWN_INPUT.get(name)
    if own and section_value(cfg, own):
        return []
    if name == "mix" and cfg.sources:
        return [s for s in every.values() if s.kind == "responses"]
    if not spec.reads:
        return []
    in_chain = {s.kind for s in configured(cfg)}
    for candidate in spec.reads:
        if candidate in in_chain:
            return [s for s in every.values() if s.kind == candidate]
    last = spec.reads[-1]  # none configured: the data line's first folder (the mix, with sources)
    return [every["mix"]] if cfg.sources and last == "responses" else [s for s in every.values() if s.kind == last]


def stage_folder(cfg: Config, spec: StageSpec) -> Path:
    """Where a stage writes: runs/NAME/<stage>/, or runs/NAME/sources/<source>/<step>/ for a per-source stage."""
    if spec.source:
        return run_path(cfg) / "sources" / spec.source / spec.kind
    return run_path(cfg) / spec.name


def stage_input(cfg: Config, name: str) -> Path:
    """The data.jsonl a stage reads when its own input key is empty: its feeder's (see `feeders`)."""
    found = feeders(cfg, name)
    if len(found) != 1:
        raise UserError(f"{name}: no single upstream stage feeds it (set {OWN_INPUT.get(name, name)})")
    return stage_folder(cfg, found[0]) / "data.jsonl"


def select(cfg: Config, start: str | None = None, until: str | None = None, only: str | None = None) -> list[StageSpec]:
    """The stages of the config's chain to consider, in order, after --from/--until/--only."""
    every = expand(cfg)
    known = list(STAGES) + [s.name for s in every if s.source]
    for name in [*cfg.run.stages, *(x for x in (start, until, only) if x)]:
        if name not in known:
            from difflib import get_close_matches

            close = get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"run.stages: unknown stage {name!r}{hint}; stages are {', '.join(STAGES)}")
    if cfg.sources:
        from herd.sources import check

        check(cfg)
    if only:
        return [s for s in every if only in (s.name, s.kind)]
    ordered = configured(cfg)
    names = [s.name for s in ordered]
    kinds = [s.kind for s in ordered]
    if start:
        first = next((i for i, (n, k) in enumerate(zip(names, kinds, strict=True)) if start in (n, k)), None)
        ordered, names, kinds = ([], [], []) if first is None else (ordered[first:], names[first:], kinds[first:])
    if until:
        last = max((i for i, (n, k) in enumerate(zip(names, kinds, strict=True)) if until in (n, k)), default=None)
        ordered = ordered if last is None else ordered[: last + 1]
    return ordered


def section_value(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part, None)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return dataclasses.asdict(node)
    return node


def stage_config(cfg: Config, spec: StageSpec) -> Config:
    """The config as a stage sees it: a per-source stage, and the mix of a run with [[sources]], get theirs."""
    if not cfg.sources or not (spec.source or spec.name == "mix"):
        return cfg
    from herd import sources

    if spec.name == "mix":
        return sources.mix_config(cfg, [stage_folder(cfg, s) for s in feeders(cfg, "mix")])
    src = sources.find(cfg, spec.source)
    out = stage_folder(cfg, spec)
    if spec.kind == "responses":
        return sources.responses_config(cfg, src, stage_folder(cfg, feeders(cfg, spec.name)[0]), out)
    return sources.generator_config(cfg, src, out)


def stage_keys(cfg: Config) -> dict[str, str]:
    """Key of every stage: the config sections it reads (as it sees them) plus the keys of the stages feeding it."""
    keys: dict[str, str] = {}
    enabled = {s.name for s in configured(cfg)}
    for spec in expand(cfg):
        seen = stage_config(cfg, spec)
        parts = {s: section_value(seen, s) for s in spec.sections}
        if spec.source:
            from herd.sources import find

            parts["source"] = dataclasses.asdict(find(cfg, spec.source))
        upstream = {f.name: keys[f.name] for f in feeders(cfg, spec.name) if f.name in keys and f.name in enabled}
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
    function: Callable[[Config], Path] = getattr(module, spec.function)
    return lambda cfg: function(stage_config(cfg, spec))


def set_aside(cfg: Config, spec: StageSpec) -> None:
    """Move a stale stage folder aside (never delete a user's data)."""
    folder = stage_folder(cfg, spec)
    if folder.exists():
        dest = run_path(cfg) / ".herd" / "stale" / f"{spec.name.replace(':', '-')}-{int(time.time())}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder), str(dest))


def run_chain(
    cfg: Config, stages: list[StageSpec], force: bool = False, echo: Callable[[str], None] | None = None
) -> dict[str, str]:
    """Run the selected stages in order; returns {stage: 'ran' | 'skipped'}."""
    say = echo or note
    keys = stage_keys(cfg)
    state = State(cfg)
    outcome: dict[str, str] = {}
    runners = {spec.name: stage_runner(spec) for spec in stages}  # fail before anything runs
    if cfg.sources:
        from herd.sources import preflight

        # every seed pool and prompt set
        preflight(cfg, [(s.kind, stage_config(cfg, s)) for s in stages if s.source and s.kind != "responses"])
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
            set_aside(cfg, spec)
        say(f"{tag}: running")
        started = time.monotonic()
        path = runners[spec.name](cfg)
        seconds = time.monotonic() - started
        state.mark(spec.name, keys[spec.name], path, seconds)
        say(f"{tag}: done in {seconds:.1f}s -> {path}")
        outcome[spec.name] = "ran"
    return outcome
