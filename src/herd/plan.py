"""herd plan: before anything is spent, the stages `herd run` will run, what each reads, the teacher calls and tokens
it may make, and what they cost with the teacher each stage really calls.

The dollars are an upper bound, the number behind `run.confirm_above_usd` and `run.max_cost_usd`:

- every answer is priced at its `max_tokens` (an answer cannot be longer);
- every asked-for instruction is counted as parsed and answered;
- the judge is priced with the teacher it calls (`[teacher]` when `judge.same_as_teacher`, else `[judge.teacher]`)
  and every answer is counted as re-asked `judge.retries` times;
- prompt tokens are counted as characters / 3 + 8 per message for text herd has (prompt files, instruction
  files already written; OpenAI's tokenizers average about 4 characters per token on English), and for text it
  has not read yet (a Hub prompt set before its prompts step, generated instructions) from a bound per style, or
  from the instruction calls' own completion bound, whichever is known.

Beside it the plan prints what a run is expected to cost (answers of the paper's average length, 80% of asked
instructions kept, no re-asks). Finished stages cost nothing; calls already in the journal are free but are not
subtracted, so a resumed run costs at most what the plan says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.config import Config, TeacherConfig
from herd.rate.judge import SCORE_MAX_TOKENS
from herd.run import StageSpec, State, feeders, stage_config, stage_folder, stage_keys
from herd.rundir import run_path
from herd.teacher.prices import cost, teacher_prices

YIELD = 0.8  # share of asked-for instructions expected to survive parsing
MESSAGE = 8  # tokens of chat framing per message
# Longest prompt or example expected per style when herd has not read the text yet (tokens).
EXAMPLE_BOUND = {"self_instruct": 80, "p3": 400, "flan": 300}
# LaMini Table 1: average instruction and response tokens per style (the expected cost).
EXAMPLE_AVERAGE = {"self_instruct": 15, "p3": 50, "flan": 37}
INSTRUCTION_AVERAGE = {"alpaca": 17, "original_p3": 85, "original_flan": 62}
ANSWER_AVERAGE = {"self_instruct_without_topic": 66, "self_instruct_with_topic": 62, "generated_p3": 21,
                  "generated_flan": 29, "alpaca": 55, "original_p3": 21, "original_flan": 24}
ANSWER_TOKENS = 65  # LaMini's average response length, for other labels
EVAL_INSTRUCTION = 120  # bound on an evaluation instruction (herd's user-oriented set is shorter)


@dataclass
class Estimate:
    stage: str
    action: str  # "run" | "skip"
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # upper bound, USD
    expected: float = 0.0  # expected, USD
    note: str = ""
    reads: str = ""
    pairs: int = 0  # pairs a source stage is expected to put into the mix


@dataclass
class Tokens:
    """Calls and tokens: the bound, and the expected completion tokens."""

    calls: int
    prompt: int
    completion: int
    expected_calls: int
    expected_completion: int
    note: str
    expected_prompt: int = -1  # -1 = the bound scaled by expected_calls / calls


def text_tokens(chars: int) -> int:
    return chars // 3 + 1


def prompt_file_tokens(name: str) -> int:
    from herd.prompts import read_prompt

    return text_tokens(len(read_prompt(name))) if name else 0


def instruction_tokens(cfg: Config) -> Tokens:
    ic = cfg.instructions
    n = ic.per_call or (20 if ic.style == "self_instruct" else 10)
    extra = int(ic.propose_topics and (ic.propose_topics + 49) // 50)
    template = max(prompt_file_tokens(ic.example_prompt), prompt_file_tokens(ic.topic_prompt))
    per_prompt = MESSAGE + template + ic.examples_per_call * EXAMPLE_BOUND[ic.style] + ic.topics_per_call * 6
    calls = ic.calls + extra
    expected = min(ic.max_tokens, n * (EXAMPLE_AVERAGE[ic.style] + 6))
    average = MESSAGE + template + ic.examples_per_call * EXAMPLE_AVERAGE[ic.style] + ic.topics_per_call * 4
    return Tokens(calls, calls * per_prompt, calls * ic.max_tokens, calls, ic.calls * expected,
                  f"{ic.calls} calls x {n} instructions asked", calls * average)


def file_rows(path: Path) -> tuple[int, int] | None:
    """(rows, characters of their instructions and inputs) of a JSONL file, or None when it is not there."""
    import json

    files = [path] if path.is_file() else sorted(path.glob("data.jsonl")) + sorted(path.glob("shard-*/data.jsonl"))
    if not files:
        return None
    rows = chars = 0
    for file in files:
        with file.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    rows += 1
                    chars += len(str(row.get("instruction", ""))) + len(str(row.get("input") or ""))
    return rows, chars


def response_tokens(cfg: Config, spec: StageSpec) -> Tokens:
    """The answers a responses stage asks for: from its input file if it exists, else from what feeds it."""
    rc = cfg.responses
    system = MESSAGE + prompt_file_tokens(rc.system_prompt) if rc.system_prompt else 0
    feed = feeders(cfg, spec.name)
    source = Path(rc.input) if rc.input else stage_folder(cfg, feed[0]) if feed else run_path(cfg) / "instructions"
    known = file_rows(source)
    gen = stage_config(cfg, feed[0]) if feed else cfg  # the generator's view of [instructions]
    ic = gen.instructions
    answer = min(rc.max_tokens, ANSWER_AVERAGE.get(rc.source or ic.source, ANSWER_TOKENS))
    if known is not None:
        rows, chars = known
        prompt, expected_rows, note = rows * (system + MESSAGE) + text_tokens(chars), rows, f"{rows} instructions"
        average = rows * (system + MESSAGE) + chars // 4
    elif feed and feed[0].kind == "prompts":
        rows = ic.calls
        prompt = rows * (system + MESSAGE + EXAMPLE_BOUND[ic.style])
        expected_rows, note = rows, f"{rows} prompts (lengths estimated: not read yet)"
        average = rows * (system + MESSAGE + INSTRUCTION_AVERAGE.get(ic.source, EXAMPLE_AVERAGE[ic.style]))
    else:
        rows = ic.calls * (ic.per_call or (20 if ic.style == "self_instruct" else 10))
        prompt = rows * (system + MESSAGE) + instruction_tokens(gen).completion  # instructions are pieces of those
        expected_rows, note = int(rows * YIELD), f"at most {rows} instructions"
        average = expected_rows * (system + MESSAGE + EXAMPLE_AVERAGE[ic.style])
    return Tokens(rows, prompt, rows * rc.max_tokens, expected_rows, expected_rows * answer, note, average)


def eval_models(cfg: Config) -> tuple[int, bool]:
    """(models that answer, whether the teacher is one of them)."""
    n, teacher = 0, False
    for spec in cfg.answers.models:
        if spec == "teacher":
            n, teacher = n + 1, True
        elif spec == "students":
            n += len(cfg.train.students) or (1 if cfg.train.student else 0)
        else:
            n += 1
    return n, teacher


def eval_tokens(cfg: Config, spec: StageSpec) -> Tokens:
    ac, jc = cfg.answers, cfg.judge
    questions = ac.limit or 252
    models, teacher = eval_models(cfg)
    if spec.name == "answers":
        n = questions if teacher else 0
        prompt = n * (2 * MESSAGE + prompt_file_tokens(cfg.responses.system_prompt) + EVAL_INSTRUCTION)
        return Tokens(n, prompt, n * ac.teacher_max_tokens, n, n * min(ac.teacher_max_tokens, ANSWER_TOKENS),
                      f"teacher answers {n} evaluation instructions")
    answers = questions * models
    answer = max(ac.teacher_max_tokens, ac.max_new_tokens)
    per_call = MESSAGE + prompt_file_tokens(jc.rubric) + EVAL_INSTRUCTION + answer
    if graded_by_probabilities(cfg):  # one forward pass per answer, no re-asks (rate/judge.score_request)
        return Tokens(answers, answers * per_call, answers * SCORE_MAX_TOKENS, answers, answers,
                      f"{answers} answers graded from the judge's probabilities over A-D, one call each")
    calls = answers * (jc.retries + 1)
    return Tokens(calls, calls * per_call, calls * jc.max_tokens, answers, answers * min(jc.max_tokens, 60),
                  f"{answers} answers judged, each asked at most {jc.retries + 1} times")


def stage_tokens(cfg: Config, spec: StageSpec) -> Tokens | None:
    seen = stage_config(cfg, spec)
    if spec.kind == "instructions":
        return instruction_tokens(seen)
    if spec.kind == "responses":
        return response_tokens(seen, spec)
    if spec.name in ("answers", "judge"):
        return eval_tokens(seen, spec)
    return None


def graded_by_probabilities(cfg: Config) -> bool:
    """Whether the judge certainly grades from log-probs: asked to, or `auto` with a local backend (which always
    can). `auto` against an endpoint may fall back to text, so the plan budgets the text judge there."""
    method = cfg.judge.method
    return method == "probabilities" or (method == "auto" and judge_teacher(cfg).backend == "local")


def judge_teacher(cfg: Config) -> TeacherConfig:
    """The teacher the judge really calls: the run's [teacher] when judge.same_as_teacher, else [judge.teacher]."""
    return cfg.teacher if cfg.judge.same_as_teacher else cfg.judge.teacher


