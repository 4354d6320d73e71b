"""Paired statistics of replication.stats against scipy, exact enumeration, simulation and
published power tables, on constructed data."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from replication import stats

A = np.array([0.50, 0.55, 0.60, 0.52, 0.58])
B = np.array([0.41, 0.47, 0.55, 0.46, 0.49])  # d = B − A = −0.09, −0.08, −0.05, −0.06, −0.09


def test_paired_t_and_ci_match_hand_formulas_and_scipy():
    s = stats.paired_tests(A, B)
    d = B - A
    n, mean, sd = 5, d.mean(), d.std(ddof=1)
    t = mean / (sd / math.sqrt(n))
    assert s["pairs"] == 5 and s["paired_diff"] == pytest.approx(mean) and s["paired_diff_std"] == pytest.approx(sd)
    assert s["paired_t"] == pytest.approx(t)
    assert s["paired_p"] == pytest.approx(2 * sps.t.sf(abs(t), n - 1))
    ref = sps.ttest_rel(B, A)
    assert (s["paired_t"], s["paired_p"]) == pytest.approx((ref.statistic, ref.pvalue))
    half = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert (s["paired_ci_low"], s["paired_ci_high"]) == pytest.approx((mean - half, mean + half))
    assert s["cohens_dz"] == pytest.approx(mean / sd)


def _exact_wilcoxon(d):
    """Two-sided exact signed-rank test by enumerating the 2^n sign patterns (no ties, no zeros)."""
    ranks = sps.rankdata(np.abs(d))
    w_plus = ranks[d > 0].sum()
    w = min(w_plus, ranks.sum() - w_plus)
    sums = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product((0, 1), repeat=len(d))]
    return w, min(1.0, 2 * np.mean(np.array(sums) <= w))


@pytest.mark.parametrize("d", [[-0.1, -0.2, -0.3, -0.4, 0.05], [-0.1, -0.2, -0.3, -0.4, -0.5],
                               [0.3, -0.1, 0.25, -0.45, 0.6, 0.05, 0.7]])
def test_wilcoxon_matches_exact_enumeration(d):
    d = np.array(d)
    s = stats.paired_tests(np.zeros_like(d), d)
    w, p = _exact_wilcoxon(d)
    assert s["wilcoxon_w"] == w and s["wilcoxon_p"] == pytest.approx(p)


def test_wilcoxon_cannot_reach_005_with_five_pairs():
    """All five differences of one sign: W = 0, the smallest two-sided p there is, 2/2⁵."""
    s = stats.paired_tests(A, B)
    assert s["wilcoxon_w"] == 0 and s["wilcoxon_p"] == pytest.approx(2 / 32)


def _exact_bootstrap_quantiles(d, q):
    """Quantiles of the mean over all n^n equally likely resamples (exact bootstrap distribution)."""
    means = np.array([np.mean(np.take(d, idx)) for idx in itertools.product(range(len(d)), repeat=len(d))])
    means.sort()
    return [means[int(np.ceil(p * means.size)) - 1] for p in q]


def test_bootstrap_ci_is_the_percentile_interval_of_the_exact_bootstrap_distribution():
    """n = 4, d = [0, 1, 2, 10]: the exact resample distribution has atoms at the 2.5 % and 97.5 %
    points (P(mean ≤ 0.25) = 5/256 < 2.5 % < P(mean ≤ 0.5) = 15/256; P(mean > 7.75) = 5/256 <
    2.5 % < P(mean ≥ 7.75) = 9/256), so 10 000 seeded resamples land on them exactly."""
    d = np.array([0.0, 1.0, 2.0, 10.0])
    low, high = stats.bootstrap_mean_ci(d)
    exact = _exact_bootstrap_quantiles(d, [0.025, 0.975])
    assert (low, high) == (exact[0], exact[1]) == (0.5, 7.75)
    assert stats.bootstrap_mean_ci(d) == (low, high)  # seeded: the report is reproducible
    ref = sps.bootstrap((d,), np.mean, method="percentile", n_resamples=10_000,
                        random_state=np.random.default_rng(1)).confidence_interval
    assert (ref.low, ref.high) == (0.5, 7.75)


def test_bootstrap_ci_close_to_scipy_on_five_pairs():
    d = B - A
    low, high = stats.bootstrap_mean_ci(d)
    ref = sps.bootstrap((d,), np.mean, method="percentile", n_resamples=20_000,
                        random_state=np.random.default_rng(3)).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.003) and high == pytest.approx(ref.high, abs=0.003)
    assert d.min() <= low < high <= d.max()


def test_constant_and_tiny_samples_give_exact_or_nan_values():
    s = stats.paired_tests(A, A - 0.01)  # every pair differs by −0.01
    assert s["paired_diff"] == pytest.approx(-0.01) and s["paired_diff_std"] == pytest.approx(0, abs=1e-15)
    assert s["paired_t"] == -math.inf and s["paired_p"] == 0.0
    same = stats.paired_tests(A, A)
    assert same["paired_diff"] == 0 and math.isnan(same["paired_p"]) and math.isnan(same["wilcoxon_p"])
    one = stats.paired_tests([1.0], [2.0])
    assert one["paired_diff"] == 1.0 and math.isnan(one["paired_ci_low"]) and math.isnan(one["bootstrap_ci_low"])
    assert stats.paired_tests([], [])["pairs"] == 0


@pytest.mark.parametrize("dz,n", [(0.5, 34), (0.8, 15), (1.0, 10)])
def test_runs_needed_matches_published_power_tables(dz, n):
    """Two-sided paired (one-sample) t-test, α = 0.05, power 0.80: Cohen (1988) Table 2.4.1 /
    G*Power give n = 34, 15 and 10 for d_z = 0.5, 0.8 and 1.0."""
    assert stats.runs_needed(dz) == n
    assert stats.power_paired_t(dz, n) >= 0.80 > stats.power_paired_t(dz, n - 1)


def _simulated_power(dz, n, reps=200_000, seed=0):
    d = np.random.default_rng(seed).normal(dz, 1.0, size=(reps, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    return np.mean(np.abs(t) > sps.t.ppf(0.975, n - 1))


def test_min_detectable_effect_has_80_percent_power_by_simulation():
    """The MDE of 5 pairs (d_z ≈ 1.68) is rejected in 80 % of simulated experiments; the sd of the
    200 000-rep estimate is 0.0009."""
    mde = stats.min_detectable_effect(5)
    assert mde == pytest.approx(1.682, abs=0.001)
    assert stats.power_paired_t(mde, 5) == pytest.approx(0.80, abs=1e-8)
    assert _simulated_power(mde, 5) == pytest.approx(0.80, abs=0.004)


def test_power_where_scipy_noncentral_t_fails():
    """n = 2, d_z = 20: scipy's nct gives NaN here; the integral of the definition agrees with
    simulation."""
    value = stats.power_paired_t(20.0, 2)
    assert math.isfinite(value)
    assert value == pytest.approx(_simulated_power(20.0, 2), abs=0.004)
    assert stats.min_detectable_effect(2) == pytest.approx(11.55, abs=0.01)


def test_runs_needed_edges():
    assert stats.runs_needed(0.0) == math.inf
    assert stats.runs_needed(1e-4) == math.inf  # more than a million pairs
    assert math.isnan(stats.runs_needed(math.nan))
    assert stats.runs_needed(-0.5) == 34  # the sign does not matter


def test_holm_matches_hand_computation():
    """m = 4: sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04, then the
    running maximum makes the last 0.06; NaN stays NaN and does not count."""
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02, math.nan])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])
    assert stats.holm([]).size == 0 and np.isnan(stats.holm([math.nan])).all()


def test_holm_controls_the_family_wise_error_rate_by_simulation():
    """Under the global null (6 independent uniform p), some adjusted p < 0.05 exactly when the
    smallest p < 0.05/6: probability 1 − (1 − 0.05/6)⁶ = 0.0490 ≤ 0.05."""
    rng = np.random.default_rng(0)
    p = rng.random((20_000, 6))
    adjusted = np.apply_along_axis(stats.holm, 1, p)
    assert (adjusted.min(axis=1) < 0.05).mean() == pytest.approx(1 - (1 - 0.05 / 6) ** 6, abs=0.005)
