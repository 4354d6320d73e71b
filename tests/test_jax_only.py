"""A JAX-only install (no TensorFlow) runs ``replicate train``, ``gridsearch`` and ``synthetic``.

That is how the suite reaches a GPU machine that has JAX but no TensorFlow. The CLI runs in a
subprocess under ``KERAS_BACKEND=jax`` with a meta-path finder that makes ``tensorflow`` (and
TensorBoard) unimportable exactly as if it were not installed (``ModuleNotFoundError``), so an
unguarded TensorFlow import anywhere on these paths (ours, Keras's, scikeras's) fails the test.
The outputs are checked against formulas, not only for existence.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("jax")

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorboard", "tf_keras"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTensorFlow())
    from replication.cli import main

    codes = [main(argv) for argv in json.loads(sys.argv[1])]
    import keras
    print(json.dumps({"codes": codes, "backend": keras.backend.backend(),
                      "tensorflow": sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")}))
""")

# The uniform predictor's loss on 10 classes: McGill's multiclass log-loss of p_k = 1/10,
# −(1/10)[log(1/10) + 9·log(9/10)]. One epoch of training must beat it.
UNIFORM_MULTICLASS_LOG_LOSS = (math.log(10) + 9 * math.log(10 / 9)) / 10


def test_train_gridsearch_and_synthetic_run_without_tensorflow(tmp_path):
    out = str(tmp_path)
    commands = [
        ["train", "digits-mlp", "--runs", "1", "--epochs", "1", "--out", out],
        ["gridsearch", "digits-logreg", "--learning-rates", "0.01", "--beta2s", "0.99", "--epochs", "1",
         "--out", out],
        ["synthetic", "--setting", "online", "--optimizers", "amsgrad", "--steps", "2000",
         "--learning-rates", "0.1", "--no-plots", "--out", out],
    ]
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(commands)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"codes": [0, 0, 0], "backend": "jax", "tensorflow": []}

    # train: one row per optimizer, ceil(1,347 / 128) = 11 steps in the epoch, better than uniform
    history = pd.read_csv(tmp_path / "digits-mlp" / "history.csv")
    assert sorted(history.optimizer) == ["adam", "amsgrad"]
    assert (history.iteration == math.ceil(1347 / 128)).all() and not history.diverged.any()
    assert (history.loss < UNIFORM_MULTICLASS_LOG_LOSS).all()
    assert (history.test_loss < UNIFORM_MULTICLASS_LOG_LOSS).all()
    assert json.loads((tmp_path / "digits-mlp" / "train.json").read_text())["provenance"]["device"]["backend"] == "jax"

    # gridsearch: the mean validation loss is minus the mean of the three folds' scores
    grid = pd.read_csv(tmp_path / "digits-logreg" / "gridsearch.csv")
    assert sorted(grid.optimizer) == ["adam", "amsgrad"]
    folds = grid[[f"split{k}_test_score" for k in range(3)]].to_numpy()
    pd.testing.assert_series_equal(grid.mean_val_loss, pd.Series(-folds.mean(axis=1), name="mean_val_loss"))
    assert (grid.mean_val_loss < UNIFORM_MULTICLASS_LOG_LOSS).all() and (grid.mean_epochs_run == 1).all()

    # synthetic: the compiled JAX loop against the plain-Python float64 transcription (the CSV
    # keeps 8 significant digits)
    from replication.synthetic import SyntheticConfig, reference_trajectory

    frame = pd.read_csv(tmp_path / "synthetic" / "trajectories.csv")
    last = frame[frame.step == 2000].iloc[0]
    config = SyntheticConfig(setting="online", optimizer="amsgrad", learning_rates=(0.1,), steps=2000)
    x_ref, regret_ref = reference_trajectory(config, 0.1, 0, 2000)
    assert last.x == pytest.approx(x_ref, rel=1e-7)
    assert last.avg_regret == pytest.approx(regret_ref, rel=1e-7)
