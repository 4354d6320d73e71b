"""Several processes on one ``--out`` (issue 26 §3, :mod:`replication.claims`): they split the work,
compute each unit once, lose nothing and end with the files one process writes; a claim dies with its
process (kill -9). Also §5's last point: a grid-point record whose means contradict its own fold
scores is recomputed, not trusted.

The multi-process tests start real ``python -m replication.cli`` processes on the embedded digits
data with a few epochs (2 CPU cores: a few minutes for the file)."""
from __future__ import annotations

import collections
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from replication import claims, stops
from replication.errors import OutputError

ROOT = Path(__file__).resolve().parents[1]
EXP = "digits-logreg"
TIME_COLUMNS = ["mean_fit_time", "std_fit_time", "mean_score_time"]


# -- helpers -----------------------------------------------------------------------------------------
def _start(argv, log):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-m", "replication.cli", *argv], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=handle)


def _together(argvs, folder, timeout=600):
    """Run the commands ``argvs`` at once, as separate processes; return their stderr texts."""
    logs = [folder / f"process{i}.log" for i in range(len(argvs))]
    procs = [_start(argv, log) for argv, log in zip(argvs, logs)]
    codes = [proc.wait(timeout=timeout) for proc in procs]
    errs = [log.read_text() for log in logs]
    assert codes == [0] * len(procs), errs
    return errs


def _locks(folder):
    return sorted(str(p) for p in Path(folder).rglob("*.lock"))


class _RawHolder:
    """Another holder of a lock file, as another process would hold it (its own open file
    description: ``flock`` locks conflict between those even within one process)."""

    def __init__(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(self.fd, b"4242 elsewhere\n")

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# -- 1. the claims module, in one process --------------------------------------------------------------
def test_a_claim_is_exclusive_names_its_holder_and_leaves_nothing(tmp_path):
    path = tmp_path / "new" / "deeper" / "unit.lock"
    claim = claims.try_claim(path)
    assert claim is not None and claim.paths == [path]
    assert path.read_text().split() == [str(os.getpid()), os.uname().nodename]
    assert claims.owner(path) == f"process {os.getpid()} on {os.uname().nodename}"
    assert claims.try_claim(path) is None  # held (by this process: busy too)
    claim.release()
    assert not (tmp_path / "new").exists()  # the file and the folders made for it are gone
    holder = _RawHolder(path)
    assert claims.try_claim(path) is None and claims.owner(path) == "process 4242 on elsewhere"
    holder.release()
    with claims.try_claim(path) as again:
        assert again is not None
    assert not path.exists()


def test_a_stale_lock_file_is_taken_over(tmp_path):
    """A lock file left by a killed holder is only a file: the next claimant takes it, then removes it."""
    path = tmp_path / "unit.lock"
    path.write_text("99999 gone\n")
    claim = claims.try_claim(path)
    assert claim is not None and claims.owner(path) == f"process {os.getpid()} on {os.uname().nodename}"
    claim.release()
    assert not path.exists()


def test_claim_all_takes_all_or_none(tmp_path):
    a, b = tmp_path / "a.lock", tmp_path / "b.lock"
    holder = _RawHolder(b)
    assert claims.claim_all([a, b]) is None
    assert not a.exists()  # the one it got was given back
    holder.release()
    claim = claims.claim_all([b, a])
    assert claim.paths == [a, b]  # sorted: waiters never deadlock
    claim.release()


def test_a_wait_ends_when_the_holder_lets_go(tmp_path, monkeypatch):
    """The waiter tries again after pauses doubling from FIRST_PAUSE up to LONGEST_PAUSE (claims.sleep,
    replaced here: no wall-clock wait) and takes the lock once the holder lets go after the 7th pause."""
    path = tmp_path / "unit.lock"
    holder, pauses = _RawHolder(path), []

    def sleep(seconds):
        pauses.append(seconds)
        if len(pauses) == 7:
            holder.release()

    monkeypatch.setattr(claims, "sleep", sleep)
    told = []
    with claims.wait_claim(path, on_wait=told.append) as claim:
        assert claim.paths == [path] and claims.owner(path) == f"process {os.getpid()} on {os.uname().nodename}"
    assert pauses == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert told == ["process 4242 on elsewhere"]


def test_a_stop_request_ends_a_wait(tmp_path, monkeypatch):
    path = tmp_path / "unit.lock"
    holder = _RawHolder(path)
    monkeypatch.setattr(stops, "_requested", signal.SIGINT)
    with pytest.raises(stops.Stopped):
        claims.wait_claim(path)
    holder.release()


def test_a_merge_lock_is_beside_its_file_and_not_taken_twice_by_one_process(tmp_path):
    target = tmp_path / "history.csv"
    assert claims.lock_path(target) == tmp_path / "history.csv.lock"
    with claims.merging(target):
        assert (tmp_path / "history.csv.lock").exists()
        with pytest.raises(RuntimeError, match="already claimed by this process"):
            claims.merging(target)
    assert _locks(tmp_path) == []


def test_a_lock_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError) as info:
        claims.try_claim(blocker / "unit.lock")
    assert "cannot lock" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("claimant_finished", [True, False])
