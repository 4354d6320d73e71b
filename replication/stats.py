"""Statistics for paired runs: tests, intervals, multiple comparisons and power.

Run k of both optimizers shares its seed (initial weights, batch order), so the natural unit is
the per-seed difference d_k = b_k − a_k. On d:

* :func:`paired_tests` — the paired t-test (Student 1908; ``scipy.stats.ttest_rel``) and the
  Wilcoxon signed-rank test (Wilcoxon 1945, exact null distribution; ``scipy.stats.wilcoxon``),
  the t-based CI of the mean difference and a seeded percentile-bootstrap CI (Efron & Tibshirani
  1993, ch. 13), and the standardized effect d_z = mean(d)/sd(d) (Cohen 1988, §2.3);
* :func:`power_paired_t`, :func:`min_detectable_effect`, :func:`runs_needed` — power of the
  two-sided paired t-test from the noncentral t distribution (Cohen 1988, ch. 2);
* :func:`holm` — Holm's (1979) step-down adjustment of a family of p-values.

Nothing here imports TensorFlow/Keras.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import integrate, optimize, stats

ALPHA = 0.05          # significance level of every test and verdict
POWER = 0.80          # target power of the power analysis
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0    # fixed: the report is a pure function of the CSVs
MAX_RUNS = 1_000_000  # runs_needed above this is reported as infinite


def bootstrap_mean_ci(values, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``: ``resamples`` resamples of size n
    drawn with replacement by ``numpy.random.default_rng(seed)``, the (1 ± c)/2 quantiles of their
    means (numpy's linear interpolation). With n = 5 there are only 126 distinct resamples and the
    percentile interval is known to be too narrow (Efron & Tibshirani 1993, §13.3): it is shown
    beside the t interval, not instead of it. NaN for n < 2."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    low, high = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return float(low), float(high)


def paired_tests(a, b, confidence: float = 0.95) -> dict:
    """Paired statistics of d = b − a (``a``, ``b``: equal-length arrays, pair k = seed k).

    Keys: ``pairs``, ``paired_diff`` (mean d), ``paired_diff_std`` (sd of d, ddof 1),
    ``paired_ci_low``/``_high`` (mean ± t_{(1+c)/2, n−1}·sd/√n), ``bootstrap_ci_low``/``_high``
    (:func:`bootstrap_mean_ci`), ``paired_t``/``paired_p`` (two-sided paired t-test),
    ``wilcoxon_w``/``wilcoxon_p`` (two-sided signed-rank test; W = the smaller of the positive
    and negative rank sums; zero differences dropped; exact p for n ≤ 50 without ties — with 5
    pairs its smallest possible p is 2/2⁵ = 0.0625, so it can never reach 0.05), ``cohens_dz``.
    n < 2 or sd = 0 gives NaN where the quantity is undefined, never an exception."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    n = int(d.size)
    out = dict.fromkeys(("paired_diff", "paired_diff_std", "paired_ci_low", "paired_ci_high",
                         "bootstrap_ci_low", "bootstrap_ci_high", "paired_t", "paired_p",
                         "wilcoxon_w", "wilcoxon_p", "cohens_dz"), math.nan)
    out["pairs"] = n
    if n == 0:
        return out
    mean = float(d.mean())
    out["paired_diff"] = mean
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    out.update(paired_diff_std=sd, paired_ci_low=mean - half, paired_ci_high=mean + half)
    out["bootstrap_ci_low"], out["bootstrap_ci_high"] = bootstrap_mean_ci(d, confidence)
    if sd == 0.0:
        # Every pair differs by the same amount: the difference is exact; t is ±inf or undefined.
        if mean != 0.0:
            out.update(paired_t=math.copysign(math.inf, mean), paired_p=0.0,
                       cohens_dz=math.copysign(math.inf, mean))
    else:
        res = stats.ttest_rel(b, a)
        out.update(paired_t=float(res.statistic), paired_p=float(res.pvalue), cohens_dz=mean / sd)
    if np.count_nonzero(d) >= 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns that n is small for the normal approximation
            res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        out.update(wilcoxon_w=float(res.statistic), wilcoxon_p=float(res.pvalue))
    return out


def power_paired_t(dz: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n pairs at standardized effect d_z:
    P(|T| > t_{1−α/2, n−1}) for T noncentral t with n − 1 degrees of freedom and noncentrality
    d_z·√n (Cohen 1988, ch. 2)."""
    if n < 2:
        return math.nan
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = abs(dz) * math.sqrt(n)
    value = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if math.isfinite(value):
        return value
    # scipy's noncentral t returns NaN for some large noncentralities at small df: integrate its
    # definition T = (Z + nc)/√(W/df), W ~ χ²_df, instead: P(|T| > c) = E_W[Φ(nc − c√(W/df)) +
    # Φ(−nc − c√(W/df))].
    def integrand(w):
        s = crit * math.sqrt(w / df)
        return (stats.norm.cdf(nc - s) + stats.norm.cdf(-nc - s)) * stats.chi2.pdf(w, df)

    return float(integrate.quad(integrand, 0.0, math.inf, limit=200)[0])


def min_detectable_effect(n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest d_z that n pairs detect with the given power (two-sided paired t-test at
    ``alpha``): the root of :func:`power_paired_t` (d_z, n) = ``power``. Multiply by the sd of
    the differences for the effect in the metric's units. NaN for n < 2."""
    if n < 2:
        return math.nan
    high = 1.0
    while power_paired_t(high, n, alpha) < power:  # power grows with d_z: bracket the root
        high *= 2.0
    return float(optimize.brentq(lambda dz: power_paired_t(dz, n, alpha) - power, 0.0, high, xtol=1e-10))


def runs_needed(dz: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest number of pairs n ≥ 2 whose two-sided paired t-test at ``alpha`` detects
    the standardized effect ``dz`` with at least ``power``; inf when d_z = 0 or more than
    :data:`MAX_RUNS` would be needed; NaN when d_z is not a number."""
    if dz is None or math.isnan(dz):
        return math.nan
    dz = abs(dz)
    if dz == 0.0:
        return math.inf
    if math.isinf(dz):
        return 2.0
    if power_paired_t(dz, MAX_RUNS, alpha) < power:
        return math.inf
    low, high = 1, 2  # power(low) < target <= power(high); power grows with n
    while power_paired_t(dz, high, alpha) < power:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        if power_paired_t(dz, mid, alpha) >= power:
            high = mid
        else:
            low = mid
    return float(high)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order: with the m finite p sorted
    ascending, p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j)) (Holm 1979). NaN entries stay NaN
    and do not count in m. Rejecting p̃ < α controls the family-wise error rate at α."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out
