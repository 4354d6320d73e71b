"""Loaders and statistics of replication.results on constructed data with known answers."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from replication import results
from replication.errors import UserError


def make_history(adam_final, amsgrad_final, epochs=3, experiment="mnist-mlp", test_offset=0.0,
                 diverged=()):
    """Final train loss per run given; earlier epochs are larger. Accuracy = 1 − loss."""
    rows = []
    for opt, finals in (("adam", adam_final), ("amsgrad", amsgrad_final)):
        for run, final in enumerate(finals):
            for epoch in range(1, epochs + 1):
                loss = final + (epochs - epoch) * 0.1
                bad = (opt, run) in diverged
                rows.append({"experiment": experiment, "optimizer": opt, "bias_correction": True, "run": run,
                             "seed": 100 + run, "epoch": epoch, "iteration": epoch * 10, "learning_rate": 0.001,
                             "schedule": "inverse-sqrt", "beta_1": 0.9, "beta_2": 0.99, "epsilon": 1e-7,
                             "batch_size": 128, "loss_function": "binary",
                             "loss": float("nan") if bad and epoch == epochs else loss,
                             "accuracy": 1 - loss, "test_loss": loss + test_offset,
                             "test_accuracy": 1 - loss - test_offset, "diverged": bad and epoch == epochs,
                             "epoch_seconds": 0.1})
    return pd.DataFrame(rows)


def test_mean_ci_matches_t_formula():
    x = [1.0, 2.0, 4.0, 7.0]
    s = results.mean_ci(x)
    half = stats.t.ppf(0.975, 3) * np.std(x, ddof=1) / 2
    assert s["n"] == 4 and s["mean"] == pytest.approx(3.5)
    assert s["std"] == pytest.approx(np.std(x, ddof=1))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((3.5 - half, 3.5 + half))


def test_mean_ci_constant_is_zero_width_and_n1_is_nan():
    s = results.mean_ci([0.3] * 5)
    assert s["ci_low"] == pytest.approx(0.3) and s["ci_high"] == pytest.approx(0.3) and s["std"] == 0
    one = results.mean_ci([0.3, float("nan")])
    assert one["n"] == 1 and one["mean"] == 0.3
    assert math.isnan(one["std"]) and math.isnan(one["ci_low"]) and math.isnan(one["ci_high"])
    assert math.isnan(results.mean_ci([])["mean"])


def test_compare_final_matches_scipy_and_hand_formulas():
    adam, ams = [0.50, 0.55, 0.60, 0.52, 0.58], [0.40, 0.47, 0.43, 0.41, 0.44]
    cmp = results.compare_final(make_history(adam, ams))
    row = cmp[cmp.metric == "loss"].iloc[0]
    a, b = np.array(adam), np.array(ams)
    assert row["mean_adam"] == pytest.approx(a.mean()) and row["mean_amsgrad"] == pytest.approx(b.mean())
    assert row["diff"] == pytest.approx(b.mean() - a.mean())
    welch = stats.ttest_ind(b, a, equal_var=False)
    assert row["welch_t"] == pytest.approx(welch.statistic) and row["welch_p"] == pytest.approx(welch.pvalue)
    va, vb = a.var(ddof=1) / 5, b.var(ddof=1) / 5
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert row["welch_df"] == pytest.approx(df)
    assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx((row["diff"] - half, row["diff"] + half))
    mwu = stats.mannwhitneyu(b, a, alternative="two-sided")
    assert row["mannwhitney_u"] == mwu.statistic and row["mannwhitney_p"] == pytest.approx(mwu.pvalue)
    pooled = math.sqrt((4 * a.var(ddof=1) + 4 * b.var(ddof=1)) / 8)
    d = (b.mean() - a.mean()) / pooled
    assert row["cohens_d"] == pytest.approx(d)
    assert row["hedges_g"] == pytest.approx(d * (1 - 3 / (4 * 10 - 9)))
    assert row["lower_is_better"] and row["adam_wins"] == 0 and row["amsgrad_wins"] == 5
    acc = cmp[cmp.metric == "accuracy"].iloc[0]
    assert not acc["lower_is_better"] and acc["diff"] == pytest.approx(a.mean() - b.mean())
    assert acc["adam_wins"] == 0  # accuracy = 1 − loss: AMSGrad higher in every run


def test_compare_final_paired_columns_pair_by_run_and_match_scipy():
    """Run k of both optimizers shares its seed: the paired statistics use d_k = AMSGrad_k − Adam_k
    over the runs both finished (a diverged Adam run drops its pair)."""
    adam, ams = [0.50, 0.55, 0.60, 0.52, 0.58, 0.9], [0.41, 0.47, 0.55, 0.46, 0.49, 0.3]
    cmp = results.compare_final(make_history(adam, ams, diverged={("adam", 5)}))
    assert list(cmp.columns) == results.COMPARISON_COLUMNS
    row = cmp[cmp.metric == "loss"].iloc[0]
    a, b = np.array(adam[:5]), np.array(ams[:5])
    d = b - a
    ref = stats.ttest_rel(b, a)
    assert row["pairs"] == 5 and row["paired_diff"] == pytest.approx(d.mean())
    assert (row["paired_t"], row["paired_p"]) == pytest.approx((ref.statistic, ref.pvalue))
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert (row["paired_ci_low"], row["paired_ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(d).pvalue) and row["wilcoxon_w"] == 0
    assert row["bootstrap_ci_low"] >= d.min() and row["bootstrap_ci_high"] <= d.max()
    # power: MDE of 5 pairs = 1.682 sd(d); the observed d_z = −4.1 needs only 3 pairs
    assert row["mde_dz"] == pytest.approx(1.682, abs=1e-3)
    assert row["mde"] == pytest.approx(row["mde_dz"] * d.std(ddof=1))
    assert row["cohens_dz"] == pytest.approx(d.mean() / d.std(ddof=1)) and row["runs_needed"] == 3
    # the paired test sees what Welch misses: the spread between seeds cancels in d
    assert row["paired_p"] < row["welch_p"]


def test_adam_beat_amsgrad_count_pairs_by_run():
    # run 0: Adam lower; run 1: tie; run 2: AMSGrad lower; run 3: Adam lower
    cmp = results.compare_final(make_history([0.3, 0.5, 0.9, 0.2], [0.4, 0.5, 0.6, 0.25]))
    loss = cmp[cmp.metric == "loss"].iloc[0]
    assert (loss["pairs"], loss["adam_wins"], loss["amsgrad_wins"], loss["ties"]) == (4, 2, 1, 1)
    acc = cmp[cmp.metric == "accuracy"].iloc[0]  # higher is better, same order of runs
    assert (acc["adam_wins"], acc["amsgrad_wins"], acc["ties"]) == (2, 1, 1)


def test_count_wins_unit():
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2])
    b = pd.Series([2.0, 2.0, 1.0, 9.0], index=[0, 1, 2, 3])
    assert results.count_wins(a, b, lower_is_better=True) == {"pairs": 3, "a_wins": 1, "b_wins": 1, "ties": 1}


def test_n1_gives_nan_not_crash_and_diverged_runs_are_excluded_and_counted():
    cmp = results.compare_final(make_history([0.5], [0.4]))
    row = cmp[cmp.metric == "loss"].iloc[0]
    assert row["diff"] == pytest.approx(-0.1)
    for col in ("welch_t", "welch_p", "diff_ci_low", "mannwhitney_u", "cohens_d", "hedges_g", "std_adam"):
        assert math.isnan(row[col]), col
    cmp = results.compare_final(make_history([0.5, 0.6, 0.7], [0.4, 0.4, 0.45], diverged={("adam", 1)}))
    row = cmp[cmp.metric == "loss"].iloc[0]
    assert (row["n_adam"], row["diverged_adam"], row["n_amsgrad"], row["diverged_amsgrad"]) == (2, 1, 3, 0)
    assert row["mean_adam"] == pytest.approx(0.6) and row["pairs"] == 2
    summary = results.summarize_epochs(make_history([0.5, 0.6, 0.7], [0.4, 0.4, 0.45], diverged={("adam", 1)}))
    last = summary[(summary.optimizer == "adam") & (summary.epoch == 3) & (summary.metric == "loss")].iloc[0]
    assert last["n"] == 2 and last["diverged"] == 1 and last["mean"] == pytest.approx(0.6)


def test_summarize_epochs_per_optimizer_and_epoch():
    h = make_history([0.5, 0.7], [0.4, 0.4])
    s = results.summarize_epochs(h)
    assert set(s.metric) == set(results.METRICS)
    row = s[(s.optimizer == "adam") & (s.epoch == 1) & (s.metric == "loss")].iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(0.8) and row["std"] == pytest.approx(np.std([0.7, 0.9], ddof=1))
    flat = s[(s.optimizer == "amsgrad") & (s.metric == "loss")]
    assert np.allclose(flat["ci_high"] - flat["ci_low"], 0.0)


def test_load_history_dtypes_and_name_resolution(tmp_path):
    folder = tmp_path / "mnist-mlp"
    folder.mkdir()
    make_history([0.5, 0.6], [0.4, 0.45]).to_csv(folder / "history.csv", index=False)
    by_folder = results.load_history(folder)
    by_name = results.load_history("mnist-mlp", out=tmp_path)
    by_file = results.load_history(folder / "history.csv")
    pd.testing.assert_frame_equal(by_folder, by_name)
    pd.testing.assert_frame_equal(by_folder, by_file)
    assert list(by_folder.columns) == list(results.HISTORY_DTYPES)
    assert by_folder["bias_correction"].dtype == bool and by_folder["diverged"].dtype == bool
    assert by_folder["run"].dtype == "int64" and by_folder["epoch"].dtype == "int64"
    assert by_folder["loss"].dtype == "float64"
    assert pd.api.types.is_string_dtype(by_folder["optimizer"])


def test_loaders_missing_file_name_the_file_and_command(tmp_path):
    with pytest.raises(UserError, match=r"mnist-mlp/history.csv not found.*replicate train mnist-mlp"):
        results.load_history("mnist-mlp", out=tmp_path)
    with pytest.raises(UserError, match=r"iterations.csv not found.*replicate train"):
        results.load_iterations(tmp_path / "digits-mlp")
    with pytest.raises(UserError, match=r"gridsearch.csv not found.*replicate gridsearch mnist-logreg"):
        results.load_gridsearch("mnist-logreg", out=tmp_path)
    with pytest.raises(UserError, match=r"trajectories.csv not found.*replicate synthetic"):
        results.load_synthetic(tmp_path)


def test_load_gridsearch_defensive_columns(tmp_path):
    folder = tmp_path / "mnist-logreg"
    folder.mkdir()
    pd.DataFrame({"optimizer": ["adam", "adam"], "learning_rate": [0.001, 0.1], "beta_2": [0.99, 0.99],
                  "mean_test_score": [-0.3, float("nan")], "extra": [1, 2]}).to_csv(folder / "gridsearch.csv", index=False)
    g = results.load_gridsearch(folder)
    assert g["mean_val_loss"].iloc[0] == pytest.approx(0.3)
    assert list(g["diverged"]) == [False, True] and g["diverged"].dtype == bool
    assert "extra" in g.columns and (g["experiment"] == "mnist-logreg").all()


def test_load_iterations_dtypes(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    pd.DataFrame({"experiment": "x", "optimizer": "adam", "bias_correction": ["True", "False"], "run": [0, 0],
                  "seed": [1, 1], "epoch": [1, 1], "iteration": [1, 2], "batches": [1, 1],
                  "loss": [0.5, 0.4]}).to_csv(folder / "iterations.csv", index=False)
    it = results.load_iterations(folder)
    assert list(it.columns) == list(results.ITERATION_DTYPES)
    assert list(it["bias_correction"]) == [True, False] and it["iteration"].dtype == "int64"


def synthetic_frame(adam_x, amsgrad_x, settings=("online", "stochastic"), rates=(0.01,), schedule="inverse-sqrt"):
    rows = []
    for setting in settings:
        for lr in rates:
            for opt, finals in (("adam", adam_x), ("amsgrad", amsgrad_x)):
                for seed, xf in enumerate(finals):
                    for step, x in ((100, 0.0), (200, xf)):
                        rows.append({"setting": setting, "optimizer": opt, "learning_rate": lr, "schedule": schedule,
                                     "bias_correction": True, "beta_1": 0.9, "beta_2": 0.99, "epsilon": 1e-8,
                                     "seed": seed, "step": step, "x": x, "x_min": x, "x_max": x,
                                     "avg_regret": 0.1 * (1 + x)})
    return pd.DataFrame(rows)


def test_check_synthetic_claim_median_over_seeds():
    claim = results.check_synthetic_claim(synthetic_frame([1.0, 1.0, 0.5], [-1.0, -0.9, 0.2]))
    assert len(claim) == 2 and claim["claim_holds"].all()
    assert claim["x_median_adam"].iloc[0] == 1.0 and claim["x_median_amsgrad"].iloc[0] == -0.9
    claim = results.check_synthetic_claim(synthetic_frame([0.5, 0.5], [-1.0, -1.0]))
    assert not claim["claim_holds"].any()


def _search_frame():
    """Stochastic sweep, 3 seeds × α ∈ {0.1, 1, 10}, records at 10⁴, 10⁵ and 1.5·10⁵ steps."""
    x_ams = {  # (α, budget) -> final x per seed
        (0.1, 10_000): [0.5, 0.4, 0.3], (0.1, 100_000): [0.2, 0.1, 0.0], (0.1, 150_000): [0.0, -0.1, -0.2],
        (1.0, 10_000): [0.0, -0.5, -0.6], (1.0, 100_000): [-0.9, -0.97, -0.99], (1.0, 150_000): [-0.96, -0.97, -0.99],
        (10.0, 10_000): [-0.7, 1.0, -0.1], (10.0, 100_000): [-0.99, -0.5, -0.97], (10.0, 150_000): [-0.97, -0.5, -1.0],
    }
    rows = []
    for (lr, step), xs in x_ams.items():
        for seed, x in enumerate(xs):
            for opt, value in (("amsgrad", x), ("adam", 1.0 - 0.01 * seed)):
                rows.append({"setting": "stochastic", "optimizer": opt, "learning_rate": lr,
                             "schedule": "inverse-sqrt", "bias_correction": True, "beta_1": 0.9, "beta_2": 0.99,
                             "epsilon": 1e-8, "big_gradient": 1010.0, "seed": seed, "step": step, "x": value,
                             "x_min": value, "x_max": value, "avg_regret": 0.1 * (1 + value)})
    return pd.DataFrame(rows)


def test_search_learning_rate_matches_hand_medians_and_tie_break():
    search = results.search_learning_rate(_search_frame())
    assert sorted(search.steps.unique()) == [10_000, 100_000, 150_000]
    at = {steps: g.set_index("learning_rate") for steps, g in search.groupby("steps")}
    # medians of x + 1 over the three seeds
    assert at[10_000]["amsgrad_distance_median"].tolist() == pytest.approx([1.4, 0.5, 0.9])
    assert at[100_000]["amsgrad_distance_median"].tolist() == pytest.approx([1.1, 0.03, 0.03])
    assert at[150_000]["amsgrad_distance_median"].tolist() == pytest.approx([0.9, 0.03, 0.03])
    assert at[150_000].loc[10.0, "amsgrad_distance_max"] == pytest.approx(0.5)
    assert at[150_000].loc[10.0, "amsgrad_distance_min"] == pytest.approx(0.0)
    # 10⁴: α = 1 wins; 10⁵ and the last step: α = 1 and 10 tie at 0.03, the smaller α wins
    for steps in at:
        assert at[steps].index[at[steps]["chosen"]].tolist() == [1.0]
    assert at[150_000]["reached"].tolist() == [False, True, True]  # tolerance 0.05
    assert at[150_000].loc[1.0, "adam_x_median"] == pytest.approx(0.99)
    assert at[150_000].loc[1.0, "amsgrad_regret_median"] == pytest.approx(0.1 * (1 - 0.97))


def test_search_budgets_are_decades_every_run_recorded():
    frame = _search_frame()
    drop = (frame.optimizer == "adam") & (frame.seed == 2) & (frame.learning_rate == 10.0) & (frame.step == 100_000)
    search = results.search_learning_rate(frame[~drop])
    assert sorted(search.steps.unique()) == [10_000, 150_000]
    shorter = frame[~((frame.learning_rate == 0.1) & (frame.step == 150_000))]
    # one α stopped at 10⁵: the sweep's common last step is 10⁵
    assert sorted(results.search_learning_rate(shorter).steps.unique()) == [10_000, 100_000]


def test_load_synthetic_fills_big_gradient_of_older_files(tmp_path):
    old = _search_frame().drop(columns="big_gradient")
    old.loc[old.index[:6], "setting"] = "cyclic"
    old.to_csv(tmp_path / "trajectories.csv", index=False)
    frame = results.load_synthetic(tmp_path / "trajectories.csv")
    assert list(frame.columns) == [c for c in results.SYNTHETIC_DTYPES if c in frame.columns]
    assert frame.loc[frame.setting == "cyclic", "big_gradient"].isna().all()
    assert (frame.loc[frame.setting != "cyclic", "big_gradient"] == 1010).all()


def test_atomic_writes_honour_the_umask(tmp_path):
    """Files written atomically (CSV, JSON, text, checkpoints) get 0666 & ~umask, not mkstemp's 0600."""
    import os
    import stat

    from replication import io

    old = os.umask(0o022)
    try:
        paths = [io.write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "a.csv"),
                 io.write_json_atomic({"a": 1}, tmp_path / "a.json"),
                 io.write_text_atomic("x", tmp_path / "a.md"),
                 io.write_npz_atomic({"a": np.zeros(2)}, tmp_path / "a.npz")]
        os.umask(0o077)
        private = io.write_text_atomic("x", tmp_path / "b.md")
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [0o644] * 4
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


