"""The stacked grid-search engine (gridsearch/stacked.py): same fits and scores as GridSearchCV.

The reference is the GridSearchCV engine itself (the ``searched`` fixture of conftest.py, one
scikeras fit per point and fold); each stacked member must reproduce its point's scores, epochs run
and divergence. Below that: the per-member optimizers against K separate optimizers and against
the tests' float64 oracle (tests/oracle.py), early
stopping per member against Keras's own callback, isolation of a diverging member, resume at the
fold level, and engine selection.
"""
from __future__ import annotations

import json
import math
import types

import keras
import numpy as np
import oracle
import pandas as pd
import pytest
from conftest import DIVERGES, EXPERIMENT

from gridsearch import run_grid_search
from gridsearch.estimator import ValidationLoss, make_estimator
from gridsearch.search import GridPoint, resolve_engine
from gridsearch.stacked import (
    STACKED_OPTIMIZERS,
    MemberEarlyStopping,
    fit_fold,
    why_not_stackable,
)
from replication.cli import main
from replication.datasets import load_dataset
from replication.experiments import get_experiment
from replication.optimizers import OPTIMIZERS, make_schedule

SCORES = [f"split{k}_{kind}_score" for k in range(3) for kind in ("test", "train")]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def stacked(searched, tmp_path_factory):
    """The ``searched`` grid again, with the stacked engine."""
    _, argv = searched
    out = tmp_path_factory.mktemp("stacked")
    argv = [a for a in argv if a not in ("--engine", "gridsearchcv")]
    argv[argv.index("--out") + 1] = str(out)
    assert main([*argv, "--engine", "stacked"]) == 0
    return out, argv


def _fold(data, k=0, cv=3, seed=0):
    from sklearn.model_selection import StratifiedKFold

    x = data.x_train.astype("float32")
    onehot = np.eye(10, dtype="float32")[data.y_train]
    train, val = list(StratifiedKFold(cv, shuffle=True, random_state=seed).split(x, data.y_train))[k]
    return x, onehot, train, val


def test_stacked_engine_reproduces_gridsearchcv_scores(searched, stacked):
    reference = pd.read_csv(searched[0] / EXPERIMENT / "gridsearch.csv")
    ours = pd.read_csv(stacked[0] / EXPERIMENT / "gridsearch.csv")
    assert set(reference["engine"]) == {"gridsearchcv"} and set(ours["engine"]) == {"stacked"}
    keys = ["optimizer", "learning_rate", "beta_2"]
    merged = reference.merge(ours, on=keys, suffixes=("_ref", "_ours"))
    assert len(merged) == len(reference) == len(ours) == 8
    for column in (*SCORES, "mean_val_loss"):
        np.testing.assert_allclose(merged[f"{column}_ours"], merged[f"{column}_ref"], rtol=1e-6)  # NaN == NaN
    for column in ("diverged", "split0_epochs_run", "split1_epochs_run", "split2_epochs_run"):
        assert (merged[f"{column}_ours"] == merged[f"{column}_ref"]).all(), column
    assert merged["diverged_ours"].sum() == 4  # α = 1e38, both optimizers, both β2
    assert json.loads((stacked[0] / EXPERIMENT / "best_params.json").read_text()) == json.loads(
        (searched[0] / EXPERIMENT / "best_params.json").read_text())


def test_stacked_mlp_member_equals_its_own_keras_fit(digits):
    """Two hidden-layer members (the second layer's per-member product), AMSGrad without bias
    correction, 4 epochs: each member's validation loss is its scikeras fit's."""
    spec = get_experiment("digits-mlp")
    x, onehot, train, val = _fold(digits, k=1)
    members = [(0.05, 0.99), (0.003, 0.9975)]
    results = fit_fold(spec, "amsgrad", members, x[train], onehot[train], x[val], onehot[val],
                       epochs=4, seed=3, bias_correction=False)
    for (lr, b2), result in zip(members, results):
        est = make_estimator(spec, "amsgrad", epochs=4, seed=3, jit_compile=False, steps_per_execution=1,
                             optimizer__learning_rate=lr, optimizer__beta_2=b2, optimizer__bias_correction=False)
        est.fit(x[train], digits.y_train[train])
        reference = -ValidationLoss(spec.loss)(est, x[val], digits.y_train[val])
        assert result["val_loss"] == pytest.approx(reference, rel=1e-6)
        assert result["epochs_run"] == 4


