"""A researcher's own Keras optimizer, defined in a file outside the package, through
`replicate gridsearch`, `train` and `report` (issue 25 §6), on the digits data with tiny settings."""
from __future__ import annotations

import json
import math
import sys
import textwrap
from importlib.metadata import EntryPoint

import numpy as np
import pandas as pd
import pytest

from replication import cli, registry

MODULE = "user_rmsprop_opt"  # written into a temporary folder, imported from sys.path
NAME = f"{MODULE}:PlainRMSProp"
EXP = "digits-mlp"

SOURCE = '''
import keras
from keras import ops


class PlainRMSProp(keras.optimizers.Optimizer):
    """RMSProp (Tieleman & Hinton), no centering: v <- b2 v + (1 - b2) g^2, m <- momentum m + g / (sqrt(v) + eps),
    w <- w - lr m."""

    def __init__(self, learning_rate=0.01, beta_2=0.9, epsilon=1e-7, momentum=MOMENTUM, name="plain_rmsprop",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_2, self.epsilon, self.momentum = beta_2, epsilon, momentum

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._v = [self.add_variable_from_reference(v, "v") for v in variables]
        self._m = [self.add_variable_from_reference(v, "m") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        v, m = self._v[index], self._m[index]
        self.assign(v, self.beta_2 * v + (1.0 - self.beta_2) * ops.square(g))
        self.assign(m, self.momentum * m + g / (ops.sqrt(v) + self.epsilon))
        self.assign_sub(variable, lr * m)

    def get_config(self):
        config = super().get_config()
        config.update(beta_2=self.beta_2, epsilon=self.epsilon, momentum=self.momentum)
        return config


class NoBeta2(keras.optimizers.SGD):
    """Takes no beta_2: the grid search cannot vary it."""


NOT_AN_OPTIMIZER = object
'''


def write_module(folder, momentum=0.0):
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE).replace("MOMENTUM", repr(momentum)))


def forget_module():
    sys.modules.pop(MODULE, None)
    import importlib

    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def searched_and_trained(tmp_path_factory):
    """gridsearch (GridSearchCV engine: the stacked one stacks only built-ins), train and report of
    adam, amsgrad and the user's class into one --out; returns (out, the exit codes)."""
    folder = tmp_path_factory.mktemp("user_module")
    write_module(folder)
    out = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(folder))
        forget_module()
        codes = [
            cli.main(["gridsearch", EXP, "--optimizers", "adam", NAME, "--learning-rates", "0.001", "0.01",
                      "--beta2s", "0.99", "--cv", "2", "--epochs", "2", "--quiet", "--out", str(out)]),
            cli.main(["train", EXP, "--optimizers", "adam", "amsgrad", NAME, "--runs", "1", "--epochs", "2",
                      "--out", str(out)]),
            cli.main(["report", "--out", str(out)]),
        ]
        forget_module()
    return out, codes


def test_commands_succeed(searched_and_trained):
    assert searched_and_trained[1] == [0, 0, 0]


def test_best_params_hold_its_chosen_alpha(searched_and_trained):
    out, _ = searched_and_trained
    grid = pd.read_csv(out / EXP / "gridsearch.csv")
    mine = grid[grid["optimizer"] == NAME]
    assert sorted(mine["learning_rate"]) == [0.001, 0.01] and set(mine["engine"]) == {"gridsearchcv"}
    best = json.loads((out / EXP / "best_params.json").read_text())
    # McGill's rule: the smallest mean validation loss among its points
    chosen = mine.loc[mine["mean_val_loss"].idxmin()]
    assert best[NAME] == {"learning_rate": chosen["learning_rate"], "beta_2": 0.99}
    # each point's mean is the mean of its folds' validation losses
    for _, row in mine.iterrows():
        assert row["mean_val_loss"] == pytest.approx(-np.mean([row["split0_test_score"], row["split1_test_score"]]))


def test_runs_exist_verify_and_history_has_its_rows(searched_and_trained):
    from replication.runfiles import verify_folder

    out, _ = searched_and_trained
    exp = out / EXP
    assert verify_folder(exp) is None  # history.csv is what its run files (checked by sha256) assemble to
    sidecars = sorted((exp / "runs").glob(f"{MODULE}-PlainRMSProp-bcon-run0-*.json"))
    assert len(sidecars) == 1
    config = json.loads(sidecars[0].read_text())["config"]
    assert config["optimizer"] == NAME and config["optimizer_class"] == NAME
    assert json.loads(config["optimizer_config"])["momentum"] == 0.0
    best = json.loads((exp / "best_params.json").read_text())[NAME]
    history = pd.read_csv(exp / "history.csv")
    rows = history[history["optimizer"] == NAME]
    assert list(rows["epoch"]) == [1, 2]
    # trained at the search's choice, under the experiment's schedule (α/√t), its ε and batch size
    assert set(rows["learning_rate"]) == {best["learning_rate"]} and set(rows["beta_2"]) == {best["beta_2"]}
    assert set(rows["schedule"]) == {"inverse-sqrt"} and set(rows["batch_size"]) == {128}
    assert rows["loss"].map(math.isfinite).all() and (rows["test_accuracy"] > 0.1).all()
    # paired with Adam's run 0: the same seed
    assert set(rows["seed"]) == set(history.loc[history["optimizer"] == "adam", "seed"])


