"""Flat memory across runs (issue 26 §6): a command that trains continues in a fresh process once
its memory grew past a limit (replication.recycle), and the results are those of one process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from replication import cli, recycle
from replication.errors import UserError
from replication.run import HISTORY_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
EXP = "digits-logreg"
COMPARED = [c for c in HISTORY_COLUMNS if c != "epoch_seconds"]


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(recycle, "_state", {"enabled": False, "baseline": None, "trained": [], "started": {},
                                            "runs_here": 0})
    monkeypatch.delenv(recycle.STATE_ENV, raising=False)


def test_check_raises_once_memory_grew_past_the_limit_after_the_first_run(fresh_state, monkeypatch):
    monkeypatch.setenv(recycle.LIMIT_ENV, "50")
    recycle.enable()
    readings = iter([800.0, 840.0, 849.0, 851.0])  # after runs 1..4: the baseline is run 1's
    for stem in ("a", "b", "c"):
        recycle.check("exp", stem, "t0", resident=lambda: next(readings))
    with pytest.raises(recycle.Recycle) as raised:
        recycle.check("exp", "d", "t0", resident=lambda: next(readings))
    assert raised.value.runs == 4 and raised.value.grown_mb == pytest.approx(51.0)
    assert recycle.carried("exp") == ({"a", "b", "c", "d"}, "t0")


def test_no_recycling_when_disabled_or_limit_zero(fresh_state, monkeypatch):
    grow = iter(range(0, 10_000, 1000))
    recycle.check("exp", "a", "t0", resident=lambda: float(next(grow)))  # not enabled: a library caller
    recycle.check("exp", "b", "t0", resident=lambda: float(next(grow)))
    assert recycle.carried("exp") == (set(), None)  # and nothing recorded
    monkeypatch.setenv(recycle.LIMIT_ENV, "0")
    recycle.enable()
    for stem in "cdef":
        recycle.check("exp", stem, "t0", resident=lambda: float(next(grow)))


def test_carried_state_is_read_once_and_a_damaged_one_ignored(fresh_state, monkeypatch):
    monkeypatch.setenv(recycle.STATE_ENV, json.dumps({"trained": ["s1"], "started": {"exp": "t0"}}))
    recycle.enable()
    assert recycle.carried("exp") == ({"s1"}, "t0") and recycle.STATE_ENV not in os.environ
    monkeypatch.setenv(recycle.STATE_ENV, "{not json")
    recycle.enable()
    assert recycle.carried("exp") == (set(), None)


@pytest.mark.parametrize("value", ["x", "-1", "nan", "inf"])
def test_a_bad_limit_is_one_line_and_exit_2(fresh_state, monkeypatch, capsys, value):
    monkeypatch.setenv(recycle.LIMIT_ENV, value)
    with pytest.raises(UserError):
        recycle.limit_mb()
    assert cli.entry() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and recycle.LIMIT_ENV in err


def test_a_library_caller_is_never_replaced(fresh_state, monkeypatch, tmp_path):
    """cli.main (what the tests and the API call) never execs, whatever the limit."""
    def no_exec(*args):
        raise AssertionError("os.execv called from a library caller")

    monkeypatch.setattr(os, "execv", no_exec)
    monkeypatch.setenv(recycle.LIMIT_ENV, "0.0001")
    argv = ["train", EXP, "--runs", "3", "--epochs", "1", "--optimizers", "adam", "--out", str(tmp_path)]
    assert cli.main(argv) == 0


def _replicate(args, limit):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", recycle.LIMIT_ENV: limit}
    return subprocess.Popen([sys.executable, "-m", "replication.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_recycled_command_gives_one_process_results(tmp_path):
    """With a limit every run exceeds, `replicate train` continues in a fresh process after every run
    but its first's (one restart for three runs): history.csv equals an uninterrupted in-process run's, and train.json lists
    every run as trained by this command, from its first process's start."""
    argv = ["train", EXP, "--runs", "3", "--epochs", "2", "--optimizers", "adam"]
    assert cli.main([*argv, "--out", str(tmp_path / "one")]) == 0
    process = _replicate([*argv, "--out", str(tmp_path / "many")], limit="0.0001")
    err = process.communicate(timeout=600)[1]
    assert process.returncode == 0, err
    assert err.count("continuing in a fresh process") == 1 and "Traceback" not in err
    one, many = (pd.read_csv(tmp_path / d / EXP / "history.csv") for d in ("one", "many"))
    pd.testing.assert_frame_equal(many[COMPARED], one[COMPARED])
    meta = json.loads((tmp_path / "many" / EXP / "train.json").read_text())
    assert len(meta["trained"]) == 3 and meta["skipped"] == []
    assert meta["started_at"] <= meta["finished_at"]


def test_ctrl_c_while_the_fresh_process_starts_stops_it_with_one_line(tmp_path):
    """SIGINT sent the moment the command says it continues in a fresh process (the new process is
    importing, before its handler exists) is held until the handler is in place: exit 130, one
    stop line, no traceback; the rerun finishes as one process would."""
    argv = ["train", EXP, "--runs", "3", "--epochs", "1", "--optimizers", "adam", "--out", str(tmp_path)]
    process = _replicate(argv, limit="0.0001")
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "continuing in a fresh process" in line:
            process.send_signal(signal.SIGINT)
            break
    rest = process.communicate(timeout=120)[1]
    err = "".join(lines) + rest
    assert process.returncode == 130, err
    assert "stopped (Ctrl-C)" in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    again = _replicate(argv, limit="0")
    assert again.wait(timeout=600) == 0
    assert len(pd.read_csv(tmp_path / EXP / "history.csv").run.unique()) == 3
