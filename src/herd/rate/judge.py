"""herd judge: an LLM grades every answer A, B, C or D with the paper's rubric.

Reads an answers table (`answers/data.jsonl` of the run, or `[judge] answers`) and writes `judge/`: `data.jsonl`
(the answer row + `rating`, `method`, `reason`, `parsed`, `call`; with probability grading also `probs`,
`expected` and `grade_mass`), `summary.md` and `ratings.png` (the paper's stacked A-D bars, with the answers not
graded), and, when human ratings are given, Cohen's kappa between judge and people.

Two ways to read a grade (`judge.method`):
- probabilities (where the backend returns log-probs: the local backends always, OpenAI-compatible endpoints through
  `logprobs`/`top_logprobs`): the prompt ends where the grade letter goes (the reply is started with "Grade:"), one
  forward pass gives the distribution over A/B/C/D there, renormalised over the four; `rating` is the most likely,
  `expected` the mean on A=4 ... D=1, `grade_mass` how much probability the four letters had before renormalising.
  Every answer gets a grade.
- text: the judge writes "Grade: X / Reason: ..."; a reply without a grade is asked again (a new sample), then
  recorded as not graded (`rating: null`), never guessed.
`auto` (the default) uses probabilities where the backend can and says in one line when it falls back to text. An
answer with no letter or digit in it is graded D without a call (method "empty").

Bias controls: each answer is judged alone (no other model's answer in view, so no order effect), model names are
never shown, and the rubric says that length is not merit. Every call goes through the journal (cached).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from herd.config import Config
from herd.errors import UserError
from herd.progress import note
from herd.prompts import prompt_path, read_prompt
from herd.records import ids, iter_rows, numbered_rows
from herd.rundir import StageDir, journal_path, run_path
from herd.teacher import Request, Result, open_engine
from herd.teacher.base import scores_of

STAGE = "judge"
GRADES = ("A", "B", "C", "D")
VALUE = {"A": 4, "B": 3, "C": 2, "D": 1}  # the scale of `expected`
PREFILL = "Grade:"  # the start of the judge's reply in probability grading: the next token is the grade
EMPTY_REASON = "empty answer (no letter or digit): graded D without a judge call"
_WORD = re.compile(r"\w")
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
    folder = run_path(cfg) / STAGE
    check_same_table(folder, source)
    engine = open_engine(cfg.teacher if jc.same_as_teacher else jc.teacher, journal_path(cfg), stage=STAGE,
                         quiet=cfg.run.quiet)
    try:
        done = ids(folder / "data.jsonl") | ids(folder / "rejects.jsonl")
        todo = {str(r["id"]): r for r in rows if str(r["id"]) not in done}
        method = choose_method(jc.method, engine, rubric, todo)  # before anything is written
        stage = StageDir(folder, STAGE)
        stage.add_prompt("rubric", prompt_path(jc.rubric))
        todo = grade_empty(stage, todo)
        if method == "probabilities":
            grade_by_probabilities(stage, engine, rubric, todo)
        else:
            grade_all(stage, engine, rubric, todo, jc.retries, jc.max_tokens, jc.temperature)
    finally:
        engine.close()
    stage.checkpoint()
    summary = summarise(stage.path, human)
    return stage.finish(cfg, {"answers": str(source), "judge": engine.model_id, "method": method, **summary},
                        engine.usage.as_dict())


def is_empty(answer: Any) -> bool:
    """No letter or digit at all: "", whitespace, a lone quote or dot."""
    return not _WORD.search(str(answer or ""))


def grade_empty(stage: StageDir, todo: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Grade empty answers D (no call: a judge may call nothing "A"); returns the rest."""
    rest: dict[str, dict[str, Any]] = {}
    for row_id, row in todo.items():
        if is_empty(row["answer"]):
            stage.keep({**row, "rating": "D", "method": "empty", "reason": EMPTY_REASON, "parsed": True,
                        "call": None, "judge_attempts": 0})
        else:
            rest[row_id] = row
    stage.checkpoint()
    return rest


SCORE_MAX_TOKENS = 8  # a grade-scoring request reads log-probs; it may generate at most this (herd plan budgets it)


def score_request(rubric: str, row: dict[str, Any]) -> Request:
    """One forward pass: the rubric, then the judge's reply started up to where the grade letter goes."""
    user = rubric.format(instruction=row["instruction"], answer=row["answer"])
    return Request(messages=(("user", user), ("assistant", PREFILL)), max_tokens=SCORE_MAX_TOKENS, temperature=0.0,
                   score=GRADES, tag=str(row["id"]))