def test_report_shows_it(searched_and_trained):
    out, _ = searched_and_trained
    report = (out / "REPORT.md").read_text()
    lines = [line for line in report.splitlines() if NAME in line]
    assert any(f"`{EXP}`" in line for line in lines), lines
    assert (out / EXP / "figures").is_dir()


def test_first_step_is_the_formula(tmp_path, monkeypatch):
    """Built the way the trainer builds it (make_optimizer: schedule, β1/β2/ε/bias correction given,
    those the class does not take left out), one step is w − α·g/(√((1 − β2)·g²) + ε)."""
    import keras

    from replication.optimizers import make_optimizer

    write_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_module()
    alpha, beta_2, eps = 0.05, 0.99, 1e-7
    opt = make_optimizer(NAME, alpha, "inverse-sqrt", total_steps=10, steps_per_epoch=5, decay=0.0,
                         beta_1=0.9, beta_2=beta_2, epsilon=eps, bias_correction=True)
    w0 = np.array([3.0, -1.0, 2.0], dtype=np.float32)
    g = np.array([0.3, -0.02, 1.5], dtype=np.float32)
    w = keras.Variable(w0)
    opt.apply_gradients([(keras.ops.convert_to_tensor(g), w)])
    g64 = g.astype(np.float64)
    expected = w0 - alpha / math.sqrt(1) * g64 / (np.sqrt((1 - beta_2) * g64**2) + eps)
    np.testing.assert_allclose(np.asarray(w), expected, rtol=1e-6)
    forget_module()


def _plan(optimizers, out):
    from replication.trainer import plan_training

    return plan_training(EXP, optimizers=optimizers, runs=1, epochs=2, out_dir=out, learning_rate=0.01, beta_2=0.99)


def test_a_changed_class_default_changes_its_run_id(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    ids = []
    for momentum in (0.0, 0.0, 0.5):
        write_module(tmp_path, momentum)
        forget_module()
        ids.append({c.optimizer: c.run_id for c in _plan(["adam", NAME], tmp_path / "out").configs})
    forget_module()
    assert ids[0] == ids[1]  # the same class and defaults: the same id
    assert ids[2][NAME] != ids[0][NAME]  # momentum's default changed: another run
    assert ids[2]["adam"] == ids[0]["adam"]  # the built-ins' ids do not depend on it


def test_entry_point_registration(tmp_path, monkeypatch):
    """A package's entry point (group replication.optimizers) names the class; the user writes its name."""
    import importlib.metadata

    from replication.hyperparameters import params_problem
    from replication.optimizers import get_optimizer_class

    write_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_module()
    point = EntryPoint(name="plain-rmsprop", value=NAME, group=registry.OPTIMIZER_ENTRY_POINTS)
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [point] if kw.get("group") == registry.OPTIMIZER_ENTRY_POINTS else real(**kw))
    assert registry.entry_point_optimizers() == {"plain-rmsprop": NAME}
    assert get_optimizer_class("plain-rmsprop").__name__ == "PlainRMSProp"
    config = next(c for c in _plan(["adam", "plain-rmsprop"], tmp_path / "out").configs if c.optimizer != "adam")
    assert (config.optimizer, config.optimizer_class) == ("plain-rmsprop", NAME)
    assert config.stem.startswith("plain-rmsprop-bcon-run0-")
    assert params_problem({"plain-rmsprop": {"learning_rate": 0.1}}, registry.OPTIMIZER_NAMES) is None
    assert params_problem({"nothing-registered": {"learning_rate": 0.1}}, registry.OPTIMIZER_NAMES)
    forget_module()


@pytest.mark.parametrize("argv,message", [
    (["train", EXP, "--optimizers", "adam", "no_such_module_xyz:Opt"], "cannot import 'no_such_module_xyz'"),
    (["train", EXP, "--optimizers", "adam", f"{MODULE}:NOT_AN_OPTIMIZER"], "not a keras.optimizers.Optimizer subclass"),
    (["train", EXP, "--optimizers", "adam", f"{MODULE}:Missing"], "is not found"),
    (["train", EXP, "--optimizers", "sgd"], "unknown optimizer 'sgd'"),
    (["gridsearch", EXP, "--optimizers", "adam", "no_such_module_xyz:Opt"], "cannot import 'no_such_module_xyz'"),
    (["gridsearch", EXP, "--optimizers", f"{MODULE}:NoBeta2"], "takes no beta_2"),
    (["gridsearch", EXP, "--optimizers", NAME, "--engine", "stacked"], "stacks only the built-in optimizers"),
])
def test_bad_optimizers_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    write_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_module()
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    forget_module()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_class_that_fails_to_build_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_opt_mod.py").write_text(
        "import keras\n\nclass Broken(keras.optimizers.SGD):\n"
        "    def __init__(self, learning_rate=0.01, beta_2=0.9, **kwargs):\n"
        "        raise RuntimeError('not today')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["train", EXP, "--optimizers", "broken_opt_mod:Broken", "--runs", "1", "--epochs", "1",
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    sys.modules.pop("broken_opt_mod", None)
    assert len(err.splitlines()) == 1 and "RuntimeError: not today" in err, err
