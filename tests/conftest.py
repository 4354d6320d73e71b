"""Fixtures shared by test modules."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from replication.cli import main

# The grid-search fixture: digits' logistic regression; α = 1e38 reliably overflows the weights to
# inf/NaN on the first epoch (a diverged point).
EXPERIMENT = "digits-logreg"
DIVERGES = "1e38"


@pytest.fixture(scope="session")
def searched(tmp_path_factory):
    """GridSearchCV engine via the CLI: adam, amsgrad × α ∈ {0.01, 1e38} × β2 ∈ {0.99, 0.999},
    3 folds, 2 epochs. Returns (out folder, argv)."""
    out = tmp_path_factory.mktemp("gs")
    argv = ["gridsearch", EXPERIMENT, "--engine", "gridsearchcv", "--learning-rates", "0.01", DIVERGES,
            "--beta2s", "0.99", "0.999", "--epochs", "2", "--out", str(out)]
    assert main(argv) == 0
    return out, argv


# Real data for the slow tests: $REPLICATION_DATA_DIR (as the CLI reads it), else ../shared/data
# beside the checkout. Read once at start-up: some test modules unset the variable for their own tests.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
_ENVIRON_AT_START = dict(os.environ)


def real_data_dir(environ=None) -> Path:
    environ = _ENVIRON_AT_START if environ is None else environ
    return Path(environ.get("REPLICATION_DATA_DIR") or DEFAULT_DATA_DIR)


def real_data(name: str, environ=None) -> Path:
    """``<real data dir>/<name>``, or skip the test saying where it looked and how to point elsewhere."""
    path = real_data_dir(environ) / name
    if not path.is_file():
        pytest.skip(f"{name} not found in {path.parent} (set REPLICATION_DATA_DIR to the folder holding it)")
    return path


def describe_real_data(environ=None) -> str:
    environ = _ENVIRON_AT_START if environ is None else environ
    folder = real_data_dir(environ)
    found = [name for name in ("mnist.npz", "cifar10.npz") if (folder / name).is_file()]
    source = "$REPLICATION_DATA_DIR" if environ.get("REPLICATION_DATA_DIR") else "default"
    return (f"real data for the slow tests ({source}): {folder} "
            f"({', '.join(found) if found else 'no mnist.npz: slow tests that need it will skip'})")


def pytest_report_header(config):
    return describe_real_data()
