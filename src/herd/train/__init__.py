"""herd train: fine-tune students of both families on the teacher's instruction-response pairs (LaMini §2).

Reads the training pairs (default: this run's `dedup/data.jsonl`, else `responses/data.jsonl`) and `[train]`.
Writes, per student, an ordinary Hugging Face checkpoint `<run>/train/<name>/`: weights, tokenizer (the wrapper as
its chat template), generation config, `herd.json`, a model card `README.md` with `loss.png`, TensorBoard logs in
`runs/`; and `<run>/train/manifest.json`. While a student trains, its checkpoints live in `<name>.partial/`; a run
killed at any point continues from the newest complete checkpoint with the same batch order when started again,
and the finished folder appears only by a rename at the end, so nothing half-written is ever there. Every check a
user's input can fail (columns, empty data, family, batch larger than the data) runs before anything is written.

The same command runs under `accelerate launch` (DDP, FSDP, DeepSpeed; configs/accelerate/).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from herd.config import Config, StudentConfig, TrainConfig
from herd.errors import UserError
from herd.progress import note
from herd.prompts import read_prompt
from herd.rundir import redact, run_path, versions, write_json
from herd.students import META_FILE, Family, check_wrapper, family_of_config
from herd.students.families import family_spec
from herd.students.padding import ensure_pad_token
from herd.students.training import packing_is_exact
from herd.train import device, heldout
from herd.train.batching import Batches
from herd.train.build import build_student, default_name, init_from_teacher_layers, student_config
from herd.train.data import Pairs, load_pairs, tokenise
from herd.train.finish import finish_student, model_kwargs, with_lora
from herd.train.loop import PLAN_FILE, make_trainer, progress_callback, resume_point, training_args
from herd.train.recipe import Recipe, check, provenance, resolve
from herd.train.record import Encoding, Lora, StudentRun

__all__ = ["run", "init_from_teacher_layers", "plan_students"]


@dataclass
class StudentSpec:
    """One student to train: its table, resolved name, model config, family and recipe."""

    table: StudentConfig
    where: str
    name: str
    config: Any
    family: Family
    recipe: Recipe


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def plan_students(tc: TrainConfig, world: int = 1) -> list[StudentSpec]:
    """Every student with its config and recipe, checked without loading weights."""
    tables = list(tc.students)
    if tc.student:
        tables.insert(0, StudentConfig(base=tc.student))
    if not tables:
        raise UserError("train: no student (set train.student, or add [[train.students]] tables)")
    plans: list[StudentSpec] = []
    for index, table in enumerate(tables):
        where = "train.student" if tc.student and index == 0 else f"train.students[{index - bool(tc.student)}]"
        config = student_config(table, where)
        family = family_of_config(config, table.base)
        device.check_precision(tc.precision, config, where, table.base)
        plans.append(StudentSpec(table, where, default_name(table), config, family, resolve(tc, table, family, world)))
    names = [p.name for p in plans]
    for name in names:
        if names.count(name) > 1 or "/" in name or name.startswith("."):
            raise UserError(f"train: student name {name!r} is not unique or not a plain folder name (set name = ...)")
    return plans


def run(cfg: Config, callbacks: Sequence[Any] = ()) -> Path:
    """Train every student of `[train]`; returns the train folder. `callbacks`: extra TrainerCallbacks."""
    tc = cfg.train
    check(tc)
    device.check_compile(tc.compile)
    quiet_transformers()
    wrapper = check_wrapper(read_prompt(tc.wrapper), "train.wrapper") if tc.wrapper else None
    plans = plan_students(tc, world_size())
    pairs = load_pairs(tc.data, cfg, (tc.instruction_column, tc.response_column), tc.data_split)
    pairs = heldout.hold_out(pairs, tc.heldout_rows, cfg.run.seed)
    held = pairs.heldout
    usable = pairs.manifest["rows"] - (max(1, round(pairs.manifest["rows"] * tc.eval_fraction))
                                       if tc.eval_fraction else 0)
    for plan in plans:
        if plan.recipe.batch_size > usable:
            raise UserError(f"{plan.where}: effective batch {plan.recipe.batch_size} is larger than the {usable} "
                            "training pairs (lower train.batch_size)")
    kd = prepare_kd(tc, plans, run_path(cfg))  # a student without the teacher's vocabulary stops here, exit 2
    out = Path(tc.output) if tc.output else run_path(cfg) / "train"
    if held is not None and is_main():
        heldout.write_heldout(held, out / "heldout.jsonl")
        pairs.manifest["heldout"]["teacher"] = heldout.teacher_loss(cfg, held)
    results = []
    for plan in plans:
        if (out / plan.name / META_FILE).is_file() and not tc.overwrite:
            note(f"train: {plan.name} is already trained ({out / plan.name}); skipped")
            results.append({"name": plan.name, "path": str(out / plan.name), "skipped": True})
            continue
        results.append(train_one(cfg, plan, pairs, wrapper, (callbacks, kd), out))
    if is_main():
        write_json(out / "manifest.json", {"stage": "train", "config": redact(cfg.as_dict()), "students": results,
                                           "data": pairs.manifest, "versions": versions()})
    return out


def quiet_transformers() -> None:
    """herd prints one progress line; transformers' own bars and notices would bury it."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def prepare_kd(tc: TrainConfig, plans: list[StudentSpec], run_dir: Path) -> dict[str, Any] | None:
    """objective kd: the sidecar's targets and metadata, after checking every student's vocabulary against it."""
    if tc.objective != "kd":
        return None
    if not 0 <= tc.kd_weight <= 1:
        raise UserError(f"train.kd_weight must be between 0 and 1, got {tc.kd_weight}")
    from herd.train.kd_data import check_vocabulary, load_targets, student_tokenizer

    meta, targets = load_targets(tc.kd_topk, run_dir)
    for plan in plans:
        check_vocabulary(student_tokenizer(plan.table.base, plan.table.tokenizer), meta, plan.where)
    return {"meta": meta, "targets": targets, "weight": tc.kd_weight}


