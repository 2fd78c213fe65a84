"""evaluate.stats: intervals and agreement against worked examples and against SciPy / scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from storyreasoning.errors import UsageError
from storyreasoning.evaluate.stats import (
    Interval,
    bootstrap_mean,
    bootstrap_means,
    bootstrap_table,
    cohen_kappa,
    cohen_kappa_table,
    krippendorff_alpha,
    krippendorff_alpha_table,
    pair_table,
    ranks,
    spearman,
    spearman_table,
    wilson,
    win_rate,
)

# -- bootstrap ------------------------------------------------------------------------------------


def test_bootstrap_interval_covers_the_mean_and_is_deterministic():
    values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    first = bootstrap_mean(values, seed=7)
    assert isinstance(first, Interval)
    assert first.mean == pytest.approx(44 / 11)
    assert first.n == 11
    assert first.low < first.mean < first.high
    assert bootstrap_mean(values, seed=7) == first
    assert bootstrap_mean(values, seed=8) != first
    # a wider confidence gives a wider interval, from the same resamples
    wide = bootstrap_mean(values, seed=7, confidence=0.99)
    assert wide.low <= first.low and wide.high >= first.high


def test_bootstrap_of_two_values_worked_out():
    # resampling [0, 1] twice gives means 0, 0.5, 1 with chances 1/4, 1/2, 1/4:
    # the 2.5% and 97.5% quantiles of 10000 such means are 0 and 1, and their average is near 0.5
    assert bootstrap_mean([0, 1]) == Interval(0.5, 0.0, 1.0, 2)
    means = bootstrap_means([0, 1], resamples=10000, seed=1)
    assert set(np.unique(means)) == {0.0, 0.5, 1.0}
    assert np.mean(means == 0.5) == pytest.approx(0.5, abs=0.02)


def test_bootstrap_degenerate_inputs():
    assert bootstrap_mean([4.0]) == Interval(4.0, 4.0, 4.0, 1)
    assert bootstrap_mean([2, 2, 2]) == Interval(2.0, 2.0, 2.0, 3)
    with pytest.raises(UsageError, match="NaN"):
        bootstrap_mean([1.0, float("nan")])
    with pytest.raises(UsageError, match="no values"):
        bootstrap_mean([])
    with pytest.raises(UsageError, match="confidence"):
        bootstrap_mean([1, 2], confidence=95)


def test_bootstrap_agrees_with_the_normal_closed_form_on_a_large_sample():
    # for n = 3000 the mean is close to normal: mean ± z·s/√n, z = 1.96 (s with ddof=0, as the bootstrap's)
    values = np.random.default_rng(3).exponential(2.0, size=3000)
    got = bootstrap_mean(values, seed=0)
    half = 1.959964 * values.std() / math.sqrt(len(values))
    assert got.low == pytest.approx(values.mean() - half, abs=0.06 * half)
    assert got.high == pytest.approx(values.mean() + half, abs=0.06 * half)


def test_bootstrap_intervals_cover_the_true_mean_about_as_often_as_they_say():
    rng = np.random.default_rng(11)
    covered = 0
    trials = 300
    for trial in range(trials):
        sample = rng.normal(10.0, 3.0, size=40)
        interval = bootstrap_mean(sample, resamples=1000, seed=trial)
        covered += interval.low <= 10.0 <= interval.high
    # a percentile bootstrap at n = 40 under-covers slightly; 95% of 300 trials is 285
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_memory_chunks_do_not_change_the_result():
    values = np.arange(5000, dtype=float)
    # 10000 resamples of 5000 values are drawn in chunks of 419 rows; the first 419 means are the
    # same as those of a run that asks for 419 resamples only
    many = bootstrap_means(values, resamples=10000, seed=5)
    few = bootstrap_means(values, resamples=419, seed=5)
    np.testing.assert_array_equal(many[:419], few)


# -- win rate -------------------------------------------------------------------------------------


def test_wilson_worked_example():
    # 8 wins of 10, z = 1.959964: centre (0.8 + z²/20)/(1 + z²/10) = 0.71674,
    # half width z·sqrt(0.8·0.2/10 + z²/400)/(1 + z²/10) = 0.22657: [0.4902, 0.9433]
    got = wilson(8, 10)
    assert got.mean == 0.8 and got.n == 10
    assert got.low == pytest.approx(0.49016, abs=1e-4)
    assert got.high == pytest.approx(0.94332, abs=1e-4)
    # it never collapses: ten wins of ten still leave room below 1
    assert wilson(10, 10).low == pytest.approx(0.72247, abs=1e-4)
    assert wilson(0, 10).high == pytest.approx(1 - 0.72247, abs=1e-4)


def test_win_rate_counts_ties_as_half():
    outcomes = [1, 1, 0.5, 0, 1, 0.5, 1, 0]
    got = win_rate(outcomes)
    assert got.mean == pytest.approx(5 / 8)
    assert got.low < 5 / 8 < got.high
    assert got == win_rate(outcomes)
    by_wilson = win_rate(outcomes, method="wilson")
    assert by_wilson == wilson(5.0, 8)
    # all wins: the bootstrap collapses, Wilson does not
    assert win_rate([1] * 10) == Interval(1.0, 1.0, 1.0, 10)
    assert win_rate([1] * 10, method="wilson").low < 0.75
    with pytest.raises(UsageError, match="between 0 and 1"):
        win_rate([1, 2])
    with pytest.raises(UsageError, match="method"):
        win_rate([1, 0], method="exact")  # type: ignore[arg-type]


# -- Cohen's kappa --------------------------------------------------------------------------------


def test_kappa_on_a_two_by_two_table():
    #            B yes  B no
    #   A yes     20      5     p_o = (20 + 15)/50 = 0.7
    #   A no      10     15     p_e = 0.5·0.6 + 0.5·0.4 = 0.5     kappa = (0.7 - 0.5)/(1 - 0.5) = 0.4
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # with two labels every weighting is the same
    assert cohen_kappa(a, b, weights="linear") == pytest.approx(0.4)
    assert cohen_kappa(a, b, weights="quadratic") == pytest.approx(0.4)


def test_quadratic_kappa_worked_out():
    # pairs (1,1) (1,2) (2,2) (3,2); labels 1,2,3 -> weights (i-j)²/4: w12 = w23 = 1/4, w13 = 1
    # observed weighted disagreement: (1/4 + 1/4)/4 = 0.125
    # margins: A (1/2, 1/4, 1/4), B (1/4, 3/4, 0); expected: 1/2·3/4·1/4 + 1/4·1/4·1/4 + 1/4·1/4·1 + 1/4·3/4·1/4
    #   = 0.21875;  kappa = 1 - 0.125/0.21875 = 3/7
    assert cohen_kappa([1, 1, 2, 3], [1, 2, 2, 2], weights="quadratic") == pytest.approx(3 / 7)
    # the weights follow the positions among the labels: by default the labels used (here 1, 2, 5 are
    # positions 0, 1, 2, the same table as above), or the whole scale when given. Pairs (1,1) (1,2) (2,2)
    # (5,2) on 1..5, weights (i-j)²/16: observed (1 + 9)/16/4 = 10/64; margins A (1/2, 1/4, 0, 0, 1/4),
    # B (1/4, 3/4, 0, 0, 0); expected (1/2·3/4·1 + 1/4·1/4·1 + 1/4·1/4·16 + 1/4·3/4·9)/16 = 3.125/16;
    # kappa = 1 - (10/64)/(3.125/16) = 0.2
    assert cohen_kappa([1, 1, 2, 5], [1, 2, 2, 2], weights="quadratic") == pytest.approx(3 / 7)
    on_scale = cohen_kappa([1, 1, 2, 5], [1, 2, 2, 2], weights="quadratic", labels=[1, 2, 3, 4, 5])
    assert on_scale == pytest.approx(0.2)


def test_kappa_edge_cases():
    assert cohen_kappa([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa([2, 2, 2], [2, 2, 2]))
    with pytest.raises(UsageError, match="differ in length"):
        cohen_kappa([1, 2], [1])
    with pytest.raises(UsageError, match="not among the labels"):
        cohen_kappa([1, 7], [1, 2], labels=[1, 2, 3])
    with pytest.raises(UsageError, match="weights"):
        cohen_kappa([1, 2], [1, 2], weights="cubic")  # type: ignore[arg-type]


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_matches_scikit_learn(weights):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(21)
    for _ in range(20):
        a = rng.integers(1, 6, size=30)
        b = np.clip(a + rng.integers(-2, 3, size=30), 1, 5)
        expected = metrics.cohen_kappa_score(a, b, weights=weights)
        assert cohen_kappa(a.tolist(), b.tolist(), weights=weights) == pytest.approx(expected, abs=1e-12)
        labels = [1, 2, 3, 4, 5]
        expected = metrics.cohen_kappa_score(a, b, weights=weights, labels=labels)
        assert cohen_kappa(a, b, weights=weights, labels=labels) == pytest.approx(expected, abs=1e-12)


# -- Krippendorff's alpha -------------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: four coders,
# twelve units, values 1..5, '.' for missing.
#   unit:     1  2  3  4  5  6  7  8  9 10 11 12
#   coder A:  1  2  3  3  2  1  4  1  2  .  .  .
#   coder B:  1  2  3  3  2  2  4  1  2  5  .  3
#   coder C:  .  3  3  3  2  3  4  2  2  5  1  .
#   coder D:  1  2  3  3  2  4  4  1  2  5  1  .
_ = None
CODERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
]
UNITS = [list(unit) for unit in zip(*CODERS, strict=True)]


def test_krippendorff_nominal_on_the_textbook_example():
    # unit 12 has one value: not pairable. The 40 pairable values: n_1..n_5 = 9, 13, 10, 5, 3.
    # Disagreeing coincidences (ordered pairs / (m_u - 1)): unit 2 {2,2,3,2}: 6/3 = 2; unit 6
    # {1,2,3,4}: 12/3 = 4; unit 8 {1,1,2,1}: 6/3 = 2; total 8.
    # alpha = 1 - (n-1)·8 / (n² - Σ n_c²) = 1 - 39·8 / (1600 - 384) = 1 - 312/1216 = 0.743
    assert krippendorff_alpha(UNITS, level="nominal") == pytest.approx(1 - 312 / 1216)
    assert round(krippendorff_alpha(UNITS, level="nominal"), 3) == 0.743
    # the paper's other levels for the same data: ordinal 0.815, interval 0.849
    assert round(krippendorff_alpha(UNITS, level="ordinal"), 3) == 0.815
    assert round(krippendorff_alpha(UNITS, level="interval"), 3) == 0.849


def test_krippendorff_interval_worked_out_on_two_coders():
    # units (1,2) (3,3) (5,4): values 1,2,3,3,5,4, n = 6; each unit gives o[c,k] = o[k,c] = 1.
    # observed: Σ o·(c-k)² = 2·(1 + 0 + 1) = 4 (unit 2 adds (3,3) twice at distance 0)
    # expected: Σ_{c,k} n_c n_k (c-k)², i.e. over all ordered pairs of the six values, = 2·6·Σ(v - 3)² = 120
    values = [1, 2, 3, 3, 5, 4]
    expected = sum((a - b) ** 2 for a in values for b in values)  # = 2·6·Σ(v - 3)² = 2·6·10 = 120
    assert expected == 120
    alpha = 1 - (6 - 1) * 4 / expected  # = 1 - 20/120 = 5/6
    assert krippendorff_alpha([[1, 2], [3, 3], [5, 4]], level="interval") == pytest.approx(alpha)
    assert alpha == pytest.approx(5 / 6)


def test_krippendorff_missing_values_and_edge_cases():
    # NaN is missing too, and a unit with one value is left out
    with_nan = [[v if v is not None else float("nan") for v in unit] for unit in UNITS]
    assert krippendorff_alpha(with_nan) == pytest.approx(krippendorff_alpha(UNITS))
    # a units x raters array, and ragged units (unit 12 cut short, unit 1 without coder C's gap)
    assert krippendorff_alpha(np.array(with_nan)) == pytest.approx(krippendorff_alpha(UNITS))
    ragged = [[1, 1, 1], *UNITS[1:11], [None, 3]]
    assert krippendorff_alpha(ragged) == pytest.approx(krippendorff_alpha(UNITS))
    with pytest.raises(UsageError, match="unit 1 holds a value that is not a number"):
        krippendorff_alpha([[1, 2], [3, "high"]])
    assert krippendorff_alpha([[1, 1], [2, 2], [3, 3]], level="ordinal") == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha([[4, 4], [4, 4, None]]))
    with pytest.raises(UsageError, match="two or more values"):
        krippendorff_alpha([[1, None], [2]])
    with pytest.raises(UsageError, match="level"):
        krippendorff_alpha(UNITS, level="ratio")  # type: ignore[arg-type]


def test_krippendorff_nominal_equals_scotts_pi_like_kappa_on_large_two_coder_samples():
    # two coders, no missing values, N units: nominal alpha = 1 - (2N-1)/(2N)·(1 - pi), pi being Scott's pi
    # (observed agreement against the pooled margins)
    rng = np.random.default_rng(4)
    a = rng.integers(0, 3, size=200)
    b = np.where(rng.random(200) < 0.7, a, rng.integers(0, 3, size=200))
    n = len(a)
    p_o = float(np.mean(a == b))
    pooled = np.bincount(np.concatenate([a, b]), minlength=3) / (2 * n)
    pi = (p_o - float((pooled**2).sum())) / (1 - float((pooled**2).sum()))
    alpha = krippendorff_alpha([[x, y] for x, y in zip(a, b, strict=True)])
    assert alpha == pytest.approx(1 - (2 * n - 1) / (2 * n) * (1 - pi))


# -- Spearman -------------------------------------------------------------------------------------


def test_spearman_worked_out_with_ties():
    # a = 10 20 20 40 -> ranks 1 2.5 2.5 4;  b = 1 3 2 4 -> ranks 1 3 2 4; both centred on 2.5:
    # Σ da·db = 2.25 + 0 + 0 + 2.25 = 4.5, Σ da² = 4.5, Σ db² = 5: rho = 4.5/sqrt(22.5) = 3/sqrt(10)
    np.testing.assert_array_equal(ranks([10, 20, 20, 40]), [1, 2.5, 2.5, 4])
    assert spearman([10, 20, 20, 40], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1], [2]))


def test_spearman_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(9)
    for size in (5, 17, 60):
        a = rng.integers(1, 6, size=size)  # many ties
        b = a + rng.integers(-2, 3, size=size)
        expected = scipy_stats.spearmanr(a, b).statistic
        assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
        c, d = rng.normal(size=size), rng.normal(size=size)
        assert spearman(c, d) == pytest.approx(scipy_stats.spearmanr(c, d).statistic, abs=1e-12)


# -- the same statistics over a table of distinct pairs (the bootstrap's form) ---------------------


def _plain_or_nan(function, *args, **kwargs):
    """The plain statistic, NaN where it refuses the input (as the bootstrap counts a refusal)."""
    try:
        return function(*args, **kwargs)
    except UsageError:
        return math.nan


def _expanded(x, y, counts):
    whole = counts.astype(int)
    return np.repeat(x, whole), np.repeat(y, whole)


def _assert_table_equals_plain(x, y, counts, labels):
    """Every *_table statistic, all rows at once, equals the plain one on each row's expanded pairs."""
    tables = {
        f"kappa {w}": cohen_kappa_table(x, y, counts, weights=w, labels=labels)
        for w in (None, "linear", "quadratic")
    } | {
        f"alpha {lv}": krippendorff_alpha_table(x, y, counts, level=lv)
        for lv in ("nominal", "ordinal", "interval")
    }
    tables["spearman"] = spearman_table(x, y, counts)
    for row, weights in enumerate(counts):
        ex, ey = _expanded(x, y, weights)
        plain = {
            f"kappa {w}": _plain_or_nan(cohen_kappa, ex, ey, weights=w, labels=labels)
            for w in (None, "linear", "quadratic")
        } | {
            f"alpha {lv}": _plain_or_nan(krippendorff_alpha, np.column_stack([ex, ey]), level=lv)
            for lv in ("nominal", "ordinal", "interval")
        }
        plain["spearman"] = _plain_or_nan(spearman, ex, ey)
        for name, expected in plain.items():
            got = tables[name][row]
            if math.isnan(expected):
                assert math.isnan(got), (name, ex.tolist(), ey.tolist(), got)
            else:
                assert got == pytest.approx(expected, abs=1e-12, rel=0), (name, ex.tolist(), ey.tolist())


