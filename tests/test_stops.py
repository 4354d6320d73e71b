"""Stops and damage (issue 26 §1, §2, §6): a checkpoint that does not verify is set aside with one
line and the run starts over; Ctrl-C and SIGTERM stop at the next batch with one line and exit
130/143, and the rerun resumes exactly; a checkpoint's size does not grow with the epoch."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from replication import cli, stops
from replication.experiments import get_experiment, with_overrides
from replication.run import HISTORY_COLUMNS, journal_path
from replication.trainer import train_experiment

ROOT = Path(__file__).resolve().parents[1]
EXP = "digits-logreg"
COMPARED = [c for c in HISTORY_COLUMNS if c != "epoch_seconds"]


class _Interrupt(Exception):
    pass


def _kill_at_epoch(epoch):
    import keras

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            if e == epoch:
                raise _Interrupt

    return Kill()


def _train(spec, out, **kwargs):
    return train_experiment(spec, optimizers=["adam"], runs=1, out_dir=out, progress=False, **kwargs)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """digits-logreg, 3 epochs: an uninterrupted run's history, and the runs folder of the same
    run stopped before epoch 3 (its checkpoint holds epochs 1-2)."""
    base = tmp_path_factory.mktemp("stopped")
    spec = with_overrides(get_experiment(EXP), epochs=3)
    whole = _train(spec, base / "whole")
    with pytest.raises(_Interrupt):
        _train(spec, base / "cut", callbacks=[_kill_at_epoch(2)])
    runs = base / "cut" / EXP / "runs"
    (checkpoint,) = runs.glob("*.checkpoint.npz")
    assert journal_path(checkpoint).is_file() and not list(runs.glob("*.csv"))
    return spec, whole, runs


def _rewrite(path, change):
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    change(arrays)
    np.savez(path, **arrays)


def _meta(arrays, **updates):
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta.update(updates)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


def _flip_weight_byte(path):
    """Flip one byte inside the stored first weight matrix: the zip member's CRC no longer holds."""
    with np.load(path) as data:
        raw = data["model_0"].tobytes()
    blob = bytearray(path.read_bytes())
    at = blob.index(raw[:64]) + 10
    blob[at] ^= 0xFF
    path.write_bytes(bytes(blob))


