"""The synthetic problem: the compiled loop against the tests' float64 oracle (tests/oracle.py), the
gradient sequences, resumable CSV output, the paper's claims (§3 and §5), the α search, and CLI
errors."""
import dataclasses
import hashlib
import json
import time

import numpy as np
import oracle
import pandas as pd
import pytest

from replication import results, synthetic
from replication.cli import main
from replication.synthetic import (
    COLUMNS,
    SyntheticConfig,
    check_claim,
    cyclic_config,
    draw_hits,
    gradient_coefficients,
    make_rngs,
    reference_trajectory,
    run_synthetic,
)

TABLE = [(name, bc) for name in ("adam", "amsgrad", "adamax") for bc in (True, False)]


def oracle_columns(config, steps):
    """The oracle's trajectory of every (α, seed) column of ``config``: the problem's gradients
    c_t (:func:`gradient_coefficients`, checked against their definition in
    test_gradient_sequences), projection onto F = [−1, 1], α_t = α or α/√t. Returns ``(x_T, R_T/T)``
    per column, R_T = Σ_t c_t·(x_t − x*) with x_t the point before step t."""
    rngs = make_rngs(config) if config.setting == "stochastic" else None
    coeffs = gradient_coefficients(config, 1, steps, rngs)
    alphas = np.array([lr for lr, _seed in config.columns])
    factor = oracle.schedule(config.schedule, 1.0)
    trajectory = oracle.run(config.optimizer, coeffs, config.x0, lambda t: alphas * factor(t), beta_1=config.beta_1,
                            beta_2=config.beta_2, epsilon=config.epsilon, bias_correction=config.bias_correction,
                            bounds=(-1.0, 1.0))
    regret = (coeffs * (trajectory.x[:-1] - synthetic.X_STAR)).sum(axis=0)
    return trajectory.x[-1], regret / steps


@pytest.mark.parametrize("name,bias_correction", TABLE)
@pytest.mark.parametrize(
    "setting,schedule", [("online", "constant"), ("stochastic", "inverse-sqrt"), ("cyclic", "constant"),
                         ("online", "inverse-sqrt")],
)
def test_compiled_loop_matches_python_reference(name, bias_correction, setting, schedule):
    kwargs = dict(optimizer=name, learning_rates=(0.02, 0.3), seeds=(0, 3), steps=2021,
                  record_every=250, bias_correction=bias_correction, schedule=schedule)
    config = cyclic_config(3.0, **kwargs) if setting == "cyclic" else SyntheticConfig(setting=setting, **kwargs)
    frame = run_synthetic(config, block_records=3)
    # records every 250 steps and at the last step, whatever the block size
    assert sorted(frame.step.unique()) == [250 * k for k in range(1, 9)] + [2021]
    last = frame[frame.step == 2021]
    assert list(zip(last.learning_rate, last.seed)) == config.columns
    x_ref, regret_ref = oracle_columns(config, 2021)
    # float64 throughout: a constant α agrees to rounding error; under α/√t the loop takes 1/√t
    # from the Keras schedule, in float32 (measured: up to 1.3e-8 in x, 4e-9 relative in regret).
    tolerance = 1e-12 if schedule == "constant" else 1e-7
    np.testing.assert_allclose(last.x, x_ref, rtol=0, atol=tolerance)
    np.testing.assert_allclose(last.avg_regret, regret_ref, rtol=tolerance / 5)
    assert (frame.x_min <= frame.x).all() and (frame.x <= frame.x_max).all()
    assert frame.x.between(-1, 1).all()


