"""The dataset card `herd export` writes: README.md with Hub YAML front matter and what a reader needs to trust it.

The front matter (built with huggingface_hub's `DatasetCardData`) names the licence, the languages and the
configs/data_files, so the Hub's viewer opens the Parquet shards. The prose (template: src/herd/assets/dataset_card.md)
gives the composition per source, the teacher, how each stage ran, and the prompts with their hashes, all read from
the stage manifests of the run.
"""

from __future__ import annotations

import json
import string
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from herd import __version__
from herd.config import Config
from herd.rundir import run_path

STAGES = ("instructions", "responses", "dedup", "mix")
FIELD_DOCS = {
    "id": "stable row id; every herd stage keeps it, so a row can be traced to its teacher call",
    "instruction": "the instruction (an input, when there is one, is inlined)",
    "response": "the teacher's response",
    "instruction_source": "which LaMini subset the row belongs to (see Composition)",
    "seed_ids": "ids of the seed examples shown when the instruction was generated",
    "topics": "topics named in a topic-guided generation call",
    "call": "journal key of the teacher call that wrote the instruction or response",
    "finish_reason": "why the teacher stopped: stop, or length when cut short",
    "truncated": "true when the response hit the token limit",
}


@dataclass
class SourceStats:
    rows: int = 0
    instruction_words: int = 0
    responses: int = 0
    response_words: int = 0


@dataclass
class Scan:
    """What export's first pass learned: row count, per-source numbers (the card's composition table), the columns
    to write and their sample values (export's Parquet types)."""

    rows: int = 0
    sources: dict[str, SourceStats] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    samples: dict[str, list[Any]] = field(default_factory=dict)


def card_text(cfg: Config, scan: Scan, source: Path, files: list[str]) -> str:
    ec = cfg.export
    manifests = stage_manifests(cfg, source)
    template = resources.files("herd.assets").joinpath("dataset_card.md").read_text(encoding="utf-8")
    title = ec.pretty_name or cfg.run.name
    return string.Template(template).substitute(
        front_matter=front_matter(cfg, scan, files, title), title=title, summary=summary(scan, manifests),
        composition=composition(scan), method=method(manifests, source), prompts=prompt_table(manifests),
        fields="\n".join(f"- `{c}`: {FIELD_DOCS.get(c, 'carried over from the stage output')}" for c in scan.columns),
        files="\n".join(f"- `{f}`" for f in files), split=ec.split, license=ec.license, license_note=ec.license_note,
    )


def stage_manifests(cfg: Config, source: Path) -> dict[str, dict[str, Any]]:
    """The run's stage manifests (a sharded stage: its first shard's), plus the input's own, by stage name."""
    found: dict[str, dict[str, Any]] = {}
    candidates = [source.parent / "manifest.json"]
    for stage in STAGES:
        folder = run_path(cfg) / stage
        candidates += [folder / "manifest.json", *sorted(folder.glob("shard-*/manifest.json"))[:1]]
    for path in candidates:
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            found.setdefault(str(data.get("stage", path.parent.name)), data)
    return found


def front_matter(cfg: Config, scan: Scan, files: list[str], title: str) -> str:
    from huggingface_hub import DatasetCardData

    configs: list[dict[str, Any]] = []
    split = cfg.export.split
    for folder, suffix in (("data", "parquet"), ("jsonl", "jsonl")):
        if any(f.startswith(f"{folder}/") for f in files):  # the first format written is the viewer's default
            configs.append({"config_name": "default" if not configs else suffix,
                            "data_files": [{"split": split, "path": f"{folder}/{split}-*.{suffix}"}]})
    data = DatasetCardData(
        language=cfg.export.language, license=cfg.export.license, pretty_name=title,
        size_categories=[size_category(scan.rows)], task_categories=["text-generation"],
        tags=["instruction-tuning", "synthetic", "distillation", "lamini", "herd"], configs=configs,
    )
    return f"---\n{data.to_yaml()}\n---"


