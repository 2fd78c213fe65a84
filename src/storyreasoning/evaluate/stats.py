"""Statistics a reviewer trusts: confidence intervals, win rates and agreement between raters.

Pure NumPy, deterministic (every random draw comes from ``numpy.random.default_rng(seed)``).

* :func:`bootstrap_mean`: a mean with its percentile-bootstrap confidence interval;
* :func:`win_rate`: the share of comparisons won (a tie counts half) with an interval,
  by percentile bootstrap (the default) or Wilson's score interval (:func:`wilson`);
* :func:`cohen_kappa`: Cohen's kappa between two raters, unweighted or with linear or
  quadratic weights;
* :func:`krippendorff_alpha`: Krippendorff's alpha for any number of raters, missing
  values allowed, at the nominal, ordinal or interval level;
* :func:`spearman`: Spearman's rank correlation, ties given their average rank;
* :func:`cohen_kappa_table`, :func:`krippendorff_alpha_table`, :func:`spearman_table`:
  the same three for two raters, from the table of distinct value pairs and their
  counts, for many count vectors (bootstrap resamples) at once; :func:`pair_table` makes
  the table and :func:`bootstrap_table` resamples it.

Which interval for a win rate: the percentile bootstrap resamples the stories
themselves, so it takes ties and per-story averages (0.25, 0.75 from two orders) as they
are; but it collapses to a point when every outcome is the same (ten wins out of ten give
[1, 1]). Wilson's interval never collapses and keeps its coverage for small samples and
rates near 0 or 1, but it models a coin: ties enter as half a win. Use the bootstrap for
the usual case, ``method="wilson"`` for a few dozen comparisons or a lopsided result.

A statistic that is undefined on its input (kappa or alpha when the raters use one
category only, a correlation of a constant) is ``math.nan``; input that cannot be used
(different lengths, NaN, nothing to compare) raises :class:`~storyreasoning.errors.UsageError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Literal, NamedTuple

import numpy as np

from ..errors import UsageError

#: Bootstrap resamples drawn at once are capped at this many values (memory, not the result).
_CHUNK_VALUES = 1 << 21


class Interval(NamedTuple):
    """A point estimate with its confidence interval, and the number of values behind it."""

    mean: float
    low: float
    high: float
    n: int


# -- input ----------------------------------------------------------------------------------------


def _values(values: Sequence[float] | np.ndarray, what: str = "values") -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise UsageError(f"the {what} must be numbers; give a list of numbers") from None
    if array.ndim != 1:
        raise UsageError(f"the {what} must be a flat list of numbers, not shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise UsageError(
            f"the {what} hold a NaN or infinite value (at position {bad}); drop or fill missing values first"
        )
    return array


def _check(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise UsageError(f"confidence {confidence} is not between 0 and 1; give e.g. 0.95")
    if resamples < 1:
        raise UsageError(f"resamples {resamples} is below 1; give e.g. 10000")


def _pair(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray]:
    x, y = _values(a, f"first {what}"), _values(b, f"second {what}")
    if len(x) != len(y):
        raise UsageError(
            f"the two {what} differ in length ({len(x)} and {len(y)}); give one value per item to each"
        )
    if len(x) == 0:
        raise UsageError(f"the {what} are empty; give at least one item")
    return x, y


# -- intervals ------------------------------------------------------------------------------------


def bootstrap_means(values: Sequence[float], *, resamples: int = 10000, seed: int = 0) -> np.ndarray:
    """The means of ``resamples`` bootstrap samples of ``values`` (each drawn with replacement, same size).

    Deterministic in ``seed``; the samples are drawn in chunks, so memory stays bounded.
    """
    x = _values(values)
    if len(x) == 0:
        raise UsageError("there are no values to resample; give at least one")
    if resamples < 1:
        raise UsageError(f"resamples {resamples} is below 1; give e.g. 10000")
    rng = np.random.default_rng(seed)
    n = len(x)
    rows = max(1, _CHUNK_VALUES // n)
    out = np.empty(resamples)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        index = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = x[index].mean(axis=1)
    return out


def bootstrap_mean(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 10000, seed: int = 0
) -> Interval:
    """The mean of ``values`` with its percentile-bootstrap confidence interval.

    The interval is the ``(1-confidence)/2`` and ``(1+confidence)/2`` quantiles of the
    means of ``resamples`` resamples drawn with replacement (NumPy's linear quantiles).
    With fewer than two values there is nothing to resample: low = high = mean.
    Values must be finite (NaN is refused: drop missing values first); an empty list is refused.
    """
    _check(confidence, resamples)
    x = _values(values)
    if len(x) == 0:
        raise UsageError("there are no values to average; give at least one")
    mean = float(x.mean())
    if len(x) < 2 or np.all(x == x[0]):
        return Interval(mean, mean, mean, len(x))
    means = bootstrap_means(x, resamples=resamples, seed=seed)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(mean, float(low), float(high), len(x))


def wilson(successes: float, n: int, *, confidence: float = 0.95) -> Interval:
    """Wilson's score interval for a proportion: ``successes`` out of ``n`` (a tie may count 0.5).

    ``p = successes/n``, ``z`` the normal quantile of ``(1+confidence)/2``; the interval is
    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``, within [0, 1] and never empty.
    """
    if not 0 < confidence < 1:
        raise UsageError(f"confidence {confidence} is not between 0 and 1; give e.g. 0.95")
    if n < 1:
        raise UsageError("there are no comparisons; give at least one")
    if not 0 <= successes <= n:
        raise UsageError(f"{successes} successes out of {n} is impossible; successes must be between 0 and n")
    p = successes / n
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n)


def win_rate(
    outcomes: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 10000,
    seed: int = 0,
    method: Literal["bootstrap", "wilson"] = "bootstrap",
) -> Interval:
    """The share of comparisons won, with its confidence interval.

    ``outcomes``: 1 a win, 0.5 a tie, 0 a loss; a per-story average of several comparisons
    (both presentation orders: 0.25, 0.75) is allowed, any value in [0, 1].
    ``method``: ``"bootstrap"`` (percentile bootstrap over the outcomes, see
    :func:`bootstrap_mean`) or ``"wilson"`` (:func:`wilson` on the sum of the outcomes);
    the module's docstring says when to prefer which.
    """
    x = _values(outcomes, "outcomes")
    if len(x) == 0:
        raise UsageError("there are no outcomes; give at least one comparison")
    if np.any((x < 0) | (x > 1)):
        bad = float(x[(x < 0) | (x > 1)][0])
        raise UsageError(
            f"outcome {bad} is not a win (1), tie (0.5) or loss (0); give values between 0 and 1"
        )
    if method == "wilson":
        return wilson(float(x.sum()), len(x), confidence=confidence)
    if method != "bootstrap":
        raise UsageError(f"unknown interval method {method!r}; use 'bootstrap' or 'wilson'")
    return bootstrap_mean(x, confidence=confidence, resamples=resamples, seed=seed)


# -- agreement ------------------------------------------------------------------------------------


def _label_positions(scale: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each rating's position in the sorted ``scale``; a rating not on it is refused."""
    positions = np.searchsorted(scale, values)
    outside = (positions >= len(scale)) | (scale[np.minimum(positions, len(scale) - 1)] != values)
    if np.any(outside):
        raise UsageError(
            f"rating {values[outside][0]:g} is not among the labels {scale.tolist()}; add it to the labels"
        )
    return positions


def _kappa_weights(k: int, weights: str | None) -> np.ndarray:
    """The k x k disagreement weights: 0 on the diagonal and 1 elsewhere (None), or the distance of
    the two positions over k - 1 (linear), squared (quadratic)."""
    if weights is None:
        return 1.0 - np.eye(k)
    distance = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / max(k - 1, 1)
    return distance if weights == "linear" else distance**2


def cohen_kappa(
    a: Sequence[float],
    b: Sequence[float],
    *,
    weights: Literal["linear", "quadratic"] | None = None,
    labels: Sequence[float] | None = None,
) -> float:
    """Cohen's kappa between two raters' labels of the same items: ``1 - Σ w·O / Σ w·E``.

    O is the table of observed proportions, E the product of its margins (chance
    agreement); w is 0 on the diagonal and 1 elsewhere (unweighted), ``|i-j|/(k-1)``
    (linear) or ``(i-j)²/(k-1)²`` (quadratic), with i, j the positions of the two
    labels in ``labels`` (default: the sorted labels either rater used, as scikit-learn
    does; give the whole scale, e.g. 1..5, to weigh by the scale's distances).
    ``math.nan`` when chance disagreement is zero (both raters use one and the same label).
    """
    x, y = _pair(a, b, "ratings")
    if weights not in (None, "linear", "quadratic"):
        raise UsageError(f"unknown kappa weights {weights!r}; use None, 'linear' or 'quadratic'")
    scale = np.unique(np.concatenate([x, y])) if labels is None else _values(labels, "labels")
    if len(np.unique(scale)) != len(scale):
        raise UsageError("the labels repeat a value; give each label once")
    order = np.argsort(scale, kind="stable")
    scale = scale[order]
    ix, iy = _label_positions(scale, x), _label_positions(scale, y)
    k = len(scale)
    observed = np.zeros((k, k))
    np.add.at(observed, (ix, iy), 1.0)
    observed /= len(x)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    w = _kappa_weights(k, weights)
    chance = float((w * expected).sum())
    if chance <= 0:
        return math.nan
    return 1.0 - float((w * observed).sum()) / chance


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _units_matrix(units: Sequence[Sequence[float | None]]) -> np.ndarray:
    """Units as a float matrix (units x raters), NaN where a value is missing; ragged units padded."""
    try:
        matrix = np.asarray(units, dtype=float)
    except (TypeError, ValueError):
        matrix = None
    if matrix is None or matrix.ndim != 2:
        rows = []
        for position, unit in enumerate(units):
            try:
                rows.append([math.nan if _missing(v) else float(v) for v in unit])  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise UsageError(
                    f"unit {position} holds a value that is not a number; give numbers or None"
                ) from None
        width = max((len(r) for r in rows), default=0)
        matrix = np.full((len(rows), width), math.nan)
        for position, row in enumerate(rows):
            matrix[position, : len(row)] = row
    if np.any(np.isinf(matrix)):
        position = int(np.nonzero(np.isinf(matrix))[0][0])
        raise UsageError(f"unit {position} holds an infinite value; give finite numbers or None")
    return matrix


def krippendorff_alpha(
    units: Sequence[Sequence[float | None]],
    *,
    level: Literal["nominal", "ordinal", "interval"] = "nominal",
) -> float:
    """Krippendorff's alpha: ``1 - D_o / D_e`` over the pairable values of ``units``.

    ``units``: one sequence per unit (item) of the values its raters gave, ``None`` (or
    NaN) where a rater gave none; units may have different lengths (or a units x raters
    array, NaN where missing). A unit with fewer
    than two values is not pairable and is left out. Following Krippendorff (2011,
    "Computing Krippendorff's alpha-reliability"): the coincidence matrix
    ``o[c,k] = Σ_u (pairs c-k in unit u)/(m_u - 1)``, margins ``n_c``, total ``n``;
    ``alpha = 1 - (n-1) Σ o[c,k]·δ²(c,k) / Σ n_c·n_k·δ²(c,k)`` with δ² = [c≠k] (nominal),
    ``(Σ_{g=c..k} n_g - (n_c+n_k)/2)²`` (ordinal, over the values in order) or
    ``(c-k)²`` (interval). ``math.nan`` when all pairable values are equal (no expected
    disagreement); no pairable unit at all is refused.
    """
    if level not in ("nominal", "ordinal", "interval"):
        raise UsageError(f"unknown level {level!r}; use 'nominal', 'ordinal' or 'interval'")
    matrix = _units_matrix(units)
    present = np.isfinite(matrix)
    matrix = matrix[present.sum(axis=1) >= 2]
    present = np.isfinite(matrix)
    if len(matrix) == 0:
        raise UsageError("no unit has two or more values to compare; give units rated by at least two raters")
    scale = np.unique(matrix[present])
    k = len(scale)
    rows, _ = np.nonzero(present)
    counts = np.zeros((len(matrix), k))  # counts[u, c]: raters who gave unit u the value c
    np.add.at(counts, (rows, np.searchsorted(scale, matrix[present])), 1.0)
    weight = 1.0 / (present.sum(axis=1) - 1)
    # every ordered pair of values from different raters of a unit, over m_u - 1:
    # Σ_u (counts_u ⊗ counts_u - diag(counts_u)) / (m_u - 1)
    weighted = counts * weight[:, None]
    coincidence = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    margins = coincidence.sum(axis=1)
    total = margins.sum()
    if level == "nominal":
        delta = 1.0 - np.eye(k)
    elif level == "interval":
        delta = np.subtract.outer(scale, scale) ** 2
    else:
        cumulative = np.concatenate([[0.0], np.cumsum(margins)])  # cumulative[i] = Σ_{g<i} n_g
        i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        low, high = np.minimum(i, j), np.maximum(i, j)
        between = cumulative[high + 1] - cumulative[low]  # Σ_{g=low..high} n_g
        delta = (between - (margins[i] + margins[j]) / 2) ** 2
    expected = float((np.outer(margins, margins) * delta).sum())
    if expected <= 0:
        return math.nan
    return 1.0 - (total - 1) * float((coincidence * delta).sum()) / expected


def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of ``values``, ties given the average of the ranks they span."""
    x = _values(values)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # ranks before each distinct value
    return (first + (counts + 1) / 2)[inverse]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the two lists' ranks (ties averaged).

    ``math.nan`` when either list is constant or has fewer than two values.
    """
    x, y = _pair(a, b, "lists")
    if len(x) < 2:
        return math.nan
    rx, ry = ranks(x), ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denominator = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    if denominator == 0:
        return math.nan
    return float((rx * ry).sum()) / denominator


# -- agreement over a table of distinct pairs (the bootstrap's form) ------------------------------
#
# Kappa, alpha and Spearman of two raters depend on the items only through the table of
# distinct (a, b) pairs and how often each occurs. Resampling n items with replacement is
# drawing n times from that table with probabilities count/n: the resampled table's counts
# are multinomial(n, count/n). The ``*_table`` functions below take the distinct pairs and
# one row of counts per resample (an R x m matrix, or one vector) and compute the statistic
# for all rows at once; each equals the plain function applied to the pairs repeated by
# their counts (``np.repeat(a, counts)``), NaN where that gives NaN or refuses the input (no
# items at all). They are what makes ``evaluate agree``'s intervals cheap: the per-resample
# work is a few (R x m) and (R x k) products instead of a Python call per resample.


def pair_table(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct ``(a, b)`` pairs of two raters' values (sorted) and how often each occurs.

    Returns ``(a values, b values, counts)``, three arrays of the same length.
    """
    x, y = _pair(a, b, "ratings")
    table, counts = np.unique(np.column_stack([x, y]), axis=0, return_counts=True)
    return table[:, 0].copy(), table[:, 1].copy(), counts.astype(float)


def _table(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, counts: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The distinct pairs as arrays and the counts as an R x m matrix (and whether one row was given)."""
    x, y = _pair(a, b, "distinct values")
    try:
        w = np.asarray(counts, dtype=float)
    except (TypeError, ValueError):
        raise UsageError("the counts must be numbers; give one count per distinct pair") from None
    one = w.ndim == 1
    if one:
        w = w[None, :]
    if w.ndim != 2 or w.shape[1] != len(x):
        raise UsageError(
            f"the counts have shape {np.shape(counts)}; give one count per distinct pair ({len(x)}), "
            "one row per resample"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise UsageError("the counts hold a negative, NaN or infinite value; give counts of 0 or more")
    return x, y, w, one


def _result(values: np.ndarray, one: bool) -> np.ndarray | float:
    return float(values[0]) if one else values


def _one_hot(positions: np.ndarray, k: int) -> np.ndarray:
    """An m x k matrix with a 1 in row i at column positions[i]."""
    out = np.zeros((len(positions), k))
    out[np.arange(len(positions)), positions] = 1.0
    return out


def cohen_kappa_table(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    counts: Sequence[float] | np.ndarray,
    *,
    weights: Literal["linear", "quadratic"] | None = None,
    labels: Sequence[float],
) -> np.ndarray | float:
    """:func:`cohen_kappa` of the distinct pairs ``(a[i], b[i])`` each taken ``counts[..., i]`` times.

    ``counts``: one vector (a float comes back) or an R x m matrix, one row per resample (R
    values come back). ``labels`` is required: the scale, and so the weights, must not
    depend on which values a resample happens to hold. NaN for a row with no items or no
    chance disagreement.
    """
    x, y, w, one = _table(a, b, counts)
    if weights not in (None, "linear", "quadratic"):
        raise UsageError(f"unknown kappa weights {weights!r}; use None, 'linear' or 'quadratic'")
    scale = np.sort(_values(labels, "labels"))
    if len(np.unique(scale)) != len(scale) or len(scale) == 0:
        raise UsageError("the labels are empty or repeat a value; give each label once")
    k = len(scale)
    ix, iy = _label_positions(scale, x), _label_positions(scale, y)
    cost = _kappa_weights(k, weights)
    total = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share_a = (w @ _one_hot(ix, k)) / total[:, None]  # each row's margins, as proportions
        share_b = (w @ _one_hot(iy, k)) / total[:, None]
        observed = (w @ cost[ix, iy]) / total
        chance = ((share_a @ cost) * share_b).sum(axis=1)
        kappa = 1.0 - observed / chance
    kappa[~(chance > 0)] = math.nan  # also a row with no items (0/0)
    return _result(kappa, one)


def krippendorff_alpha_table(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    counts: Sequence[float] | np.ndarray,
    *,
    level: Literal["nominal", "ordinal", "interval"] = "nominal",
) -> np.ndarray | float:
    """:func:`krippendorff_alpha` of two raters on the distinct pairs ``(a[i], b[i])`` taken ``counts[..., i]`` times.

    Each item is a unit of two values, so a pair ``(x, y)`` adds 1 to ``o[x,y]`` and to
    ``o[y,x]`` of the coincidence matrix; at the ordinal level δ² depends on each row's
    margins and is built per row (R x k x k, k the distinct values). ``counts`` as in
    :func:`cohen_kappa_table`; NaN for a row with no items or no expected disagreement.
    """
    if level not in ("nominal", "ordinal", "interval"):
        raise UsageError(f"unknown level {level!r}; use 'nominal', 'ordinal' or 'interval'")
    x, y, w, one = _table(a, b, counts)
    scale = np.unique(np.concatenate([x, y]))
    k = len(scale)
    ix, iy = np.searchsorted(scale, x), np.searchsorted(scale, y)
    margins = w @ (_one_hot(ix, k) + _one_hot(iy, k))  # n_c per row: how often value c occurs
    total = margins.sum(axis=1)
    if level == "ordinal":
        cumulative = np.concatenate([np.zeros((len(w), 1)), np.cumsum(margins, axis=1)], axis=1)
        i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        low, high = np.minimum(i, j), np.maximum(i, j)
        between = cumulative[:, high + 1] - cumulative[:, low]  # R x k x k: Σ_{g=low..high} n_g
        delta = (between - (margins[:, :, None] + margins[:, None, :]) / 2) ** 2
        observed = 2.0 * (w * delta[:, ix, iy]).sum(axis=1)
        expected = np.einsum("ri,rij,rj->r", margins, delta, margins)
    else:
        fixed = 1.0 - np.eye(k) if level == "nominal" else np.subtract.outer(scale, scale) ** 2
        observed = 2.0 * (w @ fixed[ix, iy])
        expected = ((margins @ fixed) * margins).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 - (total - 1) * observed / expected
    alpha[~(expected > 0)] = math.nan
    return _result(alpha, one)


def spearman_table(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, counts: Sequence[float] | np.ndarray
) -> np.ndarray | float:
    """:func:`spearman` of the distinct pairs ``(a[i], b[i])`` taken ``counts[..., i]`` times.

    Each row's average ranks come from its counts of each distinct value (the values before
    it, plus half its own ties), centred on their mean (n+1)/2; then a Pearson correlation
    weighted by the counts. ``counts`` as in :func:`cohen_kappa_table`; NaN for a row with
    fewer than two items or a constant side.
    """
    x, y, w, one = _table(a, b, counts)
    total = w.sum(axis=1)

    def centred_ranks(values: np.ndarray) -> np.ndarray:
        distinct, inverse = np.unique(values, return_inverse=True)
        per_value = w @ _one_hot(inverse.ravel(), len(distinct))  # R x distinct values
        rank = np.cumsum(per_value, axis=1) - per_value + (per_value + 1) / 2
        return rank[:, inverse.ravel()] - (total[:, None] + 1) / 2  # R x m

    rx, ry = centred_ranks(x), centred_ranks(y)
    denominator = np.sqrt((w * rx * rx).sum(axis=1) * (w * ry * ry).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (w * rx * ry).sum(axis=1) / denominator
    rho[~(denominator > 0) | (total < 2)] = math.nan
    return _result(rho, one)


def bootstrap_table(
    statistics: Sequence[Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]],
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    counts: Sequence[float] | np.ndarray,
    *,
    resamples: int,
    seed: int = 0,
) -> np.ndarray:
    """Each of ``statistics`` (``*_table`` functions) on ``resamples`` bootstrap resamples of a pair table's items.

    A resample of the n items, drawn with replacement, is a multinomial draw of n over the
    distinct pairs with probabilities ``counts / n`` (the same distribution as drawing
    items by index); every statistic sees the same resamples. Returns one row per
    statistic, one column per resample. Deterministic in ``seed``; drawn in chunks so
    memory stays bounded (the chunks do not change the draws).
    """
    x, y, w, one = _table(a, b, counts)
    if resamples < 1:
        raise UsageError(f"resamples {resamples} is below 1; give e.g. 1000")
    n = round(float(w.sum()))
    if not one or n < 1 or not np.array_equal(w[0], np.round(w[0])):
        raise UsageError(
            "the counts must be one vector of whole numbers, at least one item; give pair_table's counts"
        )
    rng = np.random.default_rng(seed)
    width = len(x) + len(np.unique(np.concatenate([x, y]))) ** 2  # per row: the table, or k x k
    rows = max(1, _CHUNK_VALUES // width)
    out = np.empty((len(statistics), resamples))
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        drawn = rng.multinomial(n, w[0] / n, size=stop - start).astype(float)
        for row, statistic in enumerate(statistics):
            out[row, start:stop] = statistic(x, y, drawn)
    return out


__all__ = [
    "Interval",
    "bootstrap_mean",
    "bootstrap_means",
    "bootstrap_table",
    "cohen_kappa",
    "cohen_kappa_table",
    "krippendorff_alpha",
    "krippendorff_alpha_table",
    "pair_table",
    "ranks",
    "spearman",
    "spearman_table",
    "wilson",
    "win_rate",
]
