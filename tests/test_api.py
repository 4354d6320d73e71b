"""The Python API (replication/api.py, docs/api.md) and `replicate --version`, on digits with tiny settings."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import replication
from replication import api
from replication.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
EXP = "digits-logreg"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("api_out")
    history = replication.train(EXP, optimizers=["adam", "amsgrad"], runs=2, epochs=2, out_dir=out)
    return out, history


def test_import_replication_is_light():
    code = ("import sys, replication; f = replication.load_results; import replication.api; "
            "sys.exit(1 if {'keras', 'tensorflow', 'pandas'} & set(sys.modules) else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert replication.compare is api.compare and replication.gridsearch is api.gridsearch


def test_train_returns_the_history_it_wrote(trained):
    out, history = trained
    on_disk = pd.read_csv(out / EXP / "history.csv")
    assert len(history) == len(on_disk) == 2 * 2 * 2  # optimizers × runs × epochs
    np.testing.assert_array_equal(history["test_loss"].to_numpy(), on_disk["test_loss"].to_numpy())
    # run k of both optimizers shares its seed (paired design)
    seeds = history.groupby(["run", "optimizer"])["seed"].first().unstack()
    assert (seeds["adam"] == seeds["amsgrad"]).all() and seeds["adam"].nunique() == 2


def test_load_results_is_one_tidy_frame_of_every_experiment(trained, tmp_path):
    import shutil

    out, history = trained
    folder = tmp_path / "results"
    shutil.copytree(out, folder)
    (folder / "only-a-search").mkdir()  # a folder without history.csv is skipped
    (folder / "only-a-search" / "best_params.json").write_text("{}")
    frame = api.load_results(folder)
    assert list(frame.columns[:4]) == ["experiment", "optimizer", "run", "epoch"]
    assert set(frame["experiment"]) == {EXP}
    assert not frame.duplicated(["experiment", "optimizer", "bias_correction", "run", "epoch"]).any()
    key = ["optimizer", "run", "epoch"]
    mine = frame.sort_values(key).reset_index(drop=True)
    theirs = history.sort_values(key).reset_index(drop=True)
    for column in ("loss", "test_loss", "accuracy", "test_accuracy", "seed"):
        np.testing.assert_array_equal(mine[column].to_numpy(), theirs[column].to_numpy())
    # verified as `replicate report` verifies: an edited loss is refused, not averaged
    path = folder / EXP / "history.csv"
    text = path.read_text().splitlines()
    cells = text[1].split(",")
    column = text[0].split(",").index("test_loss")
    cells[column] = "0.001"
    path.write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
    with pytest.raises(UserError, match="history.csv"):
        api.load_results(folder)
    assert api.load_results(tmp_path / "empty").empty


def test_gridsearch_returns_its_frame_and_choice(tmp_path, capsys):
    result = replication.gridsearch(EXP, optimizers=["adam"], learning_rates=[0.01, 0.5], beta_2s=[0.99], cv=2,
                                    epochs=2, out=tmp_path)
    printed = capsys.readouterr()
    frame, best = result["gridsearch"], result["best_params"]
    assert result["folder"] == tmp_path / EXP
    assert sorted(frame["learning_rate"]) == [0.01, 0.5]
    assert best == json.loads((tmp_path / EXP / "best_params.json").read_text())
    chosen = frame.loc[frame["mean_val_loss"].idxmin()]  # McGill: smallest mean validation loss
    assert best["adam"] == {"learning_rate": chosen["learning_rate"], "beta_2": 0.99}
    # quiet: no progress on stderr; the command's lines on stdout (the choice, the files written)
    folder = tmp_path / EXP
    assert printed.err == ""
    assert printed.out.splitlines() == [
        f"{EXP} adam: α={chosen['learning_rate']:g} β2=0.99",
        f"wrote {folder / 'gridsearch.csv'} (2 points, {int(frame['diverged'].sum())} diverged), "
        f"{folder / 'best_params.json'}, {tmp_path / 'gridsearch_table.md'}"]


SGD_MODULE = '''
import keras


class HalfSGD(keras.optimizers.Optimizer):
    """w <- w - lr * scale * g, scale 0.5 by default; takes beta_2 (unused) so the search can vary it."""

    def __init__(self, learning_rate=0.01, beta_2=0.9, scale=0.5, name="half_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_2, self.scale = beta_2, scale

    def update_step(self, gradient, variable, learning_rate):
        self.assign_sub(variable, keras.ops.cast(learning_rate, variable.dtype) * self.scale * gradient)

    def get_config(self):
        return {**super().get_config(), "beta_2": self.beta_2, "scale": self.scale}
'''


def test_compare_a_class_with_adam_and_amsgrad(tmp_path, monkeypatch):
    (tmp_path / "half_sgd_opt.py").write_text(textwrap.dedent(SGD_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import half_sgd_opt

    out = tmp_path / "out"
    result = replication.compare(half_sgd_opt.HalfSGD, EXP, out=out, runs=1, epochs=2, learning_rates=[0.01, 0.1],
                                 beta_2s=[0.99], cv=2, gridsearch_epochs=1)
    name = "half_sgd_opt:HalfSGD"
    assert result["name"] == name
    assert set(result["history"]["optimizer"]) == {"adam", "amsgrad", name}
    summary = result["summary"].set_index("optimizer")
    assert summary.loc[name, "runs"] == 1
    finals = result["history"][result["history"]["epoch"] == 2].set_index("optimizer")
    assert summary.loc[name, "test_accuracy_mean"] == pytest.approx(finals.loc[name, "test_accuracy"])
    assert result["best_params"][name]["learning_rate"] in (0.01, 0.1)
    assert set(result["history"].loc[result["history"]["optimizer"] == name, "learning_rate"]) == {
        result["best_params"][name]["learning_rate"]}
    sys.modules.pop("half_sgd_opt", None)


def test_a_class_that_cannot_be_loaded_by_name_is_refused():
    import keras

    class Local(keras.optimizers.SGD):
        pass

    with pytest.raises(UserError, match="cannot be loaded again by name"):
        api.optimizer_path(Local)
    assert api.optimizer_path(keras.optimizers.SGD) == "keras.src.optimizers.sgd:SGD"


def test_version_prints_package_version_and_code_fingerprint():
    from importlib.metadata import version

    from replication.io import source_fingerprint

    done = subprocess.run([sys.executable, "-m", "replication.cli", "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    match = re.fullmatch(r"replicate (\S+) \(code ([0-9a-f]{12})\)", done.stdout.strip())
    assert match, done.stdout
    assert match.group(1) == version("adam-amsgrad-replication")
    assert match.group(2) == source_fingerprint(ROOT)[:12]