DAMAGE = {
    "cut in half": lambda p: os.truncate(p, p.stat().st_size // 2),
    "empty": lambda p: os.truncate(p, 0),
    "junk after PK": lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00junk" * 50),
    "flipped CRC": _flip_weight_byte,
    "no meta": lambda p: _rewrite(p, lambda a: a.pop("meta")),
    "malformed meta": lambda p: _rewrite(p, lambda a: a.update(meta=np.frombuffer(b"[1, 2", np.uint8))),
    "epochs_done edited": lambda p: _rewrite(p, lambda a: _meta(a, epochs_done=1)),
    "epochs_done past the end": lambda p: _rewrite(p, lambda a: _meta(a, epochs_done=3)),
    "NaN weights": lambda p: _rewrite(p, lambda a: a["model_0"].__setitem__((0, 0), np.nan)),
    "journal missing": lambda p: journal_path(p).unlink(),
    "journal edited": lambda p: journal_path(p).write_text(journal_path(p).read_text().replace("1", "2", 1)),
    "journal cut": lambda p: os.truncate(journal_path(p), 20),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_set_aside_with_a_line_and_the_run_starts_over(stopped, tmp_path, capsys, damage):
    spec, whole, runs = stopped
    out = tmp_path / "out"
    shutil.copytree(runs, out / EXP / "runs")
    (checkpoint,) = (out / EXP / "runs").glob("*.checkpoint.npz")
    DAMAGE[damage](checkpoint)
    capsys.readouterr()
    again = _train(spec, out)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "does not verify" in line]
    assert len(lines) == 1 and "starting the run over" in lines[0] and "Traceback" not in err, err
    assert list((out / EXP / "runs").glob("*.damaged"))  # kept for a look, never read again
    (sidecar,) = (out / EXP / "runs").glob("*.json")
    assert json.loads(sidecar.read_text())["resumed_from_epoch"] == 0
    pd.testing.assert_frame_equal(again[COMPARED], whole[COMPARED])
    assert not list((out / EXP / "runs").glob("*.checkpoint.*[!d]"))  # finished: checkpoint gone


def test_an_intact_checkpoint_resumes(stopped, tmp_path):
    spec, whole, runs = stopped
    out = tmp_path / "out"
    shutil.copytree(runs, out / EXP / "runs")
    again = _train(spec, out)
    (sidecar,) = (out / EXP / "runs").glob("*.json")
    assert json.loads(sidecar.read_text())["resumed_from_epoch"] == 2
    pd.testing.assert_frame_equal(again[COMPARED], whole[COMPARED])


def test_a_journal_line_past_the_checkpoint_is_cut_off(stopped, tmp_path):
    """A kill between the journal's append and the checkpoint's rename leaves one line too many;
    the resumed run overwrites it and its history equals an uninterrupted run's."""
    spec, whole, runs = stopped
    out = tmp_path / "out"
    shutil.copytree(runs, out / EXP / "runs")
    (checkpoint,) = (out / EXP / "runs").glob("*.checkpoint.npz")
    journal = journal_path(checkpoint)
    journal.write_text(journal.read_text() + '{"epoch": 2, "logs": {}, "iterations": 0, "seconds": 0, "blocks": []}\n')
    again = _train(spec, out)
    pd.testing.assert_frame_equal(again[COMPARED], whole[COMPARED])


def test_checkpoint_size_does_not_grow_with_the_epoch(tmp_path):
    """The weights file stays the same size from epoch to epoch and the journal grows by one line
    per epoch (before: the whole partial history was rewritten into every checkpoint)."""
    import keras

    spec = with_overrides(get_experiment(EXP), epochs=8)
    runs = tmp_path / EXP / "runs"
    sizes = []

    class Sizes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch:
                (checkpoint,) = runs.glob("*.checkpoint.npz")
                sizes.append((checkpoint.stat().st_size, journal_path(checkpoint).stat().st_size))

    _train(spec, tmp_path, callbacks=[Sizes()])
    weights, journal = np.array(sizes).T
    assert len(sizes) == 7
    assert weights.max() - weights.min() <= 8  # the meta's numbers may gain a digit
    steps = np.diff(journal)
    assert steps.min() > 0 and steps.max() < 1.2 * steps.min() + 8


# -- Ctrl-C and SIGTERM ---------------------------------------------------------------------------------
def _signal_at_batch(signum, batch):
    """A callback sending ``signum`` to this process at the end of training batch (or block of
    ``steps_per_execution`` batches) number ``batch``, counted over every copy of it (scikit-learn
    clones the grid search's callbacks for each fit)."""
    import keras

    seen = []

    class Send(keras.callbacks.Callback):
        def on_train_batch_end(self, b, logs=None):
            seen.append(b)
            if len(seen) == batch:
                os.kill(os.getpid(), signum)

    return Send()


def test_the_stop_handler_only_records_the_request():
    """Inside stops.handling a signal raises nothing where it lands (e.g. a GC callback); check()
    raises Stopped, a KeyboardInterrupt that `except Exception` cannot swallow."""
    with stops.handling():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # let the interpreter run the handler
            pass
        assert stops.requested() == signal.SIGINT
        with pytest.raises(stops.Stopped) as caught:
            try:
                stops.check()
            except Exception:  # noqa: BLE001 - what scikit-learn's error_score does
                pytest.fail("Stopped was caught as an Exception")
        assert isinstance(caught.value, KeyboardInterrupt) and stops.exit_code(caught.value.signum) == 130
    assert stops.requested() is None and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with stops.handling():  # SIGTERM alike (a scheduler's stop), exit code 143
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
        with pytest.raises(stops.Stopped) as caught:
            stops.check()
        assert stops.exit_code(caught.value.signum) == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize("signum,code,name", [(signal.SIGINT, 130, "Ctrl-C"),
                                              pytest.param(signal.SIGTERM, 143, "SIGTERM", marks=pytest.mark.slow)])
def test_a_signal_during_training_stops_at_the_next_batch_and_the_rerun_resumes(tmp_path, capsys, monkeypatch,
                                                                                 signum, code, name):
    """`replicate train` gets the signal in the middle of epoch 2 of run 1: one line, its exit code,
    no traceback; run 0 and run 1's epoch 1 are kept; the rerun resumes and equals an uninterrupted
    command's history.csv."""
    from replication import trainer as train_command

    argv = ["train", EXP, "--runs", "2", "--epochs", "3", "--optimizers", "adam"]
    assert cli.main([*argv, "--out", str(tmp_path / "whole")]) == 0
    original = train_command.train_experiment
    monkeypatch.setattr(train_command, "train_experiment",
                        lambda *a, **k: original(*a, **{**k, "callbacks": [_signal_at_batch(signum, 11 * 4 + 5)]}))
    capsys.readouterr()
    assert cli.main([*argv, "--out", str(tmp_path / "cut")]) == code
    err = capsys.readouterr().err
    assert f"replicate train: stopped ({name}); rerun the same command to resume" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    runs = tmp_path / "cut" / EXP / "runs"
    assert len(list(runs.glob("*.json"))) == 1 and len(list(runs.glob("*.checkpoint.npz"))) == 1
    monkeypatch.setattr(train_command, "train_experiment", original)
    assert cli.main([*argv, "--out", str(tmp_path / "cut")]) == 0
    frames = [pd.read_csv(tmp_path / d / EXP / "history.csv") for d in ("whole", "cut")]
    pd.testing.assert_frame_equal(frames[1][COMPARED], frames[0][COMPARED])


def test_a_signal_stops_a_grid_search(tmp_path, capsys, monkeypatch):
    """Both engines' fits carry the stop check (gridsearch.estimator.fit_callbacks)."""
    from gridsearch import estimator

    original = estimator.fit_callbacks
    send = _signal_at_batch(signal.SIGINT, 3)
    monkeypatch.setattr(estimator, "fit_callbacks", lambda *a, **k: [*original(*a, **k), send])
    argv = ["gridsearch", EXP, "--engine", "gridsearchcv", "--learning-rates", "0.01", "--beta2s", "0.99",
            "--epochs", "2", "--optimizers", "adam", "--out", str(tmp_path)]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert "stopped (Ctrl-C)" in err and "Traceback" not in err


# -- the stress test: real processes, signals at random moments (outside the default run) ---------------
def _replicate(args, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "replication.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_stress_signals_at_random_moments_always_stop_and_resume_exactly(tmp_path):
    """STOPS_TRIALS (default 50) signals, 80 % SIGINT, at random moments of `replicate train
    digits-logreg --runs 6 --epochs 2` from 1 s after its start (imports, data loading, training,
    writing; the first fraction of a second is Python's own start-up, before `main`), 5 per folder: every one ends the
    command with 130/143 (or 0 when it came after the end), one stop line, no traceback, within 20 s;
    each folder then finishes and equals an uninterrupted run's history.csv."""
    trials = int(os.environ.get("STOPS_TRIALS", "50"))
    argv = ["train", EXP, "--runs", "6", "--epochs", "2", "--optimizers", "adam"]
    reference = _replicate([*argv, "--out", str(tmp_path / "whole")])
    assert reference.wait() == 0
    start = time.perf_counter()
    ends, rng = [], random.Random(26)
    for trial in range(trials):
        out = tmp_path / f"cut{trial // 5}"
        signum = signal.SIGINT if rng.random() < 0.8 else signal.SIGTERM
        process = _replicate([*argv, "--out", str(out)])
        time.sleep(rng.uniform(1.0, 12.0))
        process.send_signal(signum)
        sent = time.perf_counter()
        code = process.wait(timeout=60)
        err = process.stderr.read()
        ends.append((signum, code, round(time.perf_counter() - sent, 1)))
        assert code in (0, 128 + signum), (trial, code, err)
        assert "Traceback" not in err and "Exception ignored" not in err, (trial, err)
        assert time.perf_counter() - sent < 20, (trial, err)
    for folder in sorted(tmp_path.glob("cut*")):
        assert _replicate([*argv, "--out", str(folder)]).wait() == 0
        frames = [pd.read_csv(f / EXP / "history.csv") for f in (tmp_path / "whole", folder)]
        pd.testing.assert_frame_equal(frames[1][COMPARED], frames[0][COMPARED])
    codes = pd.Series([c for _s, c, _t in ends]).value_counts().to_dict()
    print(f"{trials} signals in {time.perf_counter() - start:.0f} s: exit codes {codes}; "
          f"seconds to stop: median {np.median([t for *_x, t in ends]):.1f}, max {max(t for *_x, t in ends)}")
