"""Grid search (McGill §IV-A): routing, files, selection, divergence, resume, halving, Dask, errors.

All on scikit-learn's digits with tiny grids and 2-3 epochs; α = 1e38 reliably overflows the
weights to inf/NaN on the first epoch (a diverged point). These tests run the GridSearchCV engine
(the ``searched`` fixture, in conftest.py, passes ``--engine gridsearchcv``; halving and Dask are
GridSearchCV-only); tests/test_stacked.py checks the stacked engine against it.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from gridsearch import GridPoint, make_estimator, run_grid_search, select_best
from gridsearch.estimator import ScheduledAMSGrad, cross_entropy
from replication.cli import main
from replication.datasets import load_dataset
from replication.experiments import get_experiment
from replication.optimizers import AMSGrad, InverseSqrtDecay

from conftest import DIVERGES, EXPERIMENT

TIME_COLUMNS = ["mean_fit_time", "std_fit_time", "mean_score_time"]


def _run(capsys, *argv):
    code = main(["gridsearch", EXPERIMENT, "--engine", "gridsearchcv", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _computed(err):
    """Progress lines of points actually computed (skipped ones print nothing)."""
    return [line for line in err.splitlines() if line.startswith("[gridsearch") and "val loss" in line]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_factory_routes_hyperparameters_into_our_optimizer_class(digits):
    spec = get_experiment(EXPERIMENT)
    est = make_estimator(spec, "amsgrad", epochs=1, optimizer__learning_rate=0.03, optimizer__beta_2=0.995,
                         optimizer__bias_correction=False, jit_compile=False)
    est.fit(digits.x_train, digits.y_train)
    opt = est.model_.optimizer
    assert isinstance(opt, AMSGrad) and isinstance(opt, ScheduledAMSGrad)
    assert opt.beta_2 == 0.995 and opt.beta_1 == spec.beta_1 and opt.bias_correction is False
    # the paper's α/√t: the optimizer holds InverseSqrtDecay(α)
    assert isinstance(opt._learning_rate, InverseSqrtDecay)
    assert opt._learning_rate.initial_learning_rate == pytest.approx(0.03)
    assert est.batch_size == 128 and est.epochs == 1
    steps = int(opt.iterations.numpy())
    assert steps == math.ceil(len(digits.x_train) / 128)
    assert float(opt.learning_rate) == pytest.approx(0.03 / math.sqrt(steps + 1), rel=1e-6)
    # binary cross-entropy still gets one-hot targets
    assert est.target_encoder_.transform(digits.y_train[:3]).shape == (3, 10)


def test_outputs_columns_rows_and_table(searched):
    out, _ = searched
    frame = pd.read_csv(out / EXPERIMENT / "gridsearch.csv")
    assert len(frame) == 2 * 2 * 2  # optimizers × α × β2
    assert list(frame.columns[:5]) == ["experiment", "optimizer", "learning_rate", "beta_2", "bias_correction"]
    for k in range(3):
        assert {f"split{k}_test_score", f"split{k}_train_score"} <= set(frame.columns)
    assert {"mean_test_score", "std_test_score", "mean_train_score", "std_train_score", "mean_val_loss",
            "mean_fit_time", "diverged"} <= set(frame.columns)
    assert set(frame["optimizer"]) == {"adam", "amsgrad"}
    assert sorted(set(frame["learning_rate"])) == [0.01, 1e38]
    assert (frame["epochs"] == 2).all() and (frame["cv"] == 3).all()
    ok = frame[~frame["diverged"]]
    # scores are −loss; the mean is the mean of the folds
    assert np.allclose(ok["mean_test_score"], ok[[f"split{k}_test_score" for k in range(3)]].mean(axis=1))
    assert np.allclose(ok["mean_val_loss"], -ok["mean_test_score"])
    assert (ok["mean_val_loss"] > 0).all() and (ok["mean_train_loss"] > 0).all()
    assert len(list((out / EXPERIMENT / "gridsearch_points").glob("*.json"))) == 8
    table = pd.read_csv(out / "gridsearch_table.csv")
    assert list(table.columns) == ["experiment", "optimizer", "learning_rate", "beta_2"]
    assert len(table) == 2 and set(table["experiment"]) == {EXPERIMENT}
    assert "| Experiment | Optimizer | α | β2 |" in (out / "gridsearch_table.md").read_text()


def test_divergence_recorded_and_never_selected(searched):
    out, _ = searched
    frame = pd.read_csv(out / EXPERIMENT / "gridsearch.csv")
    big = frame[frame["learning_rate"] == 1e38]
    assert big["diverged"].all() and big["mean_test_score"].isna().all()
    assert (big["split0_epochs_run"] == 1).all()  # stopped after the NaN epoch
    assert not frame[frame["learning_rate"] == 0.01]["diverged"].any()
    best = json.loads((out / EXPERIMENT / "best_params.json").read_text())
    assert all(b["learning_rate"] == 0.01 for b in best.values())


def test_best_params_is_min_mean_validation_loss(searched):
    out, _ = searched
    frame = pd.read_csv(out / EXPERIMENT / "gridsearch.csv")
    best = json.loads((out / EXPERIMENT / "best_params.json").read_text())
    assert set(best) == {"adam", "amsgrad"}
    for optimizer, group in frame[~frame["diverged"]].groupby("optimizer"):
        row = group.loc[group["mean_val_loss"].idxmin()]
        assert best[optimizer] == {"learning_rate": row["learning_rate"], "beta_2": row["beta_2"]}
    # and the selection rule itself, on a made-up table with a NaN that must lose
    fake = pd.DataFrame({"optimizer": ["adam"] * 3, "learning_rate": [1.0, 0.1, 0.01], "beta_2": [0.99] * 3,
                         "mean_val_loss": [np.nan, 0.5, 0.2], "diverged": [True, False, False]})
    assert select_best(fake) == {"adam": {"learning_rate": 0.01, "beta_2": 0.99}}


def test_resume_recomputes_only_missing_point(searched, capsys, monkeypatch):
    out, argv = searched
    csv = out / EXPERIMENT / "gridsearch.csv"
    before = pd.read_csv(csv)
    records = sorted((out / EXPERIMENT / "gridsearch_points").glob("amsgrad_lr0.01_b20.999_*.json"))
    assert len(records) == 1
    records[0].unlink()

    from gridsearch.estimator import OneHotKerasClassifier

    fits = []
    original = OneHotKerasClassifier.fit
    monkeypatch.setattr(OneHotKerasClassifier, "fit", lambda self, *a, **k: (fits.append(1), original(self, *a, **k))[1])
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert len(fits) == 3  # one point × 3 folds
    lines = _computed(err)
    assert len(lines) == 1 and "amsgrad α=0.01 β2=0.999" in lines[0]
    after = pd.read_csv(csv)
    # identical, the recomputed point included (seeded), apart from wall-clock times
    pd.testing.assert_frame_equal(before.drop(columns=TIME_COLUMNS), after.drop(columns=TIME_COLUMNS))
    changed = (before[TIME_COLUMNS] != after[TIME_COLUMNS]).any(axis=1)
    assert changed.sum() <= 1

    # a finished search reruns without a single fit
    fits.clear()
    assert main(argv) == 0
    assert fits == [] and _computed(capsys.readouterr().err) == []
    pd.testing.assert_frame_equal(after, pd.read_csv(csv))


def test_force_recomputes_everything(tmp_path, capsys):
    argv = ["--optimizers", "adam", "--learning-rates", "0.01", "--beta2s", "0.99", "--epochs", "2", "--cv", "2",
            "--out", str(tmp_path)]
    code, _, err = _run(capsys, *argv)
    assert code == 0 and len(_computed(err)) == 1
    code, _, err = _run(capsys, *argv)
    assert code == 0 and len(_computed(err)) == 0
    code, _, err = _run(capsys, *argv, "--force")
    assert code == 0 and len(_computed(err)) == 1
    assert len(pd.read_csv(tmp_path / EXPERIMENT / "gridsearch.csv")) == 1


def _sha256s(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


SMALL = ["--optimizers", "adam", "--learning-rates", "0.01", "--beta2s", "0.99", "--epochs", "2", "--cv", "2"]


def test_reading_back_a_finished_search_leaves_every_file_byte_identical(tmp_path, capsys, clock):
    """gridsearch.csv, best_params.json, the table, the point records and gridsearch.json (whose
    times and provenance are those of the call that computed the points) stay as they were."""
    code, _, err = _run(capsys, *SMALL, "--out", str(tmp_path))
    assert code == 0 and len(_computed(err)) == 1
    before = _sha256s(tmp_path)
    assert {f"{EXPERIMENT}/gridsearch.json", f"{EXPERIMENT}/gridsearch.csv", "gridsearch_table.md"} <= set(before)
    assert json.loads((tmp_path / EXPERIMENT / "gridsearch.json").read_text())["started_at"] == clock().isoformat()
    clock.advance(3600)  # a rewritten gridsearch.json would carry another time
    code, _, err = _run(capsys, *SMALL, "--out", str(tmp_path))
    assert code == 0 and _computed(err) == []
    assert _sha256s(tmp_path) == before


def _cut_short(path):
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def _drop_field(path):
    record = json.loads(path.read_text())
    del record["row"]["split1_test_score"]
    path.write_text(json.dumps(record))


def _contradict(path):  # says finished and not diverged, with a NaN score
    record = json.loads(path.read_text())
    record["row"]["mean_test_score"] = math.nan
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("damage,why", [(_cut_short, "is not valid JSON"), (_drop_field, "lacks split1_test_score"),
                                        (_contradict, "has a diverged flag that its scores contradict")])
def test_damaged_point_record_is_recomputed_with_a_message(tmp_path, capsys, damage, why):
    code, _, err = _run(capsys, *SMALL, "--out", str(tmp_path))
    assert code == 0
    first = pd.read_csv(tmp_path / EXPERIMENT / "gridsearch.csv")
    (record,) = (tmp_path / EXPERIMENT / "gridsearch_points").glob("adam_*.json")
    damage(record)
    code, _, err = _run(capsys, *SMALL, "--out", str(tmp_path))
    assert code == 0
    assert f"adam α=0.01 β2=0.99: gridsearch_points/{record.name} {why}" in err and "; recomputing" in err
    assert len(_computed(err)) == 1
    # recomputed (seeded: the same numbers) and stored intact again
    again = pd.read_csv(tmp_path / EXPERIMENT / "gridsearch.csv")
    pd.testing.assert_frame_equal(first.drop(columns=TIME_COLUMNS), again.drop(columns=TIME_COLUMNS))
    assert json.loads(record.read_text())["row"]["split1_test_score"] == again["split1_test_score"][0]


def test_damaged_fold_record_is_recomputed_with_a_message(digits, tmp_path, capsys, monkeypatch):
    """A fold record cut short or lacking a field is refitted, not read back (nor a crash)."""
    import gridsearch.search as search
    from gridsearch.store import PointStore

    spec = get_experiment(EXPERIMENT)
    point = GridPoint("adam", 0.01, 0.99)
    common = dict(cv=2, epochs=1, seed=0, engine="gridsearchcv")
    settings = search.SearchSettings.from_spec(spec, cv=2, epochs=1, seed=0, engine="gridsearchcv")
    store = PointStore(tmp_path / "gridsearch_points")
    store.save_fold(settings, point, 0, {"val_loss": 0.5, "train_loss": 0.4})  # no epochs or times
    store.save_fold(settings, point, 1, {"val_loss": 0.5, "train_loss": 0.4, "epochs_run": 1,
                                         "fit_time": 1.0, "score_time": 0.1})
    _cut_short(store.fold_path(settings, point, 1))
    fits = []
    original = search._search
    monkeypatch.setattr(search, "_search", lambda *a, **k: (fits.append(k["split"]), original(*a, **k))[1])
    capsys.readouterr()
    frame = run_grid_search(spec, digits.x_train, digits.y_train, [point], store=store, **common)
    err = capsys.readouterr().err
    assert len(fits) == 2
    name = store.fold_path(settings, point, 0).name
    assert (f"adam α=0.01 β2=0.99 fold 1/2: gridsearch_points/folds/{name} lacks one of val_loss, train_loss, "
            "epochs_run, fit_time, score_time; recomputing") in err
    assert "fold 2/2: gridsearch_points/folds/" in err and "is not valid JSON" in err
    assert frame["split0_test_score"][0] != -0.5 and not frame["diverged"][0]
    assert store.load(settings, point) is not None


def test_committed_grid_points_verify_as_finished():
    """Every grid point committed under results/ is read back, not recomputed (read-only)."""
    from gridsearch.store import check_fold_record, check_point_record

    results = Path(__file__).resolve().parents[1] / "results"
    records = sorted(results.glob("*/gridsearch_points/*.json"))
    assert len(records) > 100
    for path in records:
        record = json.loads(path.read_text())
        row = record["row"]
        bias = {"default": None, "on": True, "off": False}[row["bias_correction"]]
        point = GridPoint(row["optimizer"], row["learning_rate"], row["beta_2"], bias)
        assert check_point_record(record, path.stem, point, record["settings"]) is None, path
    for path in sorted(results.glob("*/gridsearch_points/folds/*.json")):
        record = json.loads(path.read_text())
        assert check_fold_record(record, record["key"], record["fold"], 10**6) is None, path


def test_halving_runs_and_writes_csv(tmp_path, capsys):
    code, out, err = _run(capsys, "--optimizers", "adam", "--learning-rates", "0.1", "0.01", "0.001",
                          "--beta2s", "0.99", "--epochs", "3", "--cv", "2", "--halving", "--out", str(tmp_path))
    assert code == 0, err
    frame = pd.read_csv(tmp_path / EXPERIMENT / "gridsearch.csv")
    assert len(frame) == 3 and {"iter", "n_resources"} <= set(frame.columns)
    # 3 candidates, factor 3: all at 1 epoch, the survivor at 3 epochs
    assert sorted(frame["n_resources"]) == [1, 1, 3]
    survivor = frame.loc[frame["n_resources"].idxmax()]
    best = json.loads((tmp_path / EXPERIMENT / "best_params.json").read_text())
    assert best["adam"] == {"learning_rate": survivor["learning_rate"], "beta_2": 0.99}


def test_dask_local_cluster_matches_loky(searched, digits):
    out, _ = searched
    frame = pd.read_csv(out / EXPERIMENT / "gridsearch.csv")
    spec = get_experiment(EXPERIMENT)
    points = [GridPoint("adam", 0.01, 0.99), GridPoint("amsgrad", 0.01, 0.999)]
    dask = run_grid_search(spec, digits.x_train, digits.y_train, points, cv=3, epochs=2, seed=0,
                           backend="dask", n_jobs=1, dask_processes=False)
    scores = [f"split{k}_{kind}_score" for k in range(3) for kind in ("test", "train")]
    for point, (_, row) in zip(points, dask.iterrows()):
        loky = frame[(frame["optimizer"] == point.optimizer) & (frame["learning_rate"] == point.learning_rate)
                     & (frame["beta_2"] == point.beta_2)]
        assert len(loky) == 1
        np.testing.assert_allclose(row[scores].to_numpy(float), loky[scores].to_numpy(float)[0], rtol=1e-6)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--learning-rates", "0"], "learning rate"),
        (["--learning-rates", "-0.1"], "learning rate"),
        (["--learning-rates", "inf"], "learning rate"),
        (["--beta2s", "1"], "beta_2"),
        (["--beta2s", "-0.1"], "beta_2"),
        (["--beta2s", "1.5"], "beta_2"),
        (["--optimizers", "sgd"], "unknown optimizer"),
    ],
)
def test_bad_grid_values_exit_2_with_one_line(argv, needle, tmp_path, capsys):
    code, out, err = _run(capsys, *argv, "--out", str(tmp_path))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not (tmp_path / EXPERIMENT).exists()


@pytest.mark.parametrize("data", ["missing", "corrupt"])
def test_failed_start_creates_no_folders(data, tmp_path, capsys):
    """A search that fails on its data (missing folder, corrupt file) leaves no empty
    <out>/<experiment>/ behind: --out is not created at all."""
    data_dir = tmp_path / "data"
    if data == "corrupt":
        data_dir.mkdir()
        (data_dir / "mnist.npz").write_bytes(b"not a zip file")
    out = tmp_path / "new"
    assert main(["gridsearch", "mnist-logreg", "--data-dir", str(data_dir), "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not out.exists()


def test_unwritable_out_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["gridsearch", EXPERIMENT, "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err


def test_unknown_experiment_and_malformed_number_exit_2(tmp_path, capsys):
    assert main(["gridsearch", "no-such-experiment", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unknown experiment" in err
    with pytest.raises(SystemExit) as exc:
        main(["gridsearch", EXPERIMENT, "--beta2s", "abc", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "abc" in err


def _mcgill_stop(losses, patience=3):
    """Epochs a fit runs under McGill's rule (§IV-A), written out: stop once the training loss has
    not decreased below its best for ``patience`` epochs in a row."""
    best, wait = math.inf, 0
    for epoch, loss in enumerate(losses, start=1):
        best, wait = (loss, 0) if loss < best else (best, wait + 1)
        if wait >= patience:
            return epoch
    return len(losses)


def test_early_stopping_as_mcgill_stops_when_training_loss_stalls():
    """McGill §IV-A: a fit stops once the training loss has not decreased for 3 epochs. With
    α = 1e-30 the weights cannot move, so the loss is the same every epoch up to float32 rounding:
    it stops after 1 + 3 epochs where that rounding is bitwise stable (TensorFlow), a few epochs
    later where the shuffled batch order moves the epoch mean in the 8th digit (JAX: an ulp-sized
    "decrease" restarts the count), and well before 20 either way; with a working α the same
    estimator trains all 20 epochs (the loss keeps falling)."""
    from gridsearch.estimator import make_estimator
    from replication.datasets import load_dataset
    from replication.experiments import get_experiment

    spec = get_experiment("digits-logreg")
    data = load_dataset("digits")
    stalled = make_estimator(spec, "adam", epochs=20, optimizer__learning_rate=1e-30, optimizer__beta_2=0.99,
                             jit_compile=False)
    stalled.fit(data.x_train, data.y_train)
    losses = stalled.history_["loss"]
    np.testing.assert_allclose(losses, losses[0], rtol=1e-6)  # stalled: rounding noise only
    assert len(losses) == _mcgill_stop(losses) < 20
    if keras.backend.backend() == "tensorflow":
        assert len(losses) == 4  # bitwise-constant losses: the rule's minimum, 1 + 3
    working = make_estimator(spec, "adam", epochs=20, optimizer__learning_rate=0.01, optimizer__beta_2=0.99,
                             jit_compile=False)
    working.fit(data.x_train, data.y_train)
    assert len(working.history_["loss"]) == 20


def test_linear_decay_schedule_reaches_zero_at_each_fits_last_step(digits):
    """Korzeniowski's schedule in the grid search: the fit's step count is routed to the optimizer
    (optimizer__total_steps), so α_t falls linearly to 0 exactly after the fit's last step; both
    engines give the same scores."""
    from replication.experiments import with_overrides

    spec = with_overrides(get_experiment(EXPERIMENT), schedule="linear-decay")
    steps = 2 * math.ceil(898 / 128)  # 2 epochs of a 2/3 fold of digits' 1,347 training images
    est = make_estimator(spec, "adam", epochs=2, jit_compile=False, optimizer__learning_rate=0.05,
                         optimizer__beta_2=0.99, optimizer__total_steps=steps)
    est.fit(digits.x_train[:898], digits.y_train[:898])
    opt = est.model_.optimizer
    assert int(opt.iterations.numpy()) == steps
    assert float(opt.learning_rate) == 0.0 and float(opt.learning_rate_at(steps - 1)) == pytest.approx(0.05 / steps)
    points = [GridPoint("adam", 0.05, 0.99), GridPoint("adam", 0.01, 0.999)]
    common = dict(cv=3, epochs=2, seed=0)
    reference = run_grid_search(spec, digits.x_train, digits.y_train, points, engine="gridsearchcv", **common)
    stacked = run_grid_search(spec, digits.x_train, digits.y_train, points, engine="stacked", **common)
    scores = [f"split{k}_test_score" for k in range(3)]
    np.testing.assert_allclose(stacked[scores].to_numpy(float), reference[scores].to_numpy(float), rtol=1e-6)
    inverse_sqrt = run_grid_search(get_experiment(EXPERIMENT), digits.x_train, digits.y_train, points[:1],
                               engine="stacked", **common)
    assert abs(inverse_sqrt["mean_val_loss"][0] - stacked["mean_val_loss"][0]) > 1e-4  # the schedule mattered
    with pytest.raises(ValueError, match="halving"):
        run_grid_search(spec, digits.x_train, digits.y_train, points, halving=True, **common)


def test_korzeniowski_smallvgg_searches_on_cifar_shaped_arrays():
    """cifar10-smallvgg (conv → BN → ReLU, linear decay, flips) through the grid search on random
    CIFAR-shaped arrays (real CIFAR-10 is not on this machine): the GridSearchCV engine is chosen
    and every fold yields a finite loss."""
    from gridsearch.search import resolve_engine

    spec = get_experiment("cifar10-smallvgg")
    assert resolve_engine(spec) == "gridsearchcv" and spec.schedule == "linear-decay" and spec.flip
    rng = np.random.default_rng(0)
    x = rng.random((40, 32, 32, 3), dtype=np.float32)
    y = np.repeat(np.arange(10), 4)
    frame = run_grid_search(spec, x, y, [GridPoint("amsgrad", 0.01, 0.99, False)], cv=2, epochs=1, seed=0)
    assert not frame["diverged"][0] and np.isfinite(frame["mean_val_loss"][0])
    assert frame["bias_correction"][0] == "off" and frame["schedule"][0] == "linear-decay"
    fold_losses = -frame[["split0_test_score", "split1_test_score"]].to_numpy(float)[0]
    assert fold_losses.min() > 0 and frame["mean_val_loss"][0] == pytest.approx(fold_losses.mean())  # both folds


def test_long_fits_get_xla_except_conv_nets_on_tensorflow(monkeypatch):
    """jit_compile="auto" of the GridSearchCV engine, as `replicate train` decides it: XLA for a
    long fit of a dense model, never for a conv net on TensorFlow (XLA's CPU convolutions made a
    CifarNet epoch 2.2x slower); JAX always compiles. Every fit counts as long here."""
    import keras

    import gridsearch.estimator as estimator_module
    import gridsearch.search as search

    monkeypatch.setattr(search, "XLA_MIN_STEPS", 1)
    seen = {}

    class Built(Exception):
        pass

    def recording(spec, optimizer, **kwargs):  # the settings the fits would get; no fit needed
        seen[spec.model] = kwargs["jit_compile"]
        raise Built

    monkeypatch.setattr(estimator_module, "make_estimator", recording)
    x = np.random.default_rng(0).random((20, 28, 28, 1), dtype=np.float32)
    y = np.repeat(np.arange(10), 2)
    for name in ("mnist-cnn", "mnist-mlp"):
        with pytest.raises(Built):
            run_grid_search(get_experiment(name), x, y, [GridPoint("adam", 0.01, 0.99)], cv=2, epochs=1,
                            seed=0, engine="gridsearchcv")
    jax = keras.backend.backend() == "jax"
    assert seen == {"cnn": jax, "mlp": True}


def test_gridsearchcv_engine_resumes_fold_by_fold(digits, tmp_path, monkeypatch):
    """A search killed after its first fold keeps that fold (the GridSearchCV engine's unit of work
    is one fold of a chunk of points): the rerun fits only folds 2 and 3, and its rows equal an
    uninterrupted search's (apart from wall times); the fold records are gone once the point is."""
    import gridsearch.search as search
    from gridsearch.store import PointStore

    spec = get_experiment(EXPERIMENT)
    points = [GridPoint("adam", 0.01, 0.99), GridPoint("adam", 0.01, 0.999)]
    common = dict(cv=3, epochs=2, seed=0, engine="gridsearchcv")
    reference = run_grid_search(spec, digits.x_train, digits.y_train, points, **common)

    store = PointStore(tmp_path / "points")
    original = search._search
    calls = []

    def killed_after_one_fold(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(kwargs.get("split"))
        return original(*args, **kwargs)

    monkeypatch.setattr(search, "_search", killed_after_one_fold)
    with pytest.raises(KeyboardInterrupt):
        run_grid_search(spec, digits.x_train, digits.y_train, points, store=store, **common)
    # one parallel fit (n_jobs=1): one point per chunk; the first point's first fold was stored
    assert len(list((tmp_path / "points" / "folds").glob("adam_lr0.01_b20.99_*.fold0.json"))) == 1
    assert not list((tmp_path / "points").glob("*.json"))

    fits = []

    def recording(*args, **kwargs):
        fits.append((args[5][0], len(kwargs["split"][0])))
        return original(*args, **kwargs)

    monkeypatch.setattr(search, "_search", recording)
    resumed = run_grid_search(spec, digits.x_train, digits.y_train, points, store=store, **common)
    sizes = [len(train) for train, _ in search._cv(search.SearchSettings.from_spec(spec, cv=3)).split(
        digits.x_train, digits.y_train)]
    # the first point's folds 2 and 3, then all three of the second point's: fold 1 is read back
    assert fits == [(points[0], sizes[1]), (points[0], sizes[2])] + [(points[1], n) for n in sizes]
    timing = [c for c in reference.columns if c.endswith("_time")]
    pd.testing.assert_frame_equal(resumed.drop(columns=timing), reference.drop(columns=timing))
    assert len(list((tmp_path / "points").glob("*.json"))) == 2
    assert not list((tmp_path / "points" / "folds").glob("*.json"))


def test_epoch_lines_give_the_epoch_within_a_fit_with_etas(capsys):
    """EpochLines (a GridSearchCV-engine fit's progress): the epoch within the fit, its ETA from
    the mean epoch so far, the command's adding the fits after it; none within ``interval`` of
    the last line and none for the last epoch (the fold's own line follows)."""
    from gridsearch.estimator import EpochLines, ScheduledAdam

    now = [0.0]
    lines = EpochLines(prefix="[gridsearch x 3/36] adam", unit="fold 2/3", fits_after=2, interval=50.0,
                       clock=lambda: now[0])
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=ScheduledAdam(learning_rate=0.001, schedule="inverse-sqrt", beta_2=0.99), loss="mse")
    lines.set_model(model)
    lines.set_params({"epochs": 4})
    lines.on_train_begin()
    for epoch in range(4):
        lines.on_epoch_begin(epoch)
        now[0] += 40.0
        lines.on_epoch_end(epoch)
    err = capsys.readouterr().err.splitlines()
    # epoch 1 at 40 s: before the interval; epoch 2 at 80 s: fit ETA 2 × 40 s, all + 2 fits × 160 s
    assert err == ["[gridsearch x 3/36] adam α=0.001 β2=0.99 fold 2/3 epoch 2/4 in 40.0s (fit ETA 1m20s, all ETA 6m40s)"]
    lines.seconds_per_fit = 100.0  # the finished fits' mean, once there is one
    lines.interval = 0.0
    lines.on_train_begin()
    now[0] += 30.0
    lines.on_epoch_end(0)
    assert capsys.readouterr().err.strip().endswith("epoch 1/4 in 30.0s (fit ETA 1m30s, all ETA 4m50s)")


