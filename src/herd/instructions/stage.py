"""The `herd instructions` stage: plan the calls, ask the teacher, keep the instructions that parse.

Reads a seed pool (and a topic list for topic-guided calls); writes `instructions/data.jsonl` (one row per kept
instruction: `id`, `instruction`, `instruction_source`, `seed_ids`, `topics`, `call`, `call_index`),
`rejects.jsonl` (every dropped piece or failed call, with `reason`) and `manifest.json`. With `run.shard = i/n` it
runs the calls whose tag hashes to shard i and writes `instructions/shard-i-of-n/`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from herd.config import Config, InstructionsConfig
from herd.errors import UserError
from herd.instructions.parse import Piece, banned_pattern, judge, judge_json, normalize
from herd.instructions.render import Call, Mode, check_input_format, check_template, plan_calls, render
from herd.instructions.seeds import FieldMap, Pool, load_pool
from herd.instructions.topics import load_topics, propose
from herd.progress import note
from herd.prompts import prompt_path, read_prompt
from herd.records import in_shard, parse_shard, stable_id
from herd.rundir import StageDir, file_hash, journal_path, run_path
from herd.sampling import request_seed
from herd.teacher import Engine, Request, Result, open_engine, structured

STAGE = "instructions"
JSON_PROMPTS = {"example_guided.txt": "example_guided_json.txt", "topic_guided.txt": "topic_guided_json.txt"}
LABELS = {
    ("self_instruct", "example"): "self_instruct_without_topic",
    ("self_instruct", "topic"): "self_instruct_with_topic",
    ("p3", "example"): "generated_p3",
    ("flan", "example"): "generated_flan",
}


@dataclass(frozen=True)
class Settings:
    """What the `[instructions]` section means once its defaults are resolved."""

    modes: tuple[Mode, ...]
    per_call: int
    words: tuple[int, int]
    templates: dict[str, str]  # mode -> prompt text
    prompt_names: dict[str, str]  # mode -> prompt name or path
    output: str = "tags"  # "tags" | "json" (see herd.teacher.structured)
    local: bool = False  # a local teacher: JSON output is held to plain sentences too

    def label(self, ic: InstructionsConfig, mode: str) -> str:
        return ic.source or LABELS[(ic.style, mode)]


def settings(ic: InstructionsConfig) -> Settings:
    """Check the section and fill in the style-dependent defaults (N = 20 or 10, word limits)."""
    if ic.style != "self_instruct" and ic.mode == "topic":
        raise UserError("instructions.mode = 'topic': topic-guided generation uses self_instruct seeds (LaMini §1)")
    for key in ("calls", "per_call", "propose_topics", "min_words", "max_words"):
        if getattr(ic, key) < 0:
            raise UserError(f"instructions.{key} must be >= 0")
    for key in ("examples_per_call", "topics_per_call"):
        if getattr(ic, key) < 1:
            raise UserError(f"instructions.{key} must be >= 1")
    choices: dict[str, tuple[Mode, ...]] = {"example": ("example",), "topic": ("topic",), "both": ("example", "topic")}
    modes = choices[ic.mode]
    if ic.style != "self_instruct":
        modes = ("example",)  # the paper used topics only with self-instruct seeds
    check_input_format(ic.input_format)
    return _with_output(ic, modes, ic.output)


def _with_output(ic: InstructionsConfig, modes: tuple[Mode, ...], output: str, local: bool = False) -> Settings:
    """Settings for one output form: the JSON form swaps herd's default prompts for their JSON twins."""
    names = {"example": ic.example_prompt, "topic": ic.topic_prompt}
    if output == "json":
        names = {mode: JSON_PROMPTS.get(name, name) for mode, name in names.items()}
    templates: dict[str, str] = {}
    for mode in modes:
        templates[mode] = read_prompt(names[mode])
        check_template(templates[mode], names[mode], mode)
    per_call = ic.per_call or (20 if ic.style == "self_instruct" else 10)
    words = (ic.min_words, ic.max_words or (150 if ic.style == "self_instruct" else 400))
    return Settings(modes, per_call, words, templates, {m: names[m] for m in modes}, output, local)


def run(cfg: Config) -> Path:
    """Generate instructions; returns the stage folder."""
    ic = cfg.instructions
    s = settings(ic)
    pool = load_pool(ic.seeds, FieldMap(ic.id_field, ic.instruction_field, ic.input_field, ic.group_field),
                     ic.seeds_split, ic.seeds_subset)
    topics, topics_path = load_topics(ic.topics) if "topic" in s.modes else ([], None)
    shard = parse_shard(cfg.run.shard)
    params = {"max_tokens": ic.max_tokens, "temperature": ic.temperature, "top_p": ic.top_p}
    if s.output == "json" and cfg.teacher.backend == "local":
        structured.require("instructions.output = 'json'")
        s = replace(s, local=True)
    # The engine first: a missing key or an unreachable endpoint stops here, before any file is written.
    engine = open_engine(cfg.teacher, journal_path(cfg), stage=STAGE, quiet=cfg.run.quiet)
    try:
        proposed: list[str] = []
        topic_rejects: dict[str, int] = {}
        if topics and ic.propose_topics:
            proposed, topic_rejects = propose(engine, read_prompt(ic.propose_prompt), topics, ic.propose_topics,
                                              params, cfg.run.seed)
        plan = plan_calls(pool.seeds, topics + proposed, ic.calls, s.modes, cfg.run.seed,
                          (ic.examples_per_call, ic.topics_per_call))
        calls = [c for c in plan if in_shard(c.tag, shard)]
        base = Path(ic.out) if ic.out else run_path(cfg) / STAGE
        stage = StageDir(base if shard == (0, 1) else base / f"shard-{shard[0]}-of-{shard[1]}", STAGE)
        if proposed:
            (stage.path / "proposed_topics.txt").write_text("\n".join(proposed) + "\n", encoding="utf-8")
        s, fallback = choose_output(engine, calls, s, ic, pool, params, cfg.run.seed)
        record_prompts(stage, s, ic, bool(topics and ic.propose_topics))
        usage = ask(engine, stage, calls, s, ic, pool, params, cfg.run.seed)
    finally:
        engine.close()
    extra = {
        "teacher": engine.model_id, "style": ic.style, "modes": list(s.modes), "per_call": s.per_call,
        "output": s.output, "output_fallback": fallback,
        "sampling": {**params, "seed": cfg.run.seed, "per_request_seed": SEED_RULE},
        "shard": list(shard), "calls_planned": len(plan), "calls_in_shard": len(calls),
        "seeds": {"origin": pool.origin, "count": len(pool.seeds),
                  "sha256": file_hash(pool.path) if pool.path else None},
        "topics": {"origin": str(topics_path) if topics_path else None, "count": len(topics),
                   "proposed": len(proposed), "proposed_rejects": topic_rejects},
    }
    return stage.finish(cfg, extra, usage)


