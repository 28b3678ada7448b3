"""Which tasks `herd bench` runs and which metric it reads from each.

A suite is a TOML file: `[metrics]` maps lm-eval task names to the metric the suite reports (`lamini15`, the paper's
15 tasks, ships in herd/assets/suite_lamini15.toml). `--tasks` replaces the suite by lm-eval task names, task YAML
files or folders of them; each such task reports the paper's rule: acc_norm where the task has it, else acc, else
F1 (ReCoRD), else its first metric. Everything here is checked before a model is loaded or a file is written.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from herd.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 fallback
    import tomli as tomllib

METRIC_PREFERENCE = ("acc_norm", "acc", "f1")
PAPER_TASKS = ("openbookqa", "sciq", "race", "arc_challenge", "piqa", "record", "sst2", "mrpc", "rte", "mnli",
               "mnli_mismatch", "wsc273", "winogrande", "wic", "hellaswag")  # the paper's column order
BUILTIN_SUITES = ("lamini15",)


@dataclass(frozen=True)
class TaskSpec:
    """One task to run: its lm-eval name, the metric read from it, and a digest of its definition (for the cache)."""

    name: str
    metric: str
    digest: str
    dataset_path: str
    dataset_name: str = ""

    @property
    def dataset(self) -> str:
        return f"{self.dataset_path} ({self.dataset_name})" if self.dataset_name else self.dataset_path


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    metrics: dict[str, str]


def load_suite(name_or_path: str) -> Suite:
    """A shipped suite by name, or a suite TOML file."""
    if name_or_path in BUILTIN_SUITES:
        path = Path(str(resources.files("herd").joinpath("assets", f"suite_{name_or_path}.toml")))
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise UserError(f"bench.suite = {name_or_path!r}: not a shipped suite ({', '.join(BUILTIN_SUITES)}) "
                            "and no such suite file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics or not all(isinstance(v, str) for v in metrics.values()):
        raise UserError(f"{path}: a suite needs a [metrics] table of task = \"metric\" lines")
    return Suite(name_or_path if name_or_path in BUILTIN_SUITES else path.stem, str(path), dict(metrics))


def metric_for(reported: list[str]) -> str:
    """The paper's rule for a task outside a suite: acc_norm where reported, else acc, else F1, else the first."""
    for name in METRIC_PREFERENCE:
        if name in reported:
            return name
    if not reported:
        raise UserError("a task without a metric_list cannot be scored")
    return reported[0]


def paper_order(name: str) -> tuple[int, str]:
    return (PAPER_TASKS.index(name) if name in PAPER_TASKS else len(PAPER_TASKS), name)


@lru_cache(maxsize=8)
def task_manager(include: tuple[str, ...], defaults: bool) -> Any:
    """lm-eval's task index (scanning its ~10k YAML files takes seconds, so one per process and path set)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include) or None, include_defaults=defaults)


def is_task(entry: Any) -> bool:
    return entry.kind.name in ("TASK", "PY_TASK")  # not a group or a tag


def local_task_names(spec: str) -> tuple[Path, list[str]]:
    """(folder to include, task names) of a task YAML file or a folder of them, as lm-eval's own index reads them."""
    path = Path(spec).expanduser().resolve()
    folder = path if path.is_dir() else path.parent
    index = task_manager((str(folder),), False).task_index
    names = [name for name, entry in index.items()
             if is_task(entry) and (path.is_dir() or Path(entry.yaml_path or "").resolve() == path)]
    if not names:
        raise UserError(f"{spec}: no lm-eval task here (a task YAML needs `task: <name>` and must parse; "
                        "groups are not supported: list their tasks)")
    return folder, sorted(names, key=paper_order)


def resolve(suite: Suite | None, task_args: list[str], include_path: list[str]) -> tuple[Any, list[TaskSpec]]:
    """The task manager and the checked task list, from --tasks (names, YAML files, folders) or the suite."""
    names: list[str] = []
    folders: list[str] = [str(Path(p).expanduser().resolve()) for p in include_path]
    wanted: list[str] = []
    for spec in task_args or list(suite.metrics if suite else []):
        if Path(spec).expanduser().exists():
            folder, found = local_task_names(spec)
            folders.append(str(folder))
            wanted.extend(found)
        elif spec.endswith((".yaml", ".yml")):
            raise UserError(f"{spec}: task file not found")
        else:
            names.append(spec)
            wanted.append(spec)
    # Only names need lm-eval's own index; local YAMLs alone skip the seconds it takes to build it.
    manager = task_manager(tuple(dict.fromkeys(folders)), bool(names))
    metrics = suite.metrics if suite and not task_args else {}
    specs = [check_task(manager, name, metrics.get(name), suite.path if suite else "") for name in
             dict.fromkeys(wanted)]
    return manager, specs