def kd_record(kd: dict[str, Any] | None, tc: TrainConfig) -> dict[str, Any]:
    """What herd.json and the model card say about the objective (teacher, K, weight, tokenizer)."""
    if kd is None:
        return {"objective": tc.objective}
    meta = kd["meta"]
    return {"objective": "kd", "kd_weight": kd["weight"], "top_k": meta["k"], "teacher": meta.get("teacher", ""),
            "teacher_tokenizer": meta["name"], "vocab_sha256": meta["vocab_sha256"], "sidecar": meta["source"],
            "distribution": meta.get("distribution", "")}


def train_one(cfg: Config, plan: StudentSpec, pairs: Pairs, wrapper: str | None, extra: tuple[Sequence[Any], Any],
              out: Path) -> dict[str, Any]:
    from accelerate import PartialState

    tc = cfg.train
    callbacks, kd = extra
    student = build_student(plan.table, plan.config, model_kwargs(tc, plan.family), plan.where)
    ensure_pad_token(student.model, student.tokenizer)
    side, student.tokenizer.padding_side = student.tokenizer.padding_side, "right"
    encoding = Encoding(tc.max_length, tc.mask_prompt, tc.response_prefix)
    held = pairs.heldout
    before = None if held is None else heldout.measure(student.model, student.tokenizer, plan.family, wrapper,
                                                       encoding, held)
    with PartialState().main_process_first():
        data = tokenise(pairs, plan.family, student.tokenizer, wrapper, encoding, tc.eval_fraction, cfg.run.seed,
                        kd=(kd["targets"], int(kd["meta"]["k"])) if kd else None)
    if plan.recipe.batch_size > len(data.train):
        raise UserError(f"{plan.where}: effective batch {plan.recipe.batch_size} is larger than the {len(data.train)} "
                        f"pairs that fit max_length {tc.max_length} (lower train.batch_size)")
    packing = decide_packing(tc.packing, student.model, plan)
    batches = setup_batches(data, plan, tc, student, packing, cfg.run.seed)  # bad batch_tokens stops here
    recipe = plan.recipe = replace(plan.recipe, accumulation=batches.accumulation,
                                   micro_batch_size=batches.micro_examples)
    checkpointing, why = device.checkpointing(tc.gradient_checkpointing, student.model, batches.tokens)
    if tc.compile:
        device.allow_recompiles(len(batches.shapes))
    run = StudentRun(
        name=plan.name, family=plan.family, table=plan.table, recipe=recipe, encoding=encoding,
        wrapper=wrapper if family_spec(plan.family).wraps_prompts else None,
        lora=Lora(tc.lora, tc.qlora, tc.lora_r, tc.lora_alpha), precision=device.precision(tc.precision),
        gradient_checkpointing=checkpointing, packing=packing, data=pairs.manifest, composition=data.composition,
        train_rows=len(data.train), eval_rows=len(data.eval) if data.eval is not None else 0, dropped=data.dropped,
        layout=batches.layout.describe() | {"accumulation": batches.accumulation},
        batching=batches.info() | {"gradient_checkpointing_reason": why}, objective=kd_record(kd, tc),
        coverage=data.kd if kd else None, hyperparameters=tuple(provenance(tc, recipe, plan.family)), output=out)
    trainer, result = fit(cfg, run, student, data, batches, callbacks)
    after = None if held is None else heldout.measure(trainer.model, student.tokenizer, plan.family, wrapper,
                                                      encoding, held)
    student.tokenizer.padding_side = side
    return {**finish_student(trainer, student, run, result, is_main()), **heldout.entry(before, after)}


