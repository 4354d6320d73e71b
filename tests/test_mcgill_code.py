"""McGill's code's protocol (issue 27): each new schedule, scale, split, model and search rule
against its definition, and the promise that the default protocol keeps every id it had."""
import dataclasses
import math

import keras
import numpy as np
import pandas as pd
import pytest

from replication.datasets import (
    Dataset,
    load_dataset,
    mcgill_mnist_order,
    mcgill_split_indices,
    prepare_dataset,
)
from replication.errors import UserError
from replication.experiments import EXPERIMENTS, PROTOCOL_DEFAULTS, get_experiment, with_overrides
from replication.optimizers import make_optimizer

from conftest import real_data

CODED = ["mnist-logreg-mcgill-code", "mnist-mlp-mcgill-code", "mnist-mlp-mcgill-code-3d52d12",
         "cifar10-cifarnet-mcgill-code"]


# -- schedules: the step the optimizer really applies at update k ---------------------------------
def _applied_steps(schedule, alpha, updates, **kwargs):
    """Δθ of each of ``updates`` Adam updates (bias correction on, β2 0.999, ε 1e-7) of one variable
    under a constant gradient g = 1, through make_optimizer (the trainer's factory)."""
    optimizer = make_optimizer("adam", alpha, schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs)
    x = keras.Variable(np.zeros(1, dtype="float32"))
    steps = []
    for _ in range(updates):
        before = float(np.asarray(x)[0])
        optimizer.apply_gradients([(keras.ops.ones((1,)), x)])
        steps.append(before - float(np.asarray(x)[0]))
    return np.array(steps)