def test_progress_counts_skips_apart_from_its_eta():
    """Progress's position, remaining units and mean seconds per finished unit (what the epoch
    lines and every ETA use): skipped (resumed) units count in the position, not in the mean."""
    import io

    from replication.progress import Progress

    now, stream = [100.0], io.StringIO()
    progress = Progress(5, "x", stream=stream, clock=lambda: now[0])
    assert (progress.position(), progress.remaining(), progress.seconds_per_unit()) == (0, 5, None)
    progress.skip("a")
    now[0] += 30.0
    progress.update("b")
    now[0] += 30.0
    progress.update("c")
    assert (progress.position(), progress.remaining(), progress.seconds_per_unit()) == (3, 2, 30.0)
    assert progress.prefix() == "[x 3/5]"
    assert stream.getvalue().splitlines() == ["[x 1/5] a (already done, skipped)",
                                              "[x 2/5] b (elapsed 30.0s, ETA 1m30s)",  # 3 left × 30 s
                                              "[x 3/5] c (elapsed 1m00s, ETA 1m00s)"]


def test_epoch_lines_of_a_search_change_none_of_its_numbers(digits, capsys, monkeypatch):
    """The GridSearchCV engine prints a line per epoch within each fit (interval 0 here) under the
    search's label, and its rows equal a silent search's apart from wall times."""
    import io

    import gridsearch.search as search
    from replication.progress import Progress

    spec = get_experiment(EXPERIMENT)
    points = [GridPoint("adam", 0.01, 0.99)]
    common = dict(cv=2, epochs=3, seed=0, engine="gridsearchcv")
    silent = run_grid_search(spec, digits.x_train, digits.y_train, points, **common)
    monkeypatch.setattr(search, "EPOCH_LINE_SECONDS", 0.0)
    stream = io.StringIO()
    talking = run_grid_search(spec, digits.x_train, digits.y_train, points,
                              progress=Progress(2, "gridsearch digits", stream=stream), **common)
    err = capsys.readouterr().err
    for fold in (1, 2):
        for epoch in (1, 2):  # not the last: the fold's own line says it is done
            assert f"adam α=0.01 β2=0.99 fold {fold}/2 epoch {epoch}/3 in " in err
    assert "epoch 3/3" not in err and err.count("[gridsearch digits 0/2] adam") == 2
    assert err.count("[gridsearch digits 1/2] adam") == 2  # the second fold's, after the first is counted
    assert "fold 2/2 done" in stream.getvalue()
    pd.testing.assert_frame_equal(talking.drop(columns=TIME_COLUMNS), silent.drop(columns=TIME_COLUMNS))
