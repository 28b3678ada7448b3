"""The two figures of `herd bench`: per-task bars against the paper, and the paper's average-score-by-size plot.

per_task.png: one group of bars per task, one bar per herd model and per paper row of the same base model.
size_vs_score.png: the paper's view of its herd (average score against parameters, encoder-decoder against
decoder-only; LaMini models filled, their bases hollow, LLaMA/Alpaca grey) with herd's models added as stars.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from herd.bench.report import Scored, comparison_rows
from herd.bench.tasks import PAPER_TASKS, TaskSpec
from herd.students import family_spec

ARCH_COLOURS = {"encoder-decoder": "#1f77b4", "decoder-only": "#d62728"}
HERD_COLOURS = ("#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f")


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def per_task(path: Path, scored: list[Scored], tasks: list[TaskSpec], paper: list[dict[str, Any]]) -> Path:
    plt = pyplot()
    rows = comparison_rows(scored, tasks, paper)
    per_row = 8  # tasks per panel: 15 tasks become two readable panels instead of one very wide one
    panels = [tasks[i:i + per_row] for i in range(0, len(tasks), per_row)]
    width = min(14.0, max(6.0, min(len(tasks), per_row) * (0.5 + 0.25 * len(rows)) + 1.0))
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, 1.2 + 3.2 * len(panels)), dpi=110, squeeze=False)
    colours = bar_colours(rows)
    for ax, chunk in zip(axes[:, 0], panels, strict=True):
        draw_bars(ax, rows, chunk, colours)
    height = fig.get_figheight()
    legend_rows = -(-len(rows) // 4)
    fig.suptitle("Zero-shot scores per task: herd against the LaMini paper (same base model)", fontsize=10,
                 y=1 - 0.08 / height, va="top")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(4, len(rows)), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.35 / height))
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.45 + 0.25 * legend_rows) / height))
    fig.savefig(path)
    plt.close(fig)
    return path


def bar_colours(rows: list[dict[str, Any]]) -> list[str]:
    """Greys for the paper's rows, colours for herd's."""
    greys, ours = iter(["#bdbdbd", "#7f7f7f", "#d9d9d9", "#525252"] * len(rows)), iter(HERD_COLOURS * len(rows))
    return [next(ours) if row["source"].startswith("herd") else next(greys) for row in rows]


def draw_bars(ax: Any, rows: list[dict[str, Any]], tasks: list[TaskSpec], colours: list[str]) -> None:
    n = len(rows)
    width = 0.8 / n
    for i, row in enumerate(rows):
        shown = [(j, row["scores"][t.name]) for j, t in enumerate(tasks) if t.name in row["scores"]]
        ours = row["source"].startswith("herd")
        ax.bar([j + (i - (n - 1) / 2) * width for j, _ in shown], [v for _, v in shown], width=width * 0.95,
               color=colours[i], label=f"{row['model']}: {row['source']}", edgecolor="black" if ours else "none",
               linewidth=0.5)
        for j, t in enumerate(tasks):
            if t.name in row["failed"]:  # no bar would read as 0 %: say that there is no score
                ax.text(j + (i - (n - 1) / 2) * width, 1, "failed", rotation=90, ha="center", va="bottom",
                        fontsize=8, color="#d62728", fontweight="bold")
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([f"{t.name}\n{t.metric}" for t in tasks], fontsize=8)
    ax.set_xlim(-0.6, len(tasks) - 0.4)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)


def size_vs_score(path: Path, scored: list[Scored], tasks: list[TaskSpec], paper: list[dict[str, Any]]) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.4), dpi=110)
    paper_points(ax, paper)
    for s in scored:
        if s.average is None or s.params <= 0:
            continue
        names = set(s.scores)  # a failed task is not in the point's average, and the label says so
        note = "" if names == set(PAPER_TASKS) else partial_note(names)
        if s.failed:
            note = (note[:-1] + "; " if note else " (") + f"failed: {', '.join(sorted(s.failed))})"
        arch = family_spec(s.model.family).label
        x = s.params / 1e6
        ax.scatter([x], [s.average], marker="*", s=220, color=ARCH_COLOURS[arch], edgecolors="black",
                   linewidths=0.8, zorder=4)
        ax.annotate(s.model.label + note, (x, s.average), fontsize=8, fontweight="bold", xytext=(7, 5),
                    textcoords="offset points")
    ax.scatter([], [], marker="*", s=120, color="white", edgecolors="black", label="herd (colour = architecture)")
    ax.set_xscale("log")
    left, right = ax.get_xlim()
    ax.set_xlim(left, right * 4)  # room for the labels of the 7B models
    ax.set_xlabel("parameters (millions, log scale)")
    ax.set_ylabel("average score (%)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title("Average score by model size: encoder-decoder vs decoder-only", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def partial_note(names: set[str]) -> str:
    """How a herd point's average differs from the paper's 15-task average."""
    shared = len(names & set(PAPER_TASKS))
    if names <= set(PAPER_TASKS):
        return f" ({shared} of the paper's 15 tasks)"
    return f" ({len(names)} task{'s' * (len(names) > 1)}, not the paper's)"


def paper_points(ax: Any, paper: list[dict[str, Any]]) -> None:
    """The paper's models: LaMini filled and joined per family, their bases hollow, LLaMA/Alpaca grey."""
    for arch, colour in ARCH_COLOURS.items():
        lamini = [r for r in paper if r["kind"] == "lamini" and r["architecture"] == arch]
        bases = [r for r in paper if r["kind"] == "base" and r["architecture"] == arch]
        ax.scatter([r["params_m"] for r in lamini], [r["average"] for r in lamini], color=colour, s=36,
                   label=f"LaMini, {arch} (paper)", zorder=3)
        ax.scatter([r["params_m"] for r in bases], [r["average"] for r in bases], facecolors="none",
                   edgecolors=colour, s=36, label=f"base model, {arch} (paper)", zorder=3)
        for family, rows in families(lamini).items():
            rows.sort(key=lambda r: r["params_m"])
            ax.plot([r["params_m"] for r in rows], [r["average"] for r in rows], color=colour, alpha=0.5, lw=1)
            alone = len(rows) == 1  # GPT-J, LLaMA: one point each, labelled on the left to stay apart
            ax.annotate(family, (rows[-1]["params_m"], rows[-1]["average"]), fontsize=7, color=colour,
                        xytext=(-6, 2) if alone else (5, -3), ha="right" if alone else "left",
                        textcoords="offset points")
    others = [r for r in paper if r["kind"] == "baseline"]
    ax.scatter([r["params_m"] for r in others], [r["average"] for r in others], color="grey", marker="D", s=30,
               label="LLaMA-7B / Alpaca-7B (paper)", zorder=3)
    for r in others:
        ax.annotate(r["model"], (r["params_m"], r["average"]), fontsize=7, color="grey", xytext=(5, -3),
                    textcoords="offset points")


def families(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """LaMini rows by family: 'LaMini-Flan-T5-77M' -> 'Flan-T5'."""
    found: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        found.setdefault(str(r["model"]).rsplit("-", 1)[0].removeprefix("LaMini-"), []).append(r)
    return found