def _adam_factor(t, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Δθ / lr of Adam's update t (from 1) under g = 1: lr·√(1−β2^t)/(1−β1^t)·m/(√v + ε) with
    m = 1 − β1^t, v = 1 − β2^t (Kingma & Ba Alg. 1 with the bias correction folded into α_t)."""
    m, v = 1 - beta_1**t, 1 - beta_2**t
    return math.sqrt(v) / (1 - beta_1**t) * m / (math.sqrt(v) + epsilon)


@pytest.mark.parametrize("steps_per_epoch", [1, 3, 4])
def test_epoch_inverse_sqrt_sets_alpha_over_sqrt_of_one_plus_epoch(steps_per_epoch):
    """McGill's LearningRateScheduler(lambda epoch: .001/np.sqrt(1 + epoch)): every update of epoch e
    (from 0) uses 0.001/√(1 + e)."""
    alpha, updates = 0.001, 12
    got = _applied_steps("epoch-inverse-sqrt", alpha, updates, steps_per_epoch=steps_per_epoch)
    want = [alpha / math.sqrt(1 + (k // steps_per_epoch)) * _adam_factor(k + 1) for k in range(updates)]
    np.testing.assert_allclose(got, want, rtol=2e-4)
    if steps_per_epoch == 3:  # updates 0-2 share epoch 0's rate, update 3 is the first of epoch 1
        assert got[2] / _adam_factor(3) == pytest.approx(alpha, rel=2e-4)
        assert got[3] / _adam_factor(4) == pytest.approx(alpha / math.sqrt(2), rel=2e-4)


def test_time_decay_is_keras2_decay():
    """Keras 2.1's Adam(decay=d): update k (from 0) uses lr/(1 + d·k) (McGill's grid, d = 0.14)."""
    alpha, d, updates = 0.01, 0.14, 10
    got = _applied_steps("time-decay", alpha, updates, decay=d)
    want = [alpha / (1 + d * k) * _adam_factor(k + 1) for k in range(updates)]
    np.testing.assert_allclose(got, want, rtol=2e-4)


def test_the_new_schedules_need_their_parameter():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        make_optimizer("adam", 0.001, "epoch-inverse-sqrt")
    with pytest.raises(ValueError, match="decay"):
        make_optimizer("adam", 0.001, "time-decay")


# -- input scale -----------------------------------------------------------------------------------
def _fake(name, n_train, n_test, shape, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n_train + n_test, *shape), dtype=np.uint8)
    x = pixels.astype(np.float32) / np.float32(255.0)  # as load_dataset scales
    y = rng.integers(0, 10, size=n_train + n_test)
    return pixels, Dataset(name, x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=10)


def test_raw_scale_gives_back_the_stored_pixels_exactly():
    pixels, data = _fake("mnist", 300, 100, (28, 28))
    raw = prepare_dataset(data, "raw", "official")
    assert raw.x_train.dtype == np.float32 and raw.input_scale == "raw"
    np.testing.assert_array_equal(raw.x_train, pixels[:300].astype(np.float32))
    np.testing.assert_array_equal(raw.x_test, pixels[300:].astype(np.float32))
    every = np.arange(256, dtype=np.uint8)  # all 256 values survive the /255 and back
    back = prepare_dataset(Dataset("mnist", every.astype(np.float32)[:, None] / np.float32(255.0), every,
                                   every.astype(np.float32)[:, None] / np.float32(255.0), every, num_classes=10), "raw")
    np.testing.assert_array_equal(back.x_train[:, 0], every.astype(np.float32))


def test_raw_digits_are_the_counts_0_to_16():
    from sklearn.datasets import load_digits

    raw = prepare_dataset(load_dataset("digits"), "raw")
    assert set(np.unique(raw.x_train)) <= set(range(17)) and raw.x_train.max() == 16
    assert set(map(float, np.unique(load_digits().images))) == set(map(float, np.unique(np.concatenate(
        [raw.x_train.ravel(), raw.x_test.ravel()]))))


def test_prepare_refuses_twice_and_unknown_protocols():
    _, data = _fake("mnist", 20, 10, (28, 28))
    raw = prepare_dataset(data, "raw")
    assert prepare_dataset(raw, "raw") is raw  # already so: nothing to do
    with pytest.raises(UserError, match="already prepared"):
        prepare_dataset(raw, "unit")
    with pytest.raises(UserError, match="unknown input_scale"):
        prepare_dataset(data, "centered")
    with pytest.raises(UserError, match="for cifar10 only"):
        prepare_dataset(data, "unit", "train-batch-5")


# -- splits ----------------------------------------------------------------------------------------
def test_mcgill_split_indices_are_train_test_split_with_seed_551():
    from sklearn.model_selection import train_test_split

    train, test = mcgill_split_indices(70000)
    want_train, want_test = train_test_split(np.arange(70000), test_size=10000, random_state=551)
    np.testing.assert_array_equal(train, want_train)
    np.testing.assert_array_equal(test, want_test)
    assert len(set(train) | set(test)) == 70000


def test_mcgill_mnist_order_is_train_then_test_each_sorted_by_label_stably():
    x_train = np.arange(8).reshape(8, 1)
    y_train = np.array([3, 1, 3, 0, 1, 0, 2, 2])
    x_test = np.arange(100, 104).reshape(4, 1)
    y_test = np.array([1, 0, 1, 0])
    x, y = mcgill_mnist_order(x_train, y_train, x_test, y_test)
    assert x[:, 0].tolist() == [3, 5, 1, 4, 6, 7, 0, 2, 101, 103, 100, 102]
    assert y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 0, 0, 1, 1]


def test_mcgill_random_split_moves_images_not_pixels():
    pixels, data = _fake("mnist", 600, 100, (28, 28))
    split = prepare_dataset(data, "unit", "mcgill-random")
    assert (len(split.x_train), len(split.x_test)) == (600, 100)
    everything = np.concatenate([data.x_train, data.x_test])
    ordered, labels = mcgill_mnist_order(data.x_train, data.y_train, data.x_test, data.y_test)
    train, test = mcgill_split_indices(700, n_test=100)
    np.testing.assert_array_equal(split.x_test, ordered[test])
    np.testing.assert_array_equal(split.y_train, labels[train])
    # the same multiset of images as before, each with its own label
    key = {tuple(np.round(img.ravel()[:8] * 255).astype(int)) + (lbl,)
           for img, lbl in zip(everything, np.concatenate([data.y_train, data.y_test]))}
    assert {tuple(np.round(img.ravel()[:8] * 255).astype(int)) + (lbl,)
            for img, lbl in zip(np.concatenate([split.x_train, split.x_test]),
                                np.concatenate([split.y_train, split.y_test]))} == key


def test_cifar_train_batch_5_is_training_images_40000_to_49999():
    index = np.arange(50000, dtype=np.float32).reshape(-1, 1, 1, 1)
    x_train = np.broadcast_to(index, (50000, 32, 32, 3))  # a view: image i holds the number i
    y_train = np.arange(50000) % 10
    x_test = np.zeros((10, 32, 32, 3), np.float32)
    data = Dataset("cifar10", x_train, y_train, x_test, np.zeros(10, int), num_classes=10,
                   test_exact=np.ones(10, bool))
    split = prepare_dataset(data, "unit", "train-batch-5")
    np.testing.assert_array_equal(split.x_test[:, 0, 0, 0], np.arange(40000, 50000))
    np.testing.assert_array_equal(split.y_test, y_train[40000:50000])
    assert len(split.x_train) == 50000 and split.test_exact is None


@pytest.mark.slow
def test_cifar_train_batch_5_on_the_real_file():
    path = real_data("cifar10.npz")
    split = prepare_dataset(load_dataset("cifar10", path.parent), "raw", "train-batch-5")
    with np.load(path) as f:
        np.testing.assert_array_equal(split.x_test, f["x_train"][40000:50000].astype(np.float32))
        np.testing.assert_array_equal(split.y_test, f["y_train"].reshape(-1)[40000:50000])


# -- McGill's coded CifarNet -----------------------------------------------------------------------
def test_coded_cifarnet_is_models_py_at_3d93029():
    from replication.models import build_model

    model = build_model("cifarnet-coded", input_shape=(32, 32, 3), num_classes=10)
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds == ["Conv2D", "MaxPooling2D", "BatchNormalization", "Conv2D", "Flatten", "Dense", "Dropout",
                     "Dense"]
    assert model.get_layer("conv1").kernel.shape == (6, 6, 3, 64)
    assert model.get_layer("conv2").kernel.shape == (6, 6, 64, 64)
    assert model.get_layer("flatten").output.shape[1:] == (16 * 16 * 64,)
    assert model.get_layer("dropout3").rate == 0.5
    by_hand = (6 * 6 * 3 * 64 + 64) + 4 * 64 + (6 * 6 * 64 * 64 + 64) + (16384 * 384 + 384) + (384 * 10 + 10)
    assert model.count_params() == by_hand == 6_450_442


# -- the experiments -------------------------------------------------------------------------------
def test_coded_experiments_hold_param_config_yml_at_3d93029():
    table = {  # AWS/experiments/param_config.yml at 3d93029 (3d52d12 for the last one)
        "mnist-logreg-mcgill-code": {"adam": (0.001, 0.999), "amsgrad": (0.001, 0.999)},
        "mnist-mlp-mcgill-code": {"adam": (0.001, 0.99), "amsgrad": (0.001, 0.999)},
        "mnist-mlp-mcgill-code-3d52d12": {"adam": (0.0001, 0.99), "amsgrad": (0.0001, 0.999)},
        "cifar10-cifarnet-mcgill-code": {"adam": (0.001, 0.99), "amsgrad": (0.001, 0.99)},
    }
    for name, values in table.items():
        spec = get_experiment(name)
        for optimizer, (alpha, beta_2) in values.items():
            assert spec.default_hyperparameters(optimizer) == {"learning_rate": alpha, "beta_2": beta_2}
        assert (spec.input_scale, spec.loss, spec.epsilon, spec.batch_size) == ("raw", "binary", 1e-7, 128)
        assert (spec.gridsearch_schedule, spec.decay, spec.gridsearch_loss, spec.gridsearch_score,
                spec.gridsearch_folds, spec.early_stopping) == ("time-decay", 0.14, "categorical", "accuracy",
                                                                "kfold", False)
    assert [get_experiment(n).epochs for n in CODED] == [50, 35, 35, 30]
    assert [get_experiment(n).schedule for n in CODED] == ["epoch-inverse-sqrt", "constant", "constant", "constant"]
    assert [get_experiment(n).split for n in CODED] == ["mcgill-random"] * 3 + ["train-batch-5"]


def test_default_protocol_adds_nothing_to_specs_run_ids_or_point_keys():
    from gridsearch.search import GridPoint, SearchSettings
    from replication.trainer import RunConfig

    for name, spec in EXPERIMENTS.items():
        coded = name in CODED
        assert bool(spec.protocol()) == coded
        keys = {key for key, _ in PROTOCOL_DEFAULTS}
        assert bool(keys & set(spec.to_dict())) == coded
        assert ("protocol" in SearchSettings.from_spec(spec).to_dict()) == coded
    spec = get_experiment("mnist-logreg")
    config = RunConfig(experiment=spec.name, dataset="mnist", model="logreg", model_kwargs=(), loss_function="binary",
                       batch_size=128, epochs=50, optimizer="adam", learning_rate=0.001, schedule="inverse-sqrt",
                       beta_1=0.9, beta_2=0.99, epsilon=1e-7, bias_correction=True, run=0, seed=1)
    assert not {"input_scale", "split", "decay"} & set(config.to_dict())
    raw = dataclasses.replace(config, input_scale="raw")
    assert raw.to_dict()["input_scale"] == "raw" and raw.run_id != config.run_id
    settings = SearchSettings.from_spec(spec)
    coded = SearchSettings.from_spec(with_overrides(spec, input_scale="raw"))
    point = GridPoint("adam", 0.001, 0.99)
    assert settings.point_key(point) != coded.point_key(point)


def test_search_runs_the_searchs_schedule_and_loss():
    from gridsearch.search import SearchSettings, search_spec

    spec = get_experiment("mnist-logreg-mcgill-code")
    assert (search_spec(spec).schedule, search_spec(spec).loss) == ("time-decay", "categorical")
    settings = SearchSettings.from_spec(spec)
    assert (settings.schedule, settings.loss, settings.score, settings.folds) == ("time-decay", "categorical",
                                                                                  "accuracy", "kfold")
    plain = get_experiment("mnist-logreg")
    assert search_spec(plain) is plain


def test_bad_protocol_values_are_one_line_errors():
    spec = get_experiment("digits-logreg")
    for field, value, message in (("split", "mcgill-random", "for mnist only"), ("gridsearch_score", "f1", "unknown"),
                                  ("gridsearch_folds", "loo", "unknown"), ("decay", -1.0, "decay"),
                                  ("gridsearch_schedule", "cosine", "unknown"), ("gridsearch_loss", "elbo", "does not fit")):
        with pytest.raises(UserError, match=message):
            with_overrides(spec, **{field: value})


# -- the search's selection and folds --------------------------------------------------------------
def test_accuracy_selection_takes_the_first_of_ties_in_parameter_grid_order():
    from sklearn.model_selection import ParameterGrid

    from gridsearch.search import select_best

    rows = [(lr, b2) for lr in (0.0001, 0.001, 0.01) for b2 in (0.99, 0.999)]  # our grid order: α, then β2
    accuracy = {(0.001, 0.99): 0.8, (0.001, 0.999): 0.9, (0.01, 0.99): 0.9, (0.01, 0.999): 0.85}
    frame = pd.DataFrame({"optimizer": "adam", "learning_rate": [r[0] for r in rows], "beta_2": [r[1] for r in rows],
                          "diverged": False, "mean_val_loss": [0.5, 0.4, 0.3, 0.2, 0.1, 0.35],
                          "mean_val_accuracy": [accuracy.get(r, 0.1) for r in rows]})
    # McGill's grid dict(lr=..., beta_2=...): ParameterGrid sorts the keys, so β2 is the outer loop
    first = next(p for p in ParameterGrid({"lr": [0.0001, 0.001, 0.01], "beta_2": [0.99, 0.999]})
                 if accuracy.get((p["lr"], p["beta_2"])) == 0.9)
    assert select_best(frame, "accuracy") == {"adam": {"learning_rate": first["lr"], "beta_2": first["beta_2"]}}
    assert first == {"beta_2": 0.99, "lr": 0.01}
    assert select_best(frame) == {"adam": {"learning_rate": 0.01, "beta_2": 0.99}}  # smallest loss 0.1


def test_kfold_folds_are_consecutive_thirds():
    from gridsearch.search import SearchSettings, _cv

    settings = SearchSettings.from_spec(get_experiment("mnist-logreg-mcgill-code"))
    y = np.arange(30) % 10
    folds = [val.tolist() for _, val in _cv(settings).split(np.zeros((30, 1)), y)]
    assert folds == [list(range(0, 10)), list(range(10, 20)), list(range(20, 30))]


def test_both_engines_agree_on_the_coded_search():
    """Keras 2 decay, categorical CE, accuracy, unshuffled KFold, no early stopping, raw pixels: the
    stacked engine and GridSearchCV over scikeras give the same fold accuracies and losses."""
    from gridsearch.search import make_grid, run_grid_search

    spec = with_overrides(get_experiment("digits-logreg"), **{
        k: v for k, v in get_experiment("mnist-logreg-mcgill-code").protocol().items() if k != "split"})
    data = prepare_dataset(load_dataset("digits"), spec.input_scale, spec.split)
    points = make_grid(["amsgrad"], [0.001, 0.1], [0.99])
    frames = [run_grid_search(spec, data.x_train, data.y_train, points, epochs=4, engine=engine)
              for engine in ("stacked", "gridsearchcv")]
    for column in ("split0_val_accuracy", "mean_val_accuracy", "mean_val_loss"):
        np.testing.assert_allclose(frames[0][column], frames[1][column], rtol=1e-5)
    assert (frames[0]["schedule"] == "time-decay").all() and (frames[0]["loss"] == "categorical").all()
    assert (frames[0]["mean_epochs_run"] == 4).all()  # no early stopping
    assert frames[0]["mean_val_accuracy"].between(0, 1).all()


def test_final_params_spec_ignores_the_searchs_choice(tmp_path):
    """McGill's code trained at param_config.yml whatever its grid search chose."""
    import json

    from replication.trainer import train_experiment

    base = with_overrides(get_experiment("digits-logreg"), epochs=1, runs=1)
    (tmp_path / base.name).mkdir()
    (tmp_path / base.name / "best_params.json").write_text(json.dumps({"adam": {"learning_rate": 0.5, "beta_2": 0.9}}))
    searched = train_experiment(base, optimizers=["adam"], out_dir=tmp_path, progress=False)
    assert (searched["learning_rate"].iloc[0], searched["beta_2"].iloc[0]) == (0.5, 0.9)
    coded = train_experiment(with_overrides(base, final_params="spec"), optimizers=["adam"], out_dir=tmp_path,
                             progress=False, force=True)  # another configuration in the same folder: replace it
    assert (coded["learning_rate"].iloc[0], coded["beta_2"].iloc[0]) == (base.learning_rate, 0.99)