def test_share_goes_on_past_a_claimed_unit_and_comes_back_for_it(tmp_path, claimant_finished, monkeypatch):
    """Unit 2 is held elsewhere: 1 and 3 first, then a wait for 2, which is checked again and
    computed only if its claimant let go without finishing it."""
    holder, done, computed, found, lines = _RawHolder(tmp_path / "2.lock"), set(), [], [], []

    def work(unit):
        computed.append(unit)
        done.add(unit)

    def let_go(seconds):  # the other process ends its unit during this one's first pause of the wait
        assert computed == [1, 3]
        if claimant_finished:
            done.add(2)
        holder.release()

    monkeypatch.setattr(claims, "sleep", let_go)

    result = claims.share([1, 2, 3], lock_paths=lambda u: [tmp_path / f"{u}.lock"], is_done=lambda u: u in done,
                          work=work, found_done=found.append, say=lines.append, label=lambda u: f"unit {u}")
    assert result == computed == ([1, 3] if claimant_finished else [1, 3, 2])
    assert found == ([2] if claimant_finished else [])
    assert lines[0] == "unit 2: claimed by process 4242 on elsewhere; going on with the next"
    assert lines[1] == "waiting for unit 2 (process 4242 on elsewhere claims it)"
    assert ("unit 2: its claimant stopped before finishing it; computing it here" in lines) is not claimant_finished
    assert _locks(tmp_path) == []


def test_share_asks_again_once_a_unit_is_claimed(tmp_path):
    """Finished by another process between the plan and the claim: not computed again."""
    computed, found = [], []
    claims.share(["a"], lock_paths=lambda u: [tmp_path / "a.lock"], is_done=lambda u: True,
                 work=computed.append, found_done=found.append)
    assert computed == [] and found == ["a"]


# -- 2. a claim dies with its process --------------------------------------------------------------------
HOLD = "import sys, time\nfrom replication import claims\nprint('held' if claims.try_claim(sys.argv[1]) else 'busy', flush=True)\ntime.sleep(600)\n"


def _holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_claim_of_a_killed_process_is_free(tmp_path):
    path = tmp_path / "unit.lock"
    proc = _holder(path)
    assert claims.try_claim(path) is None and claims.owner(path) == f"process {proc.pid} on {os.uname().nodename}"
    proc.kill()  # SIGKILL: no clean-up of its own
    proc.wait()
    assert path.exists()  # its file stays, its lock does not
    with claims.try_claim(path) as claim:
        assert claim is not None
    assert not path.exists()


SYNTHETIC = ["--steps", "2000", "--learning-rates", "0.1", "0.5", "--seeds", "0", "1", "--no-plots"]


