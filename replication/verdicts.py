"""The verdict on each claim of Reddi et al.: every rule stated once, in :data:`RULES`, which the
report prints above the verdict table, and implemented once, by the functions below.

* :func:`loss_claim` / :func:`loss_verdict` — "AMSGrad reaches lower train and test loss than Adam" (paper §5, Fig. 2–3):
  paired t-test on the per-seed differences, Holm-adjusted across the verdict table
  (:func:`add_holm`), each failure classified by :func:`classify` with the power analysis;
* :func:`synthetic_verdict` — "AMSGrad converges on the synthetic problem, Adam does not" (§5,
  Fig. 1), per setting, at the α the pre-stated search chose (:data:`results.SEARCH_CRITERION`);
* :func:`section3_verdict` — "Adam converges to the worst point +1 on f_t = Cx / −x" (§3,
  Theorem 1).

Nothing here imports TensorFlow/Keras.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import results
from .stats import ALPHA, POWER

SUPPORTED, NOT_SUPPORTED, NOT_RUN = "supported", "not supported", "not run"
# What a "not supported" loss comparison says about the data (see RULES["loss"]).
AGAINST, NO_EFFECT, TOO_FEW = "evidence against", "no effect of detectable size", "too few runs"
LOSS_METRICS = (("loss", "train loss"), ("test_loss", "test loss"))
ADAM_STUCK = 0.9  # Adam "does not converge" when its median final x is above this (the worst point is +1)

RULES = {
    "loss": (
        "**Loss claims** (AMSGrad reaches lower train and test loss than Adam). Run k of both optimizers "
        "shares its seed, so each comparison is made on the per-seed differences d = AMSGrad − Adam of "
        "the final-epoch loss. *Supported* when, for the train loss **and** the test loss, the mean of d "
        f"is negative and the paired t-test's p, Holm-adjusted over every test of this table (train and "
        f"test loss of each experiment listed), is < {ALPHA}. Otherwise *not supported*, and each metric "
        f"that fails says why: **{AGAINST}** (d > 0 with Holm p < {ALPHA}: Adam is lower); "
        f"**{NO_EFFECT}** (not significant, and the 95 % t interval of the mean of d excludes an AMSGrad "
        f"advantage as large as the MDE — the smallest effect the runs detect with {POWER:.0%} power at "
        f"the observed spread of d); **{TOO_FEW}** (not significant, and the interval still admits an "
        "advantage of the MDE or more; the runs the observed effect would need are given). "
        "*Not run*: no history with both optimizers."
    ),
    "synthetic": (
        "**Synthetic claim** (AMSGrad converges, Adam does not; per setting). On the paper's schedule "
        "α_t = α/√t with β1 = 0.9, β2 = 0.99, at the α chosen by the search criterion stated below and the "
        "longest budget run: *supported* when AMSGrad's median final x over seeds is within "
        f"{results.SEARCH_TOLERANCE:g} of the optimum −1 and Adam's median final x is > {ADAM_STUCK} "
        "(near the worst point +1); *not supported* otherwise, saying which part fails; the 1 M-step "
        "budget of the other reproductions is given beside it. *Not run*: no α/√t runs of both optimizers."
    ),
    "section3": (
        "**§3 claim** (Theorem 1: on f_t = Cx for t mod 3 = 1, else −x, with β1 = 0 and β2 = 1/(1 + C²), "
        "Adam converges to +1). *Supported* when, for every C run, at the α the search criterion chose, "
        f"Adam's final x is > {ADAM_STUCK} and AMSGrad's is within {results.SEARCH_TOLERANCE:g} of −1."
    ),
}


# ----------------------------------------------------------------------------------- loss claims
def add_holm(comparison: pd.DataFrame, experiments=None) -> pd.DataFrame:
    """``comparison`` (:func:`results.compare_final`) with ``holm_p``: the paired t-test's p
    adjusted by Holm's method (:func:`replication.stats.holm`) over the family of tests the
    verdict table makes — train and test loss of each experiment in ``experiments`` (default:
    all), with bias correction where both settings were run, as :func:`loss_verdict` reads them.
    Rows outside the family get NaN."""
    from .stats import holm

    out = comparison.copy()
    out["holm_p"] = np.nan
    if out.empty:
        return out
    family = []
    for experiment, rows in out.groupby("experiment", sort=False):
        if experiments is not None and experiment not in experiments:
            continue
        if rows["bias_correction"].any():
            rows = rows[rows["bias_correction"]]
        family += list(rows.index[rows["metric"].isin([m for m, _ in LOSS_METRICS])])
    out.loc[family, "holm_p"] = holm(out.loc[family, "paired_p"].to_numpy(dtype=float))
    return out


def classify(row) -> str:
    """:data:`SUPPORTED`, :data:`AGAINST`, :data:`NO_EFFECT` or :data:`TOO_FEW` for one
    comparison row (lower is better, the claim is AMSGrad lower), by :data:`RULES` ``["loss"]``."""
    d, p, sd = row["paired_diff"], row.get("holm_p", math.nan), row["paired_diff_std"]
    if isinstance(p, float) and p < ALPHA:
        return SUPPORTED if d < 0 else AGAINST
    if sd == 0.0 and d == 0.0:
        return NO_EFFECT  # identical in every pair
    low, mde = row["paired_ci_low"], row["mde"]
    if not (math.isfinite(low) and math.isfinite(mde)):
        return TOO_FEW  # fewer than 2 pairs: nothing can be detected
    return NO_EFFECT if low > -mde else TOO_FEW


def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:+.{digits}g}" if isinstance(x, float) else str(x)


def _fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def describe(row) -> str:
    """One metric's numbers and classification, e.g. ``train loss: Δ=+0.002 [+0.0018, +0.0021],
    Holm p<0.001 → evidence against``."""
    label = dict(LOSS_METRICS).get(row["metric"], row["metric"])
    kind = classify(row)
    text = (f"{label}: Δ={_fmt(row['paired_diff'])} [{_fmt(row['paired_ci_low'])}, {_fmt(row['paired_ci_high'])}], "
            f"Holm p={_fmt_p(row.get('holm_p', math.nan))} → {kind}")
    if kind == TOO_FEW and not math.isfinite(row["mde"]):  # fewer than 2 pairs: no spread, no test
        text += f" ({row['pairs']} pair{'s' if row['pairs'] != 1 else ''}: no test possible yet)"
    elif kind == TOO_FEW:
        needed = row["runs_needed"]
        if not math.isfinite(needed) or row["paired_diff"] >= 0:
            need = "the observed Δ would need ∞ runs"
        elif needed <= row["pairs"]:  # the power analysis is per test; Holm's adjustment raised p
            need = f"the observed Δ is detectable with {needed:.0f} pairs before Holm's adjustment, not after it"
        else:
            need = f"the observed Δ would need {needed:.0f} runs"
        text += f" (MDE {abs(row['mde']):.3g} with {row['pairs']} pairs; {need})"
    elif kind == NO_EFFECT and math.isfinite(row["mde"]):
        text += f" (MDE {abs(row['mde']):.3g} with {row['pairs']} pairs)"
    return text


NOT_RUN_DETAIL = "no history.csv with both Adam and AMSGrad"


def loss_claim(comparison: pd.DataFrame, experiment: str) -> tuple[str, list]:
    """(verdict, ``[(loss label, classification or None where unpaired, its description)]``) of
    the loss claim for ``experiment`` by :data:`RULES` ``["loss"]``, one entry per loss of
    :data:`LOSS_METRICS`; no entries when it was not run. ``comparison`` should carry ``holm_p``
    (:func:`add_holm` over the whole verdict table); without it the family is its own experiments."""
    if comparison is None or comparison.empty:
        return NOT_RUN, []
    if "holm_p" not in comparison.columns:
        comparison = add_holm(comparison)
    rows = comparison[comparison["experiment"] == experiment]
    if rows.empty:
        return NOT_RUN, []
    if rows["bias_correction"].any():
        rows = rows[rows["bias_correction"]]
    losses = []
    for metric, name in LOSS_METRICS:
        row = rows[rows["metric"] == metric]
        if row.empty or not math.isfinite(row["paired_diff"].iloc[0]):
            losses.append((name, None, f"no paired {name}"))
        else:
            losses.append((name, classify(row.iloc[0]), describe(row.iloc[0])))
    verdict = SUPPORTED if all(kind == SUPPORTED for _name, kind, _text in losses) else NOT_SUPPORTED
    return verdict, losses


def loss_verdict(comparison: pd.DataFrame, experiment: str) -> tuple[str, str]:
    """(verdict, detail) of :func:`loss_claim`: its losses' descriptions joined."""
    verdict, losses = loss_claim(comparison, experiment)
    if not losses:
        return verdict, NOT_RUN_DETAIL
    return verdict, "; ".join(text for _name, _kind, text in losses)


