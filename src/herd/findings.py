"""What a run shows, in a few sentences written from its own files (the opening of `herd report`).

Reads the stage manifests, `train/manifest.json` (held-out loss before and after training), `answers/data.jsonl`
and `judge/data.jsonl`; returns plain sentences and small tables, every number taken from those files. Nothing is
rounded up: a goal not met is said to be not met, and a share is given with the count it comes from.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from herd.config import Config
from herd.records import iter_rows

GRADES = ("A", "B", "C", "D")
FEW = 30  # fewer graded answers than this per model: shares are rough, and the text says so
EMBEDDED_LIMITS = (
    "What a 135M teacher cannot show: the LaMini result itself. The teacher is SmolLM2-135M-Instruct, a model "
    "about a thousand times smaller than the paper's gpt-3.5-turbo; its instructions and answers are weak, and as "
    "the judge it grades its own pupils, so its A-D grades say little about quality (the paper's claims rest on "
    "people's ratings of answers from a strong teacher). This run shows the mechanism: that students trained on a "
    "teacher's responses come to predict those responses, measured on pairs they never saw."
)


def judge_rows(root: Path) -> list[dict[str, Any]]:
    path = root / "judge" / "data.jsonl"
    rows = list(iter_rows(path)) if path.exists() else []
    rejects = root / "judge" / "rejects.jsonl"
    if rejects.exists():  # a failed judge call leaves the answer ungraded
        rows += [{**r, "rating": None, "method": "failed"} for r in iter_rows(rejects)]
    return rows


def grade_table(root: Path) -> tuple[list[str], list[list[Any]]]:
    """Per model: answers, A-D counts, not graded, empty answers, graded share and mean expected grade."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    expected: dict[str, list[float]] = defaultdict(list)
    for row in judge_rows(root):
        c = per[str(row.get("model"))]
        c["answers"] += 1
        c[row.get("rating") or "not graded"] += 1
        c["empty"] += row.get("method") == "empty"
        c["probabilities"] += row.get("method") == "probabilities"
        if isinstance(row.get("expected"), (int, float)):
            expected[str(row.get("model"))].append(float(row["expected"]))
    header = ["model", "answers", *GRADES, "not graded", "empty answers (graded D, no call)",
              "graded from probabilities", "mean expected grade (A=4 … D=1)"]
    rows = []
    for model, c in sorted(per.items()):
        values = expected[model]
        rows.append([model, c["answers"], *(c[g] for g in GRADES), c["not graded"], c["empty"], c["probabilities"],
                     f"{sum(values) / len(values):.2f}" if values else "–"])
    return header, rows


def heldout_rows(root: Path) -> tuple[list[str], list[list[Any]], str]:
    """The held-out loss table (students before/after, the teacher's own) and a note on the teacher's row."""
    manifest = root / "train" / "manifest.json"
    if not manifest.exists():
        return [], [], ""
    data = json.loads(manifest.read_text(encoding="utf-8"))
    held = data.get("data", {}).get("heldout") or {}
    header = ["model", "held-out pairs", "response tokens", "loss before", "loss after", "loss fall",
              "perplexity before", "perplexity after"]
    rows = []
    for st in data.get("students", []):
        entry = st.get("heldout")
        if not entry:
            continue
        b, a = entry["before"], entry["after"]
        fall = entry.get("loss_fall")
        rows.append([st.get("name"), a.get("rows"), a.get("tokens"), b.get("loss"), a.get("loss"),
                     f"{100 * fall:.1f}%" if fall is not None else "–", _big(b.get("perplexity")),
                     _big(a.get("perplexity"))])
    teacher = held.get("teacher") or {}
    note = ""
    if teacher.get("loss") is not None:
        rows.append([f"teacher ({teacher.get('model')})", teacher.get("rows"), teacher.get("tokens"), "–",
                     teacher.get("loss"), "–", "–", _big(teacher.get("perplexity"))])
    elif teacher.get("skipped"):
        note = f"The teacher's own loss is not shown: {teacher['skipped']}."
    return header, rows, note


def _big(value: Any) -> Any:
    """A perplexity in the millions reads better as 1.52e+08 than as 151785371.1."""
    return f"{value:.3g}" if isinstance(value, (int, float)) and value >= 1e5 else value


def what_this_run_shows(cfg: Config, root: Path, manifests: dict[str, dict[str, Any]]) -> list[str]:
    """Short paragraphs from the run's numbers; the embedded teacher's limits when it is the teacher."""
    out = [s for s in (_data_sentence(manifests), _learning_sentence(root), _answers_sentence(root),
                       _grades_sentence(root)) if s]
    if not out:
        out.append("No stage of this run has finished yet: there is nothing to report.")
    if cfg.teacher.backend == "local" and cfg.teacher.model == "embedded":
        out.append(EMBEDDED_LIMITS)
    return out