@pytest.mark.parametrize("name,bias_correction", TABLE)
@pytest.mark.parametrize("setting", ["online", "stochastic"])
def test_library_python_loop_matches_the_oracle(name, bias_correction, setting):
    """synthetic.reference_trajectory, the plain-Python loop kept for the benchmark's slow baseline
    (benchmarks/bench_synthetic.py), against the tests' independent oracle: both float64 with an
    exact α/√t, so they agree to rounding error."""
    config = SyntheticConfig(setting=setting, optimizer=name, learning_rates=(0.05, 0.5), seeds=(2,), steps=1500,
                             bias_correction=bias_correction, schedule="inverse-sqrt")
    x_ref, regret_ref = oracle_columns(config, 1500)
    for j, (lr, seed) in enumerate(config.columns):
        x, avg_regret = reference_trajectory(config, lr, seed, 1500)
        assert x == pytest.approx(x_ref[j], rel=0, abs=1e-12)
        assert avg_regret == pytest.approx(regret_ref[j], rel=1e-12)
    assert np.abs(x_ref - config.x0).max() > 0.01  # the runs went somewhere


def test_gradient_sequences():
    online = SyntheticConfig(setting="online", optimizer="adam", learning_rates=(0.1,), steps=303)
    c = gradient_coefficients(online, 1, 303)[:, 0]
    assert np.flatnonzero(c == 1010).tolist() == [0, 101, 202]  # t = 1, 102, 203
    assert set(c[c != 1010]) == {-10}
    cyclic = cyclic_config(5.0, optimizer="adam", learning_rates=(0.1,), steps=9)
    assert gradient_coefficients(cyclic, 1, 6)[:, 0].tolist() == [5, -1, -1, 5, -1, -1]
    stochastic = SyntheticConfig(setting="stochastic", optimizer="adam", learning_rates=(0.1,),
                                 seeds=(0, 1), steps=10)
    draws = gradient_coefficients(stochastic, 1, 200_000, make_rngs(stochastic))
    # P(1010) = 0.01: 2000 expected per column, sd ≈ 44
    assert np.all(np.abs((draws == 1010).sum(axis=0) - 2000) < 250)
    assert not np.array_equal(draws[:, 0], draws[:, 1])  # seeds differ
    # chunking does not change the draws
    rngs = make_rngs(stochastic)
    chunks = np.concatenate([gradient_coefficients(stochastic, 1, 70, rngs),
                             gradient_coefficients(stochastic, 71, 130, rngs)])
    np.testing.assert_array_equal(chunks, gradient_coefficients(stochastic, 1, 200, make_rngs(stochastic)))


def test_adam_fails_where_amsgrad_converges_online():
    """Reddi et al. §5, online setting, the paper's α_t = α/√t at α = 0.5: Adam ends at +1,
    AMSGrad at x* = −1, and AMSGrad's average regret is lower (100 k steps: a tenth of the default
    run, same result)."""
    base = SyntheticConfig(setting="online", optimizer="adam", learning_rates=(0.5,), steps=100_000,
                           record_every=1000, schedule="inverse-sqrt")
    frame = pd.concat([run_synthetic(base), run_synthetic(dataclasses.replace(base, optimizer="amsgrad"))])
    claim = check_claim(frame)
    assert claim.claim_holds.all()
    final = frame[frame.step == 100_000].set_index("optimizer")
    assert final.loc["adam", "x"] > 0.99  # it oscillates just below +1 within each 101-step cycle
    assert final.loc["amsgrad", "x"] < -0.95
    assert final.loc["amsgrad", "avg_regret"] < final.loc["adam", "avg_regret"]


@pytest.mark.parametrize("C", [3.0, 10.0])
def test_section3_family_adam_goes_to_plus_one_with_theorem1_betas(C):
    """Reddi et al. §3 / Theorem 1: f_t = C·x (t mod 3 = 1) else −x, β1 = 0, β2 = 1/(1 + C²),
    α_t = α/√t. Adam converges to +1, where the average regret against x* = −1 tends to
    (1/3)·(C·2) + (2/3)·(−1·2) = 2(C − 2)/3; AMSGrad converges to −1 (regret → 0)."""
    b1, b2 = synthetic.default_betas("cyclic", C)
    assert (b1, b2) == (0.0, pytest.approx(1 / (1 + C * C)))
    base = cyclic_config(C, optimizer="adam", learning_rates=(0.1,), steps=30_000, record_every=3000,
                         beta_1=b1, beta_2=b2)
    frame = pd.concat([run_synthetic(base), run_synthetic(dataclasses.replace(base, optimizer="amsgrad"))])
    final = frame[frame.step == 30_000].set_index("optimizer")
    assert final.loc["adam", "x"] > 0.99
    assert final.loc["adam", "avg_regret"] == pytest.approx(2 * (C - 2) / 3, rel=0.02)
    assert final.loc["amsgrad", "x"] == pytest.approx(-1.0, abs=1e-3)
    assert final.loc["amsgrad", "avg_regret"] < 0.05 * 2 * (C - 2) / 3
    assert (frame.big_gradient == C).all() and (frame.beta_2 == b2).all()


