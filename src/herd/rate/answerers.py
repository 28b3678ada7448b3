"""Who answers in an evaluation: the run's teacher, the students it trained, any checkpoint, any endpoint.

A model spec is a string: `teacher`, `students` (every herd checkpoint under this run's train/ folder), a checkpoint
folder or Hub id, or `endpoint:NAME@BASE_URL` (an OpenAI-compatible server, such as `herd serve`). Teachers and
endpoints answer through the teacher engine (journaled, never paid twice); checkpoints through `herd generate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from herd.config import Config, TeacherConfig
from herd.errors import UserError
from herd.rundir import journal_path, run_path

Kind = Literal["teacher", "student", "endpoint"]
Answer = tuple[str, str, bool]  # (text, finish_reason, ok)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: Kind
    target: str = ""


def resolve(cfg: Config, specs: Sequence[str]) -> list[ModelSpec]:
    """Model specs -> ModelSpec list, in order, without duplicates. Unknown folders are a UserError."""
    out: list[ModelSpec] = []
    for spec in specs:
        if spec == "teacher":
            out.append(ModelSpec(f"teacher:{cfg.teacher.model}", "teacher"))
        elif spec == "students":
            out.extend(ModelSpec(p.name, "student", str(p)) for p in trained_students(cfg))
        elif spec.startswith("endpoint:"):
            name, _, url = spec[len("endpoint:"):].partition("@")
            if not name or not url.startswith(("http://", "https://")):
                raise UserError(f"model spec {spec!r}: expected endpoint:NAME@http://host:port/v1")
            out.append(ModelSpec(name, "endpoint", url))
        else:
            path = Path(spec)
            if not path.exists() and (spec.startswith((".", "/")) or spec.count("/") != 1):
                raise UserError(f"model spec {spec!r}: no such checkpoint folder (nor a Hub id like org/name)")
            out.append(ModelSpec(path.name if path.exists() else spec, "student", spec))
    unique: dict[str, ModelSpec] = {}
    for m in out:
        unique.setdefault(m.name, m)
    return list(unique.values())


def trained_students(cfg: Config) -> list[Path]:
    """Checkpoints (folders with herd.json) that this run's train stage finished: not its intermediate checkpoints,
    nor a `<name>.partial/` folder that a killed training left behind."""
    root = run_path(cfg) / "train"
    if not root.exists():
        return []
    found = (p.parent.relative_to(root) for p in root.glob("**/herd.json"))
    return sorted(root / p for p in found
                  if not any(part.startswith("checkpoint-") or part.endswith(".partial") for part in p.parts))


def sampling(cfg: Config) -> tuple[dict[str, float | int], dict[str, float | int]]:
    """(teacher and endpoint parameters, student parameters) from `[answers]`: every evaluation asks alike."""
    ac = cfg.answers
    student = {"max_new_tokens": ac.max_new_tokens, "temperature": ac.temperature,
               "repetition_penalty": ac.repetition_penalty}
    return {"max_tokens": ac.teacher_max_tokens, "temperature": 0.0}, student


def answer_with(
    cfg: Config, model: ModelSpec, prompts: Sequence[str], teacher_params: dict[str, float | int],
    student_params: dict[str, float | int], stage: str, system: str | None = None,
) -> list[Answer]:
    """Every prompt answered by one model, in order."""
    if model.kind == "student":
        from herd.generate import answer_all
        from herd.textgen import GenParams

        outputs = answer_all(model.target, list(prompts), GenParams(**student_params))  # type: ignore[arg-type]
        return [(o.text.strip(), o.finish_reason, True) for o in outputs]
    return ask_teacher(cfg, teacher_config(cfg, model), prompts, teacher_params, stage, system)


def teacher_config(cfg: Config, model: ModelSpec) -> TeacherConfig:
    if model.kind == "endpoint":
        return dataclasses.replace(cfg.teacher, backend="openai", model=model.name, base_urls=[model.target],
                                   api_key_env="", price_input_per_mtok=0.0, price_output_per_mtok=0.0)
    return cfg.teacher


def ask_teacher(
    cfg: Config, tc: TeacherConfig, prompts: Sequence[str], params: dict[str, float | int], stage: str,
    system: str | None = None, on_done: Callable[[int, Answer], None] | None = None,
) -> list[Answer]:
    """Prompts through the teacher engine (journaled), answers in prompt order."""
    from herd.teacher import Request, open_engine

    engine = open_engine(tc, journal_path(cfg), stage=stage, quiet=cfg.run.quiet)
    requests = [Request.chat(p, system, tag=str(i), **params) for i, p in enumerate(prompts)]  # type: ignore[arg-type]
    answers: list[Answer | None] = [None] * len(prompts)

    def keep(result):  # type: ignore[no-untyped-def]
        index = int(result.request.tag)
        answers[index] = (result.text.strip(), result.finish_reason or result.error, result.ok)
        if on_done is not None:
            on_done(index, answers[index])  # type: ignore[arg-type]

    try:
        engine.map(requests, keep, label=stage)
    finally:
        engine.close()
    return [a if a is not None else ("", "missing", False) for a in answers]
