"""herd probe hallucination: questions with a false premise, about the far future, nonsensical or unknowable; every
model answers and the judge marks each answer as REJECTED (the model flags the problem or declines) or
HALLUCINATED (it plays along and invents facts).

Reads `[probe] questions` (JSONL with id, question, category; default herd's own 20 in the paper's four
categories) and writes `probe/`: `answers.jsonl` (an answers table the rating app can load, so people can check the
judge: `herd rate-app create --answers <run>/probe/answers.jsonl --study ...`), `data.jsonl` (answer +
`hallucinated`, `reason`, `parsed`), `rejects.jsonl` (`model_failed`, `judge_failed`), `summary.md` (counts per
category beside the paper's), `hallucination.png`. Models answer with `[answers]`' sampling settings. Resumes: an
answer already written is neither generated nor judged again, and answers.jsonl keeps the very answers judged.
"""

from __future__ import annotations

import re
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

from herd.config import Config
from herd.errors import UserError
from herd.prompts import prompt_path, read_prompt
from herd.rate.answerers import ModelSpec, answer_with, ask_teacher, resolve, sampling
from herd.records import iter_rows, numbered_rows, write_rows
from herd.rundir import StageDir, run_path

STAGE = "probe"
CATEGORIES = ("did not happen", "far future", "nonsense", "obscure")
_VERDICT = re.compile(r"(?i:verdict)\s*[:\-]?\s*\**\s*(REJECTED|HALLUCINATED)", re.I)
_REASON = re.compile(r"(?i:reason)\s*[:\-]\s*(.+)")
ANSWER_FIELDS = ("id", "instruction_id", "instruction", "category", "model", "kind", "answer")

# Hallucinated answers out of 40 (10 per category), LaMini-LM paper (EACL 2024), section 6.
PAPER: dict[str, tuple[int, int, int, int, int]] = {
    "gpt-3.5-turbo": (1, 1, 0, 0, 0),
    "Alpaca-7B": (40, 10, 10, 10, 10),
    "LaMini-Flan-T5-77M": (36, 10, 9, 10, 7),
    "LaMini-Flan-T5-248M": (34, 10, 7, 10, 7),
    "LaMini-Flan-T5-783M": (32, 10, 8, 8, 6),
    "LaMini-GPT-124M": (40, 10, 10, 10, 10),
    "LaMini-GPT-774M": (38, 9, 10, 9, 10),
    "LaMini-GPT-1.5B": (35, 10, 9, 9, 7),
    "LaMini-GPT-J-6B": (26, 9, 8, 5, 4),
    "LaMini-LLaMA-7B": (12, 4, 5, 2, 1),
}


def parse_verdict(reply: str) -> tuple[bool | None, str]:
    """(hallucinated?, reason); None when the reply has no verdict."""
    match = _VERDICT.search(reply)
    reason = _REASON.search(reply)
    why = reason.group(1).strip() if reason else reply.strip()[:200]
    return (None if match is None else match.group(1).upper() == "HALLUCINATED"), why


def load_questions(path: str) -> list[dict[str, Any]]:
    source = Path(path) if path else Path(str(resources.files("herd.assets").joinpath("hallucination_questions.jsonl")))
    rows = []
    for number, row in numbered_rows(source, required=["id", "question", "category"]):
        if str(row["category"]) not in CATEGORIES:
            raise UserError(f"{source}:{number}: category must be one of {', '.join(CATEGORIES)}")
        rows.append({"id": str(row["id"]), "question": str(row["question"]), "category": str(row["category"])})
    if not rows:
        raise UserError(f"{source}: no questions")
    return rows


def run(cfg: Config) -> Path:
    pc = cfg.probe
    questions = load_questions(pc.questions)
    models = resolve(cfg, pc.models)
    if not models:
        raise UserError("probe.models: no model to probe")
    prompt = read_prompt(pc.prompt)
    stage = StageDir(run_path(cfg) / STAGE, STAGE)
    stage.add_prompt("judge", prompt_path(pc.prompt))
    answered = earlier_answers(stage.path)
    done = stage.done_ids()
    ids: list[str] = []
    for model in models:
        rows = [{"id": f"{q['id']}::{model.name}", "instruction_id": q["id"], "instruction": q["question"],
                 "category": q["category"], "model": model.name, "kind": model.kind} for q in questions]
        ids += [r["id"] for r in rows]
        todo = [r for r in rows if r["id"] not in done]
        if todo:
            answered.update(ask_and_judge(cfg, stage, prompt, model, todo))
    write_rows(stage.path / "answers.jsonl", [answered[i] for i in ids if i in answered])
    stage.checkpoint()
    counts = summarise(stage.path)
    return stage.finish(cfg, {"models": [m.name for m in models], "counts": counts})


