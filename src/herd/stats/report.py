"""stats.md and the figures, made from the numbers that `herd stats` computed."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from herd.config import StatsConfig
from herd.stats import plots
from herd.stats.measures import PAPER_MATTR, PAPER_TABLE1


def draw(folder: Path, table: Any, numbers: dict[str, Any], sc: StatsConfig, seed: int) -> list[str]:
    """Write the PNGs into `folder`; returns their file names. Records how the map was made in numbers['map']."""
    order = table.order()
    paper_share = {s: 100.0 * v["paper"]["share"] for s, v in numbers["sources"].items() if "paper" in v}
    made = ["composition.png", "lengths.png"]
    plots.composition(folder / made[0], order, {s: table.sources[s].rows for s in order}, paper_share)
    unit = "words" if sc.tokenizer == "words" else "tokens"
    plots.lengths(folder / made[1], order, {s: table.sources[s].instr_len for s in order},
                  {s: table.sources[s].resp_len for s in order}, unit,
                  {s: (p[1], p[2]) for s, p in PAPER_TABLE1.items()})
    if numbers["leading_verbs"]:
        plots.verbs(folder / "verbs.png", numbers["leading_verbs"], numbers["rows"])
        made.append("verbs.png")
    numbers["map"] = None
    texts, labels = _map_sample(table, sc.map_points, seed)
    if len(texts) >= 2:
        from herd.stats.embed import embed, project

        vectors, name = embed(texts, sc.embedder, seed)
        coords = project(vectors, sc.projection, seed)
        method = "t-SNE" if sc.projection == "tsne" and len(texts) >= 5 else "PCA"
        plots.embedding_map(folder / "map.png", coords, labels, order,
                            f"Instructions by source: {method} of {name} embeddings ({len(texts):,} sampled)", method)
        numbers["map"] = {"embedder": name, "projection": method, "points": len(texts)}
        made.append("map.png")
    return made


def _map_sample(table: Any, points: int, seed: int) -> tuple[list[str], list[str]]:
    """Up to `points` instructions, the same number from each source where it has enough."""
    if points <= 0:
        return [], []
    order = table.order()
    quota = math.ceil(points / len(order))
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[str] = []
    for source in order:
        sample = list(table.sources[source].sample)
        rng.shuffle(sample)
        texts.extend(sample[:quota])
        labels.extend([source] * len(sample[:quota]))
    return texts[:points], labels[:points]


def _fmt(x: Any, digits: int = 1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}" if isinstance(x, float) else f"{x:,}"


def markdown(n: dict[str, Any]) -> str:
    unit = "words" if n["tokenizer"] == "words" else f"tokens ({n['tokenizer']})"
    lines = [
        "# Dataset statistics", "",
        f"Input: `{n['input']}`, {n['rows']:,} rows. Lengths in {unit}; MATTR over lower-case words, window "
        f"{n['mattr_window']}, x100.", "",
        "## Composition and lengths, beside LaMini's Table 1", "",
        "| instruction_source | rows | share | avg instruction | avg response | MATTR instr. | MATTR resp. "
        "| paper pairs | paper share | paper avg instr. | paper avg resp. |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for source, v in n["sources"].items():
        p = v.get("paper")
        paper = (f"{p['pairs']:,} | {100 * p['share']:.1f}% | {p['avg_instruction_tokens']} | "
                 f"{p['avg_response_tokens']}") if p else "– | – | – | –"
        lines.append(f"| {source} | {v['rows']:,} | {100 * v['share']:.1f}% | "
                     f"{_fmt(v['instruction_tokens'].get('mean'))} | {_fmt(v['response_tokens'].get('mean'))} | "
                     f"{_fmt(v['mattr_instruction'])} | {_fmt(v['mattr_response'])} | {paper} |")
    a = n["all"]
    lines += [
        f"| **all** | {a['rows']:,} | 100% | {_fmt(a['instruction_tokens'].get('mean'))} | "
        f"{_fmt(a['response_tokens'].get('mean'))} | {_fmt(a['mattr_instruction'])} | {_fmt(a['mattr_response'])} "
        f"| 2,580,000 | 100% | – | – |", "",
        f"The paper's MATTR: {PAPER_MATTR['instruction']} for all instructions, {PAPER_MATTR['response']} for all "
        "responses. The paper's token counts come from an unnamed tokenizer; subword tokenizers count more tokens "
        "than words, so compare shapes rather than exact values (set `stats.tokenizer` to a Hugging Face tokenizer "
        "to count subwords).", "",
        "## Leading verbs", "",
        f"{100 * a['leading_verb_share']:.1f}% of instructions start with a verb-like word (the first word, unless it "
        "is a question word, pronoun, article or the like). Most frequent:", "",
        "| verb | instructions | share |", "|---|---:|---:|",
    ]
    lines += [f"| {verb} | {count:,} | {100 * count / n['rows']:.1f}% |" for verb, count in n["leading_verbs"]]
    lines += ["", "## Figures", ""]
    titles = {"composition.png": "Composition", "lengths.png": "Lengths", "verbs.png": "Leading verbs",
              "map.png": "Instruction map"}
    for png in n["plots"]:
        lines += [f"![{titles[png]}]({png})", ""]
    if n.get("map"):
        m = n["map"]
        lines += [f"Map: {m['projection']} of {m['embedder']} embeddings of {m['points']:,} instructions sampled "
                  "evenly over sources (the paper: t-SNE of all-mpnet-base-v2 embeddings, 50K per source).", ""]
    return "\n".join(lines) + "\n"
