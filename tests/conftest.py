"""Fixtures shared by test modules."""
from __future__ import annotations

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
