"""One TOML file describes a run: typed, frozen sections with a default and a doc string for every key.

`load_config(path, overrides)` reads the file, applies `--set section.key=value` overrides and checks every key
against the section dataclasses (`herd.config.sections`; the generic checking is in `herd.config.typed`). An
unknown key, a wrong type or a broken file is a `UserError` naming the key, the file and the line. Meaning (does
the file exist, is the model reachable) is checked where a value is used.

Adding a key: add a field with `opt(default, "doc")` to its section. Adding a section: a frozen dataclass in
sections.py and a field on `Config` here.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.config.sections import (
    AnswersConfig,
    BenchConfig,
    ChatConfig,
    DedupConfig,
    ExportConfig,
    GenerateConfig,
    InstructionsConfig,
    JudgeConfig,
    MixConfig,
    ProbeConfig,
    RateAppConfig,
    ResponsesConfig,
    RunConfig,
    ServeConfig,
    SourceConfig,
    StatsConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
)
from herd.config.typed import _Where, build, explain, key_lines, opt, sub, to_toml, toml_value
from herd.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 fallback
    import tomli as tomllib

__all__ = [
    "Config", "build", "explain", "key_lines", "load_config", "opt", "override", "sub", "to_toml",
    "AnswersConfig",
    "BenchConfig",
    "ChatConfig",
    "DedupConfig",
    "ExportConfig",
    "GenerateConfig",
    "InstructionsConfig",
    "JudgeConfig",
    "MixConfig",
    "ProbeConfig",
    "RateAppConfig",
    "ResponsesConfig",
    "RunConfig",
    "ServeConfig",
    "SourceConfig",
    "StatsConfig",
    "StudentConfig",
    "TeacherConfig",
    "TrainConfig",
]


@dataclass(frozen=True)
class Config:
    """A whole run. Sections a stage does not use are ignored by it."""

    run: RunConfig = sub(RunConfig, "Where the run's files go.")
    teacher: TeacherConfig = sub(TeacherConfig, "The teacher model that writes instructions and answers.")
    instructions: InstructionsConfig = sub(InstructionsConfig, "herd instructions.")
    responses: ResponsesConfig = sub(ResponsesConfig, "herd responses.")
    dedup: DedupConfig = sub(DedupConfig, "herd dedup: drop duplicates, near-duplicates, refusals and bad lengths.")
    stats: StatsConfig = sub(StatsConfig, "herd stats: counts, lengths, MATTR, leading verbs and plots.")
    answers: AnswersConfig = sub(AnswersConfig, "herd answers: every model answers the evaluation instructions.")
    judge: JudgeConfig = sub(JudgeConfig, "herd judge: an LLM grades each answer A-D with the paper's rubric.")
    probe: ProbeConfig = sub(ProbeConfig, "herd probe hallucination: trick questions, judged.")
    mix: MixConfig = sub(MixConfig, "herd mix: one dataset from several stage outputs, by counts or shares per source.")
    export: ExportConfig = sub(ExportConfig, "herd export: Parquet and JSONL shards plus a dataset card.")
    generate: GenerateConfig = sub(GenerateConfig, "herd generate: a model answers an instruction file.")
    chat: ChatConfig = sub(ChatConfig, "herd chat: talk to a model in the terminal.")
    serve: ServeConfig = sub(ServeConfig, "herd serve: the OpenAI-compatible server.")
    train: TrainConfig = sub(TrainConfig, "herd train: fine-tune students on the pairs.")
    bench: BenchConfig = sub(BenchConfig, "herd bench: lm-evaluation-harness scores beside the paper's.")
    rate_app: RateAppConfig = sub(RateAppConfig, "herd rate-app: the web app in which people rate answers A-D.")
    sources: list[SourceConfig] = opt(
        [], "Data sources of one run, one [[sources]] table each: generated or re-answered, mixed by their counts.")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a TOML run file (or only defaults) and apply `section.key=value` overrides.

    A file may start from another: `include = "paper.toml"` (relative to the including file) reads that file first;
    the including file's keys win, tables merge key by key, and a list (such as `[[train.students]]`) replaces the
    included one. Errors name the file that set the key.
    """
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    files: dict[str, str] = {}
    where = "<defaults>"
    if path is not None:
        where = str(path)
        data = read_file(Path(path), lines, files, ())
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(data, key, value)
        lines[key] = 0
    return build(Config, data, "", _Where(where, lines, files))


def read_file(p: Path, lines: dict[str, int], files: dict[str, str], chain: tuple[Path, ...]) -> dict[str, Any]:
    """One TOML file with its includes resolved; fills `lines` (key -> line) and `files` (key -> file)."""
    if not p.is_file():
        raise UserError(f"{p}: config file not found")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{p}:{line}: not UTF-8 text (a TOML file must be UTF-8)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{p}: not valid TOML: {exc}") from None
    own = key_lines(text)
    include = data.pop("include", None)
    if include is not None:
        at = f"{p}:{own.get('include', 1)}"
        if not isinstance(include, str) or not include:
            raise UserError(f"{at}: include must be the name of a TOML file")
        target = (p.parent / include).resolve()
        if target in chain or target == p.resolve():
            raise UserError(f"{at}: include = {include!r} includes itself")
        if not target.is_file():
            raise UserError(f"{at}: include = {include!r}: {target} not found")
        data = _merge(read_file(target, lines, files, (*chain, p.resolve())), data)
    for key, line in own.items():
        lines[key] = line
        files[key] = str(p)
    return data


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def override(key: str, value: Any) -> str:
    """The `--set` text for one typed value (`C:\\data` stays `C:\\data`): what `_parse_override` reads back."""
    return f"{key}={toml_value(value)}"


def _parse_override(item: str) -> tuple[str, Any]:
    """The one reader of `--set key=value`: the value is TOML, or else a bare word taken as a string."""
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError as exc:
        if raw.strip()[:1] in ("'", '"'):  # meant as a TOML string, and not one: taking it verbatim would hide that
            why = str(exc).split(" (at ")[0]
            raise UserError(f"--set {key}: {raw.strip()} is not a TOML string ({why}); a path with backslashes "
                            "goes in single quotes or bare") from None
        value = raw  # a bare word is a string: --set teacher.model=gpt-4o-mini
    return key, value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {key}: {part} is not a section")
    node[parts[-1]] = value
