"""A whole grid search of one experiment with its outputs: what ``replicate gridsearch`` does, as a function.

:func:`search_experiment` checks the grid, picks the engine, loads the data, runs
:func:`gridsearch.search.run_grid_search` (resumable point by point) and writes every file the command
writes: ``<out>/<experiment>/gridsearch.csv``, ``best_params.json``, the ``gridsearch.json`` sidecar
and ``<out>/gridsearch_table.{csv,md}``. The command, the demo and :func:`replication.api.gridsearch`
all call it, so a search started from any of them writes the same files; only the command parses
arguments and prints the choices (:func:`replication.commands.gridsearch.say_choices`).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from replication import store as unit_store
from replication.errors import UserError
from replication.registry import COMPARED

from .search import DEFAULT_BETA_2S, DEFAULT_LEARNING_RATES

__all__ = ["SearchResult", "search_experiment", "check_folds", "describe_search", "ENGINE_TEXT"]

ENGINE_TEXT = {
    "stacked": "stacked (every grid point of a fold trained at once as one Keras model)",
    "gridsearchcv": "gridsearchcv (scikit-learn GridSearchCV over scikeras KerasClassifier)",
}
_BIAS_CORRECTIONS = {None: (None,), "on": (True,), "off": (False,), "both": (True, False)}


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What :func:`search_experiment` did: ``frame`` holds this call's rows (its optimizers, in grid
    order; ``frame.attrs["points_reused"]`` those read back), ``best`` the chosen (α, β2) per
    optimizer over the whole ``gridsearch.csv`` (every optimizer searched into ``folder`` so far)."""

    experiment: str  # the spec's name: the folder under out
    out: Path
    folder: Path  # <out>/<experiment>
    optimizers: tuple  # as given, duplicates dropped
    engine: str  # resolved: "stacked" or "gridsearchcv"
    frame: object  # pandas.DataFrame
    best: dict  # best_params.json

    @property
    def table(self) -> Path:
        return self.out / "gridsearch_table.md"


def search_experiment(experiment, *, out="results", optimizers=COMPARED, learning_rates=DEFAULT_LEARNING_RATES,
                      beta_2s=DEFAULT_BETA_2S, bias_correction=None, cv=3, epochs=None, seed=0, n_jobs=1,
                      backend="loky", scheduler=None, halving=False, engine="auto", data_dir=None, force=False,
                      progress=True) -> SearchResult:
    """Grid-search ``experiment`` (a name or an :class:`~replication.experiments.Experiment`) as McGill
    did (§IV-A): every (α, β2[, bias correction]) of the grid per optimizer, ``cv``-fold cross-validation,
    ``epochs`` per fit (default: the spec's grid-search epochs); write the search's files under ``out``.

    ``bias_correction`` is None (not searched), ``"on"``, ``"off"`` or ``"both"``; ``engine``, ``n_jobs``,
    ``backend``, ``scheduler`` and ``halving`` as :func:`gridsearch.search.run_grid_search` takes them.
    Finished points are read back unless ``force``. ``progress``: the search's description and a line per
    finished fit on stderr. Bad settings raise :class:`~replication.errors.UserError` (one line, naming
    the command-line flag to fix)."""
    from replication.experiments import get_experiment
    from replication.io import check_writable

    options = dict(optimizers=list(optimizers), learning_rates=[float(v) for v in learning_rates],
                   beta_2s=[float(v) for v in beta_2s], bias_correction=bias_correction, cv=int(cv), seed=int(seed),
                   halving=bool(halving))
    check_search(**options, n_jobs=n_jobs, backend=backend, scheduler=scheduler)
    spec = _searchable(get_experiment(experiment) if isinstance(experiment, str) else experiment)
    engine = _engine(spec, engine, halving=halving, backend=backend, optimizers=options["optimizers"])
    # Checked, not made: the first finished point makes the folders, so a start that fails (missing
    # or corrupt data) leaves no empty <out>/<experiment>/ behind.
    out = Path(out)
    folder = check_writable(out / spec.name)  # probes out, or its nearest existing ancestor
    mixed = unit_store.search_backend_conflict(folder / "gridsearch.json", unit_store.keras_backend())
    if mixed:  # one folder, one backend, as train and synthetic
        raise UserError(mixed)
    frame, sidecar, score = _run(spec, folder, options, epochs=epochs, engine=engine, n_jobs=n_jobs, backend=backend,
                          scheduler=scheduler, data_dir=data_dir, force=force, progress=progress)
    best = _write_outputs(folder, out, frame, sidecar, score)
    return SearchResult(spec.name, out, folder, tuple(dict.fromkeys(options["optimizers"])), engine, frame, best)