def fit(cfg: Config, run: StudentRun, student: Any, data: Any, batches: Batches, callbacks: Sequence[Any]
        ) -> tuple[Any, Any]:
    """Train one student, from its newest complete checkpoint when there is one; (trainer, TrainOutput)."""
    tc = cfg.train
    args = training_args(run, tc, cfg.run.seed)
    student.model.config.use_cache = False  # a cache during training also disables packed-sequence masks
    model = with_lora(student.model, tc, run.family) if tc.lora else student.model
    if tc.overwrite and is_main() and (run.work / PLAN_FILE).is_file():
        _clear_if_changed(run.work, run.plan())
    resume = resume_point(run.work, run.plan(), is_main())
    if resume is not None:
        note(f"train: {run.name} resumes from {resume.name}")
    trainer = make_trainer(run, model, args, student.tokenizer, data, batches)
    for callback in (progress_callback(f"train {run.name}", cfg.run.quiet), *callbacks):
        trainer.add_callback(callback)
    return trainer, trainer.train(resume_from_checkpoint=str(resume) if resume else None)


def setup_batches(data: Any, plan: StudentSpec, tc: TrainConfig, student: Any, packing: bool, seed: int) -> Batches:
    """Token-budget micro-batches for one student (UserError if batch_tokens cannot hold its longest example)."""
    from herd.train.batching import TokenBudgetBatches, accumulation_for, make_layout, smallest_budget
    from herd.train.collate import BucketCollator, PackedCollator

    world = world_size()
    cap = max(1, -(-plan.recipe.batch_size // world))  # a micro-batch never holds more than a device's step share
    flat = packing and str(getattr(student.model.config, "_attn_implementation", "")).startswith("flash")
    budget = tc.batch_tokens or max(device.batch_tokens(0), smallest_budget(data.sizes, plan.family, packing))
    layout = make_layout(data.sizes, plan.family, packing, budget, cap, data.where, flat)
    tok = student.tokenizer
    if layout.kind == "packed":
        collator: Any = PackedCollator(tok.pad_token_id, layout.row_length, layout.rows, flat)
    else:
        data.train = data.train.add_column("bucket", layout.assignment)
        start = getattr(student.model.config, "decoder_start_token_id", None)
        collator = BucketCollator(plan.family, tok.pad_token_id, start, layout.buckets)
    sampler = TokenBudgetBatches(data.sizes, layout, seed)
    accumulation = accumulation_for(plan.recipe.batch_size, len(data.sizes), len(sampler), world)
    micro = max(1, round(len(data.sizes) / len(sampler)))
    return Batches(sampler, collator, layout, accumulation, micro, dict(sampler.shapes()), len(data.sizes), world)


def decide_packing(mode: str, model: Any, plan: StudentSpec) -> bool:
    """Pack decoder-only examples into fixed-length rows when the model provably keeps packed examples apart (see
    packing_is_exact). auto packs under flash-attention, whose varlen kernel attends within each example only;
    with SDPA/eager a packed row needs a block-diagonal mask over the whole row, and length buckets measured faster
    (benchmarks/train_throughput.py); on packs with whichever kernel is loaded, and stops if the check fails."""
    kernel = str(getattr(model.config, "_attn_implementation", "") or "")
    if mode == "off" or not family_spec(plan.family).packs or (mode == "auto" and not kernel.startswith("flash")):
        return False
    import torch

    if torch.cuda.is_available() and next(model.parameters()).device.type == "cpu":
        model.to(f"cuda:{os.environ.get('LOCAL_RANK', '0')}")  # check the kernel training will use
    exact = packing_is_exact(model, plan.family)
    if mode == "on" and not exact:
        raise UserError(f"{plan.where}: train.packing = 'on' but {plan.table.base} attends across packed examples "
                        "with this attention kernel; use packing = 'auto' or 'off'")
    return exact


def _clear_if_changed(work: Path, plan_record: dict[str, Any]) -> None:
    import json
    import shutil

    before = json.loads((work / "herd-train.json").read_text(encoding="utf-8"))
    if json.loads(json.dumps(plan_record, sort_keys=True, default=str)) != before:
        shutil.rmtree(work)
