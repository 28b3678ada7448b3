"""herd generate: a model (a herd student or any Hugging Face causal or seq2seq model) answers every instruction of
a file, in batches.

Reads an instruction file (JSONL, CSV or Parquet with an `instruction` column; optional `input`, which is appended to
the instruction, and `id`, made from the text where missing) and a model. The prompt format comes from the
checkpoint (`students.format_prompt`: a herd student's own wrapper, a chat model's template, or the bare instruction
for seq2seq), never from the user. Writes to `generate.out` (default `<run>/generate/`):

- `data.jsonl`: one row per instruction, in the shape of herd's answers table: `id` ("<instruction_id>::<model>"),
  `instruction_id`, `instruction`, `model`, `answer`, `kind` ("student"), plus `finish_reason`, `usage` and the
  input row's other columns. Rows are appended as their batch finishes.
- `rejects.jsonl`: instructions too long for the model's context, with the reason.
- `manifest.json`: the resolved config, sampling parameters, model, counts, versions.

A restart after a kill skips ids already written, so nothing is generated twice and nothing is lost. Greedy
answers equal what the model gives one prompt at a time (textgen pads on the left for decoders).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from herd.config import Config, GenerateConfig
from herd.errors import UserError
from herd.progress import Progress
from herd.records import in_shard, parse_shard
from herd.rundir import StageDir, run_path
from herd.textgen import GenOutput, GenParams

STAGE = "generate"


def run(cfg: Config) -> Path:
    """Answer every instruction of `generate.input`; returns the output folder."""
    gc = cfg.generate
    rows = _inputs(gc, parse_shard(cfg.run.shard))
    params = gen_params(gc)
    from herd.students import context_length, format_prompt, load_student

    student = load_student(gc.model, device=gc.device, dtype=gc.dtype)  # not a model: UserError, nothing written
    name = gc.name or model_name(gc.model)
    stage = StageDir(_out_dir(cfg), STAGE)
    done = stage.done_ids()
    todo = [r for r in rows if answer_id(r["id"], name) not in done]
    limit = context_length(student.model, student.tokenizer)
    prompts, fits = [], []
    for row in todo:
        prompt = format_prompt(student, row["instruction"])
        tokens = len(student.tokenizer(prompt)["input_ids"])
        too_long = student.spec.over_context(tokens, params.max_new_tokens, limit)
        if too_long:
            stage.reject(answer_row(row, name, None), f"too_long: {too_long}")
        else:
            prompts.append(prompt)
            fits.append(row)
    _answer(stage, student, fits, prompts, params, gc, name, cfg.run.quiet)
    extra = {"input": gc.input, "model": gc.model, "name": name, "family": student.family,
             "sampling": params.__dict__ | {"stop": list(params.stop)}, "skipped_done": len(rows) - len(todo)}
    return stage.finish(cfg, extra)


def _inputs(gc: GenerateConfig, shard: tuple[int, int]) -> list[dict[str, Any]]:
    """The instruction rows of this shard, checked before anything is loaded or written."""
    from herd.responses import load_instructions

    if not gc.model:
        raise UserError("generate.model is empty: name a model (--model PATH or a Hub id)")
    if not gc.input:
        raise UserError("generate.input is empty: name an instruction file (--input FILE)")
    if not Path(gc.input).is_file():
        raise UserError(f"{gc.input}: instruction file not found (generate.input)")
    if gc.max_new_tokens < 1 or gc.max_batch < 1 or gc.batch_tokens < 1:
        raise UserError("generate.max_new_tokens, generate.max_batch and generate.batch_tokens must be >= 1")
    rows = load_instructions(Path(gc.input), "")
    for row in rows:
        if not row.get("instruction_source"):
            row.pop("instruction_source", None)  # load_instructions fills it in; an empty label says nothing
    return [r for r in rows if in_shard(r["id"], shard)]


def _out_dir(cfg: Config) -> Path:
    base = Path(cfg.generate.out) if cfg.generate.out else run_path(cfg) / STAGE
    i, n = parse_shard(cfg.run.shard)
    return base if n == 1 else base / f"shard-{i}-of-{n}"


def gen_params(gc: GenerateConfig) -> GenParams:
    return GenParams(
        max_new_tokens=gc.max_new_tokens, temperature=gc.temperature, top_p=gc.top_p,
        repetition_penalty=gc.repetition_penalty, stop=tuple(gc.stop), seed=None if gc.seed < 0 else gc.seed,
    )


def _answer(stage: StageDir, student: Any, rows: list[dict[str, Any]], prompts: list[str], params: GenParams,
            gc: GenerateConfig, name: str, quiet: bool) -> None:
    """Generate in batches, appending each row as its batch finishes (fsync every couple of seconds)."""
    from herd.textgen import generate_texts

    last_sync = time.monotonic()
    with Progress(STAGE, total=len(rows), quiet=quiet) as bar:

        def on_output(index: int, output: GenOutput) -> None:
            nonlocal last_sync
            stage.keep(answer_row(rows[index], name, output))
            bar.advance(tokens=output.completion_tokens)
            if time.monotonic() - last_sync > 2.0:
                stage.checkpoint()
                last_sync = time.monotonic()

        generate_texts(student.model, student.tokenizer, prompts, params, batch_tokens=gc.batch_tokens,
                       max_batch=gc.max_batch, on_output=on_output)


def answer_id(instruction_id: str, model: str) -> str:
    return f"{instruction_id}::{model}"


def answer_row(row: dict[str, Any], model: str, output: GenOutput | None) -> dict[str, Any]:
    """An answers-table row (or, without output, the reject row for that instruction)."""
    rest = {k: v for k, v in row.items() if k not in ("id", "instruction")}
    out: dict[str, Any] = {"id": answer_id(row["id"], model), "instruction_id": row["id"],
                           "instruction": row["instruction"], "model": model, "kind": "student"}
    if output is not None:
        out.update(answer=output.text.strip(), finish_reason=output.finish_reason,
                   usage={"prompt_tokens": output.prompt_tokens, "completion_tokens": output.completion_tokens})
        if len(output.texts) > 1:
            out["answers"] = [t.strip() for t in output.texts]
    return {**out, **{k: v for k, v in rest.items() if k not in out}}


def model_name(model: str) -> str:
    """The name rows carry: a local folder's name, or the Hub id as given."""
    p = Path(model)
    return p.resolve().name if p.exists() else model


def answer_all(
    model: str | Any, instructions: Sequence[str], params: GenParams, *, batch_tokens: int = 8192
) -> list[GenOutput]:
    """A student or any HF model answers instructions, in order (the checkpoint's own prompt format applied).

    `model` is a path or Hub id, or an already loaded `students.Student` (to answer several sets without reloading).
    """
    from herd.students import format_prompt, load_student
    from herd.textgen import generate_texts

    student = load_student(model) if isinstance(model, str) else model
    prompts = [format_prompt(student, text) for text in instructions]
    return generate_texts(student.model, student.tokenizer, prompts, params, batch_tokens=batch_tokens)
