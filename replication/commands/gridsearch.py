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
import sys
import time
from pathlib import Path

from ..errors import UserError
from . import _args
from ..registry import COMPARED
from ._args import add_out, positive_int, seed

HELP = "grid-search (α, β2) per optimizer with 3-fold cross-validation (McGill §IV-A)"


def _number(text):
    """Parse a grid value; range checks are done with the whole grid (one clear message)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def add_parser(subparsers):
    from gridsearch.search import DEFAULT_BETA_2S, DEFAULT_LEARNING_RATES, ENGINES

    parser = subparsers.add_parser("gridsearch", help=HELP, description=HELP)
    parser.add_argument("experiment", metavar="EXPERIMENT", help="experiment name (see `replicate experiments`)")
    parser.add_argument("--optimizers", nargs="+", default=list(COMPARED), metavar="NAME",
                        help="optimizers to tune: adam, amsgrad, adamax, or your own keras.optimizers.Optimizer "
                             "subclass as module:Class (or a registered entry point name) that takes learning_rate "
                             "and beta_2 (default: adam amsgrad)")
    parser.add_argument("--learning-rates", nargs="+", type=_number, default=list(DEFAULT_LEARNING_RATES),
                        metavar="ALPHA", help="α grid (default: McGill's 1e-4 1e-3 1e-2 1e-1 1)")
    parser.add_argument("--beta2s", nargs="+", type=_number, default=list(DEFAULT_BETA_2S), metavar="BETA2",
                        help="β2 grid (default: McGill's 0.99 0.9925 0.995 0.9975 0.999)")
    parser.add_argument("--bias-correction", choices=("on", "off", "both"), default=None,
                        help="also search/fix bias correction (default: not searched, the optimizer's default: on)")
    parser.add_argument("--cv", type=_folds, default=3, help="cross-validation folds (default: 3)")
    parser.add_argument("--epochs", type=_args.epochs, default=None,
                        help="epochs per fit (default: the experiment's grid-search epochs)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the folds and of each fit (default: 0)")
    parser.add_argument("--n-jobs", type=int, default=1,
                        help="parallel fits of the gridsearchcv engine (loky: processes; TensorFlow threads per fit = cores / "
                             "n-jobs; -1 = all cores); the stacked engine runs one process on all cores")
    parser.add_argument("--backend", choices=("loky", "dask"), default="loky",
                        help="joblib backend for the fits (default: loky)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler, e.g. tcp://HOST:8786 (with --backend dask; default: a local loopback cluster)")
    parser.add_argument("--halving", action="store_true",
                        help="successive halving with epochs as the resource (HalvingGridSearchCV)")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
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


def _check(args):
    from gridsearch.search import validate_grid
    from replication.hyperparameters import LEARNING_RATE_RANGE, is_learning_rate

    for value in args.learning_rates:  # the grid's own check takes any positive α, even 1e308
        if not is_learning_rate(value):
            raise UserError(f"learning rate must be in {LEARNING_RATE_RANGE}, got {value:g}; fix --learning-rates")
    try:
        validate_grid(args.optimizers, args.learning_rates, args.beta2s)
    except ValueError as exc:
        flag = "--optimizers" if "optimizer" in str(exc) else ("--learning-rates" if "learning rate" in str(exc) else "--beta2s")
        raise UserError(f"{exc}; fix {flag}") from None
    if args.bias_correction is not None:
        from gridsearch.estimator import search_optimizer_class
        from replication.optimizers import accepted_kwargs

        for name in args.optimizers:
            cls = getattr(search_optimizer_class(name), "user_class", None)  # None: a built-in, which takes it
            if cls is not None and not accepted_kwargs(cls, bias_correction=True):
                raise UserError(f"--bias-correction: optimizer {name!r} takes no bias_correction argument; "
                                "drop --bias-correction or that optimizer")
    if args.cv < 2:
        raise UserError(f"--cv must be at least 2, got {args.cv}")
    if args.scheduler and args.backend != "dask":
        raise UserError("--scheduler needs --backend dask")
    if args.n_jobs == 0 or args.n_jobs < -1:
        raise UserError(f"--n-jobs must be a positive number or -1, got {args.n_jobs}")


def run(args) -> int:
    from replication.experiments import get_experiment

    _check(args)
    spec = _searchable(get_experiment(args.experiment))  # UserError for an unknown name

    from gridsearch.search import SearchSettings, make_grid, resolve_engine, run_grid_search
    from gridsearch.store import PointStore, write_search_outputs, write_table
    from replication.datasets import load_dataset
    from replication.io import check_writable, now_iso
    from replication.progress import Progress

    try:
        engine = resolve_engine(spec, args.engine, halving=args.halving, backend=args.backend,
                                optimizers=args.optimizers)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.engine == "auto" and engine == "gridsearchcv" and resolve_engine(spec, "auto", halving=args.halving,
                                                                             backend=args.backend) == "stacked":
        print(f"gridsearch {spec.name}: engine gridsearchcv, as the stacked engine stacks only the built-in "
              "optimizers", file=sys.stderr, flush=True)
    # Checked, not made: the first finished point makes the folders, so a start that fails (missing
    # or corrupt data) leaves no empty <out>/<experiment>/ behind.
    out = Path(args.out)
    experiment_dir = check_writable(out / spec.name)  # probes out, or its nearest existing ancestor
    bias = {None: (None,), "on": (True,), "off": (False,), "both": (True, False)}[args.bias_correction]
    points = make_grid(args.optimizers, args.learning_rates, args.beta2s, bias)
    from replication.datasets import prepare_dataset

    data = prepare_dataset(load_dataset(spec.dataset, args.data_dir), spec.input_scale, spec.split)
    check_folds(args.cv, data.y_train, stratified=spec.gridsearch_folds == "stratified")
    epochs = args.epochs or spec.gridsearch_epochs
    settings = SearchSettings.from_spec(spec, cv=args.cv, epochs=epochs, seed=args.seed, halving=args.halving,
                                        engine=engine)
    if not args.quiet:  # say once what is being run
        print(f"gridsearch {spec.name}: {describe_search(args, engine, len(points), epochs)}",
              file=sys.stderr, flush=True)
    # Counted in fits (point × fold): the stacked engine finishes a fold of many points at once.
    progress = None if args.quiet else Progress(len(points) * args.cv, f"gridsearch {spec.name}")
    started_at, clock = now_iso(), time.perf_counter()
    frame = run_grid_search(
        spec,
        data.x_train,
        data.y_train,
        points,
        cv=args.cv,
        epochs=epochs,
        seed=args.seed,
        n_jobs=args.n_jobs,
        backend=args.backend,
        scheduler=args.scheduler,
        halving=args.halving,
        engine=engine,
        store=PointStore(experiment_dir / "gridsearch_points"),
        force=args.force,
        progress=progress,
    )
    sidecar = _sidecar(args, spec, settings, engine, frame, len(points), started_at, time.perf_counter() - clock)
    best = write_search_outputs(frame, experiment_dir, sidecar=sidecar, score=settings.score)
    write_table(out)
    _say_choices(args, spec, best, frame, experiment_dir, out)
    return 0


def _searchable(spec):
    """``spec`` if the grid search can tune it, else a :class:`UserError` saying what to run."""
    if spec.params_from:
        raise UserError(f"{spec.name} takes its α and β2 from {spec.params_from}'s grid search: "
                        f"run `replicate gridsearch {spec.params_from}` instead")
    if spec.loss == "elbo":
        raise UserError(
            f"{spec.name} is a generative model (loss elbo); the grid search tunes classifiers by validation "
            f"log-loss. Train it with `replicate train {spec.name}` (its spec holds the published values)"
        )
    return spec


def _sidecar(args, spec, settings, engine, frame, n_points, started_at, seconds) -> dict:
    """gridsearch.json: the search's settings, grid, engine, selection rule, this call and provenance."""
    from replication.io import now_iso, provenance

    return {
        "experiment": spec.to_dict() if hasattr(spec, "to_dict") else spec.name,
        "settings": settings.to_dict(),
        "grid": {
            "optimizers": list(dict.fromkeys(args.optimizers)),
            "learning_rate": [float(v) for v in args.learning_rates],
            "beta_2": [float(v) for v in args.beta2s],
            "bias_correction": args.bias_correction or "default",
        },
        "search": ("HalvingGridSearchCV(resource='epochs', factor=3)" if args.halving
                   else "stacked: all points of a fold trained at once (gridsearch/stacked.py)" if engine == "stacked"
                   else "GridSearchCV"),
        "engine": engine,
        "selection": ("highest mean validation accuracy over folds (McGill's code), ties to the first point in "
                      "ParameterGrid order; diverged points never selected" if settings.score == "accuracy"
                      else "smallest mean validation loss over folds; diverged points never selected"),
        "n_jobs": args.n_jobs,
        "backend": args.backend,
        # This invocation: points already finished are read back, not recomputed.
        "started_at": started_at,
        "finished_at": now_iso(),
        "wall_seconds": round(seconds, 2),
        "points_computed": n_points - frame.attrs["points_reused"],
        "points_reused": frame.attrs["points_reused"],
        **provenance(),
    }