def earlier_answers(folder: Path) -> dict[str, dict[str, Any]]:
    """Answers a previous run got (judged, or kept when only the judge failed), as answers-table rows."""
    rows = list(iter_rows(folder / "data.jsonl")) if (folder / "data.jsonl").is_file() else []
    if (folder / "rejects.jsonl").is_file():
        rows += [r for r in iter_rows(folder / "rejects.jsonl") if str(r["reason"]).startswith("judge_failed")]
    return {str(r["id"]): {k: r[k] for k in ANSWER_FIELDS if k in r} for r in rows}


def ask_and_judge(cfg: Config, stage: StageDir, prompt: str, model: ModelSpec,
                  todo: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One model answers the questions it has not answered yet; the judge marks them. A failed answer is a reject."""
    teacher, student = sampling(cfg)
    texts = answer_with(cfg, model, [r["instruction"] for r in todo], teacher, student, STAGE)
    answered: dict[str, dict[str, Any]] = {}
    for row, (text, finish, ok) in zip(todo, texts, strict=True):
        if ok:
            answered[row["id"]] = {**row, "answer": text}
        else:
            stage.reject(row, f"model_failed: {finish}")
    judge_rows(cfg, stage, prompt, list(answered.values()))
    stage.checkpoint()
    return answered


def judge_rows(cfg: Config, stage: StageDir, prompt: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    jc = cfg.judge
    tc = cfg.teacher if jc.same_as_teacher else jc.teacher
    prompts = [prompt.format(question=r["instruction"], answer=r["answer"]) for r in rows]
    verdicts = ask_teacher(cfg, tc, prompts, {"max_tokens": jc.max_tokens, "temperature": 0.0}, STAGE)
    for row, (reply, _, ok) in zip(rows, verdicts, strict=True):
        if not ok:
            stage.reject(row, "judge_failed")
            continue
        hallucinated, reason = parse_verdict(reply)
        stage.keep({**row, "hallucinated": hallucinated, "reason": reason, "parsed": hallucinated is not None})


def summarise(folder: Path) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {c: 0 for c in ("total", *CATEGORIES, "unparsed")})
    for row in iter_rows(folder / "data.jsonl"):
        c = counts[str(row["model"])]
        if row["hallucinated"] is None:
            c["unparsed"] += 1
        elif row["hallucinated"]:
            c["total"] += 1
            c[str(row["category"])] += 1
    header = "| model | hallucinated | " + " | ".join(CATEGORIES) + " | unparsed |"
    lines = ["Hallucinated answers per model (herd's run, then the paper's models out of 40).", "", header,
             "|" + "---|" * (len(CATEGORIES) + 3)]
    for model, c in sorted(counts.items()):
        lines.append(f"| {model} | {c['total']} | " + " | ".join(str(c[k]) for k in CATEGORIES)
                     + f" | {c['unparsed']} |")
    for model, (total, *per) in PAPER.items():
        lines.append(f"| {model} (paper) | {total} | " + " | ".join(map(str, per)) + " | - |")
    (folder / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    draw(folder, counts)
    return {k: dict(v) for k, v in counts.items()}


def draw(folder: Path, counts: dict[str, dict[str, int]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted(counts)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * len(models) * len(CATEGORIES) / 2))
    height = 0.8 / len(CATEGORIES)
    for i, category in enumerate(CATEGORIES):
        ax.barh([m + i * height for m in range(len(models))], [counts[m][category] for m in models], height,
                label=category)
    ax.set_yticks([m + 0.4 - height / 2 for m in range(len(models))], models)
    ax.set_xlabel("hallucinated answers")
    ax.set_title("Hallucination probe: answers that played along, per category")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "hallucination.png", dpi=120)
    plt.close(fig)