def check_search(*, optimizers, learning_rates, beta_2s, bias_correction, cv, seed, halving, n_jobs, backend,
                 scheduler):
    """A :class:`UserError` (one line naming the flag) for a grid or settings the search cannot run."""
    from replication.hyperparameters import LEARNING_RATE_RANGE, is_learning_rate

    from .search import validate_grid

    for value in learning_rates:  # the grid's own check takes any positive α, even 1e308
        if not is_learning_rate(value):
            raise UserError(f"learning rate must be in {LEARNING_RATE_RANGE}, got {value:g}; fix --learning-rates")
    try:
        validate_grid(optimizers, learning_rates, beta_2s)
    except ValueError as exc:
        flag = "--optimizers" if "optimizer" in str(exc) else ("--learning-rates" if "learning rate" in str(exc) else "--beta2s")
        raise UserError(f"{exc}; fix {flag}") from None
    if bias_correction is not None:
        from replication.optimizers import accepted_kwargs

        from .estimator import search_optimizer_class

        for name in optimizers:
            cls = getattr(search_optimizer_class(name), "user_class", None)  # None: a built-in, which takes it
            if cls is not None and not accepted_kwargs(cls, bias_correction=True):
                raise UserError(f"--bias-correction: optimizer {name!r} takes no bias_correction argument; "
                                "drop --bias-correction or that optimizer")
    if cv < 2:
        raise UserError(f"--cv must be at least 2, got {cv}")
    if scheduler and backend != "dask":
        raise UserError("--scheduler needs --backend dask")
    if n_jobs == 0 or n_jobs < -1:
        raise UserError(f"--n-jobs must be a positive number or -1, got {n_jobs}")


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


def _engine(spec, engine, *, halving, backend, optimizers) -> str:
    """The engine ``engine`` resolves to; one line on stderr when "auto" falls back from stacked
    because a user's optimizer cannot be stacked."""
    from .search import resolve_engine

    try:
        resolved = resolve_engine(spec, engine, halving=halving, backend=backend, optimizers=optimizers)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if engine == "auto" and resolved == "gridsearchcv" and resolve_engine(spec, "auto", halving=halving,
                                                                          backend=backend) == "stacked":
        print(f"gridsearch {spec.name}: engine gridsearchcv, as the stacked engine stacks only the built-in "
              "optimizers", file=sys.stderr, flush=True)
    return resolved


def _run(spec, folder, options, *, epochs, engine, n_jobs, backend, scheduler, data_dir, force, progress):
    """Load the data, run the grid search (points already in ``folder`` read back unless ``force``);
    return its rows, the gridsearch.json sidecar describing this call and the selection score."""
    from replication.datasets import load_dataset, prepare_dataset
    from replication.io import now_iso
    from replication.progress import Progress

    from .search import SearchSettings, make_grid, run_grid_search
    from .store import PointStore

    cv, seed, halving = options["cv"], options["seed"], options["halving"]
    points = make_grid(options["optimizers"], options["learning_rates"], options["beta_2s"],
                       _BIAS_CORRECTIONS[options["bias_correction"]])
    data = prepare_dataset(load_dataset(spec.dataset, data_dir), spec.input_scale, spec.split)
    check_folds(cv, data.y_train, stratified=spec.gridsearch_folds == "stratified")
    epochs = epochs or spec.gridsearch_epochs
    settings = SearchSettings.from_spec(spec, cv=cv, epochs=epochs, seed=seed, halving=halving, engine=engine)
    if progress:  # say once what is being run
        line = describe_search(**options, engine=engine, n_points=len(points), epochs=epochs)
        print(f"gridsearch {spec.name}: {line}", file=sys.stderr, flush=True)
    # Counted in fits (point × fold): the stacked engine finishes a fold of many points at once.
    bar = Progress(len(points) * cv, f"gridsearch {spec.name}") if progress else None
    started_at, clock = now_iso(), time.perf_counter()
    frame = run_grid_search(spec, data.x_train, data.y_train, points, cv=cv, epochs=epochs, seed=seed, n_jobs=n_jobs,
                            backend=backend, scheduler=scheduler, halving=halving, engine=engine,
                            store=PointStore(folder / "gridsearch_points"), force=force, progress=bar)
    sidecar = _sidecar(spec, settings, options, engine=engine, n_jobs=n_jobs, backend=backend, frame=frame,
                       n_points=len(points), started_at=started_at, seconds=time.perf_counter() - clock)
    return frame, sidecar, settings.score