def _say_choices(args, spec, best, frame, experiment_dir, out):
    """One line per optimizer with its chosen α and β2 (stderr where every point diverged), then
    what was written."""
    for optimizer in dict.fromkeys(args.optimizers):
        if optimizer in best:
            choice = best[optimizer]
            bias = (f" bias-correction={'on' if choice['bias_correction'] else 'off'}"
                    if "bias_correction" in choice else "")
            print(f"{spec.name} {optimizer}: α={choice['learning_rate']:g} β2={choice['beta_2']:g}{bias}")
        else:
            print(f"{spec.name} {optimizer}: every grid point diverged; no best parameters written", file=sys.stderr)
    n_div = int(frame["diverged"].sum())
    print(f"wrote {experiment_dir / 'gridsearch.csv'} ({len(frame)} points, {n_div} diverged), "
          f"{experiment_dir / 'best_params.json'}, {Path(out) / 'gridsearch_table.md'}")


ENGINE_TEXT = {
    "stacked": "stacked (every grid point of a fold trained at once as one Keras model)",
    "gridsearchcv": "gridsearchcv (scikit-learn GridSearchCV over scikeras KerasClassifier)",
}


def _folds(text):
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"cross-validation needs at least 2 folds, got {value}")
    return value


def check_folds(cv, y, *, stratified=True):
    """One line (UserError) when ``cv`` folds cannot be made of the training labels ``y``: more folds
    than examples, or, for stratified folds, than the examples of the rarest class."""
    import numpy as np

    counts = np.unique(np.asarray(y), return_counts=True)[1]
    limit = int(counts.min()) if stratified else int(len(y))
    if cv > limit:
        what = f"the rarest class has {limit} training examples" if stratified else f"there are {limit} examples"
        raise UserError(f"--cv {cv} folds cannot be made: {what}; use at most --cv {limit}")


