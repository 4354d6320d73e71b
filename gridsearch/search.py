"""Grid search of (α, β2[, bias correction]) per optimizer, McGill §IV-A, resumable point by point.

McGill tuned α and β2 by an exhaustive ``GridSearchCV`` (3-fold cross-validation, 30 epochs per fit,
the 25-point grid below) and kept the point with the smallest validation loss. Here:

* each grid point's row (every fold's validation and training score, fit time, diverged flag) is
  persisted by a :class:`PointStore` as soon as it is finished, so a killed search rerun with the
  same settings recomputes only unfinished points;
* two engines compute the same rows (:func:`resolve_engine`). ``stacked`` (the default for the
  dense models, :mod:`gridsearch.stacked`) trains all unfinished points of an optimizer on a fold
  at once as one Keras model; its unit of work is that fold, persisted too. ``gridsearchcv`` runs
  scikit-learn's ``GridSearchCV`` over scikeras fits, on chunks of unfinished points (as many
  points as parallel fits, so the ``chunk × folds`` fits keep every worker busy), with joblib's
  loky backend or, for a cluster, its Dask backend;
* ``halving=True`` swaps in ``HalvingGridSearchCV`` with epochs as the resource (the principled
  form of McGill's abridged 15-epoch CifarNet search); its unit of work is one optimizer's search.
* several processes running one search into one folder share it (issue 26 §3): each unit of work
  is claimed before it is computed (:mod:`gridsearch.folds`, :mod:`replication.claims`), one
  claimed elsewhere is waited for at the end, and ``gridsearch.csv`` is merged under a lock.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
import warnings

import numpy as np

from replication import claims, stops
from replication import store as unit_store  # identity (the backend); the argument "store" is a PointStore
from replication.experiments import loss_identity
from replication.hyperparameters import DECAY_RATE_RANGE, is_decay_rate
from replication.registry import CONV_MODELS, DEFAULT_EPSILON, XLA_MIN_STEPS
from replication.progress import warn

from .folds import FoldWork, finish_later, written_since

__all__ = [
    "DEFAULT_LEARNING_RATES",
    "DEFAULT_BETA_2S",
    "GridPoint",
    "make_grid",
    "validate_grid",
    "SearchSettings",
    "run_grid_search",
    "resolve_engine",
    "ENGINES",
    "select_best",
    "thread_budget",
]

# McGill §IV-A: "five values for α of increasing orders of magnitude ... five different values of β2".
DEFAULT_LEARNING_RATES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
DEFAULT_BETA_2S = (0.99, 0.9925, 0.995, 0.9975, 0.999)
# Fits of at least XLA_MIN_STEPS optimizer steps are XLA-compiled (``jit_compile="auto"``): the
# trainer's policy (replication.registry says why one value).
# At most one progress line per this many seconds within a GridSearchCV-engine fit.
EPOCH_LINE_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class GridPoint:
    """One point of one optimizer's grid. ``bias_correction=None``: not searched (class default)."""

    optimizer: str
    learning_rate: float
    beta_2: float
    bias_correction: bool | None = None

    def params(self) -> dict:
        """The point as scikeras routed parameters."""
        params = {"optimizer__learning_rate": self.learning_rate, "optimizer__beta_2": self.beta_2}
        if self.bias_correction is not None:
            params["optimizer__bias_correction"] = self.bias_correction
        return params

    def label(self) -> str:
        text = f"{self.optimizer} α={self.learning_rate:g} β2={self.beta_2:g}"
        if self.bias_correction is not None:
            text += f" bias-correction={'on' if self.bias_correction else 'off'}"
        return text


def validate_grid(optimizers, learning_rates, beta_2s):
    """Raise ``ValueError`` (one line, says what to do) on a value the search cannot use."""
    from .estimator import search_optimizer_class

    for name in optimizers:
        search_optimizer_class(name)  # a built-in, or a user's class that takes learning_rate and beta_2
    for value in learning_rates:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"learning rate must be a positive finite number, got {value!r}")
    for value in beta_2s:
        if not is_decay_rate(value):
            raise ValueError(f"beta_2 must be in {DECAY_RATE_RANGE}, got {value!r}")
    if not (optimizers and learning_rates and beta_2s):
        raise ValueError("the grid is empty; give at least one optimizer, learning rate and beta_2")