def record_prompts(stage: StageDir, s: Settings, ic: InstructionsConfig, proposing: bool) -> None:
    for mode, name in s.prompt_names.items():
        stage.add_prompt(f"{mode}_guided", prompt_path(name))
    if proposing:
        stage.add_prompt("propose_topics", prompt_path(ic.propose_prompt))


SEED_RULE = "sha256('herd-instructions:<run.seed>:<call tag>'), first 63 bits"


def call_requests(
    calls: list[Call], s: Settings, ic: InstructionsConfig, params: dict[str, Any], run_seed: int
) -> list[Request]:
    """One request per call; each has its own sampling seed (from run.seed and the call), a JSON schema if asked."""
    fmt = ""
    if s.output == "json":
        low, high = s.words
        # Local decoding also holds each string to one plain sentence; an API teacher's instructions may quote an
        # input, so its schema limits only the length.
        schema = structured.instructions_schema(s.per_call, 4 * low, 5 * high, plain=s.local)
        fmt = structured.response_format(schema, "instructions")
    return [
        Request.chat(render(s.templates[c.mode], c, s.per_call, ic.input_format, s.output == "json"), None,
                     sample_index=c.index, tag=c.tag, seed=request_seed(STAGE, run_seed, c.tag), response_format=fmt,
                     **params)
        for c in calls
    ]


def choose_output(
    engine: Engine, calls: list[Call], s: Settings, ic: InstructionsConfig, pool: Pool, params: dict[str, Any],
    run_seed: int,
) -> tuple[Settings, str]:
    """JSON output, unless an openai endpoint refuses `response_format`: then tags, with a one-line notice.

    The first call is the probe; it is a real call of the stage (journaled), so it is not paid for twice.
    """
    if s.output != "json" or engine.backend.model_id.split(":")[0] != "openai" or not calls:
        return s, ""
    probe = engine.ask(call_requests(calls[:1], s, ic, params, run_seed)[0])
    if probe.ok or not structured.is_refusal(probe.error):
        return s, ""
    note(f"herd instructions: the teacher endpoint refuses response_format ({probe.error[:120]}); "
         "falling back to instructions.output = 'tags'")
    return _with_output(ic, s.modes, "tags"), probe.error[:240]


def ask(
    engine: Engine, stage: StageDir, calls: list[Call], s: Settings, ic: InstructionsConfig, pool: Pool,
    params: dict[str, Any], run_seed: int = 0,
) -> dict[str, Any]:
    """Send every planned call; each answer's pieces go to data.jsonl or rejects.jsonl (ids already there skipped)."""
    by_tag = {c.tag: c for c in calls}
    done = stage.done_ids()
    copies = {normalize(x) for seed in pool.seeds for x in (seed.instruction, seed.shown(ic.input_format))}
    banned = banned_pattern(ic.banned_words)
    requests = call_requests(calls, s, ic, params, run_seed)
    read = judge_json if s.output == "json" else judge
    last_sync = time.monotonic()

    def on_result(result: Result) -> None:
        nonlocal last_sync
        call = by_tag[result.request.tag]
        base = {"instruction_source": s.label(ic, call.mode), "seed_ids": [x.id for x in call.seeds],
                "topics": list(call.topics), "call": result.key, "call_index": call.index}
        if not result.ok:
            row_id = stable_id(result.key, "failed")
            if row_id not in done:
                stage.reject({"id": row_id, "instruction": "", **base}, f"teacher_failed: {result.error}")
        else:
            pieces = read(result.text, seeds=copies, words=s.words, banned=banned, truncated=result.truncated)
            write_pieces(stage, pieces, base, done)
        if time.monotonic() - last_sync > 2.0:
            stage.checkpoint()
            last_sync = time.monotonic()

    return engine.map(requests, on_result, label=STAGE).as_dict()


def write_pieces(stage: StageDir, pieces: list[Piece], base: dict[str, Any], done: set[str]) -> None:
    for j, piece in enumerate(pieces):
        row_id = stable_id(base["call"], j)  # the call's journal key + position: the same after any restart
        if row_id in done:
            continue
        row = {"id": row_id, "instruction": piece.text, **base}
        if piece.kept:
            stage.keep(row)
        else:
            stage.reject(row, piece.reason)