def _data_sentence(manifests: dict[str, dict[str, Any]]) -> str:
    parts = []
    ins = manifests.get("instructions", {}).get("counts")
    if ins:
        total = ins.get("rows", 0) + ins.get("rejects", 0)
        rejected = ins.get("rejects", 0)
        parts.append(f"The teacher wrote {total} candidate instructions, of which {ins.get('rows', 0)} were kept "
                     + (f"({rejected} rejected; reasons below)" if rejected else "(none rejected)"))
    final = next((manifests[s]["counts"].get("rows") for s in ("dedup", "mix", "responses")
                  if manifests.get(s, {}).get("counts")), None)
    if final is not None:
        parts.append(f"{final} instruction-response pairs reached training")
    return "; ".join(parts) + "." if parts else ""


def _learning_sentence(root: Path) -> str:
    _, rows, note = heldout_rows(root)
    students = [r for r in rows if not str(r[0]).startswith("teacher")]
    if not students:
        return ""
    said = []
    for name, _rows, _tokens, before, after, fall, *_ in students:
        change = "" if fall == "–" else (f" (a fall of {fall})" if not fall.startswith("-") else f" (a rise of "
                                                                                                 f"{fall[1:]})")
        said.append(f"{name} from {before} to {after}{change}")
    teacher = next((r for r in rows if str(r[0]).startswith("teacher")), None)
    text = (f"Did the students learn? Their loss per response token on {students[0][1]} held-out teacher responses "
            f"(pairs no student trained on) went: " + "; ".join(said) + ".")
    if teacher is not None:
        text += f" The teacher's own loss on the same responses is {teacher[4]}."
    small = [r[0] for r in students if r[5] != "–" and float(str(r[5]).rstrip("%")) < 30]
    if small:
        text += f" For {', '.join(map(str, small))} the fall is under 30%: little was learned."
    return text + (" " + note if note else "")


def _answers_sentence(root: Path) -> str:
    path = root / "answers" / "data.jsonl"
    if not path.exists():
        return ""
    from herd.rate.judge import is_empty

    per: dict[str, Counter[str]] = defaultdict(Counter)
    for row in iter_rows(path):
        c = per[str(row.get("model"))]
        c["all"] += 1
        c["empty"] += is_empty(row.get("answer"))
    parts = [f"{m} {c['all'] - c['empty']} of {c['all']}" for m, c in sorted(per.items())]
    text = "Answers with any text in them (evaluation instructions): " + ", ".join(parts) + "."
    weak = [m for m, c in sorted(per.items()) if 2 * (c["all"] - c["empty"]) < c["all"]]
    if weak:
        text += (f" {', '.join(weak)} left most instructions without an answer: a falling loss is not yet a usable "
                 "answer.")
    return text


def _grades_sentence(root: Path) -> str:
    _, rows = grade_table(root)
    if not rows:
        return ""
    answers = sum(r[1] for r in rows)
    missing = sum(r[6] for r in rows)
    graded = answers - missing
    scored, empty = sum(r[8] for r in rows), sum(r[7] for r in rows)
    how = [f"{scored} from its probabilities over A-D" if scored else "",
           f"{graded - scored - empty} from its written reply" if graded - scored - empty else "",
           f"{empty} empty answers graded D without a call" if empty else ""]
    text = (f"The judge graded {graded} of {answers} answers ({100 * graded / answers:.0f}%): "
            + ", ".join(h for h in how if h) + ".")
    masses = [float(r["grade_mass"]) for r in judge_rows(root) if isinstance(r.get("grade_mass"), (int, float))]
    if masses:
        text += (f" Before renormalising, the four letters held {100 * sum(masses) / len(masses):.0f}% of the "
                 "judge's next-token probability on average.")
    means = {str(r[0]): float(r[9]) for r in rows if r[9] != "–"}
    if len(means) > 1 and max(means.values()) - min(means.values()) < 0.25:
        shown = ", ".join(f"{m} {v:.2f}" for m, v in sorted(means.items()))
        text += (f" Its mean expected grades barely differ ({shown}; A=4 … D=1): this judge hardly tells the "
                 "models' answers apart.")
    few = [str(r[0]) for r in rows if r[1] - r[6] < FEW]
    if few:
        text += (f" With fewer than {FEW} graded answers per model ({', '.join(few)}), the A-D counts are a "
                 "small sample: read them as counts, not as shares.")
    return text
