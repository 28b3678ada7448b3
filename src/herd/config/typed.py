"""Typed TOML: frozen dataclasses as a config schema, checked key by key with the file and line of every mistake.

Generic machinery, no herd sections: `opt`/`sub` declare keys, `build` checks a parsed TOML table against a
dataclass, `key_lines` finds the line of each key, `explain` documents a schema, `to_toml` writes a config back.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from herd.errors import UserError


def opt(default: Any, doc: str) -> Any:
    """A config key: its default and the one-line doc shown by `herd config --explain`."""
    if isinstance(default, (list, dict)):
        factory: Any = lambda d=default: type(d)(d)  # noqa: E731 - a fresh copy per instance
        return field(default_factory=factory, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def sub(cls: type, doc: str) -> Any:
    """A nested section (a sub-table in TOML)."""
    return field(default_factory=cls, metadata={"doc": doc})


@dataclass
class _Where:
    file: str
    lines: dict[str, int]
    files: dict[str, str] = field(default_factory=dict)  # key -> the included file that set it, where not `file`

    def at(self, key: str) -> str:
        line = self.lines.get(key)
        while line is None and re.search(r"[.\[]", key):  # the line of the table (or --set) that holds the key
            key = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", key)
            line = self.lines.get(key)
        if line == 0:
            return "--set"
        file = self.files.get(key, self.file)
        return f"{file}:{line}" if line else file


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\-\"]+)\s*=")


def key_lines(text: str) -> dict[str, int]:
    """Map each dotted key (and section) of a TOML text to the line that sets it (1-based)."""
    found: dict[str, int] = {}
    section = ""
    arrays: dict[str, int] = {}  # [[name]] tables seen so far: the n-th one is name[n]
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            section = header.group(1).replace('"', "").replace(" ", "")
            found.setdefault(section, number)
            if line.lstrip().startswith("[["):
                arrays[section] = arrays.get(section, -1) + 1
                section = f"{section}[{arrays[section]}]"
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


def explain(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every key as (dotted key, type, default, doc), for `herd config --explain` and the docs."""
    rows: list[tuple[str, str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(explain(tp, dotted))  # type: ignore[arg-type]
            continue
        item = get_args(tp)[0] if get_origin(tp) is list and get_args(tp) else None
        if item is not None and dataclasses.is_dataclass(item):  # an array of tables: its keys as name[].key
            rows.append((dotted, _type_text(tp), "[]", f.metadata.get("doc", "")))
            rows.extend(explain(item, f"{dotted}[]"))  # type: ignore[arg-type]
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
            out.append(f"{name} = {toml_value(value)}")
        for name, value in tables:
            emit(value, f"{prefix}.{name}" if prefix else name)

    emit(cfg, "")
    return "\n".join(out).lstrip() + "\n"


def toml_value(value: Any) -> str:
    """`value` as TOML text that reads back as the same value (strings as basic strings, escaped as TOML wants)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    if dataclasses.is_dataclass(value):  # an array of tables' item, as an inline table
        items = [f"{f.name} = {toml_value(getattr(value, f.name))}" for f in dataclasses.fields(value)]
        return "{" + ", ".join(items) + "}"
    if value is None:
        return '""'
    return toml_string(str(value))


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """A TOML basic string. Not JSON's escaping: TOML has no surrogate-pair escapes (JSON writes an emoji as two),
    and wants DEL escaped; other non-ASCII characters stay as they are (TOML files are UTF-8)."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
