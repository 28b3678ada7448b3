"""herd plan: before anything is spent, the stages `herd run` will run, the teacher calls and tokens it expects, and
what they cost under the price table.

Estimates are upper bounds made from the config alone (and input files where they already exist): tokens are
counted as characters / 4, a generated instruction as 20 tokens, an answer as the paper's average (about 65
tokens) capped by `max_tokens`. Finished stages cost nothing; calls already in the journal are free but are not
subtracted here, so a resumed run costs at most what the plan says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.config import Config, TeacherConfig
from herd.run import STAGES, StageSpec, State, stage_keys
from herd.rundir import run_path
from herd.teacher.prices import cost, teacher_prices

PROMPT_OVERHEAD = 90  # tokens of instructions around the 3 examples in a generation prompt
EXAMPLE_TOKENS = 20  # a seed example or a generated instruction, on average
ANSWER_TOKENS = 65  # LaMini's average response length (Table 1)
YIELD = 0.8  # share of asked-for instructions that survive parsing, before dedup
JUDGE_PROMPT = 350  # rubric + instruction + answer


@dataclass
class Estimate:
    stage: str
    action: str  # "run" | "skip"
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    note: str = ""


def per_call(cfg: Config) -> int:
    ic = cfg.instructions
    return ic.per_call or (20 if ic.style == "self_instruct" else 10)


def count_lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def expected_instructions(cfg: Config) -> int:
    existing = count_lines(Path(cfg.responses.input)) if cfg.responses.input else None
    if existing is not None:
        return existing
    return int(cfg.instructions.calls * per_call(cfg) * YIELD)


def estimate_stage(cfg: Config, spec: StageSpec) -> tuple[int, int, int, str]:
    """(calls, prompt tokens, completion tokens, note) for one stage that runs."""
    if spec.name == "instructions":
        calls = cfg.instructions.calls
        extra = int(getattr(cfg.instructions, "propose_topics", 0) or 0)
        n = per_call(cfg)
        completion = min(cfg.instructions.max_tokens, n * EXAMPLE_TOKENS)
        return calls + extra, (calls + extra) * (PROMPT_OVERHEAD + 3 * EXAMPLE_TOKENS), calls * completion, (
            f"{calls} calls x {n} instructions asked"
        )
    if spec.name == "responses":
        rows = expected_instructions(cfg)
        answer = min(cfg.responses.max_tokens, ANSWER_TOKENS)
        return rows, rows * (EXAMPLE_TOKENS + 25), rows * answer, f"{rows} instructions"
    if spec.name == "answers":
        n = int(getattr(getattr(cfg, "answers", None), "limit", 0) or 114)
        return n, n * 60, n * ANSWER_TOKENS, f"teacher answers {n} evaluation instructions"
    if spec.name == "judge":
        n_models = 1 + len(getattr(getattr(cfg, "train", None), "students", []) or [])
        n = int(getattr(getattr(cfg, "answers", None), "limit", 0) or 114) * n_models
        return n, n * JUDGE_PROMPT, n * 60, f"{n} answers judged"
    return 0, 0, 0, ""


def make_plan(cfg: Config, stages: list[StageSpec]) -> list[Estimate]:
    keys = stage_keys(cfg)
    state = State(cfg)
    out: list[Estimate] = []
    for spec in stages:
        if state.finished(spec.name, keys[spec.name]) and spec.name != "report":
            out.append(Estimate(spec.name, "skip", note="up to date"))
            continue
        calls, pt, ct, note = estimate_stage(cfg, spec)
        tc = judge_teacher(cfg) if spec.teacher == "judge" else cfg.teacher
        dollars = cost(teacher_prices(tc), pt, ct) if spec.teacher else 0.0
        if state.data.get(spec.name):
            note = (note + "; " if note else "") + "config changed"
        out.append(Estimate(spec.name, "run", calls, pt, ct, dollars, note))
    return out


def judge_teacher(cfg: Config) -> TeacherConfig:
    """The judge's teacher: its own `[judge.teacher]` when the config has one, else the main teacher."""
    judge: Any = getattr(cfg, "judge", None)
    tc = getattr(judge, "teacher", None)
    return tc if isinstance(tc, TeacherConfig) else cfg.teacher


def render(cfg: Config, estimates: list[Estimate]) -> list[str]:
    lines = [f"plan for {run_path(cfg)} (teacher: {cfg.teacher.backend}:{cfg.teacher.model})"]
    lines.append(f"{'stage':<13} {'action':<6} {'calls':>8} {'prompt tok':>11} {'compl tok':>10} {'cost $':>9}  note")
    for e in estimates:
        lines.append(f"{e.stage:<13} {e.action:<6} {e.calls:>8} {e.prompt_tokens:>11} {e.completion_tokens:>10} "
                     f"{e.cost:>9.4f}  {e.note}")
    total = sum(e.cost for e in estimates)
    calls = sum(e.calls for e in estimates)
    lines.append(f"total: {calls} teacher calls, about ${total:.4f} (an upper bound; journal hits are free)")
    return lines


def total_cost(estimates: list[Estimate]) -> float:
    return sum(e.cost for e in estimates)


__all__ = ["STAGES", "Estimate", "make_plan", "render", "total_cost"]