# Bytes no UTF-8 decoder accepts (0xff never occurs in UTF-8): a file saved as Latin-1/UTF-16, or binary.
NOT_UTF8 = b'\xff\xfe{"adam": {"learning_rate": 0.001}}\n'


def test_read_json_of_non_utf8_file_is_a_user_error_naming_it(tmp_path):
    from replication import io

    path = tmp_path / "best_params.json"
    path.write_bytes(NOT_UTF8)
    with pytest.raises(UserError) as info:
        io.read_json(path)
    message = str(info.value)
    assert str(path) in message and "UTF-8" in message and "\n" not in message


def test_read_csv_of_non_utf8_file_is_a_user_error_naming_it(tmp_path):
    path = tmp_path / "trajectories.csv"
    path.write_bytes(b"setting,optimizer\n\xff\xfe,adam\n")
    with pytest.raises(UserError) as info:
        results.load_synthetic(path)
    message = str(info.value)
    assert str(path) in message and "UTF-8" in message and "\n" not in message


@pytest.mark.parametrize("code, needle", [("ENOSPC", "disk full"), ("EDQUOT", "disk full"),
                                          ("EACCES", "cannot write"), ("EROFS", "cannot write")])
def test_failed_atomic_write_is_a_one_line_output_error(code, needle, tmp_path, monkeypatch):
    """An OSError while writing a result (disk full, quota, permissions, read-only file system)
    becomes an OutputError naming the file and saying what to do; no temp file is left behind."""
    import errno
    import os

    from replication import io
    from replication.errors import OutputError

    number = getattr(errno, code)

    def failing_fsync(fd):
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OutputError) as info:
        io.write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "history.csv")
    message = str(info.value)
    assert needle in message and str(tmp_path / "history.csv") in message and "\n" not in message
    assert "rerun the same command" in message and os.strerror(number) in message
    assert list(tmp_path.iterdir()) == []