# -- the ablation ----------------------------------------------------------------------------------
def test_ablation_switches_one_factor_at_a_time():
    from replication.ablation import FACTORS, plan_ablation

    everything = plan_ablation("mnist-logreg")
    steps = [s for s in everything if not s.control]
    assert [s.factor for s in steps] == ["ours"] + [f for f, _ in FACTORS]
    control = next(s for s in everything if s.control)  # step 2 with pixels in [0, 1], at step 1's choice
    assert (control.factor, control.spec.params_from, control.spec.input_scale) == (
        "control-unit-pixels", "mnist-logreg-1-raw-pixels", "unit")
    assert dataclasses.replace(control.spec, name="x", input_scale="raw") == dataclasses.replace(
        steps[2].spec, name="x")
    coded = get_experiment("mnist-logreg-mcgill-code")
    assert steps[0].spec == get_experiment("mnist-logreg") and steps[-1].spec == coded
    for previous, step in zip(steps[1:-1], steps[2:-1]):
        fields = dict(FACTORS)[step.factor]
        changed = {f.name for f in dataclasses.fields(step.spec)
                   if getattr(step.spec, f.name) != getattr(previous.spec, f.name)} - {"name", "params_from"}
        assert changed == set(fields), step.factor  # grid-schedule too: the search keeps ours until then
        assert all(getattr(step.spec, f) == getattr(coded, f) for f in fields)
    by_factor = {s.factor: s for s in steps}
    assert by_factor["raw-pixels"].spec.search_schedule == "inverse-sqrt"
    assert by_factor["final-schedule"].spec.params_from == "mnist-logreg-1-raw-pixels"  # same search: reused
    assert by_factor["final-schedule"].spec.search_schedule == "inverse-sqrt"
    assert by_factor["grid-schedule"].spec.params_from == "" and by_factor["split"].spec.protocol() == {
        k: v for k, v in coded.protocol().items()}
    assert [s.computed for s in steps] == [False, True, True, True, True, True, False]


