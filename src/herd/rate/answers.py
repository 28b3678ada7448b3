"""herd answers: every model answers the evaluation instructions, into one table.

Reads the evaluation instructions (`[answers] instructions`, default herd's own user-oriented set), keeps those the
paper's rule allows (`evalset.select`), and asks each model of `[answers] models`. Writes `answers/`:
`instructions.jsonl` (the selection, with dropped rows in `rejects.jsonl` and their reason), `data.jsonl` (one row
per instruction and model: `id` = `<instruction_id>::<model>`, `instruction_id`, `instruction`, `model`, `answer`,
`kind`, `finish_reason`), `manifest.json`. Resumes: a model whose answers are all written is not asked again.
"""

from __future__ import annotations

from pathlib import Path

from herd.config import Config
from herd.errors import UserError
from herd.prompts import read_prompt
from herd.rate import evalset
from herd.rate.answerers import ModelSpec, answer_with, resolve, sampling
from herd.records import write_rows
from herd.rundir import StageDir, run_path

STAGE = "answers"


def run(cfg: Config) -> Path:
    ac = cfg.answers
    rows = evalset.load(ac.instructions or None)
    kept, dropped = evalset.select(rows, ac.per_app, ac.drop_nlp, ac.limit, cfg.run.seed)
    models = resolve(cfg, ac.models)
    if not models:
        raise UserError("answers.models: no model to ask (no students trained in this run yet?)")
    stage = StageDir(run_path(cfg) / STAGE, STAGE)
    write_rows(stage.path / "instructions.jsonl", kept)
    done = stage.done_ids()
    for row in dropped:
        if row["id"] not in done:
            stage.reject(row, row.pop("reason"))
    for model in models:
        todo = [r for r in kept if f"{r['id']}::{model.name}" not in done]
        if todo:
            ask_model(cfg, stage, model, todo)
    source = ac.instructions or str(evalset.default_path())
    extra = {"instructions": source, "models": [m.name for m in models], "selected": len(kept), "seed": cfg.run.seed}
    return stage.finish(cfg, extra)


def ask_model(cfg: Config, stage: StageDir, model: ModelSpec, todo: list[dict[str, str]]) -> None:
    system = read_prompt(cfg.responses.system_prompt).strip() if cfg.responses.system_prompt else None
    teacher, student = sampling(cfg)
    answers = answer_with(cfg, model, [r["instruction"] for r in todo], teacher, student, STAGE, system)
    for row, (text, finish, ok) in zip(todo, answers, strict=True):
        out = {"id": f"{row['id']}::{model.name}", "instruction_id": row["id"], "instruction": row["instruction"],
               "model": model.name, "kind": model.kind}
        if ok:
            stage.keep({**out, "answer": text, "finish_reason": finish})
        else:
            stage.reject(out, f"model_failed: {finish}")
    stage.checkpoint()
