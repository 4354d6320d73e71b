"""Issue 26 §4 and §5: damaged data files, duplicated history rows and values that cannot be meant
end in one line on stderr naming the file or flag and what to do, before anything is trained."""
from __future__ import annotations

import json
import struct
import zipfile

import numpy as np
import pandas as pd
import pytest

from replication import cli, results
from replication.datasets import load_dataset
from replication.errors import UserError
from replication.hyperparameters import params_problem
from tests.test_report import EQUAL, LOWER, write_experiment

EXP = "digits-logreg"
OPTIMIZERS = ("adam", "amsgrad", "adamax")


def _exit_code(argv):
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        return exc.code


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


# ----------------------------------------------------------------------------- damaged npz files
def _write_npz(path, name="mnist", n_train=20, n_test=10, **extra):
    shape = (28, 28) if name == "mnist" else (32, 32, 3)
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
             y_train=np.arange(n_train) % 10, x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
             y_test=np.arange(n_test) % 10, **extra)
    return path


def _flip_last_data_byte(path, member):
    """Change one byte of ``member``'s stored data (a bool 1 becomes 0): its CRC no longer matches."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + info.compress_size - 1] ^= 0x01
    path.write_bytes(bytes(data))


def _damaged(tmp_path, name, damage):
    path = tmp_path / ("mnist.npz" if name == "mnist" else "cifar10.npz")
    if damage == "object":
        _write_npz(path, name, test_exact=np.array([True] * 9 + [None], dtype=object))
    elif damage == "crc":
        _write_npz(path, name, test_exact=np.ones(10, dtype=bool))
        _flip_last_data_byte(path, "test_exact.npy")
    elif damage == "crc-x":
        _write_npz(path, name, test_exact=np.ones(10, dtype=bool))
        _flip_last_data_byte(path, "x_train.npy")
    elif damage == "dtype":
        _write_npz(path, name, test_exact=np.ones(10, dtype=np.int64))
    elif damage == "shape":
        _write_npz(path, name, test_exact=np.ones(9, dtype=bool))
    elif damage == "truncated":
        _write_npz(path, name)
        path.write_bytes(path.read_bytes()[:-200])
    return path


DAMAGES = ["object", "crc", "crc-x", "dtype", "shape", "truncated"]


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_npz_is_a_user_error_naming_it(name, damage, tmp_path):
    path = _damaged(tmp_path, name, damage)
    with pytest.raises(UserError) as err:
        load_dataset(name, data_dir=tmp_path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert any(todo in message for todo in ("re-download", "remove the key")), message


def test_a_good_npz_with_a_mask_still_loads(tmp_path):
    mask = np.arange(10) % 3 == 0
    _write_npz(tmp_path / "cifar10.npz", "cifar10", test_exact=mask)
    data = load_dataset("cifar10", data_dir=tmp_path)
    with np.load(tmp_path / "cifar10.npz") as written:
        np.testing.assert_allclose(data.x_train, written["x_train"] / 255.0, rtol=1e-6)  # the file's pixels, scaled
        np.testing.assert_array_equal(data.y_test, written["y_test"])
    assert np.array_equal(data.test_exact, mask)


@pytest.mark.parametrize("damage", ["object", "crc"])
def test_train_on_a_damaged_test_exact_is_one_line_and_exit_2(damage, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    path = _damaged(data, "mnist", damage)
    code = cli.main(["train", "mnist-logreg", "--data-dir", str(data), "--runs", "1", "--epochs", "1",
                     "--out", str(tmp_path / "out")])
    assert code == 2
    _one_line_error(capsys, str(path), "test_exact")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------- history.csv for the report
def _duplicate_rows(folder):
    path = folder / "history.csv"
    history = pd.read_csv(path)
    pd.concat([history, history.iloc[:3]]).to_csv(path, index=False)
    return path


def test_report_on_duplicated_history_rows_is_one_line_naming_file_and_key(tmp_path, capsys):
    """The history is left out of the report with one line (the report's rule for a file it cannot
    use), which names the duplicated key; no traceback."""
    write_experiment(tmp_path, "mnist-logreg", *EQUAL)
    write_experiment(tmp_path, "mnist-mlp", *LOWER)
    path = _duplicate_rows(tmp_path / "mnist-logreg")
    assert cli.main(["report", "--no-figures", "--out", str(tmp_path)]) == 0
    _one_line_error(capsys, f"left out {path}", "duplicated rows",
                    "experiment mnist-logreg, optimizer adam, bias_correction True, run 0, epoch 1 is on 2 rows")
    assert "mnist-mlp" in (tmp_path / "REPORT.md").read_text()


def test_duplicated_history_rows_are_refused_by_the_loader(tmp_path):
    write_experiment(tmp_path, "mnist-mlp", *LOWER)
    path = _duplicate_rows(tmp_path / "mnist-mlp")
    with pytest.raises(UserError, match=r"duplicated rows: .* run 0, epoch 1 is on 2 rows; .*replicate train"):
        results.load_history(path)


@pytest.mark.parametrize("column, value, message", [
    ("learning_rate", 0.1, r"the runs of one optimizer \(experiment mnist-mlp, optimizer amsgrad, bias_correction "
                           r"True\) has different learning_rate values \(0.001, 0.1\)"),
    ("beta_2", 0.999, r"has different beta_2 values \(0.99, 0.999\)"),
    ("seed", 7, r"one run \(experiment mnist-mlp, optimizer amsgrad, bias_correction True, run 1\) has different "
                r"seed values \(101, 7\)"),
])
def test_history_rows_that_would_mix_configurations_are_not_averaged(column, value, message, tmp_path):
    write_experiment(tmp_path, "mnist-mlp", *LOWER)
    path = tmp_path / "mnist-mlp" / "history.csv"
    history = pd.read_csv(path)
    row = history.index[(history["optimizer"] == "amsgrad") & (history["run"] == 1) & (history["epoch"] == 2)]
    history.loc[row, column] = value
    history.to_csv(path, index=False)
    with pytest.raises(UserError, match=message):
        results.load_history(path)


# ----------------------------------------------------------------------------------- params files
PARAMS_CASES = [
    ('{"adam": {"learning_rate": true}}', "adam: learning_rate must be a number in (0, 3.40282e+38], got true"),
    ('{"learning_rate": true, "beta_2": 0.99}', "learning_rate must be a number in (0, 3.40282e+38], got true"),
    ('{"adam": {"learning_rate": "0.05"}}', 'got "0.05"; write it without quotes'),
    ('{"beta_2": "0.99"}', 'beta_2 must be a number in [0, 1), got "0.99"'),
    ('{"adam": {"learning_rate": 0.01, "learning_rate": 0.1}}', "key 'learning_rate' appears more than once"),
    ('{"adam": {"learning_rate": 0.01}, "adam": {"beta_2": 0.9}}', "key 'adam' appears more than once"),
    ('{"learning_rate": 0.01, "beta_2": 0.99, "momentum": 0.9}',
     "unknown key 'momentum' beside 'learning_rate'; a flat params file holds only learning_rate, beta_2, "
     "bias_correction"),
    ('{"adam": {"learning_rate": 0.01}, "beta_2": 0.99}', "mixes the two layouts"),
    ('{"adma": {"learning_rate": 0.01}}', "unknown optimizer 'adma'; top-level keys are optimizer names"),
    ('{"adam": {"epsilon": 1e-8}}', "adam: unknown hyperparameter 'epsilon'"),
    ('{"adam": 0.01}', "adam must map to an object of hyperparameters, got 0.01"),
    ('{"learning_rate": 1e308}', "learning_rate must be in (0, 3.40282e+38], got 1e+308"),
    ('{"learning_rate": NaN}', "learning_rate must be in (0, 3.40282e+38], got NaN"),
    ('{"amsgrad": {"beta_2": 1.0}}', "amsgrad: beta_2 must be in [0, 1), got 1.0"),
    ('{"amsgrad": {"bias_correction": "off"}}', 'bias_correction must be true or false, got "off"'),
    ('[0.01, 0.99]', "expected a JSON object"),
]


@pytest.mark.parametrize("text, message", PARAMS_CASES)
def test_a_params_file_that_cannot_be_meant_is_one_line_before_training(text, message, tmp_path, capsys):
    params = tmp_path / "params.json"
    params.write_text(text)
    code = _exit_code(["train", EXP, "--params", str(params), "--runs", "1", "--epochs", "1",
                       "--out", str(tmp_path / "out")])
    assert code == 2
    _one_line_error(capsys, str(params), message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("data", [
    {}, {"learning_rate": 1, "beta_2": 0}, {"bias_correction": False},
    {"adam": {"learning_rate": 0.001, "beta_2": 0.999, "bias_correction": True}, "amsgrad": {}},
    {"adamax": {"learning_rate": 10}},
])
def test_params_in_either_layout_are_accepted(data):
    assert params_problem(data, OPTIMIZERS) is None


# -------------------------------------------------------------------------------------- flags
@pytest.mark.parametrize("argv, message", [
    (["train", EXP, "--learning-rate", "1e308"], "--learning-rate: must be in (0, 3.40282e+38], got 1e308"),
    (["train", EXP, "--learning-rate", "1e39"], "--learning-rate: must be in (0, 3.40282e+38]"),
    (["train", EXP, "--learning-rate", "nan"], "--learning-rate: must be in (0, 3.40282e+38]"),
    (["train", EXP, "--learning-rate", "0"], "--learning-rate: must be in (0, 3.40282e+38]"),
    (["train", EXP, "--epsilon", "0"], "--epsilon: must be in (0, 1]"),
    (["train", EXP, "--epsilon", "inf"], "--epsilon: must be in (0, 1]"),
    (["train", EXP, "--beta2", "true"], "--beta2: 'true' is not a number"),
    (["train", EXP, "--epochs", str(10**12)], "--epochs: must be at most 100000 epochs"),
    (["train", EXP, "--epochs", "100001"], "--epochs: must be at most 100000 epochs"),
    (["train", EXP, "--runs", str(10**6)], "--runs: must be at most 10000 runs per optimizer"),
    (["gridsearch", EXP, "--epochs", str(10**12)], "--epochs: must be at most 100000 epochs"),
    (["gridsearch", EXP, "--learning-rates", "0.1", "1e308"], "learning rate must be in (0, 3.40282e+38], got 1e+308; "
                                                             "fix --learning-rates"),
    (["gridsearch", EXP, "--learning-rates", "1e39"], "learning rate must be in (0, 3.40282e+38], got 1e+39"),
    (["gridsearch", EXP, "--beta2s", "1"], "beta_2 must be in [0, 1), got 1.0; fix --beta2s"),
    (["demo", "--runs", str(10**6)], "--runs: must be at most 10000 runs per optimizer"),
])
def test_flags_that_cannot_be_meant_are_one_line(argv, message, tmp_path, capsys):
    assert _exit_code([*argv, "--out", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, message)
    assert not (tmp_path / "out").exists()


def test_the_bounds_themselves_are_accepted():
    parser = cli.build_parser()
    args = parser.parse_args(["train", EXP, "--learning-rate", "10", "--epsilon", "1", "--epochs", "100000",
                              "--runs", "10000"])
    assert (args.learning_rate, args.epsilon, args.epochs, args.runs) == (10.0, 1.0, 100000, 10000)
    args = parser.parse_args(["gridsearch", EXP, "--epochs", "100000", "--learning-rates", "10"])
    assert (args.epochs, args.learning_rates) == (100000, [10.0])


def test_a_duplicate_key_in_any_json_read_is_named(tmp_path):
    from replication.io import read_json

    path = tmp_path / "x.json"
    path.write_text('{"a": {"b": 1, "b": 2}}')
    with pytest.raises(UserError, match=r"x.json: key 'b' appears more than once in one JSON object"):
        read_json(path)
    path.write_text(json.dumps({"a": {"b": 1, "c": [1, {"d": 2}]}}))
    assert read_json(path) == {"a": {"b": 1, "c": [1, {"d": 2}]}}


@pytest.mark.parametrize("text, expected", [
    ('{"learning_rate": true}', "learning_rate must be a number"),
    ('{"adam": {"learning_rate": "0.05"}}', "write it without quotes"),
    ('{"learning_rate": 0.1, "learning_rate": 0.2}', "appears more than once"),
])
def test_read_params_file_from_python_is_as_strict_as_the_command_line(tmp_path, text, expected):
    """`train_experiment(params=PATH)` from Python reads the file with the same checks as `train --params`."""
    from replication.trainer import read_params_file

    path = tmp_path / "params.json"
    path.write_text(text)
    with pytest.raises(UserError, match=expected):
        read_params_file(path)