def test_table_statistics_equal_the_plain_ones_on_the_expanded_pairs():
    rng = np.random.default_rng(15)
    for trial in range(120):
        k = int(rng.integers(1, 7))
        scale = np.arange(k, dtype=float) + (1 if trial % 2 else 0)  # 0..k-1 (counts) or 1..k (scores)
        size = int(rng.integers(1, 14))
        a, b = rng.choice(scale, size), rng.choice(scale, size)
        if trial % 4 == 0:
            b[:] = b[0]  # one side constant
        x, y, _ = pair_table(a, b)
        top = int(rng.integers(0, 9))  # counts from 0 up to 0..8: zeros, empty rows, one item
        counts = rng.integers(0, top + 1, size=(8, len(x))).astype(float)
        _assert_table_equals_plain(x, y, counts, scale.tolist())


def test_table_statistics_on_degenerate_tables():
    labels = [1.0, 2.0, 3.0, 4.0, 5.0]
    # one distinct pair: kappa and alpha need disagreement by chance, Spearman a varying side
    one = np.array([[0.0], [1.0], [2.0], [7.0]])
    _assert_table_equals_plain(np.array([3.0]), np.array([3.0]), one, labels)
    _assert_table_equals_plain(np.array([2.0]), np.array([4.0]), one, labels)
    for row in one:  # the plain functions' own verdicts on these, spelled out
        n = int(row[0])
        assert math.isnan(cohen_kappa_table([3.0], [3.0], row, weights="quadratic", labels=labels))
        assert math.isnan(spearman_table([2.0], [4.0], row))
        # n pairs (2, 4): margins n and n, o[2,4] = o[4,2] = n, δ²(2,4) = (2n - n)² = n²;
        # alpha = 1 - (2n-1)·2n·n² / (2·n·n·n²) = 1 - (2n-1)/n; no pair at all: NaN
        alpha = krippendorff_alpha_table([2.0], [4.0], row, level="ordinal")
        assert math.isnan(alpha) if n == 0 else alpha == pytest.approx(1 - (2 * n - 1) / n)
    # one side constant, zeros among the counts, every count one
    x, y = np.array([1.0, 1.0, 1.0, 2.0]), np.array([2.0, 3.0, 5.0, 2.0])
    counts = np.array([[5, 0, 0, 0], [0, 3, 4, 0], [1, 1, 1, 1], [0, 0, 0, 9], [2, 0, 0, 1]], dtype=float)
    _assert_table_equals_plain(x, y, counts, labels)
    # one vector of counts gives one number, as the plain functions do
    assert cohen_kappa_table(x, y, [1, 1, 1, 1], weights="quadratic", labels=labels) == pytest.approx(
        cohen_kappa([1, 1, 1, 2], [2, 3, 5, 2], weights="quadratic", labels=labels), abs=1e-12
    )