@pytest.mark.slow
def test_ablation_runs_and_assembles_on_digits(tmp_path):
    from replication.ablation import run_ablation
    from replication.trainer import train_experiment

    import gridsearch.search as search_module

    small = dict(epochs=2, gridsearch_epochs=2, runs=2)
    base = with_overrides(get_experiment("digits-logreg"), **small)
    coded = with_overrides(get_experiment("digits-logreg"), name="digits-logreg-coded", final_params="spec",
                           **{k: v for k, v in get_experiment("mnist-logreg-mcgill-code").protocol().items()
                              if k != "split"}, schedule="epoch-inverse-sqrt", **small)
    for spec in (base, coded):
        train_experiment(spec, out_dir=tmp_path, progress=False)
    saved = search_module.DEFAULT_LEARNING_RATES
    search_module.DEFAULT_LEARNING_RATES = (0.01, 0.1)  # a small grid: 2 α × 5 β2
    try:
        frame = run_ablation(base, coded=coded, out=tmp_path, progress=False)
    finally:
        search_module.DEFAULT_LEARNING_RATES = saved
    assert sorted(set(frame["step"])) == list(range(7)) and len(frame) == 16  # 7 steps and step 2's control
    assert frame.loc[frame["control"], "factor"].unique().tolist() == ["control-unit-pixels"]
    by_step = frame[~frame["control"]].set_index(["step", "optimizer"])
    assert by_step.loc[(2, "adam"), "learning_rate"] == by_step.loc[(1, "adam"), "learning_rate"]
    assert by_step.loc[(6, "adam"), "learning_rate"] == coded.learning_rate
    assert (frame["runs"] == 2).all() and (frame["epochs"] == 2).all()
    assert set(frame.loc[frame["step"] >= 2, "schedule"]) == {"epoch-inverse-sqrt"}
    written = pd.read_csv(tmp_path / "mcgill-code" / "ablation-digits-logreg.csv")
    assert len(written) == 16