def size_category(rows: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
    return next((label for bound, label in bounds if rows < bound), "n>100M")


def summary(scan: Scan, manifests: dict[str, dict[str, Any]]) -> str:
    teacher = teacher_of(manifests)
    return (f"{scan.rows} instruction/response pairs in {len(scan.sources)} subsets, written by the teacher model "
            f"`{teacher}` with herd {__version__}, which reproduces the LaMini method "
            "(a large teacher writes instructions and concise responses; small students are fine-tuned on them). "
            f"Exported {time.strftime('%Y-%m-%d', time.gmtime())}.")


def teacher_of(manifests: dict[str, dict[str, Any]]) -> str:
    names = {str(m["teacher"]) for m in manifests.values() if m.get("teacher")}
    return ", ".join(sorted(names)) or "unknown (no stage manifest found)"


def composition(scan: Scan) -> str:
    lines = ["| instruction_source | rows | share | avg instruction (words) | avg response (words) |",
             "|---|---:|---:|---:|---:|"]
    for name, s in sorted(scan.sources.items(), key=lambda kv: (-kv[1].rows, kv[0])):
        response = f"{s.response_words / s.responses:.1f}" if s.responses else "–"
        lines.append(f"| {name} | {s.rows} | {s.rows / scan.rows:.1%} | {s.instruction_words / s.rows:.1f} | "
                     f"{response} |")
    lines.append(f"| **all** | {scan.rows} | 100% | "
                 f"{sum(s.instruction_words for s in scan.sources.values()) / scan.rows:.1f} | "
                 f"{avg_response(scan)} |")
    return "\n".join(lines)


def avg_response(scan: Scan) -> str:
    n = sum(s.responses for s in scan.sources.values())
    return f"{sum(s.response_words for s in scan.sources.values()) / n:.1f}" if n else "–"


def method(manifests: dict[str, dict[str, Any]], source: Path) -> str:
    """One bullet per stage that ran, from its manifest."""
    out = [f"- Teacher: `{teacher_of(manifests)}`."]
    if m := manifests.get("instructions"):
        c = m.get("config", {}).get("instructions", {})
        out.append(f"- `herd instructions`: {m.get('calls_planned', '?')} calls, style `{m.get('style')}`, "
                   f"modes {', '.join(m.get('modes', []))}, {m.get('per_call')} instructions asked per call from "
                   f"{c.get('examples_per_call', 3)} seed examples ({m.get('seeds', {}).get('origin')}, "
                   f"{m.get('seeds', {}).get('count')} seeds); sampling {json.dumps(m.get('sampling', {}))}; "
                   f"kept {m.get('counts', {}).get('rows')}, rejected {m.get('counts', {}).get('rejects')} "
                   f"({json.dumps(m.get('counts', {}).get('rejects_by_reason', {}))}).")
    if m := manifests.get("responses"):
        out.append(f"- `herd responses`: one call per instruction with the system prompt in Prompts; sampling "
                   f"{json.dumps(m.get('sampling', {}))}; {m.get('counts', {}).get('rows')} answered, "
                   f"{m.get('counts', {}).get('rejects')} failed.")
    if m := manifests.get("dedup"):
        counts = m.get("counts", {})
        out.append(f"- `herd dedup`: kept {counts.get('rows')}, dropped {counts.get('rejects')} "
                   f"({json.dumps(counts.get('rejects_by_reason', {}))}).")
    if m := manifests.get("mix"):
        taken = ", ".join(f"{name} {row.get('selected')} of {row.get('available')}"
                          for name, row in m.get("sources", {}).items())
        out.append(f"- `herd mix` (preset `{m.get('config', {}).get('mix', {}).get('preset') or 'none'}`): took "
                   f"{taken}. " + ("; ".join(m.get("notes", [])) or "Every target was met") + ".")
    out.append(f"- Exported from `{source}` by `herd export` (herd {__version__}).")
    return "\n".join(out)


def prompt_table(manifests: dict[str, dict[str, Any]]) -> str:
    rows = [(stage, name, digest) for stage, m in manifests.items() for name, digest in m.get("prompts", {}).items()]
    if not rows:
        return "No prompt files were recorded."
    return "\n".join(["| stage | prompt | sha256 |", "|---|---|---|",
                      *(f"| {stage} | {name} | `{digest}` |" for stage, name, digest in rows)])
