"""The A–D stacked bars: the shipped paper counts, the paper's sort order, what the drawn bars hold, the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from herd.rate.figures import count_ratings, draw, paper_counts, plot_bars, read_counts, sort_models

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def reference(shared_data):
    with (shared_data / "lamini_paper_human_eval.csv").open(encoding="utf-8", newline="") as fh:
        return [(row["model"], {k: int(row[k]) for k in "ABCD"}) for row in csv.DictReader(fh)]


def test_shipped_paper_counts_match_the_reference(shared_data):
    ref = reference(shared_data)
    assert paper_counts() == dict(ref)
    assert all(sum(c.values()) == 114 for _, c in ref)  # every model rated on the 114 instructions
    assert read_counts(shared_data / "lamini_paper_human_eval.csv") == dict(ref)


def test_sort_follows_the_papers_figure(shared_data):
    # The reference file lists models in the figure's order: most A first, ties broken by B, then C.
    ref = reference(shared_data)
    assert sort_models(dict(ref)) == [m for m, _ in ref]


def test_sort_uses_shares_then_next_grade():
    counts = {
        "tie-more-b": {"A": 2, "B": 2, "C": 0, "D": 0},
        "tie-less-b": {"A": 2, "B": 1, "C": 1, "D": 0},
        "half-rated": {"A": 2, "B": 0, "C": 0, "D": 0},  # 2 of 2 is a bigger share than 2 of 4
        "worst": {"A": 0, "B": 0, "C": 0, "D": 4},
    }
    assert sort_models(counts) == ["half-rated", "tie-more-b", "tie-less-b", "worst"]


def test_count_ratings_skips_unparsed_rows():
    rows = [{"model": "m", "rating": "A"}, {"model": "m", "rating": "A"}, {"model": "m", "rating": None},
            {"model": "n", "rating": "D"}]
    assert count_ratings(rows) == {"m": {"A": 2, "B": 0, "C": 0, "D": 0}, "n": {"A": 0, "B": 0, "C": 0, "D": 1}}


def top_label(ax):
    """The model name on the top row of a panel."""
    return max(ax.get_yticklabels(), key=lambda t: t.get_position()[1]).get_text()


def test_bars_hold_the_counts_in_sorted_order():
    people = {"weak": {"A": 1, "B": 1, "C": 3, "D": 5}, "strong": {"A": 7, "B": 2, "C": 1, "D": 0}}
    judge = {"weak": {"A": 0, "B": 2, "C": 4, "D": 4}, "strong": {"A": 8, "B": 1, "C": 1, "D": 0}}
    fig = draw([("People", people), ("Judge", judge), ("Paper", paper_counts())])
    axes = fig.get_axes()
    assert [ax.get_title(loc="left") for ax in axes] == ["People", "Judge", "Paper"]
    # Bars are added A, B, C, D in turn, each for every model in sorted order (strong on top).
    widths = [p.get_width() for p in axes[0].patches]
    assert widths == [7, 1, 2, 1, 1, 3, 0, 5]
    assert top_label(axes[0]) == "strong"
    # The judge panel shares the people panel's order (rows line up) and leaves the names to it.
    assert [p.get_width() for p in axes[1].patches] == [8, 0, 1, 2, 1, 4, 0, 4]
    assert {t.get_text() for t in axes[1].get_yticklabels()} == {""}
    # The paper panel has other models, so its own order and names.
    assert top_label(axes[2]) == "gpt-3.5-turbo"


def test_plot_writes_a_png(tmp_path):
    out = tmp_path / "bars.png"
    plot_bars([("People", {"m": {"A": 1, "B": 2, "C": 3, "D": 4}})], out)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(out).shape
    assert width > height > 100


def test_empty_panel_says_so():
    fig = draw([("People", {})])
    assert "no ratings yet" in [t.get_text() for t in fig.get_axes()[0].texts]


def test_chart_command_people_judge_and_paper(tmp_path):
    ratings = tmp_path / "ratings.jsonl"
    judge = tmp_path / "judge.jsonl"
    ratings.write_text("".join(json.dumps({"id": f"q{i}::m{j}", "model": f"m{j}", "rating": "ABCD"[(i + j) % 4]})
                               + "\n" for i in range(8) for j in range(2)))
    judge.write_text("".join(json.dumps({"id": f"q{i}::m{j}", "model": f"m{j}", "rating": "ABCD"[i % 4] if i else None,
                                         "parsed": bool(i)}) + "\n" for i in range(8) for j in range(2)))
    out = tmp_path / "figs" / "compare.png"
    cmd = [sys.executable, "-m", "herd", "rate-app", "chart", str(out), "--ratings", str(ratings), "--judge",
           str(judge), "--paper", "--set", f"run.dir={str(tmp_path)!r}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"rate-app: People, LLM judge, LaMini paper (people) -> {out}"
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_chart_command_with_nothing_to_draw_is_a_user_error(tmp_path):
    cmd = [sys.executable, "-m", "herd", "rate-app", "chart", str(tmp_path / "x.png"), "--set",
           f"run.dir={str(tmp_path)!r}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["herd: error: nothing to draw: no study here; pass --ratings, --judge "
                                                 "or --paper"]
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("bad", ["model,A,B,C,D\nm,1,2,x,4\n", "model,A,B\nm,1,2\n"])
def test_bad_counts_csv_names_the_line(tmp_path, bad):
    path = tmp_path / "counts.csv"
    path.write_text(bad)
    from herd.errors import UserError

    with pytest.raises(UserError, match=r"counts.csv:2: expected columns model,A,B,C,D"):
        read_counts(path)


def test_a_runs_models_among_the_papers_in_one_panel_of_shares():
    from herd.rate.figures import MARK, draw_among_paper

    people = {"tiny-a": {"A": 3, "B": 1, "C": 0, "D": 0}, "tiny-b": {"A": 0, "B": 0, "C": 1, "D": 3}}
    judge = {"tiny-a": {"A": 1, "B": 1, "C": 1, "D": 1}}
    fig = draw_among_paper([("people", people), ("judge", judge)])
    (ax,) = fig.get_axes()
    ticks = sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])  # top row first
    labels = [t.get_text() for t in ticks]
    few = ", too few for a share"  # 4 ratings: the label says a share of them is rough
    ours = [f"{MARK}tiny-a (people, n=4{few})", f"{MARK}tiny-b (people, n=4{few})", f"{MARK}tiny-a (judge, n=4{few})"]
    assert len(labels) == len(paper_counts()) + 3 and set(ours) <= set(labels)
    # Sorted by share with the paper's models: 75% A sits between gpt-3.5-turbo (80%) and LaMini-LLaMA-7B (48%);
    # no A or B but 25% C sits between T5-large (some B) and GPT-2-xl (17% C).
    assert labels.index("gpt-3.5-turbo") < labels.index(ours[0]) < labels.index("LaMini-LLaMA-7B")
    assert labels.index("T5-large (738M, base)") < labels.index(ours[1]) < labels.index("GPT-2-xl (1.5B, base)")
    # The first bars drawn are the A segments, one per row from the top, in percent.
    a_share = dict(zip(labels, (p.get_width() for p in ax.patches[:len(labels)]), strict=True))
    assert a_share[ours[0]] == 75.0 and a_share["gpt-3.5-turbo"] == pytest.approx(100 * 91 / 114)
    assert {t.get_text() for t in ticks if t.get_fontweight() == "bold"} == set(ours)