def _write_outputs(folder, out, frame, sidecar, score) -> dict:
    """gridsearch.csv, best_params.json and gridsearch.json in ``folder`` (merged with the other
    optimizers' rows there), then Table I across ``out``; returns the best parameters."""
    from .store import write_search_outputs, write_table

    best = write_search_outputs(frame, folder, sidecar=sidecar, score=score)
    write_table(out)
    return best


def _sidecar(spec, settings, options, *, engine, n_jobs, backend, frame, n_points, started_at, seconds) -> dict:
    """gridsearch.json: the search's settings, grid, engine, selection rule, this call and provenance."""
    from replication.io import now_iso, provenance

    return {
        "experiment": spec.to_dict() if hasattr(spec, "to_dict") else spec.name,
        "settings": settings.to_dict(),
        "grid": {
            "optimizers": list(dict.fromkeys(options["optimizers"])),
            "learning_rate": [float(v) for v in options["learning_rates"]],
            "beta_2": [float(v) for v in options["beta_2s"]],
            "bias_correction": options["bias_correction"] or "default",
        },
        "search": ("HalvingGridSearchCV(resource='epochs', factor=3)" if options["halving"]
                   else "stacked: all points of a fold trained at once (gridsearch/stacked.py)" if engine == "stacked"
                   else "GridSearchCV"),
        "engine": engine,
        "selection": ("highest mean validation accuracy over folds (McGill's code), ties to the first point in "
                      "ParameterGrid order; diverged points never selected" if settings.score == "accuracy"
                      else "smallest mean validation loss over folds; diverged points never selected"),
        "n_jobs": n_jobs,
        "backend": backend,
        # This invocation: points already finished are read back, not recomputed.
        "started_at": started_at,
        "finished_at": now_iso(),
        "wall_seconds": round(seconds, 2),
        "points_computed": n_points - frame.attrs["points_reused"],
        "points_reused": frame.attrs["points_reused"],
        **provenance(),
    }


def check_folds(cv, y, *, stratified=True):
    """One line (UserError) when ``cv`` folds cannot be made of the training labels ``y``: more folds
    than examples, or, for stratified folds, than the examples of the rarest class."""
    import numpy as np

    counts = np.unique(np.asarray(y), return_counts=True)[1]
    limit = int(counts.min()) if stratified else int(len(y))
    if cv > limit:
        what = f"the rarest class has {limit} training examples" if stratified else f"there are {limit} examples"
        raise UserError(f"--cv {cv} folds cannot be made: {what}; use at most --cv {limit}")


def describe_search(*, optimizers, learning_rates, beta_2s, bias_correction, cv, seed, halving, engine, n_points,
                    epochs) -> str:
    """The grid and the engine in one line, e.g. ``engine stacked (...); grid adam, amsgrad × α
    {0.001, 0.01} × β2 {0.99} = 4 points × 3 folds, 15 epochs per fit, seed 0``."""
    def values(xs):
        return "{" + ", ".join(f"{float(x):g}" for x in dict.fromkeys(xs)) + "}"

    grid = f"{', '.join(dict.fromkeys(optimizers))} × α {values(learning_rates)} × β2 {values(beta_2s)}"
    if bias_correction == "both":
        grid += " × bias correction {on, off}"
    elif bias_correction:
        grid += f", bias correction {bias_correction}"
    search = "successive halving over epochs (HalvingGridSearchCV), " if halving else ""
    return (f"engine {ENGINE_TEXT.get(engine, engine)}; {search}grid {grid} = {n_points} points × {cv} folds, "
            f"{'up to ' if halving else ''}{epochs} epoch{'s' if epochs != 1 else ''} per fit, seed {seed}")
