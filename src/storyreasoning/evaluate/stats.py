"""Statistics a reviewer trusts: confidence intervals, win rates and agreement between raters.

Pure NumPy, deterministic (every random draw comes from ``numpy.random.default_rng(seed)``).

* :func:`bootstrap_mean`: a mean with its percentile-bootstrap confidence interval;
* :func:`win_rate`: the share of comparisons won (a tie counts half) with an interval,
  by percentile bootstrap (the default) or Wilson's score interval (:func:`wilson`);
* :func:`cohen_kappa`: Cohen's kappa between two raters, unweighted or with linear or
  quadratic weights;
* :func:`krippendorff_alpha`: Krippendorff's alpha for any number of raters, missing
  values allowed, at the nominal, ordinal or interval level;
* :func:`spearman`: Spearman's rank correlation, ties given their average rank.

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
from collections.abc import Sequence
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


def _values(values: Sequence[float], what: str = "values") -> np.ndarray:
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


def _pair(a: Sequence[float], b: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
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
    ix, iy = np.searchsorted(scale, x), np.searchsorted(scale, y)
    for values, positions in ((x, ix), (y, iy)):
        outside = (positions >= len(scale)) | (scale[np.minimum(positions, len(scale) - 1)] != values)
        if np.any(outside):
            raise UsageError(
                f"rating {values[outside][0]:g} is not among the labels {scale.tolist()}; add it to the labels"
            )
    k = len(scale)
    observed = np.zeros((k, k))
    np.add.at(observed, (ix, iy), 1.0)
    observed /= len(x)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    if weights is None:
        w = 1.0 - np.eye(k)
    else:
        distance = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / max(k - 1, 1)
        w = distance if weights == "linear" else distance**2
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


__all__ = [
    "Interval",
    "bootstrap_mean",
    "bootstrap_means",
    "cohen_kappa",
    "krippendorff_alpha",
    "ranks",
    "spearman",
    "wilson",
    "win_rate",
]
