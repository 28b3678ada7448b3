"""Agreement statistics against values worked out by hand and against published worked examples."""

from __future__ import annotations

import random

import pytest

from herd.rate.agreement import (
    cohen_kappa,
    count_table,
    fleiss_kappa,
    krippendorff_alpha,
    paired,
    percent_agreement,
    strength,
    summary,
)

# Three answers, two raters each: agree on A, disagree A/B, agree on B.
SMALL = [["A", "A"], ["A", "B"], ["B", "B"]]


def test_cohen_kappa_by_hand():
    # Observed agreement 3/4; marginals A .5/.5 and .25/.75 -> chance .5*.25 + .5*.75 = .5; kappa = .25/.5.
    assert cohen_kappa(["A", "A", "B", "B"], ["A", "B", "B", "B"]) == pytest.approx(0.5)
    # Perfect disagreement between the extremes: observed cost 2, expected cost 1 -> 1 - 2/1.
    assert cohen_kappa(["A", "D"], ["D", "A"], weights="linear") == pytest.approx(-1.0)
    assert cohen_kappa(list("ABCD"), list("ABCD")) == pytest.approx(1.0)


def test_cohen_weights_count_distance():
    a, b = ["A", "A", "C", "D"], ["B", "A", "C", "D"]  # one near miss (A vs B)
    far = ["D", "A", "C", "D"]  # one far miss (A vs D)
    assert cohen_kappa(a, b, weights="linear") > cohen_kappa(a, far, weights="linear")


def test_cohen_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(3)
    a = [rng.choice("ABCD") for _ in range(80)]
    b = [x if rng.random() < 0.6 else rng.choice("ABCD") for x in a]
    for weights in (None, "linear", "quadratic"):
        assert cohen_kappa(a, b, weights=weights) == pytest.approx(metrics.cohen_kappa_score(a, b, weights=weights))


def test_cohen_undefined_and_bad_input():
    assert cohen_kappa(["A", "A"], ["A", "A"]) is None  # chance agreement is already perfect
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError, match="different numbers"):
        cohen_kappa(["A"], ["A", "B"])
    with pytest.raises(ValueError, match="'E' is not one of"):
        cohen_kappa(["E"], ["A"])


def test_fleiss_kappa_by_hand():
    # Per-item agreement 1, 0, 1 -> mean 2/3; category shares .5/.5 -> chance .5; kappa = (2/3 - .5) / .5 = 1/3.
    assert fleiss_kappa(count_table(SMALL)) == pytest.approx(1 / 3)


def test_fleiss_kappa_worked_example():
    # Fleiss' classic layout: 10 subjects, 14 raters, 5 categories; P-bar = 0.378, P-e = 0.213, kappa = 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-5)


def test_fleiss_ignores_items_rated_once_and_handles_uneven_counts():
    assert fleiss_kappa(count_table([*SMALL, ["C"]])) == pytest.approx(1 / 3)
    assert fleiss_kappa(count_table([["A"]])) is None
    assert fleiss_kappa(count_table([["B", "B"], ["B", "B", "B"]])) is None  # one category only


def test_krippendorff_alpha_by_hand():
    # Coincidences: o_AA = 2, o_AB = o_BA = 1, o_BB = 2; n_A = n_B = 3, n = 6.
    # alpha = 1 - (n - 1) * sum(o * delta) / sum(n_c * n_k * delta) = 1 - 5 * 2 / 18 = 4/9.
    assert krippendorff_alpha(SMALL) == pytest.approx(4 / 9)
    assert krippendorff_alpha([["A", "A"], ["B", "B"], ["C", "C", "C"]]) == pytest.approx(1.0)
    assert krippendorff_alpha([["A", "A"], ["A"]]) is None


def test_krippendorff_alpha_published_example():
    # Krippendorff's reliability-data example: 4 observers, 12 units, values 1-5, missing ratings.
    rows = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[v for v in column if v is not None] for column in zip(*rows, strict=True)]
    values = (1, 2, 3, 4, 5)
    assert krippendorff_alpha(units, categories=values, level="nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, categories=values, level="ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(units, categories=values, level="interval") == pytest.approx(0.849, abs=5e-4)


def test_ordinal_alpha_forgives_near_misses_more_than_nominal():
    near = [["A", "B"], ["B", "A"], ["C", "C"], ["D", "D"], ["A", "A"], ["D", "C"]]
    assert krippendorff_alpha(near, level="ordinal") > krippendorff_alpha(near, level="nominal")


def test_percent_agreement():
    assert percent_agreement(SMALL) == pytest.approx(2 / 3)
    assert percent_agreement([["A", "A", "B"]]) == pytest.approx(1 / 3)  # 1 agreeing pair of 3
    assert percent_agreement([["A"]]) is None


def test_summary_of_rating_rows():
    rows = [
        {"id": "q1::m", "rater": "r1", "rating": "A"}, {"id": "q1::m", "rater": "r2", "rating": "A"},
        {"id": "q2::m", "rater": "r1", "rating": "A"}, {"id": "q2::m", "rater": "r2", "rating": "B"},
        {"id": "q3::m", "rater": "r1", "rating": "B"}, {"id": "q3::m", "rater": "r2", "rating": "B"},
        {"id": "q4::m", "rater": "r1", "rating": "D"},  # rated once: counted, not pairable
        {"id": "q5::m", "rater": "judge", "rating": None},  # an unparsed judge reply: left out
    ]
    stats = summary(rows)
    assert (stats["ratings"], stats["answers"], stats["items_rated_twice"], stats["raters"]) == (7, 4, 3, 2)
    assert stats["alpha_nominal"] == pytest.approx(4 / 9)
    assert stats["fleiss_kappa"] == pytest.approx(1 / 3)
    assert stats["percent_agreement"] == pytest.approx(2 / 3)


def test_paired_lines_sources_up_by_id():
    people = [{"id": "x", "rating": "A"}, {"id": "x", "rating": "B"}, {"id": "y", "rating": "C"},
              {"id": "z", "rating": "D"}]
    judge = [{"id": "x", "rating": "A"}, {"id": "y", "rating": None}, {"id": "z", "rating": "D"}]
    assert paired(people, judge) == (["A", "B", "D"], ["A", "A", "D"])


def test_strength_words():
    assert [strength(v) for v in (None, -0.1, 0.1, 0.3, 0.5, 0.7, 0.9)] == [
        "undefined", "poor", "slight", "fair", "moderate", "substantial", "almost perfect"]
