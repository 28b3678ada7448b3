"""The paper's results figure: one stacked horizontal bar per model, A/B/C/D counts, best models on top.

Reads rating rows (`{"model", "rating"}`: human ratings exported by the rating app, or judge rows, whose rating may be
null when unparsed and is then left out) or a counts CSV (`model,A,B,C,D`); writes PNG files. `paper_counts()` gives
the LaMini paper's own human-evaluation counts (114 instructions per model, read from its figure), shipped in
herd/assets/lamini_human_eval.csv, to draw beside a herd study.

`plot_bars(panels, out)` draws one or more panels side by side ("people", "judge", ...), in counts; `missing` adds a
grey segment per model for the answers that got no grade, so a model graded 2 times of 12 does not look whole.
Models are sorted by their share of A, then B, then C, as in the paper; panels over the same models share the first
panel's order so rows line up. `plot_among_paper(sources, out)` draws a run's models among the paper's 22 in ONE
panel of shares (%): a run has a handful of models and rates a few answers each, the paper 114 per model, so side-
by-side counts would leave the run's panel nearly empty and would not compare; the run's rows are marked and carry
their number of ratings, and a row from fewer than FEW ratings says so in its label (a share of a handful is not a
measurement).
matplotlib is imported inside the drawing functions (the figure API, not pyplot: no global state, so the rating app
can draw from several threads).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from herd.errors import UserError
from herd.rate import RATINGS

Counts = dict[str, dict[str, int]]
Values = Mapping[str, Mapping[str, float]]  # counts, or shares in percent
COLOURS = {"A": "#1a9850", "B": "#a6d96a", "C": "#fdae61", "D": "#d73027"}
INK = {"A": "white", "B": "#1b1b1b", "C": "#1b1b1b", "D": "white"}
LEGEND = {"A": "A: valid, satisfying", "B": "B: minor errors", "C": "C: major errors", "D": "D: invalid"}
MISSING_COLOUR, MISSING_LABEL = "#bdbdbd", "not graded"
FEW = 30  # fewer ratings than this: a share drawn from them is labelled as rough
MARK = "\u25b6 "  # a run's own rows among the paper's start with a triangle (and are bold, on a tinted band)
RUN_INK, RUN_BAND = "#1d3f8f", "#e6ecfa"


def count_ratings(rows: Iterable[Mapping[str, Any]]) -> Counts:
    """model -> {A, B, C, D: count}; rows without a rating (an unparsed judge reply) are left out."""
    out: Counts = {}
    for row in rows:
        rating = row.get("rating")
        if rating in RATINGS:
            out.setdefault(str(row["model"]), dict.fromkeys(RATINGS, 0))[rating] += 1
    return out


def read_counts(path: str | Path) -> Counts:
    """A counts CSV with columns model,A,B,C,D."""
    p = Path(path)
    with p.open(encoding="utf-8", newline="") as fh:
        return _parse_counts(fh.read(), str(p))


def paper_counts() -> Counts:
    """The LaMini paper's human-evaluation counts per model (A/B/C/D out of 114 instructions)."""
    text = resources.files("herd").joinpath("assets", "lamini_human_eval.csv").read_text(encoding="utf-8")
    return _parse_counts(text, "herd/assets/lamini_human_eval.csv")


def _parse_counts(text: str, where: str) -> Counts:
    reader = csv.DictReader(io.StringIO(text))
    out: Counts = {}
    for row in reader:
        try:
            out[row["model"]] = {r: int(row[r]) for r in RATINGS}
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{where}:{reader.line_num}: expected columns model,A,B,C,D with whole numbers") from None
    return out


def sort_models(counts: Counts) -> list[str]:
    """Best first: by share of A, then of B, then of C (shares, so models rated different numbers of times compare)."""

    def key(model: str) -> tuple[float, ...]:
        total = sum(counts[model].values()) or 1
        return tuple(-counts[model][r] / total for r in RATINGS[:-1])

    return sorted(counts, key=key)


def plot_bars(panels: Sequence[tuple[str, Counts]], out: str | Path | io.BytesIO, *, share_order: bool = True,
              missing: Mapping[str, Mapping[str, int]] | None = None) -> None:
    """Draw the panels side by side into a PNG file (or buffer); `missing`: panel title -> model -> not graded."""
    fig = draw(panels, share_order=share_order, missing=missing)
    fig.savefig(out, format="png", dpi=130)


def png_bytes(panels: Sequence[tuple[str, Counts]]) -> bytes:
    buffer = io.BytesIO()
    plot_bars(panels, buffer)
    return buffer.getvalue()