def make_grid(optimizers, learning_rates=DEFAULT_LEARNING_RATES, beta_2s=DEFAULT_BETA_2S, bias_corrections=(None,)):
    """All points, in a fixed order: optimizer, then bias correction, then α, then β2."""
    validate_grid(optimizers, learning_rates, beta_2s)
    return [
        GridPoint(opt, float(lr), float(b2), bc)
        for opt in dict.fromkeys(optimizers)
        for bc in dict.fromkeys(bias_corrections)
        for lr in dict.fromkeys(learning_rates)
        for b2 in dict.fromkeys(beta_2s)
    ]


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Everything besides the point that decides a point's result (part of its record key)."""

    experiment: str
    dataset: str
    model: str
    loss: str
    schedule: str
    batch_size: int
    beta_1: float
    model_kwargs: tuple
    cv: int = 3
    epochs: int = 30
    seed: int = 0
    halving: bool = False
    epsilon: float = DEFAULT_EPSILON
    engine: str = "gridsearchcv"
    # The experiment's protocol fields that differ from their defaults (Experiment.protocol():
    # input scale, split, decay, the search's score, folds and early stopping), as sorted pairs;
    # left out of to_dict() when empty, so points of the default protocol keep their keys.
    protocol: tuple = ()

    @property
    def score(self) -> str:
        """What picks the best point: ``"loss"`` (smallest mean validation loss) or ``"accuracy"``."""
        return dict(self.protocol).get("gridsearch_score", "loss")

    @property
    def folds(self) -> str:
        return dict(self.protocol).get("gridsearch_folds", "stratified")

    @classmethod
    def from_spec(cls, spec, *, cv=3, epochs=None, seed=None, halving=False, engine="gridsearchcv"):
        spec = search_spec(spec)
        return cls(
            experiment=spec.name,
            dataset=spec.dataset,
            model=spec.model,
            loss=spec.loss,
            schedule=spec.schedule,
            batch_size=int(spec.batch_size),
            beta_1=float(spec.beta_1),
            model_kwargs=tuple(tuple(p) for p in spec.builder_kwargs),
            cv=int(cv),
            epochs=int(epochs if epochs is not None else spec.gridsearch_epochs),
            seed=int(seed if seed is not None else getattr(spec, "seed", 0) or 0),
            halving=bool(halving),
            epsilon=float(spec.epsilon),
            engine=engine,
            protocol=tuple(sorted(spec.protocol().items())) if hasattr(spec, "protocol") else (),
        )

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["model_kwargs"] = [list(p) for p in self.model_kwargs]
        if self.protocol:
            data["protocol"] = dict(self.protocol)
        else:
            del data["protocol"]
        # A redefined loss changes every point key: points scored under the old one are recomputed.
        data.update(loss_identity(self.loss))
        return data

    def point_key(self, point: GridPoint) -> str:
        """File-name-safe key of ``point`` under these settings: readable part + hash of all, and of the
        Keras backend unless TensorFlow (:mod:`replication.store`: every TensorFlow point keeps its key,
        a point scored under JAX is never read back as TensorFlow's), and of a user's optimizer's class
        and config (built-in optimizers keep their keys)."""
        fields = {"point": dataclasses.asdict(point), "settings": self.to_dict(), "backend": unit_store.keras_backend()}
        fields.update(_optimizer_identity(point, self))
        fields = unit_store.identity(fields, {"backend": unit_store.DEFAULT_BACKEND})
        digest = unit_store.identity_hash(fields, 12, "sha1")
        bc = {None: "default", True: "on", False: "off"}[point.bias_correction]
        return f"{_file_safe(point.optimizer)}_lr{point.learning_rate!r}_b2{point.beta_2!r}_bc-{bc}_{digest}"


def _file_safe(name: str) -> str:
    """``name`` as part of a file name: a user's ``module:Class`` becomes ``module-Class``."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)


def _optimizer_identity(point, settings) -> dict:
    """``{}`` for a built-in optimizer (point keys as before); a user's optimizer's class path and
    ``get_config()`` at the point's hyperparameters (:func:`replication.optimizers.optimizer_identity`)."""
    from replication.registry import is_builtin_optimizer

    if is_builtin_optimizer(point.optimizer):
        return {}
    from replication.optimizers import optimizer_identity

    extra = {} if point.bias_correction is None else {"bias_correction": point.bias_correction}
    return optimizer_identity(point.optimizer, point.learning_rate, beta_1=settings.beta_1, beta_2=point.beta_2,
                              epsilon=settings.epsilon, **extra)


def search_spec(spec):
    """``spec`` as its grid-search fits run it: the search's schedule and loss
    (``Experiment.search_schedule``/``search_loss``: McGill's code searched under Keras 2's decay
    with categorical cross-entropy) in place of the final runs'."""
    schedule = getattr(spec, "search_schedule", spec.schedule)
    loss = getattr(spec, "search_loss", spec.loss)
    if (schedule, loss) == (spec.schedule, spec.loss):
        return spec
    return dataclasses.replace(spec, schedule=schedule, loss=loss)