def test_draws_are_per_seed_bytes_and_blocks_do_not_change_results(monkeypatch):
    """The stochastic draws travel as one byte per step (same draws as gradient_coefficients;
    columns sharing a seed share them), and splitting a run into smaller blocks to bound memory
    changes nothing."""
    config = SyntheticConfig(setting="stochastic", optimizer="amsgrad", learning_rates=(0.1, 1.0),
                             seeds=(4, 7), steps=5000, record_every=500)
    rngs = {seed: np.random.default_rng(seed) for seed in config.seeds}
    hits = np.concatenate([draw_hits(config, 1200, rngs), draw_hits(config, 3800, rngs)])
    assert hits.dtype == np.uint8 and hits.shape == (5000, 4)
    coeffs = gradient_coefficients(config, 1, 5000, make_rngs(config))
    np.testing.assert_array_equal(hits == 1, coeffs == 1010)
    np.testing.assert_array_equal(hits[:, 0], hits[:, 2])  # (0.1, seed 4) and (1.0, seed 4)
    whole = run_synthetic(config, block_records=10)
    monkeypatch.setattr(synthetic, "MAX_BLOCK_BYTES", 4 * 1000)  # two records of 500 steps × 4 columns
    pd.testing.assert_frame_equal(run_synthetic(config, block_records=10), whole)


def test_state_at_step_t_is_the_end_of_a_t_step_run():
    """α_t = α/√t and the draws do not depend on the horizon: a 4000-step run passes through the
    end point of a 2000-step run, which is what lets one long run give the α search at several
    budgets."""
    config = SyntheticConfig(setting="stochastic", optimizer="adam", learning_rates=(0.5,), seeds=(1, 2),
                             steps=4000, record_every=1000)
    long = run_synthetic(config)
    short = run_synthetic(dataclasses.replace(config, steps=2000))
    cols = ["seed", "x", "x_min", "x_max", "avg_regret"]
    pd.testing.assert_frame_equal(long[long.step == 2000][cols].reset_index(drop=True),
                                  short[short.step == 2000][cols].reset_index(drop=True))


