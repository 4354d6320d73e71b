"""The command-line front door across subcommands: a closed stdout/stderr pipe is quiet, and a
β2 gets the same verdict from every command and file that takes one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from replication import cli
from replication.errors import UserError
from replication.trainer import read_params_file

ROOT = Path(__file__).resolve().parents[1]
EXP = "digits-logreg"


def _closed_pipe_run(argv, closed):
    """Run ``python -m replication.cli ARGV`` with the read end of its stdout or stderr pipe
    closed before it writes (as `| head -c 0` would); returns (returncode, the other stream)."""
    proc = subprocess.Popen([sys.executable, "-m", "replication.cli", *argv], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    getattr(proc, closed).close()
    other = (proc.stderr if closed == "stdout" else proc.stdout).read().decode()
    proc.wait(timeout=120)
    return proc.returncode, other


@pytest.mark.parametrize("argv", [["experiments"], ["experiments", "--json"]])
def test_closed_stdout_exits_141_quietly(argv):
    """`replicate experiments | head -1`: no traceback, no "Exception ignored ... BrokenPipeError"
    at interpreter exit; exit status 141 = 128 + SIGPIPE, as a program killed by the signal."""
    code, err = _closed_pipe_run(argv, "stdout")
    assert (code, err) == (141, "")


def test_closed_stdout_after_help_is_quiet():
    # argparse itself ignores a failed write of --help (0); whatever is left buffered fails at the
    # CLI's flush (141). Either way: nothing on stderr.
    code, err = _closed_pipe_run(["--help"], "stdout")
    assert code in (0, 141) and err == ""


def test_closed_stderr_exits_141_quietly():
    """The one-line error itself cannot be written: still no crash, same status."""
    code, out = _closed_pipe_run(["experiments", "no-such-experiment"], "stderr")
    assert (code, out) == (141, "")


def _exit_code(argv):
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        return exc.code


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1", "nan", "inf"])
def test_beta2_out_of_range_is_rejected_alike_by_train_gridsearch_and_params_files(value, tmp_path, capsys):
    """One rule, β2 ∈ [0, 1): train's --beta2, gridsearch's --beta2s and a params file agree."""
    out = str(tmp_path / "out")
    assert _exit_code(["train", EXP, "--beta2", value, "--out", out]) == 2
    assert _exit_code(["gridsearch", EXP, "--beta2s", value, "--out", out]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all("[0, 1)" in line for line in errors)
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"beta_2": float(value)}))
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        read_params_file(params)
    assert not (tmp_path / "out").exists()


def test_beta2_zero_is_accepted_by_gridsearch_and_train(tmp_path):
    """β2 = 0 (v = g², Adam's step becomes m̂/(|g| + ε)) is inside Kingma & Ba's and Reddi et
    al.'s [0, 1): the grid search runs it and train reads it back from best_params.json."""
    out = tmp_path / "out"
    assert cli.main(["gridsearch", EXP, "--optimizers", "adam", "--learning-rates", "0.01", "--beta2s", "0",
                     "--cv", "2", "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    best = json.loads((out / EXP / "best_params.json").read_text())
    assert best["adam"]["beta_2"] == 0.0
    assert cli.main(["train", EXP, "--optimizers", "adam", "--runs", "1", "--epochs", "1", "--out", str(out)]) == 0
    hyper = json.loads((out / EXP / "train.json").read_text())["hyperparameters"]["adam"]
    assert (hyper["beta_2"], hyper["source"]["beta_2"]) == (0.0, "best_params.json")
    assert _exit_code(["train", EXP, "--optimizers", "adam", "--runs", "1", "--epochs", "1", "--beta2", "0",
                       "--out", str(out)]) == 0


# Issue 26 §4: bad input that used to end in a traceback is one line and exit 2.
@pytest.mark.parametrize("argv, message", [
    (["gridsearch", "digits-logreg", "--seed", "-1"], "--seed: must be >= 0"),
    (["gridsearch", "digits-logreg", "--seed", "4294967296"], "--seed: must be below 2**32"),
    (["gridsearch", "digits-logreg", "--cv", "1"], "--cv: cross-validation needs at least 2 folds"),
])
def test_out_of_range_seeds_and_folds_are_usage_errors(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        cli.main([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_more_folds_than_the_rarest_class_is_one_line(capsys, tmp_path):
    argv = ["gridsearch", "digits-logreg", "--cv", "100000", "--learning-rates", "0.1", "--beta2s", "0.99",
            "--epochs", "1", "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--cv 100000 folds cannot be made: the rarest class has 131 training examples" in err
    assert not (tmp_path / "digits-logreg").exists()


@pytest.mark.parametrize("backend, message", [("jxa", "is not a Keras backend"),
                                              ("no-such", "is not a Keras backend")])
def test_a_keras_backend_typo_is_one_line(backend, message, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("KERAS_BACKEND", backend)
    assert cli.main(["train", "digits-logreg", "--runs", "1", "--epochs", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_backend_whose_package_is_missing_is_named():
    from replication.cli import check_backend
    from replication.errors import UserError

    import importlib.util

    missing = next((name for name in ("torch", "openvino") if importlib.util.find_spec(name) is None), None)
    if missing is None:
        pytest.skip("torch and openvino are both installed")
    with pytest.raises(UserError, match=f"needs the {missing} package, which is not installed"):
        check_backend({"KERAS_BACKEND": missing})
    check_backend({"KERAS_BACKEND": "jax"})  # installed by requirements.txt: no error
    check_backend({})


def test_version_is_the_package_version(capsys):
    """`replicate --version` prints the installed package's version (pyproject/setup.cfg) and the
    short fingerprint of the code that computes numbers (what results' sidecars record), exits 0."""
    from importlib import metadata
    from pathlib import Path

    from replication.io import source_fingerprint

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    code = source_fingerprint(Path(cli.__file__).resolve().parents[1])[:12]
    assert capsys.readouterr().out.strip() == f"replicate {metadata.version('adam-amsgrad-replication')} (code {code})"