def test_a_diverging_member_leaves_the_others_untouched(digits):
    spec = get_experiment("digits-mlp")
    x, onehot, train, val = _fold(digits)
    alone = fit_fold(spec, "adam", [(0.01, 0.99)], x[train], onehot[train], x[val], onehot[val], epochs=3, seed=0)
    mixed = fit_fold(spec, "adam", [(1e38, 0.99), (0.01, 0.99)], x[train], onehot[train], x[val], onehot[val],
                     epochs=3, seed=0)
    assert math.isnan(mixed[0]["val_loss"]) and mixed[0]["epochs_run"] == 1
    assert mixed[1]["epochs_run"] == 3
    assert mixed[1]["val_loss"] == pytest.approx(alone[0]["val_loss"], rel=1e-6)
    assert mixed[1]["train_loss"] == pytest.approx(alone[0]["train_loss"], rel=1e-6)


def test_early_stopping_per_member_as_mcgill(digits):
    """α = 1e-30 cannot move the weights: that member stops after 1 + 3 epochs, exactly as its
    own scikeras fit does, while the working member in the same model trains all 12."""
    spec = get_experiment("digits-logreg")
    x, onehot, train, val = _fold(digits)
    results = fit_fold(spec, "adam", [(1e-30, 0.99), (0.01, 0.99)], x[train], onehot[train], x[val], onehot[val],
                       epochs=12, seed=0)
    est = make_estimator(spec, "adam", epochs=12, seed=0, jit_compile=False, steps_per_execution=1,
                         optimizer__learning_rate=1e-30, optimizer__beta_2=0.99)
    est.fit(x[train], digits.y_train[train])
    assert [r["epochs_run"] for r in results] == [len(est.history_["loss"]), 12] == [4, 12]


def test_member_early_stopping_matches_keras_and_snapshots_weights():
    """Member k's stop epoch is Keras's EarlyStopping's on member k's loss sequence, and a stopped
    member is restored to its weights of that epoch."""
    sequences = np.array([
        [1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.4],   # stalls 3 epochs after epoch 2: stops at epoch 5
        [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4],      # keeps improving: all 7
        [1.0, np.nan, 0.5, 0.4, 0.3, 0.2, 0.1],   # non-finite at epoch 2: stops there
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],      # never improves after the first: 4
    ])
    members, epochs = sequences.shape

    def keras_stop(losses):
        stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=3, min_delta=0.0)
        view = types.SimpleNamespace(stop_training=False)
        stopper.set_model(view)
        stopper.on_train_begin()
        for epoch, loss in enumerate(losses):
            stopper.on_epoch_end(epoch, {"loss": loss})
            if view.stop_training or not math.isfinite(loss):
                return epoch + 1
        return len(losses)

    class FakeModel:  # weights (in=2, members, units=3) whose values record the epoch
        def __init__(self):
            self.epoch = 0
            self.stop_training = False
            self.set = None

        def get_weights(self):
            return [np.full((2, members, 3), float(self.epoch)), np.full((members, 3), float(self.epoch))]

        def set_weights(self, weights):
            self.set = weights

    model = FakeModel()
    callback = MemberEarlyStopping(members)
    callback.set_model(model)
    callback.on_train_begin()
    for epoch in range(epochs):
        model.epoch = epoch + 1
        callback.on_epoch_end(epoch, {"member_loss": sequences[:, epoch]})
        if model.stop_training:
            break
    expected = [keras_stop(list(seq)) for seq in sequences]
    assert expected == [5, 7, 2, 4]
    assert callback.epochs_run.tolist() == expected
    callback.restore_stopped()
    kernel, bias = model.set
    for k, stop in enumerate(expected):
        if stop < epochs:  # restored to the weights after its last epoch
            assert np.all(kernel[:, k, :] == stop) and np.all(bias[k, :] == stop)
        else:
            assert np.all(kernel[:, k, :] == epochs)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("schedule", ["constant", "inverse-sqrt"])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_per_member_optimizer_equals_separate_optimizers(name, schedule, bias_correction):
    """K members in one (in, K, units) variable step exactly like K separate optimizers."""
    rng = np.random.default_rng(7)
    rates, betas = [0.3, 0.01, 1e-3], [0.99, 0.9925, 0.999]
    members = len(rates)
    start = rng.normal(size=(4, members, 2)).astype("float32")
    grads = [(rng.normal(size=start.shape) * rng.choice([1e-3, 1.0, 30.0])).astype("float32") for _ in range(25)]

    stacked_var = keras.Variable(start)
    stacked = STACKED_OPTIMIZERS[name](rates, betas, schedule=schedule, bias_correction=bias_correction)
    singles, single_vars = [], []
    for k in range(members):
        single_vars.append(keras.Variable(start[:, k, :]))
        singles.append(OPTIMIZERS[name](learning_rate=make_schedule(rates[k], schedule), beta_2=betas[k],
                                        bias_correction=bias_correction))
    for g in grads:
        stacked.apply_gradients([(keras.ops.convert_to_tensor(g), stacked_var)])
        for k in range(members):
            singles[k].apply_gradients([(keras.ops.convert_to_tensor(g[:, k, :]), single_vars[k])])
    result = keras.ops.convert_to_numpy(stacked_var)
    for k in range(members):
        # float32; α·(1/√t) vs α/√t differ in the last bit at most
        np.testing.assert_allclose(result[:, k, :], keras.ops.convert_to_numpy(single_vars[k]), rtol=2e-5, atol=1e-6)
    assert not np.allclose(result[:, 0, :], result[:, 2, :])  # the members really differ


