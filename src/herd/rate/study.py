"""`herd rate-app`'s entry points: create a study, serve it, export and import ratings, new links, status, chart.

Reads the run's config (`[rate_app]`), an answers table (create), a ratings file (import), judge rows (chart); writes
the study folder (`study.sqlite`), ratings exports (CSV or JSONL) and PNG charts. Inputs are checked before anything
is written: a bad answers table or a ratings file with an unknown id is one `UserError` and leaves the study as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from herd.config import Config
from herd.errors import UserError
from herd.rate import agreement, design, figures
from herd.rate.store import Created, Study, create_study
from herd.records import read_rows, write_rows
from herd.rundir import run_path

SOURCE = {"People": "people", "LLM judge": "judge"}  # row labels in the chart among the paper's models


def study_folder(cfg: Config) -> Path:
    return Path(cfg.rate_app.study) if cfg.rate_app.study else run_path(cfg) / "rate-app"


def base_url(cfg: Config) -> str:
    rc = cfg.rate_app
    return (rc.url or f"http://{rc.host}:{rc.port}").rstrip("/")


def create(cfg: Config) -> Created:
    """A new study from the answers table: every rater's list made, tokens drawn, nothing written on a bad table."""
    rc = cfg.rate_app
    source = Path(rc.answers) if rc.answers else run_path(cfg) / "answers" / "data.jsonl"
    if not source.is_file():
        raise UserError(f"{source}: answers table not found (run `herd answers` first, or pass --answers)")
    answers = design.load_answers(source, rc.allow_incomplete)
    assignments = design.assign(answers, rc.per_item, rc.per_rater, rc.raters, rc.rater_names, cfg.run.seed)
    meta = {"name": rc.name or cfg.run.name, "source": str(source), "seed": str(cfg.run.seed),
            "per_item": str(rc.per_item), "url": base_url(cfg)}
    return create_study(study_folder(cfg), answers, assignments, meta)


def rater_link(url: str, token: str) -> str:
    return f"{url}/r/{token}"


def admin_link(url: str, token: str) -> str:
    return f"{url}/admin/login/{token}"


def export(cfg: Config, out: Path) -> int:
    """Write every rating to a CSV or JSONL file (by its suffix); returns the number of rows."""
    from herd.rate.store import csv_text

    rows = Study(study_folder(cfg)).export_rows()
    if out.suffix.lower() == ".csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(csv_text(rows), encoding="utf-8")
        os.replace(tmp, out)
        return len(rows)
    if out.suffix.lower() not in (".jsonl", ".json"):
        raise UserError(f"{out}: export to a .csv or .jsonl file")
    return write_rows(out, rows)


def import_ratings(cfg: Config, path: Path) -> dict[str, int]:
    """Add ratings rows (an export of another copy, or ratings collected elsewhere); all or nothing."""
    study = Study(study_folder(cfg))
    rows = design.load_ratings(path, study.answers())
    return study.import_rows(rows)


def relink(cfg: Config, rater: str | None) -> str:
    """A new link for one rater, or for the admin when rater is None; the old link stops working."""
    study = Study(study_folder(cfg))
    url = study.meta().get("url") or base_url(cfg)
    token = study.relink(rater)
    return admin_link(url, token) if rater is None else rater_link(url, token)


def status(cfg: Config) -> list[str]:
    """Lines for the terminal: progress per rater, then agreement."""
    study = Study(study_folder(cfg))
    lines = [f"{r['name']}: {r['rated']}/{r['assigned']} rated" for r in study.progress()]
    stats = agreement.summary(study.export_rows())
    lines.append(
        f"agreement over {stats['items_rated_twice']} answers rated twice or more: "
        f"alpha ordinal {_num(stats['alpha_ordinal'])}, alpha nominal {_num(stats['alpha_nominal'])}, "
        f"Fleiss' kappa {_num(stats['fleiss_kappa'])}"
    )
    return lines


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def chart(cfg: Config, out: Path, ratings: str = "", judge: str = "", paper: bool = False) -> list[str]:
    """The A–D bars: people (a ratings file, else the study) and the judge's rows side by side; with `paper`, these
    rows among the paper's models in one panel of shares instead (a run's few models beside the paper's 22 would
    leave their panel nearly empty)."""
    panels: list[tuple[str, figures.Counts]] = []
    people: list[dict[str, Any]] | None = None
    if ratings:
        people = read_rows(ratings, required=("model", "rating"))
    elif (study_folder(cfg) / "study.sqlite").is_file():
        people = Study(study_folder(cfg)).export_rows()
    if people is not None:
        panels.append(("People", figures.count_ratings(people)))
    missing: dict[str, dict[str, int]] = {}
    if judge:
        graded = read_rows(judge, required=("model",))
        panels.append(("LLM judge", figures.count_ratings(graded)))
        missing["LLM judge"] = {}
        for row in graded:  # answers the judge did not grade: a grey segment, not a gap
            if row.get("rating") not in figures.RATINGS:
                missing["LLM judge"][str(row["model"])] = missing["LLM judge"].get(str(row["model"]), 0) + 1
    if not panels and not paper:
        raise UserError("nothing to draw: no study here; pass --ratings, --judge or --paper")
    out.parent.mkdir(parents=True, exist_ok=True)
    if paper:
        figures.plot_among_paper([(SOURCE[title], counts) for title, counts in panels], out)
        return [title for title, _ in panels] + ["LaMini paper (people)"]
    figures.plot_bars(panels, out, missing=missing)
    return [title for title, _ in panels]