# -- their figures beside ours ---------------------------------------------------------------------
def _history(experiment, losses_by_run, optimizer="adam"):
    rows = []
    for run, losses in enumerate(losses_by_run):
        for epoch, loss in enumerate(losses, start=1):
            rows.append({"experiment": experiment, "optimizer": optimizer, "run": run, "epoch": epoch, "loss": loss,
                         "test_loss": loss + 0.1, "accuracy": 1 - loss, "test_accuracy": 0.9 - loss})
    return pd.DataFrame(rows)


def test_readings_compare_at_the_same_epoch_counted_from_zero():
    from replication.mcgill import compare_with_figures, version_distance

    history = _history("mnist-mlp-mcgill-code", [[1.0, 0.5, 0.2], [1.2, 0.7, 0.4]])
    older = _history("mnist-mlp-mcgill-code-3d52d12", [[2.0, 1.5, 1.2], [2.2, 1.7, 1.4]])
    readings = pd.DataFrame([
        {"figure": "f", "model": "ffnn", "quantity": "train_loss", "optimizer": "adam", "curve": "mean", "epoch": 0,
         "value": 1.05, "precision": 0.01, "note": ""},
        {"figure": "f", "model": "ffnn", "quantity": "test_accuracy", "optimizer": "adam", "curve": "run_max",
         "epoch": 2, "value": 0.7, "precision": 0.01, "note": ""},
    ])
    comparison = compare_with_figures({"mnist-mlp-mcgill-code": history, "mnist-mlp-mcgill-code-3d52d12": older},
                                      readings)
    assert comparison["ours"].tolist() == pytest.approx([1.1, 0.9 - 0.2])  # epoch 0 = our epoch 1
    assert comparison["diff"].tolist() == pytest.approx([0.05, 0.0])
    assert comparison["ours_3d52d12"].iloc[0] == pytest.approx(2.1)
    distance = version_distance(comparison)
    assert distance["ours"] == pytest.approx(0.05) and distance["ours_3d52d12"] == pytest.approx(1.05)