def choose_method(wanted: str, engine: Any, rubric: str, todo: dict[str, dict[str, Any]]) -> str:
    """'probabilities' or 'text'. With `auto`, a backend without log-probs means text (said in one line); asked for
    probabilities, it is a UserError. An endpoint is tried with the first answer's call (journaled, so not paid
    twice) before anything is written."""
    if wanted == "text":
        return "text"
    problem = "" if getattr(engine.backend, "can_score", False) else "gives no log-probs with this backend"
    first = next((row for row in todo.values() if not is_empty(row["answer"])), None)
    if not problem and first is not None:
        result = engine.ask(score_request(rubric, first))
        if result.ok and scores_of(result) is None:
            problem = "returned no log-probs (logprobs/top_logprobs)"
        elif not result.ok and result.error.startswith("http_4"):
            problem = f"refused a log-probs request ({result.error})"
        elif not result.ok and "score:" in result.error:  # e.g. a tokenizer with no token for a lone letter
            problem = f"cannot score the grades ({result.error})"
    if not problem:
        return "probabilities"
    if wanted == "probabilities":
        raise UserError(f"judge.method = 'probabilities': {engine.model_id} {problem}; set judge.method = 'text' "
                        "(or 'auto', which falls back to text by itself)")
    note(f"judge: {engine.model_id} {problem}; grading from the reply text instead")
    return "text"


def grade_by_probabilities(stage: StageDir, engine: Any, rubric: str, todo: dict[str, dict[str, Any]]) -> None:
    """Grade = the most likely of A-D at the grade position; P(A..D) and the expected grade recorded."""
    from herd.teacher.scoring import renormalise

    def on_result(result: Result) -> None:
        row = todo[result.request.tag]
        if not result.ok:
            stage.reject(row, f"judge_failed: {result.error}")
            return
        probs, mass = renormalise(scores_of(result) or dict.fromkeys(GRADES))
        if not probs:
            stage.keep({**row, "rating": None, "method": "probabilities", "parsed": False, "call": result.key,
                        "reason": "no A-D token where the reply names its grade", "judge_attempts": 1})
            return
        rating = max(GRADES, key=lambda g: (probs[g], -GRADES.index(g)))
        expected = sum(p * VALUE[g] for g, p in probs.items())
        shown = ", ".join(f"{g} {probs[g]:.2f}" for g in GRADES)
        extra = {"judge_top": result.raw["top"]} if "top" in result.raw else {}
        stage.keep({**row, "rating": rating, "method": "probabilities",
                    "probs": {g: round(probs[g], 4) for g in GRADES}, "expected": round(expected, 3),
                    "grade_mass": round(mass, 4), "reason": f"P = {shown}", "parsed": True, "call": result.key,
                    "judge_attempts": 1, **extra})

    engine.map([score_request(rubric, row) for row in todo.values()], on_result, label=f"{STAGE} (log-probs)")


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
                stage.keep({**row, "rating": grade, "method": "text", "reason": reason, "parsed": grade is not None,
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
    """Counts per model (summary.md), the A-D chart with what was not graded, and kappa against people."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    judged: dict[str, str] = {}
    expected: dict[str, list[float]] = defaultdict(list)
    for row in iter_rows(folder / "data.jsonl"):
        model = str(row["model"])
        counts[model][row["rating"] or "not graded"] += 1
        counts[model]["empty"] += row.get("method") == "empty"
        if row["rating"]:
            judged[str(row["id"])] = row["rating"]
        if isinstance(row.get("expected"), (int, float)):
            expected[model].append(float(row["expected"]))
    for row in iter_rows(folder / "rejects.jsonl"):  # a judge call that failed: not graded either
        counts[str(row["model"])]["not graded"] += 1
    lines = ["| model | answers | A | B | C | D | not graded | of them empty (D, no call) | mean expected grade "
             "(A=4 … D=1) |", "|---|---|---|---|---|---|---|---|---|"]
    for model, c in sorted(counts.items(), key=lambda kv: (-kv[1]["A"], -kv[1]["B"])):
        total = sum(c.get(g, 0) for g in (*GRADES, "not graded"))
        mean = f"{sum(expected[model]) / len(expected[model]):.2f}" if expected[model] else "–"
        lines.append(f"| {model} | {total} | " + " | ".join(str(c.get(g, 0)) for g in (*GRADES, "not graded"))
                     + f" | {c.get('empty', 0)} | {mean} |")
    out: dict[str, Any] = {"ratings": {m: {k: v for k, v in c.items() if v} for m, c in counts.items()}}
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
    """The paper's stacked A-D bars in counts, with a grey segment for answers not graded: the judge's grades beside
    people's (ratings.png); and this run's models among the paper's 22 as shares (ratings_vs_paper.png), only those
    with at least FEW grades (a share of a dozen grades beside the paper's 114 would mislead), none drawn when no
    model has that many."""
    from herd.rate.figures import FEW, count_ratings, plot_among_paper, plot_bars

    judged = {model: {g: c.get(g, 0) for g in GRADES} for model, c in counts.items()}
    missing = {model: c.get("not graded", 0) for model, c in counts.items()}
    panels = [("LLM judge (this run)", judged)]
    sources = [("judge", judged)]
    if human_rows:
        people = count_ratings(human_rows)
        panels.insert(0, ("people (this run, majority grade)", people))
        sources.insert(0, ("people", people))
    plot_bars(panels, folder / "ratings.png", share_order=True, missing={"LLM judge (this run)": missing})
    enough = [(source, {m: c for m, c in counts.items() if sum(c.values()) >= FEW}) for source, counts in sources]
    enough = [(source, counts) for source, counts in enough if counts]
    among = folder / "ratings_vs_paper.png"
    if enough:
        plot_among_paper(enough, among)
    else:
        among.unlink(missing_ok=True)
