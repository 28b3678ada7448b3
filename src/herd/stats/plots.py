"""The PNG figures of `herd stats`: composition, token lengths per source, leading verbs, and the instruction map.

Every figure has a title, labelled axes and a legend where colours mean something; a source keeps its colour in
every figure. matplotlib is imported inside each function (herd --help never loads it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DPI = 120


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colours(order: Sequence[str]) -> dict[str, Any]:
    """One colour per source, stable over figures (tab10, then tab20 beyond ten sources)."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    return {source: cmap(i % cmap.N) for i, source in enumerate(order)}


def composition(path: Path, order: Sequence[str], counts: dict[str, int], paper: dict[str, float]) -> None:
    """Share of rows per source, with the paper's Table 1 share beside each source the paper had."""
    plt = _pyplot()
    total = sum(counts.values())
    shares = [100.0 * counts[s] / total for s in order]
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.55 * len(order)), dpi=DPI, layout="constrained")
    y = np.arange(len(order))
    col = colours(order)
    ax.barh(y, shares, color=[col[s] for s in order], height=0.6)
    span = max(shares + [paper[s] for s in order if s in paper])
    for i, s in enumerate(order):  # right of the bar and of the paper's marker, so neither covers the label
        at = max(shares[i], paper.get(s, 0.0) + 0.015 * span if s in paper else 0.0)
        ax.text(at + 0.01 * span, i, f"{counts[s]:,} ({shares[i]:.1f}%)", va="center", fontsize=9)
    marked = [(i, paper[s]) for i, s in enumerate(order) if s in paper]
    if marked:
        ax.scatter([m[1] for m in marked], [m[0] for m in marked], marker="D", color="black", s=28, zorder=3,
                   label="share in the LaMini paper (Table 1)")
        fig.legend(loc="outside lower center", fontsize=9, frameon=False)  # below the axes: never over a bar's label
    ax.set_yticks(y, order)
    ax.invert_yaxis()
    ax.set_xlabel("share of rows (%)")
    ax.set_xlim(0, span * 1.3 + 1)
    ax.set_title(f"Composition by instruction_source ({total:,} rows)")
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path)
    plt.close(fig)


def lengths(path: Path, order: Sequence[str], instr: dict[str, list[int]], resp: dict[str, list[int]],
            unit: str, paper: dict[str, tuple[float, float]]) -> None:
    """A row of panels per source: instruction lengths on the left, response lengths on the right.

    Bins are whole numbers wide and a column shares its x axis, so sources compare at a glance; the last bin holds
    everything from the 99th percentile up, so one very long row does not squash the rest.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D

    kinds = [("instruction", instr)] + ([("response", resp)] if any(resp.get(s) for s in order) else [])
    fig, axes = plt.subplots(len(order), len(kinds), figsize=(6.2 * len(kinds), 1.75 * len(order) + 1.3), dpi=DPI,
                             squeeze=False, sharex="col")
    col = colours(order)
    for c, (name, table) in enumerate(kinds):
        cap = max(int(np.percentile([v for s in order for v in table.get(s, [])], 99)), 10)
        width = max(1, -(-cap // 40))
        edges = np.arange(0, cap + width + 1, width) - 0.5
        for r, source in enumerate(order):
            ax, values = axes[r, c], table.get(source, [])
            if values:
                ax.hist(np.minimum(values, cap), bins=edges, color=col[source], alpha=0.85)
                ax.axvline(float(np.mean(values)), color="black", linestyle="--", linewidth=1.2)
            theirs = paper[source][c] if source in paper else None
            if theirs is not None:
                ax.axvline(theirs, color="crimson", linestyle=":", linewidth=1.6)
            mean = f"mean {np.mean(values):.1f}" if values else "no rows"
            note = f", paper {theirs:.1f}" if theirs is not None else ""
            ax.set_title(f"{source}: {name}s ({mean}{note})", fontsize=9)
            ax.set_ylabel("rows", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
        axes[-1, c].set_xlabel(f"{name} length ({unit}; the last bar: {cap} or more)")
    handles = [Line2D([], [], color="black", linestyle="--", label="mean of this dataset")]
    if any(s in paper for s in order):
        handles.append(Line2D([], [], color="crimson", linestyle=":", label="LaMini paper mean (Table 1, its tokens)"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0 - 0.45 / fig.get_figheight()), ncol=2,
               fontsize=9, frameon=False)
    fig.suptitle("Instruction and response lengths per source", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.7 / fig.get_figheight()))
    fig.savefig(path)
    plt.close(fig)


def verbs(path: Path, top: Sequence[tuple[str, int]], instructions: int) -> None:
    """The most frequent leading verbs, as a share of all instructions."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * max(len(top), 1)), dpi=DPI)
    names = [v for v, _ in top]
    shares = [100.0 * c / max(instructions, 1) for _, c in top]
    ax.barh(np.arange(len(top)), shares, color="tab:green", height=0.7)
    for i, (_, count) in enumerate(top):
        ax.text(shares[i], i, f" {count:,}", va="center", fontsize=8)
    ax.set_yticks(np.arange(len(top)), names)
    ax.invert_yaxis()
    ax.set_xlabel("share of all instructions (%)")
    ax.set_xlim(0, max(shares, default=1) * 1.15 + 0.1)
    ax.set_title(f"Top {len(top)} leading verbs (first word of the instruction)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def embedding_map(path: Path, coords: np.ndarray, labels: Sequence[str], order: Sequence[str], title: str,
                  axis: str) -> None:
    """Instructions in 2-D, one colour per source."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 7.5), dpi=DPI)
    col = colours(order)
    labels_arr = np.asarray(labels)
    size = float(np.clip(6000 / max(len(labels), 1), 5, 30))  # bigger points when there are few
    for source in order:
        mask = labels_arr == source
        if mask.any():
            ax.scatter(coords[mask, 0], coords[mask, 1], s=size, alpha=0.6, color=col[source],
                       label=f"{source} ({int(mask.sum()):,})", linewidths=0)
    ax.set_title(title)
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=min(3, len(order)), fontsize=9,
              markerscale=2.5, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
