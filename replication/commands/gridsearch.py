"""``replicate gridsearch EXPERIMENT``: tune (α, β2) per optimizer as McGill did (§IV-A).

Writes ``<out>/<experiment>/gridsearch.csv`` (one row per optimizer × grid point: the point's
hyperparameters, every fold's validation and training score, mean/std, fit time, diverged flag),
``<out>/<experiment>/best_params.json`` (what ``replicate train`` reads), a ``gridsearch.json``
sidecar (settings, grid, provenance) and ``<out>/gridsearch_table.{csv,md}`` (McGill's Table I
across every experiment searched so far). Finished points are kept in
``<out>/<experiment>/gridsearch_points/``: rerunning the same command recomputes only unfinished
points; ``--force`` recomputes all.
"""
from __future__ import annotations

import argparse
import inspect
import sys

from . import _args
from ._args import add_out, positive_int, seed

HELP = "grid-search (α, β2) per optimizer with 3-fold cross-validation (McGill §IV-A)"


def _number(text):
    """Parse a grid value; range checks are done with the whole grid (one clear message)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _defaults() -> dict:
    """search_experiment's defaults by parameter name: the command's defaults are the library's."""
    from gridsearch.experiment import search_experiment

    return {name: p.default for name, p in inspect.signature(search_experiment).parameters.items()}


def add_parser(subparsers):
    from gridsearch.search import ENGINES

    default = _defaults()
    parser = subparsers.add_parser("gridsearch", help=HELP, description=HELP)
    parser.add_argument("experiment", metavar="EXPERIMENT", help="experiment name (see `replicate experiments`)")
    parser.add_argument("--optimizers", nargs="+", metavar="NAME", default=list(default["optimizers"]),
                        help="optimizers to tune: adam, amsgrad, adamax, or your own keras.optimizers.Optimizer "
                             "subclass as module:Class (or a registered entry point name) that takes learning_rate "
                             "and beta_2 (default: adam amsgrad)")
    parser.add_argument("--learning-rates", nargs="+", type=_number, default=list(default["learning_rates"]),
                        metavar="ALPHA", help="α grid (default: McGill's 1e-4 1e-3 1e-2 1e-1 1)")
    parser.add_argument("--beta2s", nargs="+", type=_number, default=list(default["beta_2s"]), metavar="BETA2",
                        help="β2 grid (default: McGill's 0.99 0.9925 0.995 0.9975 0.999)")
    parser.add_argument("--bias-correction", choices=("on", "off", "both"), default=default["bias_correction"],
                        help="also search/fix bias correction (default: not searched, the optimizer's default: on)")
    parser.add_argument("--cv", type=_folds, default=default["cv"], help="cross-validation folds (default: 3)")
    parser.add_argument("--epochs", type=_args.epochs, default=default["epochs"],
                        help="epochs per fit (default: the experiment's grid-search epochs)")
    parser.add_argument("--seed", type=seed, default=default["seed"],
                        help="seed of the folds and of each fit (default: 0)")
    parser.add_argument("--n-jobs", type=int, default=default["n_jobs"],
                        help="parallel fits of the gridsearchcv engine (loky: processes; TensorFlow threads per fit = cores / "
                             "n-jobs; -1 = all cores); the stacked engine runs one process on all cores")
    parser.add_argument("--backend", choices=("loky", "dask"), default=default["backend"],
                        help="joblib backend for the fits (default: loky)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler, e.g. tcp://HOST:8786 (with --backend dask; default: a local loopback cluster)")
    parser.add_argument("--halving", action="store_true",
                        help="successive halving with epochs as the resource (HalvingGridSearchCV)")
    parser.add_argument("--engine", choices=ENGINES, default=default["engine"],
                        help="stacked: every grid point of a fold trained at once as one Keras model (dense models; "
                             "same fits and scores as GridSearchCV, several times faster); gridsearchcv: one scikeras "
                             "KerasClassifier fit per point and fold, run by scikit-learn's GridSearchCV; "
                             "auto (default): stacked where it applies (not with --halving or --backend dask)")
    parser.add_argument("--data-dir", default=None, help="folder with the data files (default: $REPLICATION_DATA_DIR, Keras cache)")
    parser.add_argument("--force", action="store_true", help="recompute finished grid points")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_out(parser)
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from gridsearch.experiment import search_experiment

    result = search_experiment(
        args.experiment, out=args.out, optimizers=args.optimizers, learning_rates=args.learning_rates,
        beta_2s=args.beta2s, bias_correction=args.bias_correction, cv=args.cv, epochs=args.epochs, seed=args.seed,
        n_jobs=args.n_jobs, backend=args.backend, scheduler=args.scheduler, halving=args.halving, engine=args.engine,
        data_dir=args.data_dir, force=args.force, progress=not args.quiet,
    )
    say_choices(result)
    return 0


def say_choices(result):
    """One line per optimizer of a :class:`gridsearch.experiment.SearchResult` with its chosen α and β2
    (stderr where every point diverged), then what was written."""
    for optimizer in result.optimizers:
        if optimizer in result.best:
            choice = result.best[optimizer]
            bias = (f" bias-correction={'on' if choice['bias_correction'] else 'off'}"
                    if "bias_correction" in choice else "")
            print(f"{result.experiment} {optimizer}: α={choice['learning_rate']:g} β2={choice['beta_2']:g}{bias}")
        else:
            print(f"{result.experiment} {optimizer}: every grid point diverged; no best parameters written",
                  file=sys.stderr)
    n_div = int(result.frame["diverged"].sum())
    print(f"wrote {result.folder / 'gridsearch.csv'} ({len(result.frame)} points, {n_div} diverged), "
          f"{result.folder / 'best_params.json'}, {result.table}")


def _folds(text):
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"cross-validation needs at least 2 folds, got {value}")
    return value


# The demo's reduced grid (its α and β2 as numbers: no command line is parsed).
DEMO_LEARNING_RATES = (0.001, 0.01, 0.1)
DEMO_BETA2S = (0.99, 0.999)


def run_demo(name, *, out, data_dir=None, force=False):
    """The demo's tuning stage: a reduced grid (3 α × 2 β2, 3 folds, 15 epochs + early stopping),
    the other settings the command's defaults (:func:`gridsearch.experiment.search_experiment`'s)."""
    from gridsearch.experiment import search_experiment

    result = search_experiment(name, out=out, learning_rates=DEMO_LEARNING_RATES, beta_2s=DEMO_BETA2S, epochs=15,
                               data_dir=data_dir, force=force)
    say_choices(result)
    return result