def test_a_command_waiting_for_a_killed_claimant_computes_its_unit(tmp_path):
    """`replicate synthetic` finds a sweep claimed by a live process, computes the others, waits; the
    claimant is killed with SIGKILL; the command then computes that sweep itself."""
    from replication.commands.synthetic import _claim_path
    from replication.synthetic import synthetic_configs

    out = tmp_path / "out"
    adam = synthetic_configs(["online"], ["adam", "amsgrad"], [0.1, 0.5], [0, 1], 2000)[0]
    holder = _holder(_claim_path(out / "synthetic", adam))
    log = tmp_path / "synthetic.log"
    proc = _start(["synthetic", "--setting", "online", *SYNTHETIC, "--out", str(out)], log)
    deadline = time.monotonic() + 300
    while "waiting for" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, log.read_text()  # waiting for the claimed sweep, not finished
    holder.kill()
    holder.wait()
    assert proc.wait(timeout=300) == 0
    err = log.read_text()
    assert f"online inverse-sqrt beta1=0.9 beta2=0.99 adam: claimed by process {holder.pid}" in err
    assert "adam: its claimant stopped before finishing it; computing it here" in err
    frame = pd.read_csv(out / "synthetic" / "trajectories.csv")
    assert frame.groupby("optimizer").size().to_dict() == {"adam": 200, "amsgrad": 200}
    assert _locks(out) == []


# -- 3. several real processes, one --out ---------------------------------------------------------------
def test_two_synthetic_settings_into_one_out_keep_both(tmp_path):
    """The bug of issue 26 §3: `--setting online` and `--setting stochastic` at once into one --out
    both exited 0 and trajectories.csv kept one setting's rows. Now: both, and the files one
    `--setting all` writes, byte for byte."""
    from replication.cli import main

    shared = tmp_path / "shared"
    _together([["synthetic", "--setting", setting, *SYNTHETIC, "--out", str(shared)]
               for setting in ("online", "stochastic")], tmp_path)
    assert main(["synthetic", "--setting", "all", *SYNTHETIC, "--out", str(tmp_path / "one")]) == 0
    frame = pd.read_csv(shared / "synthetic" / "trajectories.csv")
    assert frame.groupby("setting").size().to_dict() == {"online": 400, "stochastic": 800}
    for name in ("trajectories.csv", "alpha_search.csv"):
        assert (shared / "synthetic" / name).read_bytes() == (tmp_path / "one" / "synthetic" / name).read_bytes()
    sweeps = json.loads((shared / "synthetic" / "trajectories.json").read_text())["sweeps"]
    assert len(sweeps) == 4 and all(len(entry["runs"]) >= 1 for entry in sweeps.values())
    assert _locks(shared) == []


