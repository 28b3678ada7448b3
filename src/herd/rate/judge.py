"""herd judge: an LLM grades every answer A, B, C or D with the paper's rubric and a one-sentence reason.

Reads an answers table (`answers/data.jsonl` of the run, or `[judge] answers`) and writes `judge/`: `data.jsonl`
(the answer row + `rating`, `reason`, `parsed`, `call`), `summary.md` and `ratings.png` (the paper's stacked A-D
bars), and, when human ratings are given, Cohen's kappa between judge and people.

Bias controls: each answer is judged alone (no other model's answer in view, so no order effect), model names are
never shown, and the rubric says that length is not merit. A reply without a grade is asked again (a new sample),
then recorded as unparsed (`rating: null`), never guessed. Every call goes through the journal (cached).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from herd.config import Config
from herd.errors import UserError
from herd.prompts import prompt_path, read_prompt
from herd.records import iter_rows, numbered_rows
from herd.rundir import StageDir, journal_path, run_path
from herd.teacher import Request, Result, open_engine

STAGE = "judge"
GRADES = ("A", "B", "C", "D")
_GRADE = re.compile(r"(?i:grade|rating)\s*[:=\-]?\s*\**\s*\(?([ABCD])\b")
_ALONE = re.compile(r"^\s*\**\(?([ABCD])\)?[.\s*]*$")
_REASON = re.compile(r"(?i:reason)\s*[:\-]\s*(.+)")


def parse_grade(reply: str) -> tuple[str | None, str]:
    """(grade or None, reason) from a judge reply; anything without a clear A-D grade is None."""
    match = _GRADE.search(reply)
    grade = match.group(1) if match else None
    if grade is None:
        first = reply.strip().splitlines()[0] if reply.strip() else ""
        alone = _ALONE.match(first)
        grade = alone.group(1) if alone else None
    reason = _REASON.search(reply)
    return grade, (reason.group(1).strip() if reason else reply.strip()[:200])


def load_answers(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise UserError(f"{path}: answers table not found (run `herd answers` first, or set judge.answers)")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, row in numbered_rows(path, required=["id", "instruction", "model", "answer"]):
        if str(row["id"]) in seen:
            raise UserError(f"{path}:{number}: duplicate id {row['id']!r}")
        seen.add(str(row["id"]))
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no answers to judge")
    return rows


def run(cfg: Config) -> Path:
    jc = cfg.judge
    source = Path(jc.answers) if jc.answers else run_path(cfg) / "answers" / "data.jsonl"
    rows = load_answers(source)
    human = load_human(Path(jc.human), {str(r["id"]) for r in rows}) if jc.human else {}
    rubric = read_prompt(jc.rubric)
    check_same_table(run_path(cfg) / STAGE, source)
    engine = open_engine(cfg.teacher if jc.same_as_teacher else jc.teacher, journal_path(cfg), stage=STAGE,
                         quiet=cfg.run.quiet)
    stage = StageDir(run_path(cfg) / STAGE, STAGE)
    stage.add_prompt("rubric", prompt_path(jc.rubric))
    done = stage.done_ids()
    todo = {str(r["id"]): r for r in rows if str(r["id"]) not in done}
    try:
        grade_all(stage, engine, rubric, todo, jc.retries, jc.max_tokens, jc.temperature)
    finally:
        engine.close()
    stage.checkpoint()
    summary = summarise(stage.path, human)
    return stage.finish(cfg, {"answers": str(source), "judge": engine.model_id, **summary}, engine.usage.as_dict())


def check_same_table(folder: Path, source: Path) -> None:
    """One judge folder grades one answers table: another table's grades would mix into its counts and kappa."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return
    before = json.loads(manifest.read_text(encoding="utf-8")).get("answers")
    if before and Path(before).resolve() != source.resolve():
        raise UserError(f"{folder}: already holds the grades of {before}; grade {source} in another run "
                        "(--set run.name=...)")


