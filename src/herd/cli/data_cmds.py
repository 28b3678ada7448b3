"""Data stages: `herd instructions`, `herd responses`, `herd mix`, `herd dedup`, `herd stats`, `herd export`."""

from __future__ import annotations

from typing import Annotated

import typer

from herd.cli.command import ConfigOpt, QuietOpt, SetOpt, app, load, options, say

ShardOpt = Annotated[str | None, typer.Option("--shard", help="Run shard i/n of this stage (e.g. 0/4).")]



@app.command()
def responses(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    input: Annotated[str | None, typer.Option("--input", "-i", help="Instruction file to answer.")] = None,
    source: Annotated[str | None, typer.Option(help="instruction_source for rows without one.")] = None,
    shard: ShardOpt = None,
) -> None:
    """The teacher answers every instruction, concisely (LaMini's system prompt by default)."""
    from herd import responses as stage

    cfg = load(config, options(set_, "", **{"responses.input": input, "responses.source": source,
                                           "run.shard": shard}), quiet)
    out = stage.run(cfg)
    say(f"responses: {out}/data.jsonl")


@app.command()
def dedup(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    input: Annotated[str | None, typer.Option("--input", "-i", help="Rows to filter (JSONL/CSV/Parquet).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Jaccard threshold for near-duplicates.")] = None,
) -> None:
    """Drop exact and near-duplicate instructions (MinHash LSH), refusals, empty answers and bad lengths."""
    import json

    from herd import dedup as stage

    cfg = load(config, options(set_, "", **{"dedup.input": input, "dedup.threshold": threshold}), quiet)
    out = stage.run(cfg)
    counts = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["counts"]
    why = ", ".join(f"{k} {v}" for k, v in sorted(counts["rejects_by_reason"].items())) or "none dropped"
    say(f"dedup: kept {counts['rows']} of {counts['rows'] + counts['rejects']} rows ({why}) -> {out}/data.jsonl")


@app.command()
def stats(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    input: Annotated[str | None, typer.Option("--input", "-i", help="Rows to describe (JSONL/CSV/Parquet).")] = None,
    embedder: Annotated[str | None, typer.Option(help="auto, tfidf, or a sentence-transformers model.")] = None,
) -> None:
    """Counts per source, token lengths, MATTR, leading verbs and an embedding map: stats.md, stats.json, PNGs."""
    from herd import stats as stage

    cfg = load(config, options(set_, "", **{"stats.input": input, "stats.embedder": embedder}), quiet)
    out = stage.run(cfg)
    say(f"stats: {out}/stats.md")


@app.command()
def instructions(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    seeds: Annotated[str | None, typer.Option(help="Seed pool: JSONL/CSV/Parquet file or dataset id.")] = None,
    style: Annotated[str | None, typer.Option(help="Seed style: self_instruct, p3 or flan.")] = None,
    mode: Annotated[str | None, typer.Option(help="example, topic or both.")] = None,
    calls: Annotated[int | None, typer.Option(help="Teacher calls to make.")] = None,
    topics: Annotated[str | None, typer.Option(help="Topic list, one per line.")] = None,
    shard: ShardOpt = None,
) -> None:
    """The teacher writes new instructions from seed examples, with or without topics (LaMini's prompts)."""
    from herd import instructions as stage

    cfg = load(config, options(set_, "", **{"instructions.seeds": seeds, "instructions.style": style,
                                           "instructions.mode": mode, "instructions.calls": calls,
                                           "instructions.topics": topics, "run.shard": shard}), quiet)
    out = stage.run(cfg)
    say(f"instructions: {out}/data.jsonl")


@app.command()
def mix(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    input: Annotated[list[str] | None, typer.Option("--input", "-i", help="A stage output (repeatable).")] = None,
    preset: Annotated[str | None, typer.Option(help="lamini: the paper's Table 1 shares.")] = None,
    total: Annotated[int | None, typer.Option(help="Rows in the mix (0 = as many as the shares allow).")] = None,
) -> None:
    """One dataset from several stage outputs, with target counts or shares per instruction_source."""
    from herd import mix as stage

    cfg = load(config, options(set_, "mix", preset=preset, total=total, inputs=input), quiet)
    out = stage.run(cfg)
    say(f"mix: {out}/data.jsonl")


@app.command()
def export(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    input: Annotated[str | None, typer.Option("--input", "-i", help="Rows to export (a JSONL file).")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Output folder.")] = None,
) -> None:
    """Parquet and JSONL shards that datasets.load_dataset opens, with a dataset card (README.md)."""
    from herd import export as stage

    cfg = load(config, options(set_, "", **{"export.input": input, "export.out": out}), quiet)
    folder = stage.run(cfg)
    say(f"export: {folder}/README.md")
