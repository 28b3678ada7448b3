"""herd responses: the teacher answers every instruction, concisely (LaMini §1 "Responses").

Reads an instruction file (this run's `instructions/data.jsonl`, or any JSONL/CSV/Parquet prompt set with an
`instruction` column such as Alpaca's) and writes `responses/data.jsonl`: each input row plus `response`,
`finish_reason`, `truncated`, token usage and the journal key of its call. Failed calls go to `rejects.jsonl` with
the reason. Resumes after a kill: finished ids are skipped, finished calls come from the journal.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from herd.config import Config
from herd.errors import UserError
from herd.prompts import prompt_path, read_prompt
from herd.records import empty_input, in_shard, numbered_rows, parse_shard, stable_id, stage_files
from herd.run import stage_input
from herd.rundir import StageDir, journal_path, run_path
from herd.teacher import Request, Result, open_engine

STAGE = "responses"


def run(cfg: Config) -> Path:
    """Answer every instruction; returns the stage folder."""
    rc = cfg.responses
    source = Path(rc.input) if rc.input else stage_input(cfg, STAGE).parent
    shard = parse_shard(cfg.run.shard)
    rows = [r for r in load_instructions(source, rc.source) if in_shard(r["id"], shard)]
    system = read_prompt(rc.system_prompt).strip() if rc.system_prompt else None
    # The engine first: a missing key or an unreachable endpoint stops here, before any file is written.
    engine = open_engine(cfg.teacher, journal_path(cfg), stage=STAGE, quiet=cfg.run.quiet)
    base = Path(rc.out) if rc.out else run_path(cfg) / STAGE
    stage = StageDir(base if shard == (0, 1) else base / f"shard-{shard[0]}-of-{shard[1]}", STAGE)
    if rc.system_prompt:
        stage.add_prompt("system", prompt_path(rc.system_prompt))
    done = stage.done_ids()
    todo = [r for r in rows if r["id"] not in done]
    by_id = {r["id"]: r for r in todo}
    requests = [
        Request.chat(r["instruction"], system, max_tokens=rc.max_tokens, temperature=rc.temperature,
                     top_p=rc.top_p, tag=r["id"])
        for r in todo
    ]
    last_sync = time.monotonic()

    def on_result(result: Result) -> None:
        nonlocal last_sync
        write_answer(stage, by_id[result.request.tag], result)
        if time.monotonic() - last_sync > 2.0:
            stage.checkpoint()
            last_sync = time.monotonic()

    try:
        usage = engine.map(requests, on_result, label=STAGE)
    finally:
        engine.close()
    sampling = {"temperature": rc.temperature, "top_p": rc.top_p, "max_tokens": rc.max_tokens}
    return stage.finish(cfg, {"input": str(source), "sampling": sampling, "teacher": engine.model_id},
                        usage.as_dict())


def load_instructions(path: Path, default_source: str) -> list[dict[str, Any]]:
    """Every row with an instruction; ids made from the text where a file has none. Bad rows stop the stage.

    `path` is a file or a stage folder (its data.jsonl and the data.jsonl of every shard-i-of-n/ in it).
    """
    files = [f for f in stage_files(path) if f.exists()]
    if not files:
        raise UserError(f"{path}: no instruction file (run `herd instructions` first, or set responses.input)")
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for file in files:
        for number, row in numbered_rows(file, required=["instruction"]):
            text = row["instruction"]
            if not isinstance(text, str) or not text.strip():
                raise UserError(f"{file}:{number}: field 'instruction' must be a non-empty string")
            if row.get("input"):
                text = f"{text}\n{row['input']}"  # inputs are inlined, as in LaMini's released rows
            row_id = str(row.get("id") or stable_id(text))
            if row_id in seen:
                raise UserError(f"{file}:{number}: duplicate id {row_id!r} (first at {seen[row_id]})")
            seen[row_id] = f"{file}:{number}"
            source = row.get("instruction_source") or default_source
            rows.append({**row, "id": row_id, "instruction": text, "instruction_source": source})
    if not rows:
        raise empty_input(files[0] if len(files) == 1 else path)
    return rows


def write_answer(stage: StageDir, row: dict[str, Any], result: Result) -> None:
    if not result.ok:
        stage.reject(row, f"teacher_failed: {result.error}")
        return
    answer = result.text.strip()
    if not answer:
        stage.reject({**row, "call": result.key}, "empty_response")
        return
    stage.keep({
        **row,
        "response": answer,
        "finish_reason": result.finish_reason,
        "truncated": result.truncated,
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens},
        "call": result.key,
    })
