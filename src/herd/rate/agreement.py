"""How far raters agree: Cohen's kappa between two sources, Fleiss' kappa and Krippendorff's alpha among many.

Reads rating rows as the rating app exports them and the judge writes them (`{"id", "rater", "rating", ...}`,
`rating` one of A–D; a row whose rating is missing or null is left out). Nothing is written.

- `cohen_kappa(a, b)`: two parallel lists of labels (people vs. the judge, one rater vs. another); unweighted,
  linear or quadratic weights. `paired(rows_a, rows_b)` lines two row sets up by answer id.
- `fleiss_kappa(counts)`: a table of items x categories; items may have different numbers of ratings (the
  generalisation that averages each item's pairwise agreement; it equals Fleiss' kappa when every item has the same).
- `krippendorff_alpha(units)`: one list of labels per item, any number of raters, missing ratings allowed; nominal,
  ordinal (A > B > C > D is an order) or interval.
- `summary(rows)`: all of the above for one set of human ratings, as the admin page and `herd rate-app status` show.

Each returns None where the statistic is undefined (for example when every rating is the same category, chance
agreement is already perfect). Written here with numpy: the formulas are a few lines each, and the libraries that have
them cover one statistic apiece (scikit-learn: Cohen's; statsmodels, a large dependency: Fleiss').
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from herd.rate import RATINGS

Level = Literal["nominal", "ordinal", "interval"]
Weights = Literal["linear", "quadratic"] | None


def _index(labels: Iterable[Hashable], categories: Sequence[Hashable]) -> list[int]:
    where = {c: i for i, c in enumerate(categories)}
    out = []
    for label in labels:
        if label not in where:
            raise ValueError(f"rating {label!r} is not one of {', '.join(map(str, categories))}")
        out.append(where[label])
    return out


def cohen_kappa(
    a: Sequence[Hashable], b: Sequence[Hashable], *, categories: Sequence[Hashable] = RATINGS, weights: Weights = None
) -> float | None:
    """Cohen's kappa between two raters who labelled the same items in the same order."""
    if len(a) != len(b):
        raise ValueError(f"the two sources rated different numbers of items ({len(a)} vs {len(b)})")
    if not a:
        return None
    k = len(categories)
    observed = np.zeros((k, k))
    for i, j in zip(_index(a, categories), _index(b, categories), strict=True):
        observed[i, j] += 1
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    steps = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / max(k - 1, 1)
    if weights is None:
        cost = (steps > 0).astype(float)
    elif weights == "linear":
        cost = steps
    elif weights == "quadratic":
        cost = steps**2
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    chance = float((cost * expected).sum())
    if chance == 0:
        return None
    return 1.0 - float((cost * observed).sum()) / chance


def count_table(units: Iterable[Sequence[Hashable]], categories: Sequence[Hashable] = RATINGS) -> np.ndarray:
    """Items x categories: how many ratings each item got in each category."""
    rows = []
    for labels in units:
        row = np.zeros(len(categories))
        for i in _index(labels, categories):
            row[i] += 1
        rows.append(row)
    return np.array(rows).reshape(-1, len(categories))


