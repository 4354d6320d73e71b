"""Verdict rules (replication.verdicts) on constructed results with known answers."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from replication import results, stats, verdicts
from tests.test_results import make_history, synthetic_frame

ADAM = [0.50, 0.55, 0.60, 0.52, 0.58]


def comparison_for(**experiments):
    """compare_final + Holm over {experiment: (adam finals, amsgrad finals)}."""
    histories = [make_history(a, b, experiment=name) for name, (a, b) in experiments.items()]
    return verdicts.add_holm(results.compare_final(pd.concat(histories, ignore_index=True)))


def with_d(d):
    """AMSGrad = Adam + d per seed (train and test loss alike)."""
    return ADAM, list(np.add(ADAM, d))


def test_supported_needs_both_losses_lower_with_holm_p_below_005():
    cmp = comparison_for(**{"mnist-mlp": with_d([-0.20, -0.22, -0.29, -0.23, -0.26])})
    verdict, detail = verdicts.loss_verdict(cmp, "mnist-mlp")
    assert verdict == "supported"
    assert detail.count("→ supported") == 2 and "train loss: Δ=-0.24" in detail


def test_adam_significantly_lower_is_evidence_against():
    cmp = comparison_for(**{"mnist-logreg": with_d([0.020, 0.022, 0.019, 0.021, 0.018])})
    verdict, detail = verdicts.loss_verdict(cmp, "mnist-logreg")
    assert verdict == "not supported" and detail.count("→ evidence against") == 2


def test_not_significant_with_wide_interval_is_too_few_runs():
    """d = −0.10, −0.02, +0.03, −0.08, −0.01: mean −0.036, sd 0.0532, t-interval low −0.102 below
    −MDE = −1.682·0.0532 = −0.0895 → too few runs; the observed d_z = −0.68 needs 20 pairs."""
    d = np.array([-0.10, -0.02, 0.03, -0.08, -0.01])
    cmp = comparison_for(**{"mnist-mlp": with_d(d)})
    row = cmp[cmp.metric == "loss"].iloc[0]
    low = d.mean() - sps.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert row["paired_ci_low"] == pytest.approx(low) and low < -row["mde"]
    assert verdicts.classify(row) == verdicts.TOO_FEW
    dz = abs(d.mean() / d.std(ddof=1))
    assert stats.power_paired_t(dz, 20) >= 0.8 > stats.power_paired_t(dz, 19)
    verdict, detail = verdicts.loss_verdict(cmp, "mnist-mlp")
    assert verdict == "not supported"
    assert "→ too few runs (MDE 0.0895 with 5 pairs; the observed Δ would need 20 runs)" in detail


def test_too_few_runs_only_after_holm_says_so_rather_than_asking_for_runs_it_has():
    """d = −0.06, −0.05, −0.07, −0.04, −0.08 (mean −0.06, sd 0.0158): p ≈ 0.001 alone, so 5 pairs
    have the power for it (d_z = 3.8 needs 3); with Holm's p set to 0.06 (a family of tests) the
    cell is 'too few runs' and says that the adjustment, not the run count, is what it lacks."""
    d = np.array([-0.06, -0.05, -0.07, -0.04, -0.08])
    cmp = comparison_for(**{"mnist-mlp": with_d(d)})
    row = cmp[cmp.metric == "loss"].iloc[0].copy()
    row["holm_p"] = 0.06
    assert verdicts.classify(row) == verdicts.TOO_FEW and row["runs_needed"] <= 5
    text = verdicts.describe(row)
    assert f"the observed Δ is detectable with {row['runs_needed']:.0f} pairs before Holm's adjustment, not after it" in text
    assert "would need" not in text


def test_not_significant_with_narrow_interval_is_no_effect():
    """d = +0.010, −0.010, +0.005, −0.004, +0.001: the interval [−0.0092, +0.0100] excludes an
    AMSGrad advantage as large as the MDE (1.682·sd = 0.0131)."""
    d = np.array([0.010, -0.010, 0.005, -0.004, 0.001])
    cmp = comparison_for(**{"mnist-mlp": with_d(d)})
    row = cmp[cmp.metric == "loss"].iloc[0]
    assert row["paired_ci_low"] > -row["mde"]
    assert row["mde"] == pytest.approx(stats.min_detectable_effect(5) * d.std(ddof=1))
    assert verdicts.classify(row) == verdicts.NO_EFFECT
    verdict, detail = verdicts.loss_verdict(cmp, "mnist-mlp")
    assert verdict == "not supported" and detail.count("→ no effect of detectable size") == 2


def test_identical_runs_are_no_effect_and_missing_runs_not_run():
    cmp = comparison_for(**{"mnist-logreg": (ADAM, ADAM)})
    verdict, detail = verdicts.loss_verdict(cmp, "mnist-logreg")
    assert verdict == "not supported" and "no effect of detectable size" in detail
    assert verdicts.loss_verdict(cmp, "cifar10-cifarnet")[0] == "not run"
    assert verdicts.loss_verdict(pd.DataFrame(), "mnist-mlp")[0] == "not run"


def test_holm_family_is_the_verdict_tables_loss_tests():
    """Three experiments, train and test loss each: Holm over those 6 paired p (2 are shared),
    accuracies and experiments outside the table left out."""
    cmp = comparison_for(**{"mnist-mlp": with_d([-0.10, -0.02, 0.03, -0.08, -0.01]),
                            "mnist-logreg": with_d([0.020, 0.022, 0.019, 0.021, 0.018]),
                            "mnist-vae": with_d([-0.05, -0.06, -0.04, -0.05, -0.07])})
    family = cmp[cmp.metric.isin(["loss", "test_loss"])]
    np.testing.assert_allclose(family["holm_p"], stats.holm(family["paired_p"]))
    assert cmp.loc[cmp.metric == "accuracy", "holm_p"].isna().all()
    only = verdicts.add_holm(results.compare_final(make_history(*with_d([0.02] * 4 + [0.03]))), ["other"])
    assert only["holm_p"].isna().all()
    # an adjusted p is never below its raw p
    raw, adjusted = family["paired_p"].to_numpy(), family["holm_p"].to_numpy()
    assert (adjusted >= raw).all()


def test_rules_are_stated_with_the_constants_they_use():
    assert "Holm-adjusted" in verdicts.RULES["loss"] and "80%" in verdicts.RULES["loss"]
    assert f"{results.SEARCH_TOLERANCE:g} of the optimum" in verdicts.RULES["synthetic"]
    assert "β2 = 1/(1 + C²)" in verdicts.RULES["section3"]


def test_synthetic_verdict_per_setting():
    frame = synthetic_frame([1.0, 0.95, 0.99], [-1.0, -0.97, -0.99])
    for setting in ("online", "stochastic"):
        verdict, detail = verdicts.synthetic_verdict(frame, setting)
        assert verdict == "supported" and "AMSGrad median x_T -0.990 (distance 0.010" in detail
    # AMSGrad crossed to the optimum's side but is 0.25 away: not reached
    verdict, detail = verdicts.synthetic_verdict(synthetic_frame([1.0, 0.95], [-1.0, -0.5]), "online")
    assert verdict == "not supported" and "does not reach −1" in detail
    verdict, detail = verdicts.synthetic_verdict(synthetic_frame([0.2], [-1.0]), "online")
    assert verdict == "not supported" and "Adam's median x_T is not > 0.9" in detail
    assert verdicts.synthetic_verdict(synthetic_frame([1.0], [-1.0], settings=("online",)), "stochastic")[0] == "not run"
    assert verdicts.synthetic_verdict(synthetic_frame([1.0], [-1.0], schedule="constant"), "online")[0] == "not run"
    assert verdicts.synthetic_verdict(None, "online")[0] == "not run"


def test_synthetic_verdict_reports_the_one_million_step_budget():
    frame = synthetic_frame([1.0], [-0.999], rates=(0.5,))
    frame["step"] = frame["step"].map({100: 1_000_000, 200: 10_000_000})
    early = (frame.step == 1_000_000) & (frame.optimizer == "amsgrad")
    frame.loc[early, "x"] = -0.75
    verdict, detail = verdicts.synthetic_verdict(frame, "stochastic")
    assert verdict == "supported"
    assert "T = 10,000,000 steps" in detail and "at T = 1,000,000 the best α is 0.5: AMSGrad -0.750 (does not reach −1)" in detail


def test_section3_verdict_uses_theorem1_betas_only():
    rows = []
    for C in (3.0, 10.0):
        for b1, b2, adam_x in ((0.0, 1 / (1 + C * C), 1.0), (0.9, 0.99, -1.0)):
            frame = synthetic_frame([adam_x], [-1.0], settings=("cyclic",))
            rows.append(frame.assign(big_gradient=C, beta_1=b1, beta_2=b2))
    frame = pd.concat(rows, ignore_index=True)
    verdict, detail = verdicts.section3_verdict(frame)
    assert verdict == "supported" and "C = 3" in detail and "C = 10" in detail
    stuck_not = frame.copy()
    stuck_not.loc[(stuck_not.optimizer == "adam") & (stuck_not.beta_1 == 0.0) & (stuck_not.step == 200), "x"] = 0.5
    assert verdicts.section3_verdict(stuck_not)[0] == "not supported"
    assert verdicts.section3_verdict(frame[frame.beta_1 == 0.9])[0] == "not run"
    assert verdicts.section3_verdict(synthetic_frame([1.0], [-1.0]))[0] == "not run"


def test_a_single_pair_is_too_few_runs_without_a_test():
    """One paired run (a long experiment in progress): no spread, so no test, no MDE; said plainly."""
    from replication import results, verdicts
    from tests.test_results import make_history

    comparison = verdicts.add_holm(results.compare_final(make_history([0.50], [0.52], experiment="mnist-mlp")),
                                   ["mnist-mlp"])
    verdict, detail = verdicts.loss_verdict(comparison, "mnist-mlp")
    assert verdict == "not supported"
    assert "too few runs (1 pair: no test possible yet)" in detail and "nan" not in detail and "∞" not in detail