@pytest.mark.parametrize("name", sorted(STACKED_OPTIMIZERS))
@pytest.mark.parametrize("bias_correction", [True, False])
def test_per_member_optimizer_matches_float64_reference(name, bias_correction):
    """In float64, member k of a stacked variable follows the papers' algorithm with its own α_k
    and β2_k (tests/oracle.py) to rounding error: the per-member hyperparameters reach the right
    slice of every slot."""
    rng = np.random.default_rng(11)
    rates, betas = [0.3, 0.01, 1e-3], [0.9, 0.99, 0.999]
    start = rng.normal(size=(4, len(rates), 2))
    grads = rng.normal(size=(40, *start.shape)) * 10.0 ** rng.uniform(-3, 1, size=(40, 1, 1, 1))
    stacked = STACKED_OPTIMIZERS[name](rates, betas, schedule="inverse-sqrt", bias_correction=bias_correction,
                                       beta_1=0.9, epsilon=1e-7)
    var = keras.Variable(start, dtype="float64")
    for g in grads:
        stacked.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
    factor = oracle.schedule("inverse-sqrt", 1.0, float32=True)  # the schedule at α = 1, in float32
    for k, (rate, beta_2) in enumerate(zip(rates, betas)):
        ref = oracle.run(name, grads[:, :, k, :], start[:, k, :], lambda t: rate * factor(t), beta_1=0.9,
                         beta_2=beta_2, epsilon=1e-7, bias_correction=bias_correction).x[-1]
        np.testing.assert_allclose(var.numpy()[:, k, :], ref, rtol=1e-10, atol=1e-13)
        assert np.abs(ref - start[:, k, :]).max() > 1e-5  # moved by far more than the tolerance


