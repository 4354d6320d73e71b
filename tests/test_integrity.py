"""What a new user found: results read back without being checked against the runs that made them.

* ``history.csv``/``iterations.csv`` are checked against the run files ``train.json`` lists (each
  checked against its sidecar): a hand-edited loss, a cut file or a dropped column is refused by
  :func:`results.load_history` and left out of the report, instead of changing a verdict.
* ``replicate train`` refuses to replace an experiment's results with another configuration's.
* Runs cut short of their spec's epochs are flagged in the verdict table and the final table.
"""
import shutil

import pandas as pd
import pytest

from replication import report, results
from replication.cli import main
from replication.errors import UserError
from replication.runfiles import verify_folder
from tests.test_results import make_history

EXP = "digits-logreg"
TRAIN = ["train", EXP, "--runs", "2", "--epochs", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("integrity")
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture()
def copy(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "out")
    return tmp_path / "out"


def test_untouched_folder_verifies_and_loads(trained):
    assert verify_folder(trained / EXP) is None
    assert len(results.load_history(EXP, out=trained)) == 2 * 2 * 2


def _edit_loss(path, row=2, value="0.001"):
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[row].rstrip("\n").split(",")
    cells[header.index("loss")] = value
    lines[row] = ",".join(cells) + "\n"
    path.write_text("".join(lines))


def test_hand_edited_loss_is_refused_and_left_out_of_the_report(copy, capsys):
    _edit_loss(copy / EXP / "history.csv")
    with pytest.raises(UserError, match="history.csv differs from its runs' files.*replicate train digits-logreg"):
        results.load_history(EXP, out=copy)
    data = report.collect(copy)
    assert data["experiments"][EXP]["history"] is None
    assert data["experiments"][EXP]["iterations"] is not None  # its own file is intact
    assert "report: left out" in capsys.readouterr().err


def test_cut_history_is_refused_not_averaged_over_other_epochs(copy):
    path = copy / EXP / "history.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]))  # the last run loses its rows: means would mix epochs
    with pytest.raises(UserError, match=r"history.csv has 5 rows, its runs 8"):
        results.load_history(EXP, out=copy)


def test_dropped_column_is_refused(copy):
    path = copy / EXP / "history.csv"
    frame = pd.read_csv(path).drop(columns=["test_loss"])
    frame.to_csv(path, index=False)
    with pytest.raises(UserError, match=r"history.csv lacks column\(s\) test_loss"):
        results.load_history(EXP, out=copy)


def test_edited_run_file_is_refused_through_its_sidecar(copy):
    run = sorted((copy / EXP / "runs").glob("amsgrad-*run1*.csv"))[0]
    run = run if not run.name.endswith(".iterations.csv") else run.with_name(run.name.replace(".iterations", ""))
    _edit_loss(run, row=1)
    assert "differs from the file its sidecar records" in verify_folder(copy / EXP)
    with pytest.raises(UserError):
        results.load_history(EXP, out=copy)


def test_rerunning_train_rebuilds_an_edited_history(copy):
    _edit_loss(copy / EXP / "history.csv")
    assert main([*TRAIN, "--out", str(copy)]) == 0
    assert verify_folder(copy / EXP) is None


def test_another_configuration_is_refused_and_history_kept(copy, capsys):
    before = (copy / EXP / "history.csv").read_bytes()
    code = main([*TRAIN, "--learning-rate", "0.001", "--schedule", "constant", "--out", str(copy)])
    err = capsys.readouterr().err
    assert code == 2
    assert "holds the results of another configuration" in err
    assert "learning_rate 0.01 (this call: 0.001)" in err and "schedule inverse-sqrt (this call: constant)" in err
    assert "Traceback" not in err
    assert (copy / EXP / "history.csv").read_bytes() == before


def test_fewer_runs_would_drop_runs_from_history_and_is_refused(copy, capsys):
    before = (copy / EXP / "history.csv").read_bytes()
    assert main(["train", EXP, "--runs", "1", "--epochs", "2", "--out", str(copy)]) == 2
    assert "this call leaves out" in capsys.readouterr().err
    assert (copy / EXP / "history.csv").read_bytes() == before


def test_more_runs_and_force_are_allowed(copy):
    assert main(["train", EXP, "--runs", "3", "--epochs", "2", "--out", str(copy)]) == 0
    assert results.load_history(EXP, out=copy)["run"].nunique() == 3
    assert main([*TRAIN, "--learning-rate", "0.001", "--force", "--out", str(copy)]) == 0
    history = results.load_history(EXP, out=copy)
    assert set(history["learning_rate"]) == {0.001} and history["run"].nunique() == 2


def test_runs_cut_short_are_flagged_in_the_verdict_and_final_tables():
    """mnist-logreg's spec trains 50 epochs; runs of 3 epochs carry the flag wherever their
    numbers appear; runs of the full length do not."""
    short = make_history([0.5, 0.55, 0.6, 0.52, 0.58], [0.3, 0.33, 0.31, 0.29, 0.32], experiment="mnist-logreg")
    assert short["epoch"].max() < 50
    flag = f"runs of {short['epoch'].max()} of the spec's 50 epochs"
    assert report.short_runs(short, "mnist-logreg") == flag
    assert f"⚠ {flag}" in "\n".join(report._final_section(short))
    data = {"experiments": {"mnist-logreg": {"history": short}}, "synthetic": None}
    comparison = results.compare_final(short)
    rows = {row.name: row.detail for row in report.claim_verdicts(data, comparison) if row.name}
    assert rows["mnist-logreg"].startswith(f"⚠ {flag}: ")
    full = short.assign(epoch=short["epoch"] + 50 - short["epoch"].max())
    assert report.short_runs(full, "mnist-logreg") == ""


def test_runs_of_another_backend_are_not_read_back_and_train_refuses_to_mix_them(copy, capsys, monkeypatch):
    """The Keras backend is part of a run's identity (issue 25): a run trained under one backend is
    never read back as finished by another, and one folder holds one backend's runs (history.csv has
    no backend column), so ``train`` under another backend refuses with one line. The other backend
    is simulated where the identity reads it (training itself stays on this process's backend)."""
    import json

    import keras

    from replication import store

    here = keras.backend.backend()  # the copy's runs were trained here; the other is simulated
    other = "jax" if here == "tensorflow" else "tensorflow"
    before = (copy / EXP / "history.csv").read_bytes()
    stems = json.loads((copy / EXP / "train.json").read_text())["run_files"]
    monkeypatch.setattr(store, "keras_backend", lambda: other)
    assert main([*TRAIN, "--out", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (f"{copy / EXP} holds runs trained under the {here} backend, and this process trains under {other}"
            in err) and f"KERAS_BACKEND={here}" in err and "--force" in err
    assert (copy / EXP / "history.csv").read_bytes() == before and "already done" not in err

    assert main([*TRAIN, "--force", "--out", str(copy)]) == 0  # replaces them: four runs trained, none read back
    err = capsys.readouterr().err
    assert "already done, skipped" not in err
    meta = json.loads((copy / EXP / "train.json").read_text())
    assert len(meta["trained"]) == 4 and not set(meta["run_files"]) & set(stems)
    for stem in meta["run_files"]:
        sidecar = json.loads((copy / EXP / "runs" / f"{stem}.json").read_text())
        assert sidecar["config"].get("backend", "tensorflow") == other and sidecar["schema"] == 2
    assert verify_folder(copy / EXP) is None

    monkeypatch.setattr(store, "keras_backend", lambda: here)
    assert main([*TRAIN, "--out", str(copy)]) == 2
    err = capsys.readouterr().err
    assert f"holds runs trained under the {other} backend, and this process trains under {here}" in err