def test_plateau_runs_finds_a_plateau_and_its_end():
    from replication.mcgill import plateau_runs

    flat = [1.6, 0.9, 0.8, 0.79, 0.78, 0.78, 0.77, 0.45, 0.3, 0.29]  # a plateau, then a drop at epoch 7
    smooth = [1.6, 1.0, 0.7, 0.5, 0.4, 0.33, 0.3, 0.28, 0.27, 0.26]
    found = plateau_runs(_history("x", [flat, smooth]))
    assert found["plateau_ends"].tolist() == [[7], []]


def test_verdict_table_has_the_as_coded_column():
    from replication.report import claim_verdicts

    rng = np.random.default_rng(0)

    def history(name, amsgrad_shift):
        rows = []
        for optimizer, shift in (("adam", 0.0), ("amsgrad", amsgrad_shift)):
            for run in range(5):
                loss = 0.3 + shift + 0.001 * rng.standard_normal()
                rows.append({"experiment": name, "optimizer": optimizer, "bias_correction": True, "run": run,
                             "seed": run, "epoch": 3, "loss": loss, "test_loss": loss, "accuracy": 0.9,
                             "test_accuracy": 0.9, "diverged": False})
        return pd.DataFrame(rows)

    entry = dict(iterations=None, gridsearch=None, best_params=None, train=None)
    data = {"out": "x", "synthetic": None, "experiments": {
        "mnist-logreg": {**entry, "history": history("mnist-logreg", +0.05)},
        "mnist-logreg-mcgill-code": {**entry, "history": history("mnist-logreg-mcgill-code", -0.05)}}}
    from replication import results, verdicts

    comparison = verdicts.add_holm(results.compare_final(data["experiments"]["mnist-logreg"]["history"]),
                                   ["mnist-logreg"])
    rows = {row[1]: row for row in claim_verdicts(data, comparison)}
    assert rows["mnist-logreg"][3] == "not supported"
    assert rows["mnist-logreg"][6].startswith("**supported** (`mnist-logreg-mcgill-code`)")
    assert rows["mnist-mlp"][6] == "—" and rows[None][6] == "—"


def test_ablation_cli_assembles_nothing_from_an_empty_folder(tmp_path, capsys):
    from replication.cli import main

    assert main(["ablation", "mnist-logreg", "--assemble-only", "--out", str(tmp_path)]) == 0
    assert "no step has results yet" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["ablation", "cifar10-cifarnet", "--out", str(tmp_path)])
    assert stop.value.code == 2