def test_cli_writes_resumable_csv_and_figures(tmp_path, capsys):
    args = ["synthetic", "--steps", "4000", "--learning-rates", "0.01", "0.1", "--seeds", "0", "1",
            "--out", str(tmp_path)]
    assert main(args) == 0
    out = tmp_path / "synthetic"
    frame = pd.read_csv(out / "trajectories.csv")
    assert list(frame.columns) == COLUMNS
    # online: 2 α × 1 seed; stochastic: 2 α × 2 seeds; × 2 optimizers × 100 records
    assert len(frame) == (2 + 4) * 2 * 100
    assert set(frame.optimizer) == {"adam", "amsgrad"}
    assert set(frame.schedule) == {"inverse-sqrt"} and set(frame.big_gradient) == {1010}  # the paper's
    for stem in ("synthetic-online", "synthetic-stochastic", "synthetic-alpha-search"):
        assert (out / f"{stem}.png").stat().st_size > 10_000
        assert (out / f"{stem}.svg").exists()
    sidecar = json.loads((out / "trajectories.json").read_text())
    assert "median over seeds" in sidecar["search_criterion"] and len(sidecar["sweeps"]) == 4
    # the α search, by hand from the trajectories: AMSGrad's median final distance to −1
    search = pd.read_csv(out / "alpha_search.csv")
    last = frame[(frame.step == 4000) & (frame.optimizer == "amsgrad") & (frame.setting == "stochastic")]
    medians = last.groupby("learning_rate").x.median() + 1
    row = search[(search.setting == "stochastic") & (search.steps == 4000)].set_index("learning_rate")
    np.testing.assert_allclose(row.amsgrad_distance_median, medians, rtol=1e-7)
    assert row.index[row.chosen].tolist() == [medians.idxmin()]
    out_text = capsys.readouterr().out
    assert "alpha search: for each α, AMSGrad's final distance" in out_text
    first = (out / "trajectories.csv").read_bytes()
    capsys.readouterr()
    assert main(args + ["--no-plots"]) == 0
    err = capsys.readouterr().err
    assert err.count("already done, skipped") == 4
    assert (out / "trajectories.csv").read_bytes() == first
    # a new learning rate adds rows, keeps the old ones byte-for-byte in the file
    assert main(["synthetic", "--setting", "online", "--steps", "4000", "--learning-rates", "0.5",
                 "--optimizers", "adam", "--no-plots", "--out", str(tmp_path)]) == 0
    grown = pd.read_csv(out / "trajectories.csv")
    assert len(grown) == len(frame) + 100
    pd.testing.assert_frame_equal(
        grown[grown.learning_rate != 0.5].reset_index(drop=True), frame.reset_index(drop=True))


