"""Argument types shared by subcommands: they reject bad values with a message argparse prints."""
from __future__ import annotations

import argparse

from ..hyperparameters import (DECAY_RATE_RANGE, EPSILON_RANGE, LEARNING_RATE_RANGE, MAX_EPOCHS, MAX_RUNS,
                               is_decay_rate, is_epsilon, is_learning_rate)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def epochs(text):
    """A number of epochs: a positive integer up to :data:`~replication.hyperparameters.MAX_EPOCHS`."""
    value = positive_int(text)
    if value > MAX_EPOCHS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_EPOCHS} epochs, got {value}")
    return value


def runs(text):
    """A number of runs per optimizer: a positive integer up to :data:`~replication.hyperparameters.MAX_RUNS`."""
    value = positive_int(text)
    if value > MAX_RUNS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_RUNS} runs per optimizer, got {value}")
    return value


def seed(text):
    """A seed: an integer in [0, 2**32), the range NumPy's and scikit-learn's seeding takes."""
    value = nonnegative_int(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be below 2**32 = {2**32}, got {value}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def beta(text):
    """A decay rate β1 or β2: :func:`replication.hyperparameters.is_decay_rate`."""
    return _bounded_float(text, is_decay_rate, DECAY_RATE_RANGE)


def _bounded_float(text, check, bounds):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not check(value):
        raise argparse.ArgumentTypeError(f"must be in {bounds}, got {text}")
    return value


def learning_rate(text):
    """A step size α: :func:`replication.hyperparameters.is_learning_rate`."""
    return _bounded_float(text, is_learning_rate, LEARNING_RATE_RANGE)


def epsilon(text):
    """An ε: :func:`replication.hyperparameters.is_epsilon`."""
    return _bounded_float(text, is_epsilon, EPSILON_RANGE)


def on_off(text):
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"must be 'on' or 'off', got {text!r}")
    return text == "on"


def add_out(parser, default="results"):
    parser.add_argument("--out", default=default, help=f"results folder (default: {default})")
