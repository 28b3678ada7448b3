"""herd report: one page about a run, `runs/NAME/report.html` (self-contained: images inlined, no scripts, opens
offline) and `report.md` (images linked beside it).

Reads whatever the run's stages left: manifests, data files, stats/bench/judge figures, training curves, the
journal's usage. A stage that did not run is simply absent from the report. Every number names the file it came
from (the provenance table lists each stage's manifest, config hash, versions and prompt hashes).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from herd.config import Config
from herd.errors import UserError
from herd.records import iter_rows
from herd.rundir import journal_path, run_path

STAGE_ORDER = ("instructions", "responses", "mix", "dedup", "stats", "train", "answers", "bench", "judge")
SAMPLES_PER_SOURCE = 3
SIDE_BY_SIDE = 8


@dataclass
class Section:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)  # ("p"|"table"|"img"|"pre", payload)

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[Any]], source: str = "") -> None:
        self.blocks.append(("table", (header, rows, source)))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("img", (path, caption)))


def run(cfg: Config) -> Path:
    """Write report.html and report.md into the run folder; returns the run folder."""
    root = run_path(cfg)
    if not root.is_dir() or not any(p.is_dir() and p.name != ".herd" for p in root.iterdir()):
        raise UserError(f"report: {root} holds no finished stage to report on; run `herd run` on the config first")
    sections = [s for s in build_sections(cfg, root) if s.blocks]
    title = f"herd run {cfg.run.name}"
    (root / "report.html").write_text(to_html(title, sections, root), encoding="utf-8")
    (root / "report.md").write_text(to_markdown(title, sections, root), encoding="utf-8")
    return root


def build_sections(cfg: Config, root: Path) -> list[Section]:
    manifests = load_manifests(root)
    return [
        shows(cfg, root, manifests),
        overview(cfg, root, manifests),
        dataset(cfg, root),
        samples(cfg, root),
        rejects(manifests),
        training(root),
        figures(root, "bench", "Benchmark (lm-evaluation-harness)"),
        ratings(root),
        side_by_side(root),
        usage(cfg),
        provenance(root, manifests),
    ]


def chain_order(folder: str) -> tuple[int, str]:
    """Stage folders in the order the chain runs them (unknown ones last, by name)."""
    top = folder.split("/")[0]
    return (STAGE_ORDER.index(top) if top in STAGE_ORDER else len(STAGE_ORDER), folder)


def load_manifests(root: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(root.glob("**/manifest.json"), key=lambda p: chain_order(str(p.parent.relative_to(root)))):
        if ".herd" in path.parts:
            continue
        try:
            found[str(path.parent.relative_to(root))] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue
    return found


def shows(cfg: Config, root: Path, manifests: dict[str, dict[str, Any]]) -> Section:
    """The opening: what this run shows, written from its own numbers (herd.findings)."""
    from herd.findings import what_this_run_shows

    s = Section("What this run shows")
    for text in what_this_run_shows(cfg, root, manifests):
        s.para(text)
    return s


def overview(cfg: Config, root: Path, manifests: dict[str, dict[str, Any]]) -> Section:
    s = Section("Run")
    tc = cfg.teacher
    s.para(f"Teacher: {tc.backend}:{tc.model}. Run folder: {root}.")
    state_path = root / ".herd" / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    rows = []
    for folder, m in manifests.items():
        counts = m.get("counts", {})
        parts = folder.split("/")  # a source's stage folder, sources/NAME/STEP, is stage STEP:NAME
        stage = state.get(f"{parts[2]}:{parts[1]}" if parts[0] == "sources" and len(parts) > 2 else parts[0], {})
        seconds = m.get("timings", {}).get("seconds", stage.get("seconds"))
        kept = counts.get("rows", m.get("data", {}).get("rows", ""))  # train: the pairs it trained on
        rows.append([folder, kept, counts.get("rejects", ""),
                     f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "", stage.get("key", "")])
    if rows:
        s.table(["stage folder", "rows kept", "rejects", "seconds", "stage key"], rows, "*/manifest.json")
    return s


def final_dataset(cfg: Config) -> Path | None:
    """The pairs train reads in this run's chain (`herd.run.feeders`), else the nearest ones up the chain that
    were written (a run stopped before dedup shows its responses)."""
    from herd.run import feeders, stage_folder

    found = feeders(cfg, "train")
    while len(found) == 1:
        path = stage_folder(cfg, found[0]) / "data.jsonl"
        if path.exists():
            return path
        found = feeders(cfg, found[0].name)
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def dataset(cfg: Config, root: Path) -> Section:
    """Pairs per source and their mean lengths, counted as herd stats counts them (its figures show the same rows),
    read from stats.json where the stats stage described exactly this file, else with stats' word counter."""
    from herd.stats.measures import word_counter

    s = Section("Dataset")
    path = final_dataset(cfg)
    if path is None:
        return s
    counts: Counter[str] = Counter()
    lengths: dict[str, list[tuple[int, int]]] = defaultdict(list)
    count = word_counter("words")
    for row in iter_rows(path):
        source = str(row.get("instruction_source") or "?")
        counts[source] += 1
        lengths[source].append((count([str(row.get("instruction", ""))])[0], count([str(row.get("response", ""))])[0]))
    described = _read_json(root / "stats" / "stats.json")
    same = (Path(str(described.get("input", ""))).resolve() == path.resolve()
            and described.get("rows") == sum(counts.values()))
    unit = str(described.get("tokenizer", "words")) if same else "words"
    rows = []
    for source, n in counts.most_common():
        ls = lengths[source]
        means = [sum(a for a, _ in ls) / n, sum(b for _, b in ls) / n]
        found = described.get("sources", {}).get(source, {}) if same else {}
        if found:
            means = [float(found["instruction_tokens"]["mean"]), float(found["response_tokens"]["mean"])]
        rows.append([source, n, f"{means[0]:.1f}", f"{means[1]:.1f}"])
    s.table(["instruction_source", "pairs", f"avg instruction tokens ({unit})", f"avg response tokens ({unit})"], rows,
            str(path))
    for png in sorted((root / "stats").glob("*.png")):
        s.image(png, png.stem.replace("_", " "))
    return s