def test_table_statistics_refuse_bad_input():
    with pytest.raises(UsageError, match="one count per distinct pair"):
        spearman_table([1, 2], [1, 2], [1, 2, 3])
    with pytest.raises(UsageError, match="negative"):
        krippendorff_alpha_table([1, 2], [1, 2], [1, -1])
    with pytest.raises(UsageError, match="not among the labels"):
        cohen_kappa_table([1, 7], [1, 2], [1, 1], labels=[1, 2, 3])
    with pytest.raises(UsageError, match="level"):
        krippendorff_alpha_table([1, 2], [1, 2], [1, 1], level="ratio")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="whole numbers"):
        bootstrap_table([spearman_table], [1, 2], [1, 2], [0.5, 1], resamples=10)


def test_bootstrap_table_resamples_are_the_plain_statistic_on_resampled_stories():
    # six stories, five rated 3 by A: about (5/6)^6 = a third of the resamples see A constant
    a, b = [3, 3, 3, 3, 3, 1], [3, 4, 2, 3, 5, 1]
    x, y, counts = pair_table(a, b)
    draws = bootstrap_table([spearman_table], x, y, counts, resamples=300, seed=7)[0]
    assert draws.shape == (300,)
    again = bootstrap_table([spearman_table, spearman_table], x, y, counts, resamples=300, seed=7)
    np.testing.assert_array_equal(
        again, [draws, draws]
    )  # the same seed, the same resamples for every statistic
    assert not np.array_equal(
        draws, bootstrap_table([spearman_table], x, y, counts, resamples=300, seed=8)[0]
    )
    # each resample is a multinomial draw of n over the distinct pairs: the same draws, by hand
    drawn = np.random.default_rng(7).multinomial(6, counts / 6, size=300).astype(float)
    np.testing.assert_array_equal(draws, spearman_table(x, y, drawn))
    _assert_table_equals_plain(x, y, drawn[:60], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert 0.2 < np.isnan(draws).mean() < 0.5  # the undefined resamples stay NaN


def test_bootstrap_table_chunks_do_not_change_the_draws(monkeypatch):
    from storyreasoning.evaluate import stats

    x, y, counts = pair_table([1, 2, 3, 4, 5, 5, 4], [1, 3, 3, 4, 4, 5, 2])
    whole = bootstrap_table([spearman_table], x, y, counts, resamples=500, seed=2)
    monkeypatch.setattr(stats, "_CHUNK_VALUES", 7 * (7 + 25))  # 7 rows a chunk
    np.testing.assert_array_equal(
        bootstrap_table([spearman_table], x, y, counts, resamples=500, seed=2), whole
    )


def test_multinomial_resamples_have_the_distribution_of_resampled_indices():
    # the old way (stories drawn by index, one call per resample) and the table's way give the
    # same bootstrap distribution: their quantiles agree within the Monte Carlo error
    rng = np.random.default_rng(11)
    a = rng.integers(1, 6, size=300).astype(float)
    b = np.clip(a + rng.choice([-1, 0, 0, 1], size=300), 1, 5)
    x, y, counts = pair_table(a, b)
    table = bootstrap_table([spearman_table], x, y, counts, resamples=2000, seed=1)[0]
    index = np.random.default_rng(2).integers(0, 300, size=(2000, 300))
    by_index = np.array([spearman(a[i], b[i]) for i in index])
    for q in (0.025, 0.25, 0.5, 0.75, 0.975):
        assert np.quantile(table, q) == pytest.approx(np.quantile(by_index, q), abs=0.003)  # sd 0.0075
    assert table.std() == pytest.approx(by_index.std(), rel=0.1)  # drawing n/2 instead of n: 1.5x