# -- engines -------------------------------------------------------------------------------------
ENGINES = ("auto", "stacked", "gridsearchcv")


def resolve_engine(spec, engine="auto", *, halving=False, backend="loky", optimizers=()):
    """The engine that runs the search: ``stacked`` (:mod:`gridsearch.stacked`: every point of a
    fold trained at once) or ``gridsearchcv`` (one scikeras fit per point and fold). ``auto``
    takes ``stacked`` for the dense models unless successive halving or a Dask backend is asked
    for, which only GridSearchCV does, or one of ``optimizers`` is a user's class, which only
    GridSearchCV fits. Raises ``ValueError`` for an impossible combination."""
    from .stacked import why_not_stackable

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if halving and spec.schedule == "linear-decay":
        raise ValueError(f"{spec.name} uses the linear-decay schedule, which needs every fit's epochs fixed; "
                         "--halving varies them: drop --halving")
    reason = why_not_stackable(spec, optimizers)
    if halving:
        reason = "--halving runs HalvingGridSearchCV"
    elif backend != "loky":
        reason = f"the {backend} backend distributes GridSearchCV's fits"
    if engine == "auto":
        return "gridsearchcv" if reason else "stacked"
    if engine == "stacked" and reason:
        raise ValueError(f"the stacked engine cannot run {spec.name}: {reason}; use --engine gridsearchcv")
    return engine