def describe_search(args, engine, n_points, epochs) -> str:
    """The grid and the engine in one line, e.g. ``engine stacked (...); grid adam, amsgrad × α
    {0.001, 0.01} × β2 {0.99} = 4 points × 3 folds, 15 epochs per fit, seed 0``."""
    def values(xs):
        return "{" + ", ".join(f"{float(x):g}" for x in dict.fromkeys(xs)) + "}"

    grid = f"{', '.join(dict.fromkeys(args.optimizers))} × α {values(args.learning_rates)} × β2 {values(args.beta2s)}"
    if args.bias_correction == "both":
        grid += " × bias correction {on, off}"
    elif args.bias_correction:
        grid += f", bias correction {args.bias_correction}"
    search = "successive halving over epochs (HalvingGridSearchCV), " if args.halving else ""
    return (f"engine {ENGINE_TEXT.get(engine, engine)}; {search}grid {grid} = {n_points} points × {args.cv} folds, "
            f"{'up to ' if args.halving else ''}{epochs} epoch{'s' if epochs != 1 else ''} per fit, seed {args.seed}")


DEMO_LEARNING_RATES = ("0.001", "0.01", "0.1")
DEMO_BETA2S = ("0.99", "0.999")


def run_demo(name, *, out, data_dir=None, force=False):
    """The demo's tuning stage: a reduced grid (3 α × 2 β2, 3 folds, 15 epochs + early stopping)."""
    from replication.cli import build_parser

    argv = ["gridsearch", name, "--learning-rates", *DEMO_LEARNING_RATES, "--beta2s", *DEMO_BETA2S,
            "--epochs", "15", "--out", str(out)]
    argv += ["--data-dir", str(data_dir)] if data_dir else []
    argv += ["--force"] if force else []
    return run(build_parser().parse_args(argv))