@pytest.mark.parametrize("processes", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_train_processes_share_the_runs(tmp_path, processes):
    """Identical `train` commands at once: every run trained once, by one of them; each accounts for
    all 8; history.csv and iterations.csv are one process's (the wall-time column aside)."""
    from replication.trainer import train_experiment

    argv = ["train", EXP, "--runs", "4", "--epochs", "2", "--out", str(tmp_path / "shared")]
    errs = _together([argv] * processes, tmp_path)
    trained = collections.Counter(
        match.groups() for err in errs for match in re.finditer(r"\] (\w+) run (\d) \(seed \d+\): test acc", err))
    assert trained == {(name, str(k)): 1 for name in ("adam", "amsgrad") for k in range(4)}
    for err in errs:  # the others' runs are read back: each process's counter reaches 8/8
        assert err.count(": test acc") + err.count("trained by another process (already done, skipped)") == 8
        assert "[train digits-logreg 8/8]" in err
    train_experiment(EXP, runs=4, epochs=2, out_dir=tmp_path / "one", progress=False)
    shared, one = tmp_path / "shared" / EXP, tmp_path / "one" / EXP
    pd.testing.assert_frame_equal(pd.read_csv(shared / "history.csv").drop(columns="epoch_seconds"),
                                  pd.read_csv(one / "history.csv").drop(columns="epoch_seconds"), check_exact=True)
    assert (shared / "iterations.csv").read_bytes() == (one / "iterations.csv").read_bytes()
    assert sorted(p.name for p in (shared / "runs").iterdir()) == sorted(p.name for p in (one / "runs").iterdir())
    assert _locks(tmp_path) == []


GRID = ["--learning-rates", "0.01", "0.1", "--beta2s", "0.99", "0.999", "--epochs", "1"]


@pytest.mark.parametrize("engine, extra, pattern, units", [
    # the stacked engine: one model per optimizer and fold (4 points at once)
    ("stacked", [], r"\] (\w+) fold (\d)/3: 4 points at once", {(o, str(k)) for o in ("adam", "amsgrad") for k in (1, 2, 3)}),
    # GridSearchCV: one fit per point and fold
    # (slow: the default run keeps the default engine's case; both share gridsearch/folds.py)
    pytest.param("gridsearchcv", ["--optimizers", "adam"], r"\] adam α=(\S+) β2=(\S+) fold (\d)/3 done",
                 {(a, b, str(k)) for a in ("0.01", "0.1") for b in ("0.99", "0.999") for k in (1, 2, 3)},
                 marks=pytest.mark.slow),
])
def test_two_grid_searches_share_the_folds(tmp_path, engine, extra, pattern, units):
    """Two identical `gridsearch` commands: every fold trained once, by one of them; gridsearch.csv
    (fit times aside) and best_params.json are one process's."""
    from replication.cli import main

    argv = ["gridsearch", EXP, "--engine", engine, *GRID, *extra]
    errs = _together([[*argv, "--out", str(tmp_path / "shared")]] * 2, tmp_path)
    fits = collections.Counter(match.groups() for err in errs for match in re.finditer(pattern, err))
    assert fits == {unit: 1 for unit in units}
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    shared, one = tmp_path / "shared" / EXP, tmp_path / "one" / EXP
    pd.testing.assert_frame_equal(pd.read_csv(shared / "gridsearch.csv").drop(columns=TIME_COLUMNS),
                                  pd.read_csv(one / "gridsearch.csv").drop(columns=TIME_COLUMNS), check_exact=True)
    assert (shared / "best_params.json").read_bytes() == (one / "best_params.json").read_bytes()
    assert sorted(p.name for p in (shared / "gridsearch_points").iterdir()) == \
        sorted(p.name for p in (one / "gridsearch_points").iterdir())
    assert _locks(tmp_path) == []


# -- 4. issue 26 §5: a record contradicting its own fold scores -------------------------------------------
def _committed_record():
    for path in sorted((ROOT / "results").glob("*/gridsearch_points/*.json")):
        record = json.loads(path.read_text())
        if not record["row"]["diverged"]:
            return path, record
    raise AssertionError("no committed grid point that did not diverge")


@pytest.mark.parametrize("field, change", [("mean_val_loss", 0.5), ("mean_test_score", -0.01),
                                           ("std_test_score", 0.1), ("mean_train_loss", 0.2)])
def test_a_point_record_whose_means_contradict_its_folds_is_not_finished(field, change):
    from gridsearch.search import GridPoint
    from gridsearch.store import check_point_record

    path, record = _committed_record()
    row = record["row"]
    point = GridPoint(row["optimizer"], row["learning_rate"], row["beta_2"],
                      {"default": None, "on": True, "off": False}[row["bias_correction"]])
    assert check_point_record(record, path.stem, point, record["settings"]) is None
    row[field] = row[field] * (1 + change) if row[field] else change
    why = check_point_record(record, path.stem, point, record["settings"])
    assert why is not None and "contradict" in why


def test_an_edited_mean_val_loss_is_recomputed_and_does_not_choose_alpha(tmp_path, capsys):
    """The record of α = 0.01 is edited to a mean validation loss far below α = 0.1's: trusted, it
    would become the chosen α. It is recomputed instead, with one line saying why."""
    from replication.cli import main

    argv = ["gridsearch", EXP, "--engine", "gridsearchcv", "--optimizers", "adam", "--learning-rates", "0.01",
            "0.1", "--beta2s", "0.99", "--epochs", "1", "--cv", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    folder = tmp_path / EXP
    first = pd.read_csv(folder / "gridsearch.csv")
    best = json.loads((folder / "best_params.json").read_text())
    assert best["adam"]["learning_rate"] == 0.1
    (record,) = (folder / "gridsearch_points").glob("adam_lr0.01_*.json")
    data = json.loads(record.read_text())
    data["row"]["mean_val_loss"] = 0.001
    record.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (f"adam α=0.01 β2=0.99: gridsearch_points/{record.name} has a mean_val_loss that its fold scores "
            "contradict; recomputing") in err
    assert json.loads((folder / "best_params.json").read_text()) == best
    again = pd.read_csv(folder / "gridsearch.csv")
    pd.testing.assert_frame_equal(first.drop(columns=TIME_COLUMNS), again.drop(columns=TIME_COLUMNS))
    assert json.loads(record.read_text())["row"]["mean_val_loss"] == pytest.approx(first["mean_val_loss"][0], rel=1e-12)