# -- threads -------------------------------------------------------------------------------------
def thread_budget(n_parallel, cores=None):
    """TensorFlow threads per fit so that parallel fits × threads stays within the cores."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, n_parallel))


@contextlib.contextmanager
def _worker_threads(n_parallel):
    """Give worker processes started in this block ``cores // n_parallel`` TensorFlow threads.

    TensorFlow fixes its thread pools when its runtime starts, so the only portable handle from
    outside a fresh worker is the environment it inherits (``TF_NUM_INTRAOP_THREADS``,
    ``TF_NUM_INTEROP_THREADS``; read by TensorFlow's process_util). Workers already running
    (a reused loky pool, remote Dask workers) keep what they had.
    """
    names = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    threads = str(thread_budget(n_parallel))
    os.environ["TF_NUM_INTRAOP_THREADS"] = threads
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = threads
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _joblib_backend(backend, n_jobs, scheduler=None, dask_processes=True):
    """Yield the number of parallel fits; inside, joblib runs on ``backend``."""
    import joblib

    if backend == "loky":
        n = n_jobs if n_jobs and n_jobs > 0 else (os.cpu_count() or 1)
        if n == 1:
            yield 1  # in-process: no pool, this process's own TensorFlow threads
            return
        with _worker_threads(n):
            yield n
        return
    if backend != "dask":
        raise ValueError(f"unknown backend {backend!r}; choose loky or dask")
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            from replication.errors import UserError

            raise UserError(
                f"cannot reach the Dask scheduler {scheduler!r} ({' '.join(str(exc).split()) or type(exc).__name__}); "
                "start one with `dask scheduler` (and `dask worker ADDRESS` on each machine) or drop --scheduler"
            ) from None
    else:
        n = n_jobs if n_jobs and n_jobs > 0 else (os.cpu_count() or 1)
        with _worker_threads(n):
            # Loopback only: nothing listens beyond this machine (in-process workers talk over
            # dask's inproc transport and open no socket at all).
            where = {"host": "127.0.0.1"} if dask_processes else {}
            cluster = LocalCluster(
                processes=dask_processes,
                n_workers=n,
                threads_per_worker=1,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                **where,
            )
        client = Client(cluster)
    try:
        n_parallel = max(1, sum(client.nthreads().values()))
        with joblib.parallel_backend("dask"):
            yield n_parallel
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# -- the search ------------------------------------------------------------------------------------
def _row_from_results(results, index, point, settings, *, metric=None):
    """One tidy row for candidate ``index`` of a ``cv_results_``; scores are −loss (sklearn's
    higher-is-better), ``*_val_loss``/``*_train_loss`` are the losses themselves."""
    def col(kind, k):
        return f"split{k}_{kind}_{metric}" if metric else f"split{k}_{kind}_score"

    row = {
        "experiment": settings.experiment,
        "optimizer": point.optimizer,
        "learning_rate": point.learning_rate,
        "beta_2": point.beta_2,
        "bias_correction": "default" if point.bias_correction is None else ("on" if point.bias_correction else "off"),
        "schedule": settings.schedule,
        "loss": settings.loss,
        "cv": settings.cv,
        "epochs": settings.epochs,
        "seed": settings.seed,
        "engine": settings.engine,
    }
    scores = {}
    for kind in ("test", "train"):
        values = [float(results[col(kind, k)][index]) for k in range(settings.cv)]
        for k, value in enumerate(values):
            scores[f"split{k}_{kind}_score"] = value
        finite = all(math.isfinite(v) for v in values)
        scores[f"mean_{kind}_score"] = float(np.mean(values)) if finite else math.nan
        scores[f"std_{kind}_score"] = float(np.std(values)) if finite else math.nan
    row.update(scores)
    row["mean_val_loss"] = -row["mean_test_score"]
    row["mean_train_loss"] = -row["mean_train_score"]
    if metric:  # multi-metric: epochs actually trained per fold (early stopping)
        epochs_run = [int(results[f"split{k}_test_epochs"][index]) for k in range(settings.cv)]
        for k, value in enumerate(epochs_run):
            row[f"split{k}_epochs_run"] = value
        row["mean_epochs_run"] = float(np.mean(epochs_run))
    row["mean_fit_time"] = float(results["mean_fit_time"][index])
    row["std_fit_time"] = float(results["std_fit_time"][index])
    row["mean_score_time"] = float(results["mean_score_time"][index])
    if "n_resources" in results:
        row["iter"] = int(results["iter"][index])
        row["n_resources"] = int(results["n_resources"][index])
    row["diverged"] = not (math.isfinite(row["mean_test_score"]) and math.isfinite(row["mean_train_score"]))
    return row


class _EpochsRun:
    """Scorer reporting how many epochs a fit ran (early stopping makes it < ``epochs``)."""

    def __call__(self, estimator, X, y):
        return float(len(estimator.history_.get("loss", ())))


def _cv(settings):
    """Our folds: shuffled, seeded ``StratifiedKFold``; or, for McGill's code
    (``gridsearch_folds="kfold"``), scikit-learn's default for their Keras 2 wrapper, which
    scikit-learn did not take for a classifier: unshuffled ``KFold`` (consecutive thirds)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if settings.folds == "kfold":
        return KFold(n_splits=settings.cv)
    return StratifiedKFold(n_splits=settings.cv, shuffle=True, random_state=settings.seed)


def _point_from_params(optimizer, params):
    return GridPoint(
        optimizer,
        float(params["optimizer__learning_rate"]),
        float(params["optimizer__beta_2"]),
        params.get("optimizer__bias_correction"),
    )


def _search(spec, settings, X, y, optimizer, points, n_jobs, estimator_kwargs, *, halving=False, split=None,
            epoch_lines=None):
    """One scikit-learn search over ``points`` of one optimizer; returns {point: row}. With
    ``split = (train, validation)`` it cross-validates on that one fold only and returns
    {point: fold result} (``val_loss``, ``train_loss``, ``epochs_run``, ``fit_time``,
    ``score_time``): the GridSearchCV engine's unit of work, persisted fold by fold.

    ``GridSearchCV`` also scores the epochs each fit ran (early stopping); ``HalvingGridSearchCV``
    (epochs as the resource) takes a single scorer, and a candidate appears once per iteration it
    survived, so the last (most epochs) evaluation of each point wins below. ``epoch_lines``: an
    :class:`gridsearch.estimator.EpochLines` for progress lines within each fit."""
    from sklearn.model_selection import GridSearchCV

    from .estimator import ValidationAccuracy, ValidationLoss, make_estimator

    estimator = make_estimator(spec, optimizer, epochs=settings.epochs, seed=settings.seed, epoch_lines=epoch_lines,
                               **estimator_kwargs)
    common = dict(
        param_grid=[{k: [v] for k, v in p.params().items()} for p in points],
        refit=False,
        cv=_cv(settings) if split is None else [split],
        return_train_score=True,
        n_jobs=n_jobs,
        error_score="raise",  # a crash is a bug; divergence is a NaN score, handled below
    )
    if halving:
        from sklearn.experimental import enable_halving_search_cv  # noqa: F401
        from sklearn.model_selection import HalvingGridSearchCV

        search = HalvingGridSearchCV(
            estimator, factor=3, resource="epochs", max_resources=settings.epochs, min_resources="exhaust",
            scoring=ValidationLoss(settings.loss), random_state=settings.seed, **common,
        )
        metric = None
    else:
        search = GridSearchCV(
            estimator, scoring={"loss": ValidationLoss(settings.loss), "epochs": _EpochsRun(),
                                "accuracy": ValidationAccuracy()}, **common,
        )
        metric = "loss"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-finite.*")
        search.fit(X, y)
    results = search.cv_results_
    if split is not None:  # one fold: its losses (scores are −loss; NaN = diverged) and times
        return {
            _point_from_params(optimizer, params): {
                "val_loss": -float(results["split0_test_loss"][index]),
                "train_loss": -float(results["split0_train_loss"][index]),
                "epochs_run": int(results["split0_test_epochs"][index]),
                "val_accuracy": float(results["split0_test_accuracy"][index]),
                "train_accuracy": float(results["split0_train_accuracy"][index]),
                "fit_time": float(results["mean_fit_time"][index]),
                "score_time": float(results["mean_score_time"][index]),
            }
            for index, params in enumerate(results["params"])
        }
    rows = {}
    for index, params in enumerate(results["params"]):
        point = _point_from_params(optimizer, params)
        rows[point] = _row_from_results(results, index, point, settings, metric=metric)
    return rows


def run_grid_search(
    spec,
    X,
    y,
    points,
    *,
    cv=3,
    epochs=None,
    seed=None,
    n_jobs=1,
    backend="loky",
    scheduler=None,
    halving=False,
    engine="auto",
    store=None,
    force=False,
    progress=None,
    dask_processes=True,
    estimator_kwargs=None,
):
    """Cross-validate every :class:`GridPoint` in ``points`` on ``(X, y)``; return tidy rows.

    ``engine`` (see :func:`resolve_engine`) picks how the fits run; the rows are the same either
    way. ``store`` (a :class:`gridsearch.store.PointStore` or ``None``) persists each finished point
    (and, for the stacked engine, each finished fold) and supplies those already finished (unless
    ``force``). ``progress`` (``replication.progress.Progress`` over ``len(points) × cv`` fits, or
    ``None``) gets a line per finished unit. Returns the rows in ``points`` order;
    ``frame.attrs["points_reused"]`` counts those read back rather than computed.
    """
    import pandas as pd

    spec = search_spec(spec)
    engine = resolve_engine(spec, engine, halving=halving, backend=backend, optimizers=[p.optimizer for p in points])
    settings = SearchSettings.from_spec(spec, cv=cv, epochs=epochs, seed=seed, halving=halving, engine=engine)
    X = np.asarray(X, dtype=np.float32)  # once, up front: no per-fit float64 copies
    y = np.asarray(y)
    estimator_kwargs = _fit_kwargs(spec, settings, X, y, engine, estimator_kwargs)
    # With force, only what another process sharing the folder stores from now on is read back.
    since = time.time() if force else None
    rows = {} if (force or store is None) else _read_back(points, settings, store, halving, progress)
    todo = [p for p in points if p not in rows]
    if progress is not None and len(points) > len(todo):
        progress.skip(n=(len(points) - len(todo)) * settings.cv)

    def finish(new_rows, counted=False):
        for point, row in new_rows.items():
            if point not in todo:
                continue
            rows[point] = row
            if store is not None:
                store.save(settings, point, row)
                store.drop_folds(settings, point)
            if progress is not None:
                loss = row["mean_val_loss"]
                message = f"{point.label()} val loss {'diverged' if row['diverged'] else f'{loss:.4f}'}"
                progress.note(message, eta=True) if counted else progress.update(message, n=settings.cv)

    if todo and engine == "stacked":
        _run_stacked(spec, settings, X, y, todo, store=store, since=since, progress=progress,
                     estimator_kwargs=estimator_kwargs, finish=finish)
    elif todo:
        _run_gridsearchcv(spec, settings, X, y, todo, n_jobs=n_jobs, backend=backend, scheduler=scheduler,
                          dask_processes=dask_processes, estimator_kwargs=estimator_kwargs, store=store,
                          since=since, progress=progress, finish=finish)
    frame = pd.DataFrame([rows[p] for p in points])
    frame = frame[order_columns(frame.columns, settings.cv)]
    frame.attrs["points_reused"] = len(points) - len(todo)  # read back from the store, not computed
    return frame


def _fit_kwargs(spec, settings, X, y, engine, estimator_kwargs) -> dict:
    """The estimator's fit settings for this search: early stopping (McGill's code had none), the
    time-decay rate, XLA, steps per execution, and linear decay's step count."""
    estimator_kwargs = dict(estimator_kwargs or {})
    # McGill's code searched without early stopping (Experiment.early_stopping=False).
    estimator_kwargs.setdefault("early_stopping", bool(getattr(spec, "early_stopping", True)))
    if spec.schedule == "time-decay" and engine == "gridsearchcv":
        estimator_kwargs["optimizer__decay"] = float(spec.decay)
    cv = settings.cv
    steps_per_epoch = math.ceil(len(X) * (cv - 1) / cv / spec.batch_size)
    if estimator_kwargs.get("jit_compile", "auto") == "auto":
        # XLA costs a few seconds of compilation per fit (every fit builds a new model) and saves
        # ~1 ms per step of the MNIST MLP on a CPU (benchmarks/bench_gridsearch.py): worth it from
        # a few thousand steps per fit (MNIST: 313 steps x 30 epochs), not for digits' few hundred.
        # On JAX always: without XLA it runs the step op by op (replication.backend.auto_jit_compile).
        # A conv net never gets XLA on TensorFlow, as in `replicate train`: XLA's CPU convolutions
        # made a CifarNet epoch 2.2x slower (benchmarks/bench_cifarnet.py).
        from replication.backend import auto_jit_compile

        estimator_kwargs["jit_compile"] = auto_jit_compile(steps_per_epoch * settings.epochs, XLA_MIN_STEPS,
                                                           conv=spec.model in CONV_MODELS)
    if estimator_kwargs.get("steps_per_execution", "epoch") == "epoch":
        # One tf.function call per epoch: no Python between steps. The search's callbacks
        # (early stopping, divergence) act at epoch ends only, so nothing is lost.
        estimator_kwargs["steps_per_execution"] = steps_per_epoch
    if spec.schedule == "linear-decay" and engine == "gridsearchcv":
        # One estimator serves every fold, so one step count: the longest fold's (stratified folds
        # differ by a sample at most, rarely by a step). The stacked engine counts each fold's own.
        longest = max(math.ceil(len(train) / spec.batch_size) for train, _ in _cv(settings).split(X, y))
        estimator_kwargs["optimizer__total_steps"] = longest * settings.epochs
    return estimator_kwargs


def _read_back(points, settings, store, halving, progress) -> dict:
    """{point: its stored record} of the points already finished (intact in ``store``)."""
    rows = {}
    for point in points:
        record = store.load(settings, point,
                            on_damaged=lambda why, point=point: warn(progress, f"{point.label()}: {why}; recomputing"))
        if record is not None:
            rows[point] = record
    if halving:
        # Halving compares an optimizer's candidates with each other: the unit of work is the
        # optimizer's whole grid, redone if any of its points is missing.
        unfinished = {p.optimizer for p in points if p not in rows}
        rows = {p: r for p, r in rows.items() if p.optimizer not in unfinished}
    return rows


def _run_gridsearchcv(spec, settings, X, y, todo, *, n_jobs, backend, scheduler, dask_processes,
                      estimator_kwargs, store, since, progress, finish):
    """The points ``todo`` through scikit-learn's GridSearchCV (or halving), optimizer by optimizer."""
    with _joblib_backend(backend, n_jobs, scheduler, dask_processes) as n_parallel:
        jobs = n_jobs if backend == "loky" else -1
        by_optimizer = {}
        for point in todo:
            by_optimizer.setdefault(point.optimizer, []).append(point)
        if settings.halving:
            _share_halving(by_optimizer, settings, store=store, since=since, progress=progress, finish=finish,
                           search=lambda optimizer, pending: _search(spec, settings, X, y, optimizer, pending,
                                                                     jobs, estimator_kwargs, halving=True))
        later = []  # chunks with a fold that another process claimed (issue 26 §3)
        for optimizer, pending in ({} if settings.halving else by_optimizer).items():
            # As many points per GridSearchCV as parallel fits, one fold at a time, each fold
            # persisted: an interruption loses at most the fits in flight (a CifarNet fit of 15
            # epochs is ~10 min here), not a point's three folds.
            size = max(1, n_parallel)
            for start in range(0, len(pending), size):
                stops.check()  # between chunks: a stop requested while workers ran them
                chunk = pending[start : start + size]
                later += _search_by_fold(spec, settings, X, y, optimizer, chunk, jobs, estimator_kwargs,
                                         store=store, since=since, progress=progress, finish=finish)
        finish_later(later, finish, _row_from_folds)


def _epoch_lines(progress, optimizer, fold, cv, fits):
    """The :class:`~gridsearch.estimator.EpochLines` of ``fits`` parallel fits of fold ``fold``
    (None without progress lines): prefixed like the fold's own lines, with the fits after these
    and the finished fits' mean time for the command's ETA."""
    if progress is None:
        return None
    from .estimator import EpochLines

    return EpochLines(prefix=f"{progress.prefix()} {optimizer}", unit=f"fold {fold + 1}/{cv}",
                      fits_after=max(0, progress.remaining() - fits), seconds_per_fit=progress.seconds_per_unit(),
                      interval=EPOCH_LINE_SECONDS)


def _search_by_fold(spec, settings, X, y, optimizer, chunk, jobs, estimator_kwargs, *, store, since, progress,
                    finish):
    """GridSearchCV over ``chunk`` fold by fold (:class:`gridsearch.folds.FoldWork`): each (point,
    fold) result is stored as it finishes and read back on a rerun; a point's row is written once all
    its folds are. Returns ``[]``, or ``[work]`` to finish later when another process claimed a fold."""
    splits = list(_cv(settings).split(X, y))

    def compute(k, missing):
        fold = _search(spec, settings, X, y, optimizer, missing, jobs, estimator_kwargs, split=splits[k],
                       epoch_lines=_epoch_lines(progress, optimizer, k, settings.cv, len(missing)))
        for point in missing:
            if store is not None:
                store.save_fold(settings, point, k, fold[point])
            if progress is not None:
                loss = fold[point]["val_loss"]
                progress.update(f"{point.label()} fold {k + 1}/{settings.cv} done (validation loss "
                                f"{'diverged' if not math.isfinite(loss) else f'{loss:.4f}'})")
        return fold

    work = FoldWork(chunk, settings, store=store, since=since, progress=progress, compute=compute, name=optimizer)
    if not work.run():
        return [work]
    finish(work.rows(_row_from_folds), counted=True)
    return []


def _share_halving(by_optimizer, settings, *, store, since, progress, finish, search):
    """Halving's unit of work, an optimizer's whole grid (``search(optimizer, points)`` → rows),
    claimed on its points' records (issue 26 §3): one claimed by another process is waited for
    after the others, then read back, or searched here if its claimant stopped first."""
    def stored(optimizer):
        rows = {point: store.load(settings, point) if written_since(store.path(settings, point), since) else None
                for point in by_optimizer[optimizer]}
        return rows if None not in rows.values() else None

    claims.share(
        list(by_optimizer), label=lambda optimizer: f"{optimizer}'s halving search",
        lock_paths=lambda optimizer: [store.point_lock(settings, p) for p in by_optimizer[optimizer]] if store else [],
        is_done=lambda optimizer: store is not None and stored(optimizer) is not None,
        work=lambda optimizer: finish(search(optimizer, by_optimizer[optimizer])),
        found_done=lambda optimizer: finish(stored(optimizer)), say=lambda text: warn(progress, text))


# Parameters (weights) of all members of one stacked model, at most: bounds its memory (weights,
# gradients and 2-3 optimizer slots, float32) to a few GB whatever the grid.
STACKED_MAX_PARAMETERS = 50_000_000


def _members_per_model(spec, input_shape, num_classes):
    from .stacked import layer_sizes

    sizes = layer_sizes(spec, input_shape, num_classes)
    per_member = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    return max(1, STACKED_MAX_PARAMETERS // per_member)


def _run_stacked(spec, settings, X, y, todo, *, store, since, progress, estimator_kwargs, finish):
    """The stacked engine's loop: per (optimizer, bias correction) group of unfinished points and
    per fold, one :func:`gridsearch.stacked.fit_fold` over the points that lack that fold. A fold is
    the unit of work (persisted as it finishes); a point's row is written once all its folds are."""
    from .stacked import fit_fold

    classes = np.unique(y)
    onehot = (y[:, None] == classes[None, :]).astype(np.float32)
    folds = list(_cv(settings).split(X, y))
    size = _members_per_model(spec, X.shape[1:], len(classes))
    groups = {}
    for point in todo:
        groups.setdefault((point.optimizer, point.bias_correction), []).append(point)
    fit_kwargs = {key: estimator_kwargs[key] for key in ("jit_compile", "steps_per_execution", "early_stopping")
                  if key in estimator_kwargs}
    later = []  # chunks with a fold that another process claimed (issue 26 §3)
    for (optimizer, bias_correction), pending in groups.items():
        label = optimizer if bias_correction is None else f"{optimizer} bias-correction={'on' if bias_correction else 'off'}"

        def compute(k, missing, optimizer=optimizer, bias_correction=bias_correction, label=label):
            train, val = folds[k]
            fold = fit_fold(
                spec, optimizer, [(p.learning_rate, p.beta_2) for p in missing],
                X[train], onehot[train], X[val], onehot[val],
                epochs=settings.epochs, seed=settings.seed, bias_correction=bias_correction, **fit_kwargs,
            )
            for point, result in zip(missing, fold):
                if store is not None:
                    store.save_fold(settings, point, k, result)
            if progress is not None:
                finite = [r["val_loss"] for r in fold if math.isfinite(r["val_loss"])]
                span = f"val loss {min(finite):.4f}–{max(finite):.4f}" if finite else "all diverged"
                epochs_run = max(r["epochs_run"] for r in fold)
                progress.update(f"{label} fold {k + 1}/{settings.cv}: {len(missing)} points at once, "
                                f"{epochs_run} epoch{'s' if epochs_run != 1 else ''}, {span}", n=len(missing))
            return dict(zip(missing, fold))

        for start in range(0, len(pending), size):
            work = FoldWork(pending[start : start + size], settings, store=store, since=since, progress=progress,
                            compute=compute, name=label)
            if work.run():
                finish(work.rows(_row_from_folds), counted=True)
            else:
                later.append(work)
    finish_later(later, finish, _row_from_folds)


def _row_from_folds(point, settings, folds):
    """The row of ``point`` from its per-fold results, through the same code as a ``cv_results_``."""
    def score(loss):  # scikit-learn's "higher is better": −loss; a diverged fold scores NaN
        return -loss if math.isfinite(loss) else math.nan

    results = {}
    for k in range(settings.cv):
        results[f"split{k}_test_loss"] = [score(folds[k]["val_loss"])]
        results[f"split{k}_train_loss"] = [score(folds[k]["train_loss"])]
        results[f"split{k}_test_epochs"] = [folds[k]["epochs_run"]]
    fit_times = [folds[k]["fit_time"] for k in range(settings.cv)]
    results["mean_fit_time"] = [float(np.mean(fit_times))]
    results["std_fit_time"] = [float(np.std(fit_times))]
    results["mean_score_time"] = [float(np.mean([folds[k]["score_time"] for k in range(settings.cv)]))]
    row = _row_from_results(results, 0, point, settings, metric="loss")
    if all("val_accuracy" in folds[k] for k in range(settings.cv)):
        # Validation accuracy (McGill's code's score); folds computed before it was kept lack it.
        for kind, name in (("val", "val_accuracy"), ("train", "train_accuracy")):
            values = [float(folds[k][name]) for k in range(settings.cv)]
            for k, value in enumerate(values):
                row[f"split{k}_{kind}_accuracy"] = value
            row[f"mean_{kind}_accuracy"] = float(np.mean(values)) if all(map(math.isfinite, values)) else math.nan
    return row


def order_columns(columns, cv):
    """The fixed column order of gridsearch.csv (records on disk store rows as sorted-key JSON)."""
    lead = ["experiment", "optimizer", "learning_rate", "beta_2", "bias_correction", "schedule", "loss",
            "cv", "epochs", "seed", "engine"]
    for kind in ("test", "train"):
        lead += [f"split{k}_{kind}_score" for k in range(cv)] + [f"mean_{kind}_score", f"std_{kind}_score"]
    lead += ["mean_val_loss", "mean_train_loss"]
    for kind in ("val", "train"):
        lead += [f"split{k}_{kind}_accuracy" for k in range(cv)] + [f"mean_{kind}_accuracy"]
    lead += [f"split{k}_epochs_run" for k in range(cv)] + ["mean_epochs_run"]
    lead += ["mean_fit_time", "std_fit_time", "mean_score_time", "iter", "n_resources", "diverged"]
    columns = list(columns)
    return [c for c in lead if c in columns] + [c for c in columns if c not in lead]


def select_best(frame, score="loss"):
    """``{optimizer: {"learning_rate", "beta_2"[, "bias_correction"]}}``: per optimizer the
    non-diverged point with the smallest mean validation loss (McGill §IV-A), or with
    ``score="accuracy"`` the highest mean validation accuracy (McGill's code: GridSearchCV scored
    their Keras 2 wrapper's accuracy), ties going to the first point in scikit-learn's
    ``ParameterGrid`` order for their grid (β2 outer, α inner), as ``GridSearchCV.best_index_``
    does. With halving only the candidates that reached the most epochs compete. Optimizers whose
    every point diverged are left out."""
    best = {}
    for optimizer, group in frame.groupby("optimizer", sort=False):
        group = group[~group["diverged"].astype(bool)]
        if "n_resources" in group and group["n_resources"].notna().any():
            group = group[group["n_resources"] == group["n_resources"].max()]
        if group.empty:
            continue
        if score == "accuracy":
            group = group.sort_values(["beta_2", "learning_rate"], kind="stable")
            if group["mean_val_accuracy"].isna().all():
                continue
            row = group.loc[group["mean_val_accuracy"].idxmax()]
        else:
            row = group.loc[group["mean_val_loss"].idxmin()]
        choice = {"learning_rate": float(row["learning_rate"]), "beta_2": float(row["beta_2"])}
        if str(row.get("bias_correction", "default")) in ("on", "off"):
            choice["bias_correction"] = row["bias_correction"] == "on"
        best[optimizer] = choice
    return best
