"""``replicate train``: repeated runs of one experiment per optimizer (McGill §IV: 5 each).

Writes ``<out>/<experiment>/history.csv`` (one row per optimizer, run, epoch),
``iterations.csv`` (training loss against iteration) and ``train.json``; rerunning resumes.
"""
from __future__ import annotations

import argparse

from . import _args
from ..registry import CLASSIFIER_LOSSES as _LOSSES  # the VAE's "elbo" is fixed by its spec
from ..registry import SCHEDULES as _SCHEDULES


def add_parser(subparsers):
    p = subparsers.add_parser(
        "train",
        help="train an experiment's runs per optimizer, record per-epoch history",
        description="Train each optimizer RUNS times on EXPERIMENT, evaluating the test set after "
        "every epoch. Hyperparameters come from the flags, then --params FILE, then "
        "<out>/<experiment>/best_params.json (the grid search's), then the experiment's spec. "
        "Finished runs are skipped (rerun to resume); --force retrains them.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT", help="experiment name (see `replicate experiments`)")
    p.add_argument("--runs", type=_args.runs, default=None,
                   help="runs per optimizer (default: the spec's, 5)")
    p.add_argument("--optimizers", nargs="+", default=None, metavar="NAME",
                   help="optimizers to train (adam, amsgrad, adamax, your own keras.optimizers.Optimizer "
                   "subclass as module:Class, or one registered under the entry point group "
                   "replication.optimizers; default: the spec's, adam amsgrad for most, adam adamax for Pérez's)")
    p.add_argument("--epochs", type=_args.epochs, default=None, help="epochs per run (default: spec)")
    p.add_argument("--learning-rate", type=_args.learning_rate, default=None, metavar="A",
                   help="alpha in (0, 10] for every optimizer (overrides params/best_params/spec)")
    p.add_argument("--beta2", type=_args.beta, default=None, metavar="B",
                   help="beta_2 for every optimizer (overrides params/best_params/spec)")
    p.add_argument("--schedule", choices=_SCHEDULES, default=None,
                   help="learning-rate schedule: alpha/sqrt(t), constant, or linear-decay (alpha "
                   "decreased linearly to 0 at the last step, Korzeniowski) (default: spec)")
    p.add_argument("--epsilon", type=_args.epsilon, default=None, metavar="E",
                   help="epsilon in (0, 1] for every optimizer (default: the spec's, 1e-7 or the source's)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="left-right flip augmentation during training, for image data "
                   "(default: the spec's; on for Korzeniowski's CIFAR-10 experiments)")
    p.add_argument("--bias-correction", type=_args.on_off, default=None, metavar="on|off",
                   help="Adam-style bias correction of the step size (default: the grid search's when it "
                   "searched it, else on, as Keras)")
    p.add_argument("--loss", choices=_LOSSES, default=None, help="training loss (default: spec)")
    p.add_argument("--seed", type=_args.nonnegative_int, default=0,
                   help="base seed; run k's seed is derived from it and k (default: 0)")
    p.add_argument("--data-dir", default=None, metavar="D", help="folder holding the data set files")
    p.add_argument("--params", default=None, metavar="FILE",
                   help='JSON {"adam": {"learning_rate": .., "beta_2": ..}, "amsgrad": {..}}, or one flat '
                   '{"learning_rate": .., "beta_2": ..} for every optimizer')
    p.add_argument("--force", action="store_true", help="retrain runs that are already finished")
    _args.add_out(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..experiments import get_experiment
    from ..trainer import train_experiment

    experiment = get_experiment(args.experiment)  # UserError if unknown, before loading TF data
    if args.params is not None:
        check_params_file(args.params)
    history = train_experiment(
        experiment,
        optimizers=args.optimizers,
        runs=args.runs,
        seed=args.seed,
        out_dir=args.out,
        data_dir=args.data_dir,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        beta_2=args.beta2,
        schedule=args.schedule,
        bias_correction=args.bias_correction,
        loss=args.loss,
        epsilon=args.epsilon,
        flip=args.flip,
        params=args.params,  # a path: read (and named in the start lines) by the trainer
        force=args.force,
    )
    last = history.sort_values("epoch").groupby(["optimizer", "run"]).tail(1)
    summary = last.groupby("optimizer").agg(
        runs=("run", "count"),
        diverged=("diverged", "sum"),
        test_accuracy=("test_accuracy", "mean"),
        test_loss=("test_loss", "mean"),
        loss=("loss", "mean"),
    )
    print(f"{experiment.name}: final epoch, mean over runs -> {args.out}/{experiment.name}/history.csv")
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


def check_params_file(path):
    """A :class:`UserError` naming ``path`` and its first problem when it is not a params file as
    :func:`replication.hyperparameters.params_problem` defines one: a key twice, an unknown key,
    ``true`` or ``"0.05"`` for a number, a value out of its range."""
    from ..errors import UserError
    from ..hyperparameters import params_problem
    from ..io import read_json
    from ..optimizers import OPTIMIZERS

    problem = params_problem(read_json(path), tuple(OPTIMIZERS))
    if problem:
        raise UserError(f"--params {path}: {problem}")


def run_demo(name, *, out, data_dir=None, runs=5, force=False):
    """The demo's final-runs stage: the spec's runs with the grid search's best parameters when
    ``<out>/<name>/best_params.json`` exists (the trainer's usual precedence)."""
    from ..trainer import train_experiment

    return train_experiment(name, runs=runs, out_dir=out, data_dir=data_dir, force=force)