def reads(cfg: Config, spec: StageSpec) -> str:
    found = feeders(cfg, spec.name) if spec.name != "report" else []
    if not found:
        return ""
    if len(found) > 1:
        return f"{len(found)} sources' responses"
    return str(stage_folder(cfg, found[0]).relative_to(run_path(cfg)))


def make_plan(cfg: Config, stages: list[StageSpec]) -> list[Estimate]:
    keys = stage_keys(cfg)
    state = State(cfg)
    out: list[Estimate] = []
    for spec in stages:
        where = reads(cfg, spec)
        if state.finished(spec.name, keys[spec.name]) and spec.name != "report":
            out.append(Estimate(spec.name, "skip", note="up to date", reads=where))
            continue
        tokens = stage_tokens(cfg, spec)
        est = Estimate(spec.name, "run", reads=where)
        if tokens is not None:
            prices = teacher_prices(judge_teacher(cfg) if spec.teacher == "judge" else cfg.teacher)
            expected_prompt = tokens.expected_prompt if tokens.expected_prompt >= 0 else \
                tokens.prompt * tokens.expected_calls // max(tokens.calls, 1)
            est = Estimate(spec.name, "run", tokens.calls, tokens.prompt, tokens.completion,
                           cost(prices, tokens.prompt, tokens.completion),
                           cost(prices, expected_prompt, tokens.expected_completion), tokens.note, where)
        if spec.kind == "prompts":
            ic = stage_config(cfg, spec).instructions
            est.note = f"draws {ic.calls} prompts from {ic.seeds} (no teacher call)"
        if spec.source and spec.kind == "responses":
            from herd.sources import find, scaled

            est.pairs = scaled(cfg, find(cfg, spec.source).count)
        if state.data.get(spec.name):
            est.note = (est.note + "; " if est.note else "") + "config changed"
        out.append(est)
    return out