def check_task(manager: Any, name: str, metric: str | None, suite_path: str) -> TaskSpec:
    """One task name checked against the index: it exists, is a task (not a group), reports the suite's metric."""
    entry = manager.task_index.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, manager.all_tasks, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else " (see `lm-eval ls tasks`)"
        raise UserError(f"unknown lm-eval task {name!r}{hint}")
    if not is_task(entry):
        members = sorted(entry.tags) if entry.kind.name == "TAG" else list((entry.cfg or {}).get("task", []))
        shown = ", ".join(str(m) for m in members[:6])
        raise UserError(f"{name!r} is a group of tasks, not a task; name its tasks instead: {shown}")
    cfg = entry.cfg or {}
    reported = [str(m.get("metric")) for m in cfg.get("metric_list", []) if isinstance(m, dict)]
    if metric is not None and reported and metric not in reported:
        raise UserError(f"{suite_path}: task {name!r} does not report metric {metric!r} "
                        f"(it reports {', '.join(reported)})")
    chosen = metric or metric_for(reported)
    return TaskSpec(name, chosen, digest(cfg, entry.yaml_path), str(cfg.get("dataset_path") or "?"),
                    str(cfg.get("dataset_name") or ""))


def digest(cfg: dict[str, Any], yaml_path: Path | None) -> str:
    """Hash of a task's definition; for tasks outside lm-eval also of its Python helpers and local data files."""
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    if yaml_path is not None and "lm_eval" not in Path(yaml_path).parts:
        for helper in sorted(Path(yaml_path).parent.glob("*.py")):
            h.update(helper.read_bytes())
        for data_file in local_files(cfg.get("dataset_kwargs", {}).get("data_files")):
            h.update(data_file.read_bytes())
    return h.hexdigest()[:16]


def local_files(value: Any) -> list[Path]:
    """The existing local files named in a `data_files` value (a string, a list, or a split -> files table)."""
    if isinstance(value, str):
        return [Path(value)] if Path(value).is_file() else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [f for v in value for f in local_files(v)]
    return []


def build_tasks(manager: Any, specs: list[TaskSpec]) -> tuple[dict[str, Any], dict[str, str]]:
    """lm-eval Task objects (their datasets loaded) for `specs`, and one line per task that could not be built.

    A task whose dataset is not in the cache, or whose config or helper code fails to load, is left out with its
    cause; the others still run. ReCoRD's helper imports a module transformers 5 removed: herd stands in for it.
    """
    from herd.bench import squad

    squad.install()
    built: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for spec in specs:
        try:
            built[spec.name] = manager.load([spec.name])["tasks"][spec.name]
        except Exception as exc:  # noqa: BLE001 - any cause is reported for this task alone, the others go on
            failed[spec.name] = build_failure(spec, exc)
    return built, failed


def build_failure(spec: TaskSpec, exc: BaseException) -> str:
    """One line: why the task could not be built, and for a dataset the way to fetch it."""
    if raised_by_datasets(exc):
        return fetch_hint(spec, exc)
    return f"task {spec.name}: cannot be built ({one_line(exc)})"


def raised_by_datasets(exc: BaseException) -> bool:
    """Whether `datasets` itself raised (offline without a cache, a config not in the cache, a hub error)."""
    from datasets.exceptions import DatasetsError

    if isinstance(exc, DatasetsError):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0] == "datasets"


def one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def fetch_hint(spec: TaskSpec, exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    args = f"'{spec.dataset_path}'" + (f", '{spec.dataset_name}'" if spec.dataset_name else "")
    return (f"task {spec.name}: dataset {spec.dataset} cannot be loaded ({first}); with network access run "
            f"`python -c \"import datasets; datasets.load_dataset({args})\"` once (HF_DATASETS_CACHE picks the "
            "cache folder), then herd bench works offline with HF_DATASETS_OFFLINE=1")