def samples(cfg: Config, root: Path) -> Section:
    s = Section("Sample rows per source")
    path = final_dataset(cfg)
    if path is None:
        return s
    picked: dict[str, list[list[str]]] = defaultdict(list)
    for row in iter_rows(path):
        source = str(row.get("instruction_source") or "?")
        if len(picked[source]) < SAMPLES_PER_SOURCE:
            picked[source].append([source, str(row.get("instruction", "")), str(row.get("response", ""))])
    rows = [r for group in picked.values() for r in group]
    if rows:
        s.table(["source", "instruction", "response"], rows, str(path))
    return s


def rejects(manifests: dict[str, dict[str, Any]]) -> Section:
    s = Section("Rejects by reason")
    rows = []
    for folder, m in manifests.items():
        for reason, n in sorted(m.get("counts", {}).get("rejects_by_reason", {}).items(), key=lambda kv: -kv[1]):
            rows.append([folder, reason, n])
    if rows:
        s.table(["stage", "reason", "rows"], rows, "*/manifest.json counts.rejects_by_reason")
    return s


def figures(root: Path, folder: str, title: str) -> Section:
    s = Section(title)
    for md in sorted((root / folder).glob("**/*.md")):
        if md.name.lower() != "readme.md":
            s.blocks.append(("pre", (md.read_text(encoding="utf-8"), str(md.relative_to(root)))))
    for png in sorted((root / folder).glob("**/*.png")):
        if "checkpoint-" not in str(png):
            s.image(png, str(png.relative_to(root)))
    return s


def training(root: Path) -> Section:
    """The students this run trained (train/manifest.json), then their curves and any tables."""
    s = figures(root, "train", "Training")
    manifest = root / "train" / "manifest.json"
    if manifest.exists():
        students = json.loads(manifest.read_text(encoding="utf-8")).get("students", [])
        rows = [[st.get("name"), st.get("family"), st.get("base_model"), st.get("steps"), st.get("train_loss"),
                 st.get("tokens_per_s"), st.get("runtime_s")] for st in students]
        if rows:
            s.blocks.insert(0, ("table", (["student", "family", "base", "steps", "final loss", "tokens/s",
                                           "seconds"], rows, str(manifest))))
        from herd.findings import heldout_rows

        header, held, note = heldout_rows(root)
        if held:
            s.blocks.insert(1, ("p", "Loss per response token on held-out teacher responses (train/heldout.jsonl: "
                                     "pairs no student trained on), before and after training; perplexity = "
                                     "exp(loss). " + note))
            s.blocks.insert(2, ("table", (header, held, f"{manifest} students[].heldout, data.heldout")))
    return s


def ratings(root: Path) -> Section:
    from herd.findings import grade_table

    s = Section("A–D ratings")
    judge = root / "judge" / "data.jsonl"
    if judge.exists():
        header, rows = grade_table(root)
        method = _read_json(root / "judge" / "manifest.json").get("method", "text")
        s.para(f"Counts of answers per grade (judge method: {method}); answers the judge did not grade are counted, "
               "not left out. Probability grading reads P(A..D) at the grade position, renormalised over the four; "
               "the grade is the most likely letter (judge/data.jsonl has each answer's P(A..D)). A model appears "
               "among the LaMini paper's models (shares) only with at least 30 grades.")
        s.table(header, rows, f"{judge} (+ rejects.jsonl)")
    for png in sorted((root / "judge").glob("**/*.png")):
        s.image(png, str(png.relative_to(root)))
    return s