def draw(panels: Sequence[tuple[str, Counts]], *, share_order: bool = True,
         missing: Mapping[str, Mapping[str, int]] | None = None) -> Any:
    """The matplotlib Figure (one axis per panel); an empty panel says so instead of drawing nothing."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not panels:
        raise ValueError("nothing to draw: no panels")
    first = sort_models(panels[0][1])
    orders = [first if share_order and set(c) == set(first) else sort_models(c) for _, c in panels]
    rows = max(max(len(o) for o in orders), 1)
    label_width = max((len(m) for o in orders for m in o), default=8)
    width = 1.6 + 0.075 * label_width + 4.2 * len(panels)
    fig = Figure(figsize=(width, 1.4 + 0.34 * rows), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for i, (ax, (title, counts), order) in enumerate(zip(axes, panels, orders, strict=True)):
        # Panels in the same order as their left neighbour leave the model names to it.
        _panel(ax, title, counts, order, names=i == 0 or order != orders[i - 1], missing=(missing or {}).get(title))
        # Every panel keeps the same bar thickness: a panel with fewer models leaves room below its bars.
        ax.set_ylim(len(order) - rows - 0.6, len(order) - 0.4)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig, any(any(m.values()) for m in (missing or {}).values()))
    return fig


def _legend(fig: Any, with_missing: bool = False) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=COLOURS[r], label=LEGEND[r]) for r in RATINGS]
    if with_missing:
        handles.append(Patch(color=MISSING_COLOUR, label=MISSING_LABEL))
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), frameon=False, fontsize=9)


def plot_among_paper(sources: Sequence[tuple[str, Counts]], out: str | Path, paper: Counts | None = None) -> None:
    """This run's models (one row per model and source, e.g. "people", "judge") among the paper's, into a PNG."""
    draw_among_paper(sources, paper).savefig(out, format="png", dpi=130)


def draw_among_paper(sources: Sequence[tuple[str, Counts]], paper: Counts | None = None) -> Any:
    """One panel of shares (%), the paper's models and this run's sorted together; this run's rows marked."""
    from matplotlib.figure import Figure

    merged: Counts = dict(paper_counts() if paper is None else paper)
    ours: list[str] = []
    for source, counts in sources:
        for model, c in counts.items():
            n = sum(c.values())
            label = f"{MARK}{model} ({source}, n={n}{', too few for a share' if n < FEW else ''})"
            merged[label] = c
            ours.append(label)
    order = sort_models(merged)
    shares = {m: {r: 100.0 * merged[m][r] / (sum(merged[m].values()) or 1) for r in RATINGS} for m in order}
    label_width = max((len(m) for m in order), default=8)
    fig = Figure(figsize=(5.8 + 0.075 * label_width, 1.6 + 0.3 * len(order)), layout="constrained")
    ax = fig.subplots()
    _panel(ax, "This run (\u25b6, bold) among the LaMini paper's models (people, 114 answers each)", shares, order,
           names=True, percent=True)
    for y, label in zip(range(len(order) - 1, -1, -1), order, strict=True):
        if label in ours:
            ax.axhspan(y - 0.5, y + 0.5, color=RUN_BAND, zorder=0, linewidth=0)
    for tick in ax.get_yticklabels():
        if tick.get_text() in ours:
            tick.set_fontweight("bold")
            tick.set_color(RUN_INK)
    ax.set_ylim(-0.6, len(order) - 0.4)
    _legend(fig)
    return fig


def _panel(ax: Any, title: str, counts: Values, order: list[str], names: bool, percent: bool = False,
           missing: Mapping[str, int] | None = None) -> None:
    ax.set_title(title, fontsize=11 if not percent else 10, loc="left")
    if not order:
        ax.text(0.5, 0.5, "no ratings yet", ha="center", va="center", transform=ax.transAxes, color="#666")
        ax.set_axis_off()
        return
    y = list(range(len(order)))[::-1]  # the best model on top
    left = [0.0] * len(order)
    # A model whose answers were all unparsed has no bars: keep the axis from collapsing to zero width.
    gaps = [float((missing or {}).get(m, 0)) for m in order]
    biggest = 100.0 if percent else max(max(sum(counts[m].values()) + g for m, g in zip(order, gaps, strict=True)), 1)
    segments = [(r, [float(counts[m][r]) for m in order], COLOURS[r], INK[r]) for r in RATINGS]
    if any(gaps):
        segments.append((MISSING_LABEL, gaps, MISSING_COLOUR, "#1b1b1b"))
    for _, widths, colour, ink in segments:
        bars = ax.barh(y, widths, left=left, color=colour, height=0.72, edgecolor="white", linewidth=0.6)
        # Numbers only where the segment is wide enough to hold them legibly.
        labels = [(f"{w:.0f}" if percent else f"{w:g}") if w >= 0.045 * biggest and w > 0 else "" for w in widths]
        ax.bar_label(bars, labels=labels, label_type="center", fontsize=8 if not percent else 7, color=ink)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(y, order if names else [""] * len(order), fontsize=9)
    ax.set_xlim(0, biggest * 1.02)
    ax.set_xlabel("share of ratings (%)" if percent else "answers (count)", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