def test_cli_section3_family_takes_theorem1_betas_per_C(tmp_path, capsys):
    """`--setting cyclic --C 3 10`: one sweep per C with β1 = 0, β2 = 1/(1 + C²) (Reddi et al.
    Theorem 1), told apart by big_gradient, drawn together in synthetic-cyclic.png."""
    assert main(["synthetic", "--setting", "cyclic", "--C", "3", "10", "--steps", "3000",
                 "--learning-rates", "0.1", "--out", str(tmp_path)]) == 0
    out = tmp_path / "synthetic"
    frame = pd.read_csv(out / "trajectories.csv")
    assert set(frame.big_gradient) == {3.0, 10.0} and set(frame.beta_1) == {0.0}
    for C, rows in frame.groupby("big_gradient"):
        assert np.allclose(rows.beta_2, 1 / (1 + C * C))
        last = rows[rows.step == 3000].set_index("optimizer")
        assert last.loc["adam", "x"] > 0.99 and last.loc["amsgrad", "x"] < -0.99
    assert (out / "synthetic-cyclic.png").stat().st_size > 10_000
    search = pd.read_csv(out / "alpha_search.csv")
    assert set(search.big_gradient) == {3.0, 10.0} and set(search.steps) == {3000} and search.chosen.sum() == 2
    # β2 = 1/101 is stored to 8 digits: a rerun still finds its runs done
    first = (out / "trajectories.csv").read_bytes()
    capsys.readouterr()
    assert main(["synthetic", "--setting", "cyclic", "--C", "3", "10", "--steps", "3000",
                 "--learning-rates", "0.1", "--no-plots", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err.count("already done, skipped") == 4
    assert (out / "trajectories.csv").read_bytes() == first
    assert main(["synthetic", "--setting", "cyclic", "--C", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "> 2" in err


def test_cli_force_recomputes_only_the_named_runs(tmp_path):
    base = ["synthetic", "--steps", "2000", "--learning-rates", "0.1", "--seeds", "0", "--no-plots",
            "--out", str(tmp_path)]
    assert main(base + ["--setting", "online"]) == 0
    assert main(base + ["--setting", "stochastic"]) == 0
    before = pd.read_csv(tmp_path / "synthetic" / "trajectories.csv")
    assert main(base + ["--setting", "online", "--force"]) == 0
    after = pd.read_csv(tmp_path / "synthetic" / "trajectories.csv")
    pd.testing.assert_frame_equal(after, before)  # recomputed online rows are the same; stochastic kept
    sidecar = json.loads((tmp_path / "synthetic" / "trajectories.json").read_text())
    assert len(sidecar["sweeps"]) == 4  # online and stochastic, Adam and AMSGrad


SMALL = ["synthetic", "--steps", "2000", "--learning-rates", "0.1", "0.5", "--seeds", "0", "1", "--no-plots"]


def _sha256s(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_reading_back_finished_sweeps_leaves_every_file_byte_identical(tmp_path, clock):
    """trajectories.csv, alpha_search.csv, the figures and trajectories.json (whose times and argv
    are those of the call that computed the sweeps) stay as they were."""
    argv = [a for a in SMALL if a != "--no-plots"] + ["--out", str(tmp_path)]
    assert main(argv) == 0
    before = _sha256s(tmp_path)
    assert {"synthetic/trajectories.json", "synthetic/alpha_search.csv", "synthetic/synthetic-online.png"} <= set(before)
    clock.advance(3600)  # a rewritten sidecar would carry another time
    assert main(argv) == 0
    assert _sha256s(tmp_path) == before


def _edit_x(frame, index):
    frame = frame.copy()
    frame.loc[index, "x"] = frame.loc[index, "x"] + 0.25
    return frame


def _drop_row(frame, index):
    return frame.drop(index=index)


@pytest.mark.parametrize("damage,legacy,why", [
    (_edit_x, False, "holds rows of a run that differ from those its sidecar records (sha256)"),
    (_drop_row, False, "has 99 rows of a run, its sidecar says 100"),
    (_drop_row, True, "has 99 rows of a run, its sidecar implies 100"),
])
def test_damaged_run_recomputes_its_sweep_with_a_message(tmp_path, capsys, damage, legacy, why):
    """One run (stochastic AMSGrad, α 0.5, seed 1) edited or cut short in trajectories.csv: its sweep
    is recomputed, saying which and why, the three others are read back, and the CSV is whole again.
    ``legacy``: the sidecar as written before per-run digests (the committed results), where only
    a lost row can be seen."""
    argv = SMALL + ["--out", str(tmp_path)]
    assert main(argv) == 0
    csv, sidecar = tmp_path / "synthetic" / "trajectories.csv", tmp_path / "synthetic" / "trajectories.json"
    first = csv.read_bytes()
    if legacy:
        meta = json.loads(sidecar.read_text())
        for entry in meta["sweeps"].values():
            entry.pop("runs", None)
        sidecar.write_text(json.dumps(meta))
    frame = pd.read_csv(csv, float_precision="round_trip")
    target = frame.index[(frame.setting == "stochastic") & (frame.optimizer == "amsgrad")
                         & (frame.learning_rate == 0.5) & (frame.seed == 1)][40]
    damage(frame, target).to_csv(csv, index=False, float_format="%.8g", lineterminator="\n")
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (f"stochastic inverse-sqrt beta1=0.9 beta2=0.99 amsgrad: trajectories.csv {why} "
            "(alpha 0.5, seed 1); recomputing") in err
    assert err.count("already done, skipped") == 3 and err.count("recomputing") == 1
    assert csv.read_bytes() == first  # recomputed (deterministic) into the same rows
    assert main(argv) == 0 and capsys.readouterr().err.count("already done, skipped") == 4


def test_legacy_sidecar_without_digests_is_read_back(tmp_path, capsys):
    argv = SMALL + ["--out", str(tmp_path)]
    assert main(argv) == 0
    sidecar = tmp_path / "synthetic" / "trajectories.json"
    meta = json.loads(sidecar.read_text())
    assert all(len(entry["runs"]) == len(entry["config"]["learning_rates"]) * len(entry["config"]["seeds"])
               for entry in meta["sweeps"].values())
    for entry in meta["sweeps"].values():
        del entry["runs"]
    sidecar.write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("already done, skipped") == 4 and "recomputing" not in err


def test_committed_sweeps_verify_as_finished():
    """Every sweep recorded in the committed results/synthetic is read back, not recomputed (read-only)."""
    from pathlib import Path

    from replication.commands.synthetic import _rows_of, check_sweep

    folder = Path(__file__).resolve().parents[1] / "results" / "synthetic"
    frame = results.load_synthetic(folder / "trajectories.csv")[COLUMNS]
    sweeps = json.loads((folder / "trajectories.json").read_text())["sweeps"]
    assert len(sweeps) >= 10
    covered = 0
    for label, entry in sweeps.items():
        fields = {f.name for f in dataclasses.fields(SyntheticConfig)}
        config = SyntheticConfig(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in entry["config"].items() if k in fields})
        rows = _rows_of(config, frame)
        assert check_sweep(config, rows, entry) == (True, None), label
        covered += len(rows)
    assert covered == len(frame)  # every row of the CSV belongs to a recorded sweep


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["synthetic", "--setting", "sideways"], "invalid choice"),
        (["synthetic", "--steps", "-5"], "positive"),
        (["synthetic", "--learning-rates", "0"], "positive"),
        (["synthetic", "--beta2", "1.5"], "[0, 1)"),
        (["synthetic", "--optimizers", "sgd"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1


def test_unwritable_out_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["synthetic", "--steps", "10", "--out", str(blocker / "sub")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0]


def test_negative_seed_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "new"
    with pytest.raises(SystemExit) as info:
        main(["synthetic", "--setting", "stochastic", "--seeds", "-1", "--steps", "10", "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seeds" in err
    assert not out.exists()


def test_interrupted_first_sweep_leaves_no_folders(tmp_path, capsys, monkeypatch):
    """Ctrl-C before any sweep finished: nothing to keep, so no empty <out>/synthetic/ either."""
    from replication import synthetic

    def interrupted(config, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "run_synthetic", interrupted)
    out = tmp_path / "new"
    assert main(["synthetic", "--steps", "10", "--no-plots", "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("name,bias_correction", TABLE)
def test_gamma_matches_hand_computation(name, bias_correction):
    config = cyclic_config(3.0, optimizer=name, learning_rates=(0.1,), steps=12, record_every=4,
                           bias_correction=bias_correction, schedule="constant")
    frame = run_synthetic(config)
    coeffs = gradient_coefficients(config, 1, 12)
    trajectory = oracle.run(name, coeffs, config.x0, oracle.schedule("constant", 0.1), beta_1=config.beta_1,
                            beta_2=config.beta_2, epsilon=config.epsilon, bias_correction=bias_correction,
                            bounds=(-1.0, 1.0))
    # Γ_t = √V_t/α_t − √V_{t−1}/α_{t−1} (Reddi et al. eq. 2), t = 2 … 12
    gammas = np.diff(trajectory.d[:, 0])
    windows = [gammas[0:3], gammas[3:7], gammas[7:11]]  # records at t = 4, 8, 12
    np.testing.assert_allclose(frame.gamma_min, [w.min() for w in windows], rtol=1e-9)
    np.testing.assert_allclose(frame.gamma_negative_fraction, [(w < 0).mean() for w in windows])


def test_gamma_never_negative_for_amsgrad_but_is_for_adam():
    """AMSGrad (no bias correction, α/√t) guarantees Γ ≥ 0; Adam's Γ goes negative right after
    each rare large gradient — the mechanism of its failure."""
    base = SyntheticConfig(setting="online", optimizer="amsgrad", learning_rates=(0.01, 0.1), steps=5000,
                           record_every=500, schedule="inverse-sqrt", bias_correction=False)
    ams = run_synthetic(base)
    adam = run_synthetic(dataclasses.replace(base, optimizer="adam"))
    assert (ams.gamma_negative_fraction == 0).all() and (ams.gamma_min >= 0).all()
    assert (adam.gamma_negative_fraction > 0.5).all() and (adam.gamma_min < 0).all()