def render(cfg: Config, estimates: list[Estimate]) -> list[str]:
    judge = judge_teacher(cfg)
    lines = [f"plan for {run_path(cfg)} (teacher: {cfg.teacher.backend}:{cfg.teacher.model}; judge: "
             f"{judge.backend}:{judge.model})"]
    lines.append(f"{'stage':<40} {'action':<6} {'calls':>9} {'prompt tok':>12} {'compl tok':>12} {'max $':>10} "
                 f"{'expected $':>10}  reads / note")
    for e in estimates:
        note = "; ".join(x for x in (f"reads {e.reads}" if e.reads else "", e.note,
                                     f"{e.pairs:,} pairs to the mix" if e.pairs else "") if x)
        lines.append(f"{e.stage:<40} {e.action:<6} {e.calls:>9} {e.prompt_tokens:>12} {e.completion_tokens:>12} "
                     f"{e.cost:>10.4f} {e.expected:>10.4f}  {note}")
    calls = sum(e.calls for e in estimates)
    pairs = sum(e.pairs for e in estimates)
    lines.append(f"total: at most {calls} teacher calls, at most ${total_cost(estimates):.2f} (expected about "
                 f"${sum(e.expected for e in estimates):.2f}); journal hits are free"
                 + (f"; {pairs:,} pairs to the mix" if pairs else ""))
    return lines


def total_cost(estimates: list[Estimate]) -> float:
    """The upper bound: what `run.confirm_above_usd` and `run.max_cost_usd` are compared with."""
    return sum(e.cost for e in estimates)


def as_rows(estimates: list[Estimate]) -> list[dict[str, Any]]:
    return [e.__dict__.copy() for e in estimates]


__all__ = ["Estimate", "make_plan", "render", "total_cost"]