# ------------------------------------------------------------------------------ synthetic claims
PAPER_SWEEP = {"schedule": "inverse-sqrt", "beta_1": 0.9, "beta_2": 0.99, "big_gradient": 1010.0}


def _paper_rows(search: pd.DataFrame, setting: str) -> pd.DataFrame:
    """The α search rows of ``setting`` in the paper's sweep (α/√t, β 0.9/0.99, bias correction on
    where both were run)."""
    rows = search[search["setting"] == setting]
    for column, value in PAPER_SWEEP.items():
        if column in rows.columns:
            rows = rows[np.isclose(rows[column], value)] if isinstance(value, float) else rows[rows[column] == value]
    if "bias_correction" in rows.columns and rows["bias_correction"].any():
        rows = rows[rows["bias_correction"]]
    return rows


def synthetic_verdict(trajectories: pd.DataFrame | None, setting: str) -> tuple[str, str]:
    """(verdict, detail) of the synthetic claim in ``setting`` ("online" or "stochastic") by
    :data:`RULES` ``["synthetic"]``."""
    if trajectories is None or trajectories.empty:
        return NOT_RUN, "no synthetic/trajectories.csv"
    rows = _paper_rows(results.search_learning_rate(trajectories), setting)
    if rows.empty or rows["adam_x_median"].isna().all():
        return NOT_RUN, f"no α/√t runs of both Adam and AMSGrad in the {setting} setting"
    budgets = sorted(rows["steps"].unique())
    chosen = rows[rows["chosen"]].set_index("steps")
    best = chosen.loc[budgets[-1]]
    reached, stuck = bool(best["reached"]), best["adam_x_median"] > ADAM_STUCK
    detail = (f"T = {budgets[-1]:,} steps, α = {best['learning_rate']:g} (of {int((rows['steps'] == budgets[-1]).sum())}): "
              f"AMSGrad median x_T {best['amsgrad_x_median']:+.3f} (distance {best['amsgrad_distance_median']:.3f}, "
              f"seeds {int(best['seeds'])}), Adam {best['adam_x_median']:+.3f}")
    failures = ([] if reached else [f"AMSGrad does not reach −1 (median distance > {results.SEARCH_TOLERANCE:g})"])
    failures += [] if stuck else [f"Adam's median x_T is not > {ADAM_STUCK}"]
    if 1_000_000 in chosen.index and budgets[-1] != 1_000_000:
        at = chosen.loc[1_000_000]
        detail += (f"; at T = 1,000,000 the best α is {at['learning_rate']:g}: AMSGrad {at['amsgrad_x_median']:+.3f} "
                   f"({'reaches' if at['reached'] else 'does not reach'} −1)")
    if failures:
        return NOT_SUPPORTED, "; ".join(failures) + f" ({detail})"
    return SUPPORTED, detail