def test_source_fingerprint_changes_with_the_code_only(tmp_path):
    """Results record which code computed them (provenance → code); the fingerprint works without git."""
    from replication import io

    for package in io.CODE_PACKAGES:
        (tmp_path / package / "sub").mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("x = 1\n")
        (tmp_path / package / "sub" / "m.py").write_text("y = 2\n")
    first = io.source_fingerprint(tmp_path)
    (tmp_path / "replication" / "notes.txt").write_text("not code")
    assert io.source_fingerprint(tmp_path) == first
    (tmp_path / "gridsearch" / "sub" / "m.py").write_text("y = 3\n")
    assert io.source_fingerprint(tmp_path) != first
    (tmp_path / "gridsearch" / "sub" / "m.py").write_text("y = 2\n")
    (tmp_path / "gridsearch" / "sub" / "m.py").rename(tmp_path / "gridsearch" / "sub" / "n.py")
    assert io.source_fingerprint(tmp_path) != first  # a moved file is other code


def test_source_fingerprint_leaves_out_reporting_and_command_line_code(tmp_path):
    """Editing the report, figures, CLI text or progress lines keeps a half-finished run's checkpoint
    (issue 25): only code that computes numbers is fingerprinted. Every module of the real tree is
    classified, and the classification is checked on a copy of it."""
    import shutil
    from pathlib import Path

    from replication import io

    ROOT = Path(__file__).resolve().parents[1]
    shutil.copytree(ROOT / "replication", tmp_path / "replication")
    shutil.copytree(ROOT / "gridsearch", tmp_path / "gridsearch")
    first = io.source_fingerprint(tmp_path)
    assert first == io.source_fingerprint(ROOT)
    for relative in ("replication/report.py", "replication/plots.py", "replication/commands/train.py",
                     "replication/cli.py", "replication/progress.py"):
        with open(tmp_path / relative, "a") as handle:
            handle.write("# edited\n")
        assert io.source_fingerprint(tmp_path) == first, relative
    for relative in ("replication/optimizers.py", "replication/run.py", "replication/losses.py",
                     "replication/datasets.py", "gridsearch/search.py", "replication/experiments.py"):
        assert io.computing(relative), relative
        with open(tmp_path / relative, "a") as handle:
            handle.write("# edited\n")
        assert io.source_fingerprint(tmp_path) != first, relative
        first = io.source_fingerprint(tmp_path)