def side_by_side(root: Path) -> Section:
    s = Section("Teacher and student answers side by side")
    path = root / "answers" / "data.jsonl"
    if not path.exists():
        return s
    from herd.rate.judge import is_empty

    grades = {str(r.get("id")): r.get("rating") for r in iter_rows(root / "judge" / "data.jsonl")} \
        if (root / "judge" / "data.jsonl").exists() else {}
    by_instruction: dict[str, dict[str, str]] = defaultdict(dict)
    texts: dict[str, str] = {}
    for row in iter_rows(path):
        key = str(row.get("instruction_id"))
        texts[key] = str(row.get("instruction", ""))
        answer = str(row.get("answer", ""))
        shown = ("(empty answer)" if not answer.strip() else f"(empty answer: {answer!r})") if is_empty(answer) \
            else answer
        grade = grades.get(str(row.get("id")), "") if grades else ""
        by_instruction[key][str(row.get("model"))] = f"[{grade or 'not graded'}] {shown}" if grades else shown
    models = sorted({m for answers in by_instruction.values() for m in answers})
    shown_keys = list(by_instruction)[:SIDE_BY_SIDE]
    s.para(f"The first {len(shown_keys)} of {len(by_instruction)} evaluation instructions"
           + (" (all of them)" if len(shown_keys) == len(by_instruction) else f"; all {len(by_instruction)} are in "
              "answers/data.jsonl") + (". Each answer starts with the judge's grade in brackets." if grades else "."))
    rows = [[texts[k], *(by_instruction[k].get(m, "(no answer)") for m in models)] for k in shown_keys]
    s.table(["instruction", *models], rows, str(path))
    return s


def usage(cfg: Config) -> Section:
    s = Section("Teacher usage and cost")
    path = journal_path(cfg)
    if not path.exists():
        return s
    from herd.teacher.journal import Journal

    journal = Journal(path)
    rows = [[u["stage"], u["model"], u["status"], u["calls"], u["prompt_tokens"], u["completion_tokens"],
             f"{u['cost']:.4f}"] for u in journal.usage()]
    journal.close()
    s.table(["stage", "model", "status", "calls", "prompt tokens", "completion tokens", "cost $"], rows, str(path))
    return s


def provenance(root: Path, manifests: dict[str, dict[str, Any]]) -> Section:
    s = Section("Provenance")
    rows = []
    for folder, m in manifests.items():
        config_hash = hashlib.sha256(json.dumps(m.get("config", {}), sort_keys=True).encode()).hexdigest()[:12]
        versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
        prompts = ", ".join(f"{k} {v[:12]}" for k, v in m.get("prompts", {}).items())
        rows.append([f"{folder}/manifest.json", config_hash, versions, prompts])
    if rows:
        s.table(["manifest", "config sha256", "versions", "prompt sha256"], rows)
    return s


# ------------------------------------------------------------------------------------------------ rendering
def css() -> str:
    return resources.files("herd.assets").joinpath("report.css").read_text(encoding="utf-8")



def to_html(title: str, sections: list[Section], root: Path) -> str:
    esc = html.escape
    nav = " ".join(f'<a href="#s{i}">{esc(s.title)}</a>' for i, s in enumerate(sections))
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{css()}</style></head>"
             f"<body><h1>{esc(title)}</h1><nav>{nav}</nav>"]
    for i, s in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{esc(s.title)}</h2>")
        for kind, payload in s.blocks:
            if kind == "p":
                parts.append(f"<p>{esc(payload)}</p>")
            elif kind == "pre":
                text, src = payload
                parts.append(f"<pre>{esc(text)}</pre><div class='src'>from {esc(src)}</div>")
            elif kind == "img":
                path, caption = payload
                data = base64.b64encode(path.read_bytes()).decode()
                parts.append(f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>"
                             f"<figcaption>{esc(caption)}</figcaption></figure>")
            else:
                header, rows, src = payload
                head = "".join(f"<th>{esc(str(h))}</th>" for h in header)
                body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
                if src:
                    parts.append(f"<div class='src'>from {esc(src)}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def to_markdown(title: str, sections: list[Section], root: Path) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", "<br>")

    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for kind, payload in s.blocks:
            if kind == "p":
                out += [payload, ""]
            elif kind == "pre":
                out += [payload[0], f"_from {payload[1]}_", ""]
            elif kind == "img":
                path, caption = payload
                out += [f"![{caption}]({path.relative_to(root)})", ""]
            else:
                header, rows, src = payload
                out.append("| " + " | ".join(cell(h) for h in header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
                out += [f"_from {src}_" if src else "", ""]
    return "\n".join(out)