def section3_verdict(trajectories: pd.DataFrame | None) -> tuple[str, str]:
    """(verdict, detail) of Theorem 1's claim on the §3 family by :data:`RULES` ``["section3"]``:
    the cyclic sweeps run with β1 = 0 and β2 = 1/(1 + C²)."""
    if trajectories is None or trajectories.empty or "big_gradient" not in trajectories.columns:
        return NOT_RUN, "no §3-family runs"
    search = results.search_learning_rate(trajectories)
    rows = search[(search["setting"] == "cyclic") & (search["beta_1"] == 0.0)
                  & np.isclose(search["beta_2"], 1.0 / (1.0 + search["big_gradient"] ** 2))
                  & search["chosen"]]
    rows = rows[rows["steps"] == rows.groupby("big_gradient")["steps"].transform("max")]
    if rows.empty or rows["adam_x_median"].isna().any():
        return NOT_RUN, "no §3-family runs of both Adam and AMSGrad with β1 = 0, β2 = 1/(1 + C²)"
    parts, holds = [], True
    for _, r in rows.sort_values("big_gradient").iterrows():
        ok = r["reached"] and r["adam_x_median"] > ADAM_STUCK
        holds &= bool(ok)
        parts.append(f"C = {r['big_gradient']:g} (α = {r['learning_rate']:g}, T = {r['steps']:,}): Adam "
                     f"{r['adam_x_median']:+.3f}, AMSGrad {r['amsgrad_x_median']:+.3f}")
    return (SUPPORTED if holds else NOT_SUPPORTED), "; ".join(parts)