def fleiss_kappa(counts: np.ndarray | Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from an items x categories count table; items with fewer than two ratings are left out."""
    table = np.asarray(counts, dtype=float)
    per_item = table.sum(axis=1)
    table, per_item = table[per_item >= 2], per_item[per_item >= 2]
    if len(table) == 0:
        return None
    agree = ((table * (table - 1)).sum(axis=1) / (per_item * (per_item - 1))).mean()
    shares = table.sum(axis=0) / per_item.sum()
    chance = float((shares**2).sum())
    if chance == 1.0:
        return None
    return float((agree - chance) / (1.0 - chance))


def _distances(level: Level, categories: Sequence[Hashable], totals: np.ndarray) -> np.ndarray:
    """Squared distance between every two categories (Krippendorff's delta squared)."""
    k = len(categories)
    if level == "nominal":
        return 1.0 - np.eye(k)
    if level == "interval":
        numeric = all(isinstance(c, (int, float)) for c in categories)
        values = np.array(categories if numeric else range(k), dtype=float)
        return np.subtract.outer(values, values) ** 2
    if level == "ordinal":
        # The distance between two ranks grows with how many ratings lie between them, not with the rank numbers.
        cum = np.concatenate([[0.0], np.cumsum(totals)])
        out = np.zeros((k, k))
        for c in range(k):
            for d in range(c, k):
                out[c, d] = out[d, c] = (cum[d + 1] - cum[c] - (totals[c] + totals[d]) / 2) ** 2
        return out
    raise ValueError(f"level must be nominal, ordinal or interval, not {level!r}")


def krippendorff_alpha(
    units: Iterable[Sequence[Hashable]], *, categories: Sequence[Hashable] = RATINGS, level: Level = "nominal"
) -> float | None:
    """Krippendorff's alpha: one list of labels per item (its raters' ratings; items rated once are unpairable)."""
    table = count_table(units, categories)
    per_item = table.sum(axis=1)
    table, per_item = table[per_item >= 2], per_item[per_item >= 2]
    if len(table) == 0:
        return None
    # The coincidence matrix: every ordered pair of ratings of one item, weighted 1/(m-1) so each rating counts once.
    coincidences = np.zeros((table.shape[1], table.shape[1]))
    for row, m in zip(table, per_item, strict=True):
        coincidences += (np.outer(row, row) - np.diag(row)) / (m - 1)
    totals = coincidences.sum(axis=1)
    n = totals.sum()
    delta = _distances(level, categories, totals)
    expected = float((np.outer(totals, totals) * delta).sum())
    if expected == 0:
        return None
    return 1.0 - (n - 1) * float((coincidences * delta).sum()) / expected


def percent_agreement(units: Iterable[Sequence[Hashable]], *, categories: Sequence[Hashable] = RATINGS) -> float | None:
    """Share of pairs of ratings of the same item that agree (items rated once are left out)."""
    table = count_table(units, categories)
    per_item = table.sum(axis=1)
    pairs = float((per_item * (per_item - 1)).sum())
    if pairs == 0:
        return None
    return float((table * (table - 1)).sum()) / pairs


def valid_rows(rows: Iterable[Mapping[str, Any]], categories: Sequence[Hashable] = RATINGS) -> list[Mapping[str, Any]]:
    """Rows with a rating among the categories (a judge's unparsed reply has rating null and is left out)."""
    return [r for r in rows if r.get("rating") in categories]


def by_item(rows: Iterable[Mapping[str, Any]], categories: Sequence[Hashable] = RATINGS) -> dict[str, list[Hashable]]:
    """Answer id -> its ratings, in row order."""
    out: dict[str, list[Hashable]] = defaultdict(list)
    for row in valid_rows(rows, categories):
        out[str(row["id"])].append(row["rating"])
    return dict(out)


def paired(
    rows_a: Iterable[Mapping[str, Any]], rows_b: Iterable[Mapping[str, Any]], categories: Sequence[Hashable] = RATINGS
) -> tuple[list[Hashable], list[Hashable]]:
    """Line two sources up by answer id: one pair per rating of A and rating of B of the same answer."""
    b_items = by_item(rows_b, categories)
    left: list[Hashable] = []
    right: list[Hashable] = []
    for row in valid_rows(rows_a, categories):
        for other in b_items.get(str(row["id"]), []):
            left.append(row["rating"])
            right.append(other)
    return left, right


def strength(value: float | None) -> str:
    """Landis and Koch's words for a kappa, so a number on a page reads at a glance."""
    if value is None:
        return "undefined"
    for bound, word in ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if value <= bound:
            return word
    return "almost perfect"


def summary(rows: Iterable[Mapping[str, Any]], categories: Sequence[Hashable] = RATINGS) -> dict[str, Any]:
    """Counts and every many-rater statistic for one set of ratings (None where undefined)."""
    kept = valid_rows(list(rows), categories)
    units = list(by_item(kept, categories).values())
    multi = [u for u in units if len(u) >= 2]
    return {
        "ratings": len(kept),
        "answers": len(units),
        "items_rated_twice": len(multi),
        "raters": len({str(r.get("rater", "")) for r in kept}),
        "percent_agreement": percent_agreement(multi, categories=categories),
        "fleiss_kappa": fleiss_kappa(count_table(multi, categories)),
        "alpha_nominal": krippendorff_alpha(multi, categories=categories, level="nominal"),
        "alpha_ordinal": krippendorff_alpha(multi, categories=categories, level="ordinal"),
    }