def grade_all(stage: StageDir, engine: Any, rubric: str, todo: dict[str, dict[str, Any]], retries: int,
              max_tokens: int, temperature: float) -> None:
    """Ask, re-ask the unparsed with new samples, then write every row exactly once."""
    pending = dict(todo)
    for attempt in range(retries + 1):
        if not pending:
            return
        requests = [
            Request.chat(rubric.format(instruction=row["instruction"], answer=row["answer"]), None,
                         max_tokens=max_tokens, temperature=temperature if attempt == 0 else 0.7,
                         sample_index=attempt, tag=row_id)
            for row_id, row in pending.items()
        ]
        results: list[Result] = []
        engine.map(requests, results.append, label=f"{STAGE} (try {attempt + 1})")
        unparsed: dict[str, dict[str, Any]] = {}
        for result in results:
            row = pending[result.request.tag]
            grade, reason = parse_grade(result.text) if result.ok else (None, "")
            if not result.ok:
                stage.reject(row, f"judge_failed: {result.error}")
            elif grade is None and attempt < retries:
                unparsed[result.request.tag] = row
            else:
                stage.keep({**row, "rating": grade, "reason": reason, "parsed": grade is not None,
                            "call": result.key, "judge_attempts": attempt + 1})
        stage.checkpoint()
        pending = unparsed


def load_human(path: Path, known: set[str]) -> dict[str, str]:
    """Majority human grade per answer id from a rate-app export; unknown ids are a UserError."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for number, row in numbered_rows(path, required=["id", "rating"]):
        if str(row["id"]) not in known:
            raise UserError(f"{path}:{number}: unknown answer id {row['id']!r}")
        if str(row["rating"]) not in GRADES:
            raise UserError(f"{path}:{number}: rating must be one of A, B, C, D, got {row['rating']!r}")
        votes[str(row["id"])][str(row["rating"])] += 1
    # A tie goes to the better grade: GRADES order breaks it the same way every time.
    return {k: min(c, key=lambda g: (-c[g], GRADES.index(g))) for k, c in votes.items()}


def summarise(folder: Path, human: dict[str, str]) -> dict[str, Any]:
    """Counts per model (summary.md), the A-D chart, and kappa against people when there are human ratings."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    judged: dict[str, str] = {}
    for row in iter_rows(folder / "data.jsonl"):
        counts[str(row["model"])][row["rating"] or "unparsed"] += 1
        if row["rating"]:
            judged[str(row["id"])] = row["rating"]
    lines = ["| model | A | B | C | D | unparsed |", "|---|---|---|---|---|---|"]
    for model, c in sorted(counts.items(), key=lambda kv: (-kv[1]["A"], -kv[1]["B"])):
        lines.append(f"| {model} | " + " | ".join(str(c.get(g, 0)) for g in (*GRADES, "unparsed")) + " |")
    out: dict[str, Any] = {"ratings": {m: dict(c) for m, c in counts.items()}}
    common = sorted(set(judged) & set(human))
    if common:
        from herd.rate.agreement import cohen_kappa

        kappa = cohen_kappa([judged[i] for i in common], [human[i] for i in common])
        out["kappa_vs_human"] = {"kappa": kappa, "items": len(common)}
        shown = "undefined (one grade only)" if kappa is None else f"{kappa:.3f}"
        lines += ["", f"Cohen's kappa, judge vs people (majority grade): {shown} over {len(common)} answers."]
    (folder / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    models = {str(row["id"]): str(row["model"]) for row in iter_rows(folder / "data.jsonl")}
    draw_chart(folder, counts, [{"model": models[i], "rating": g} for i, g in human.items() if i in models])
    return out


def draw_chart(folder: Path, counts: dict[str, Counter[str]], human_rows: list[dict[str, Any]]) -> None:
    """The paper's stacked A-D bars: the judge's grades beside people's (ratings.png), and this run's models among
    the paper's 22 as shares in one panel (ratings_vs_paper.png)."""
    from herd.rate.figures import count_ratings, plot_among_paper, plot_bars

    judged = {model: {g: c.get(g, 0) for g in GRADES} for model, c in counts.items()}
    panels = [("LLM judge (this run)", judged)]
    sources = [("judge", judged)]
    if human_rows:
        people = count_ratings(human_rows)
        panels.insert(0, ("people (this run, majority grade)", people))
        sources.insert(0, ("people", people))
    plot_bars(panels, folder / "ratings.png", share_order=True)
    plot_among_paper(sources, folder / "ratings_vs_paper.png")