def _killed_in_fold_2(tmp_path, digits, monkeypatch, points, epochs):
    """Run a stacked search of ``points`` (digits-logreg, 3 folds) that a KeyboardInterrupt stops
    when fold 2 starts; return ``(run, calls)``: ``run()`` searches again with the same arguments
    and the same store, and ``calls`` counts the folds fitted from then on."""
    from gridsearch.store import PointStore
    import gridsearch.stacked as stacked_module

    spec = get_experiment("digits-logreg")
    kwargs = dict(cv=3, epochs=epochs, seed=0, engine="stacked", store=PointStore(tmp_path / "points"))
    original = stacked_module.fit_fold
    calls = []

    def interrupted(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kw)

    monkeypatch.setattr(stacked_module, "fit_fold", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_grid_search(spec, digits.x_train, digits.y_train, points, **kwargs)
    assert len(list((tmp_path / "points" / "folds").glob("*.fold0.json"))) == len(points)  # fold 1 kept
    assert not list((tmp_path / "points").glob("*.json"))  # no point is finished
    calls.clear()
    monkeypatch.setattr(stacked_module, "fit_fold", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    return (lambda: run_grid_search(spec, digits.x_train, digits.y_train, points, **kwargs)), calls


def test_interrupted_stacked_search_resumes_at_the_fold(tmp_path, digits, monkeypatch):
    points = [GridPoint("adam", 0.01, 0.99), GridPoint("adam", 0.1, 0.999)]
    run, calls = _killed_in_fold_2(tmp_path, digits, monkeypatch, points, epochs=2)
    resumed = run()
    assert len(calls) == 2  # folds 2 and 3 only
    assert len(list((tmp_path / "points").glob("*.json"))) == 2
    assert not list((tmp_path / "points" / "folds").glob("*.json"))  # fold records dropped
    fresh = run_grid_search(get_experiment("digits-logreg"), digits.x_train, digits.y_train, points, cv=3, epochs=2,
                            seed=0, engine="stacked")
    np.testing.assert_allclose(resumed[SCORES].to_numpy(float), fresh[SCORES].to_numpy(float), rtol=1e-9)


def test_a_fold_computed_by_other_code_is_recomputed_with_a_line(tmp_path, digits, monkeypatch, capsys):
    """A search killed after fold 1, resumed after a code change (another source fingerprint):
    fold 1 is recomputed, not mixed into the point with folds 2 and 3 of the new code, and a line
    says why; the finished points record the code that computed them."""
    from replication import io

    run, calls = _killed_in_fold_2(tmp_path, digits, monkeypatch, [GridPoint("adam", 0.01, 0.99)], epochs=1)
    io.code_version()
    monkeypatch.setitem(io._CODE, "source_sha256", "e" * 64)  # as if the code had been edited
    capsys.readouterr()
    run()
    assert len(calls) == 3  # fold 1 again, then folds 2 and 3
    err = capsys.readouterr().err
    assert "fold 1/3: points/folds/" in err and "was computed by other code" in err
    assert "now eeeeeeeeeeee); recomputing" in err
    (record,) = (tmp_path / "points").glob("*.json")
    assert json.loads(record.read_text())["code"] == "e" * 64


def test_engine_selection_and_errors(tmp_path, capsys):
    assert resolve_engine(get_experiment("mnist-mlp")) == "stacked"
    assert resolve_engine(get_experiment("mnist-logreg"), halving=True) == "gridsearchcv"
    assert resolve_engine(get_experiment("mnist-logreg"), backend="dask") == "gridsearchcv"
    assert resolve_engine(get_experiment("mnist-cnn")) == "gridsearchcv"
    assert "not one of the dense models" in why_not_stackable(get_experiment("cifar10-cifarnet"))
    for argv, needle in ((["digits-logreg", "--engine", "stacked", "--halving"], "halving"),
                         (["mnist-cnn", "--engine", "stacked"], "dense models")):
        assert main(["gridsearch", *argv, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err


def test_stacked_search_says_what_it_runs_and_every_point_line_has_an_eta(tmp_path, capsys):
    argv = ["gridsearch", EXPERIMENT, "--engine", "stacked", "--learning-rates", "0.01", "0.1",
            "--beta2s", "0.99", "--epochs", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"gridsearch {EXPERIMENT}: engine stacked (every grid point of a fold trained at once as "
                      "one Keras model); grid adam, amsgrad × α {0.01, 0.1} × β2 {0.99} = 4 points × 3 folds, "
                      "1 epoch per fit, seed 0")
    lines = [line for line in err if line.startswith("[gridsearch")]
    points = [line for line in lines if " val loss " in line and " fold " not in line]
    folds = [line for line in lines if " fold " in line]
    assert len(points) == 4 and len(folds) == 2 * 3
    assert all("ETA " in line for line in points + folds)
