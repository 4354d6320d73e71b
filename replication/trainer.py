"""The repeated-run trainer: every optimizer × run of an experiment, tidy CSVs, resumable.

McGill §IV: once α and β2 are tuned, each model is trained 5 times with Adam and 5 times with
AMSGrad, recording training and test loss and accuracy after every epoch; Reddi et al. plot the
training loss against *iterations* (Fig. 2), so that is recorded too, thinned.

Outputs, under ``<out>/<experiment>/``::

    history.csv                 one row per (optimizer, run, epoch), columns HISTORY_COLUMNS
    iterations.csv              training loss against iteration, ≤ ``max_points`` rows per run
    train.json                  resolved spec, hyperparameters, seeds, provenance, start/end time
    runs/<optimizer>-bc<on|off>-run<k>-<id>.csv             that run's epoch rows
    runs/<optimizer>-bc<on|off>-run<k>-<id>.iterations.csv  that run's iteration rows
    runs/<optimizer>-bc<on|off>-run<k>-<id>.json            its sidecar, written last = "finished",
                                                            with the row count and sha256 of both CSVs

``<id>`` hashes everything that changes a run's numbers (data, model and its kwargs, loss and, for
a redefined loss, its definition, batch size, α, schedule, β1, β2, ε, bias correction, epochs, seed,
the Keras backend unless TensorFlow: :mod:`replication.store`), so changing a flag never reuses an
old run, and one ``--out`` holds one backend's runs of an experiment (``train`` refuses another's).
The flip augmentation enters as the model kwarg ``augment_flip=True`` (only when on, so
runs without it keep their ids); ``linear-decay``'s length is epochs × steps per epoch, both hashed.
A run's files are written (atomically) only when it ends, so a killed run leaves no partial rows;
it resumes from its last finished epoch (``runs/<stem>.checkpoint.npz``, :mod:`replication.run`,
deleted when the run finishes); ``history.csv``/``iterations.csv`` are rebuilt from the finished run files of the
requested optimizers × runs in a fixed order, so rerunning the same command skips everything and
leaves them and ``train.json`` as they are (:mod:`replication.store`: nothing computed, nothing
rewritten). A run is skipped only if its files still match its sidecar (:func:`check_run_files`); one
cut short or edited is retrained, with a line saying which and why. Several processes running the command on one ``--out`` share the runs: each
is claimed before it is trained (``runs/<stem>.lock``, :mod:`replication.claims`), a run claimed
elsewhere is waited for at the end, and ``history.csv``/``iterations.csv``/``train.json`` are
written under the lock of ``history.csv``.

Metric conventions:

* ``loss``/``accuracy`` are the *training* values as Keras reports them for the epoch: the running
  mean over the epoch's mini-batches while the weights move (not a re-evaluation at epoch end).
* ``test_loss``/``test_accuracy`` evaluate the whole test set after the epoch, with the same
  compiled step Keras uses for validation (one large batch size): the validation set *is* the
  test set, as in Korzeniowski's and McGill's curves. Training-only layers (dropout, the
  left-right flip of ``Experiment.flip``) are off there.
* ``iteration`` counts optimizer updates so far (Keras's ``optimizer.iterations``).
* Targets are one-hot; accuracy is categorical accuracy (argmax), whatever the loss. The VAE
  (loss ``elbo``) is trained on its own inputs: ``loss``/``test_loss`` are −ELBO per example in
  nats, its two terms follow in ``reconstruction, kl, test_reconstruction, test_kl``
  (:data:`ELBO_COLUMNS`), and the accuracy columns are NaN.
* A run whose training loss becomes NaN/inf stops at once and is a *result*: every row of the run
  has ``diverged=True``, the last epoch holds the NaN losses, the other runs go on.

Seeds: run ``k`` uses :func:`derive_seed` ``(seed, k)`` for *every* optimizer, so Adam's and
AMSGrad's run ``k`` start from the same initial weights and see the same mini-batch order (a paired
comparison). Runs are trained pair by pair (run 0 of every optimizer, then run 1, ...), so a command
stopped part way leaves complete pairs to compare. ``keras.utils.set_random_seed`` fixes initialisation and the dropout/flip seed
generators; the batch order of each epoch is :func:`replication.run.epoch_order` ``(seed, epoch)``.
On CPU the same seed reproduces the same history exactly, interrupted and resumed or not.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import claims, io, recycle, store
from .errors import UserError
from .experiments import PROTOCOL_DEFAULTS, loss_identity
from .hyperparameters import PARAMS_KEYS, params_problem
from .optimizers import OPTIMIZERS, get_optimizer_class, optimizer_identity
from .progress import Progress, format_seconds, warn
from .runfiles import _name, assemble, backend_conflict, check_run_files, configuration_conflict, run_paths
from .run import (  # noqa: F401 - one run lives in replication.run; re-exported for callers
    DEFAULT_EPSILON,
    DEFAULT_MAX_POINTS,
    ELBO_COLUMNS,
    EVAL_BATCH_SIZE,
    EXACT_COLUMNS,
    FIT_SETTINGS,
    HISTORY_COLUMNS,
    ITERATION_COLUMNS,
    JIT_MIN_STEPS,
    remove_checkpoint,
    _thin_blocks,
    compile_model,
    train_run,
)

__all__ = [
    "HISTORY_COLUMNS",
    "ELBO_COLUMNS",
    "ITERATION_COLUMNS",
    "FIT_SETTINGS",
    "RunConfig",
    "derive_seed",
    "resolve_hyperparameters",
    "read_params_file",
    "train_run",
    "train_experiment",
    "compile_model",
]

_PROTOCOL_DEFAULTS = dict(PROTOCOL_DEFAULTS)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run's numbers (its identity) plus where it belongs."""

    experiment: str
    dataset: str
    model: str
    model_kwargs: tuple
    loss_function: str
    batch_size: int
    epochs: int
    optimizer: str
    learning_rate: float
    schedule: str
    beta_1: float
    beta_2: float
    epsilon: float
    bias_correction: bool
    run: int
    seed: int
    # The protocol of McGill's code (issue 27); at their defaults they stay out of to_dict, so
    # runs trained before these fields existed keep their ids.
    input_scale: str = _PROTOCOL_DEFAULTS["input_scale"]
    split: str = _PROTOCOL_DEFAULTS["split"]
    decay: float = _PROTOCOL_DEFAULTS["decay"]  # the "time-decay" schedule's d
    # The Keras backend (replication.store, identity schema 2): a run trained under JAX is never read
    # back as TensorFlow's. Out of to_dict for "tensorflow", so every TensorFlow run keeps its id.
    backend: str = store.DEFAULT_BACKEND
    # A user's optimizer (``module:Class`` or an entry point): its class path and get_config() at
    # this run's hyperparameters (sorted JSON), so a changed class default is another run. Empty
    # for the built-ins, and then out of to_dict: their ids stay as they were.
    optimizer_class: str = ""
    optimizer_config: str = ""

    def to_dict(self) -> dict:
        defaults = {key: _PROTOCOL_DEFAULTS[key] for key in ("input_scale", "split", "decay")}
        d = store.identity(dataclasses.asdict(self), {**defaults, "backend": store.DEFAULT_BACKEND,
                                                      "optimizer_class": "", "optimizer_config": ""})
        d["model_kwargs"] = {k: v for k, v in self.model_kwargs}
        # A redefined loss (replication.losses.LOSS_DEFINITIONS) changes the run id: runs trained
        # on the old definition are never read back as finished.
        d.update(loss_identity(self.loss_function))
        return d

    @property
    def run_id(self) -> str:
        return store.identity_hash(self.to_dict())

    @property
    def stem(self) -> str:
        bc = "on" if self.bias_correction else "off"
        # A user's "module:Class" becomes "module-Class" in file names (the id tells classes apart).
        name = "".join(c if c.isalnum() or c in "._-" else "-" for c in self.optimizer)
        return f"{name}-bc{bc}-run{self.run}-{self.run_id}"


def derive_seed(seed: int, run: int) -> int:
    """Seed of run ``run`` under base seed ``seed``: deterministic, well spread, < 2**31."""
    state = np.random.SeedSequence([int(seed), int(run)]).generate_state(1, dtype=np.uint32)[0]
    return int(state) % (2**31 - 1)


# ---------------------------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------------------------


def _as_floats(values: dict) -> dict:
    """A checked params entry with its numbers as floats (JSON may hold ``1`` for α = 1.0)."""
    return {key: value if key == "bias_correction" else float(value) for key, value in values.items()}


def read_params_file(path) -> dict:
    """Read a hyperparameter file: ``{"adam": {"learning_rate": .., "beta_2": ..}, ...}`` (the
    grid search's ``best_params.json`` format) or one flat ``{"learning_rate": .., "beta_2": ..}``
    applied to every optimizer (returned under the key ``"*"``). Bad files are a UserError
    (:func:`replication.hyperparameters.params_problem` says why)."""
    data = io.read_json(path)
    problem = params_problem(data, tuple(OPTIMIZERS))  # bools, strings, bounds, stray keys
    if problem:
        raise UserError(f"{path}: {problem}")
    if any(key in PARAMS_KEYS for key in data):  # the flat layout
        return {"*": _as_floats(data)}
    return {name: _as_floats(values) for name, values in data.items()}


def resolve_hyperparameters(experiment, optimizer, *, flags=None, params=None, best_params=None):
    """α, β2 and bias correction for ``optimizer``, each from the first source that sets it, in
    this order: ``flags`` (``{"learning_rate", "beta_2", "bias_correction"}``, None = unset),
    ``params`` (a parsed ``--params`` file), ``best_params`` (the grid search's
    ``best_params.json``, which holds bias correction only when the search fixed or searched it),
    the spec (bias correction: on, as Keras). Returns ``{"learning_rate", "beta_2",
    "bias_correction", "source": {key: source name}}``."""
    keys = PARAMS_KEYS
    resolved = {**experiment.default_hyperparameters(optimizer), "bias_correction": True}
    source = {key: "spec" for key in keys}
    layers = (
        ("best_params.json", (best_params or {}).get(optimizer, {})),
        ("params file", {**(params or {}).get("*", {}), **(params or {}).get(optimizer, {})}),
        ("flag", {k: v for k, v in (flags or {}).items() if v is not None}),
    )
    for name, values in layers:
        for key in keys:
            if key in values:
                resolved[key] = values[key]
                source[key] = name
    return {"learning_rate": float(resolved["learning_rate"]), "beta_2": float(resolved["beta_2"]),
            "bias_correction": bool(resolved["bias_correction"]), "source": source}


def describe_hyperparameters(hyper, *, params_path=None, best_path=None) -> list[str]:
    """One line per optimizer of :func:`resolve_hyperparameters`' results: each value and where it
    came from, e.g. ``adam: α 0.1, β2 0.999 from best_params.json at results/x/best_params.json;
    bias correction on (default)``. ``params_path`` names the ``--params`` file, if any."""
    where = {
        "flag": "command-line flag",
        "params file": f"--params {params_path}" if params_path else "params",
        "best_params.json": f"best_params.json at {best_path}" if best_path else "best_params.json",
        "spec": "the experiment's spec",
    }
    lines = []
    for name, values in hyper.items():
        text = {
            "learning_rate": f"α {values['learning_rate']:g}",
            "beta_2": f"β2 {values['beta_2']:g}",
            "bias_correction": f"bias correction {'on' if values['bias_correction'] else 'off'}",
        }
        groups = {}  # "from SOURCE" -> the values it set, in the order α, β2, bias correction
        for key in ("learning_rate", "beta_2", "bias_correction"):
            source = values["source"][key]
            label = ("(default, as Keras)" if key == "bias_correction" and source == "spec"
                     else f"from {where.get(source, source)}")
            groups.setdefault(label, []).append(text[key])
        lines.append(f"{name}: " + "; ".join(f"{', '.join(parts)} {label}" for label, parts in groups.items()))
    return lines


# ---------------------------------------------------------------------------------------------
# Many runs, on disk
# ---------------------------------------------------------------------------------------------
def _checkpoint_path(runs_dir: Path, config: RunConfig) -> Path:
    # Per-epoch state of an unfinished run (replication.run); deleted when the run finishes.
    return runs_dir / f"{config.stem}.checkpoint.npz"


class _EpochClock:
    """Epoch lines between the run lines: the epoch within the run, with the ETA of the run and of
    the whole command. At most one line per ``interval`` seconds (every epoch of a CifarNet run; a
    few per run for MNIST; none for the digits demos).

    The ETAs come from the wall time per epoch (``clock`` between one finished epoch and the next:
    what the user waits for, data reordering, ``fit``'s set-up and the checkpoint included), not
    from ``epoch_seconds`` (training and test passes only), which the line shows too."""

    def __init__(self, bar, epochs_left, interval=10.0, clock=time.monotonic):
        self.bar, self.left, self.interval, self.clock = bar, int(epochs_left), float(interval), clock
        self.done, self.wall, self.last = 0, 0.0, clock()

    def for_run(self, label):
        first = [True]
        since = [self.clock()]  # the run's start: its first epoch's wall time includes the model build

        def on_epoch(epoch, epochs, seconds):
            now = self.clock()
            wall, since[0] = now - since[0], now
            if first[0]:
                first[0] = False
                if epoch > 1:  # resumed from a checkpoint: those epochs need no time
                    self.left -= epoch - 1
                    self.bar.note(f"{label}: resumed after epoch {epoch - 1}/{epochs} (checkpoint)")
            self.done += 1
            self.left -= 1
            self.wall += wall
            mean = self.wall / self.done
            if epoch < epochs and now - self.last >= self.interval:
                self.last = now
                self.bar.note(f"{label} epoch {epoch}/{epochs} in {format_seconds(seconds)}, "
                              f"{format_seconds(wall)} wall (run ETA {format_seconds(mean * (epochs - epoch))}, "
                              f"all ETA {format_seconds(mean * max(self.left, 0))})")

        return on_epoch


def _check_run(paths, config):
    """``(sidecar, None)`` (parsed) when ``paths`` hold a finished, intact run of ``config``;
    ``(None, None)`` for a run that never finished (no sidecar: not started, or killed), which is
    simply trained; ``(None, why)`` for damaged files, retrained with a line saying ``why``."""
    csv_path, it_path, json_path = paths
    if not json_path.exists():
        return None, None
    try:
        sidecar = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, f"its sidecar {_name(json_path)} is not valid JSON"
    if not isinstance(sidecar, dict) or sidecar.get("config") != json.loads(json.dumps(config.to_dict(), default=str)):
        return None, f"its sidecar {_name(json_path)} records another configuration"
    why = check_run_files(csv_path, it_path, sidecar)
    return (None, why) if why else (sidecar, None)


def _label(config) -> str:
    return f"{config.optimizer} run {config.run} (seed {config.seed})"


def _finished_since(runs_dir, config, since=None) -> bool:
    """Whether the run of ``config`` is finished, its files intact; with ``since`` (a ``time.time()``)
    only if it finished since then: under ``--force`` a run that another process retrained during
    this call is finished, the one this call was asked to redo is not."""
    paths = run_paths(runs_dir, config.stem)
    if _check_run(paths, config)[0] is None:
        return False
    try:
        return since is None or paths[2].stat().st_mtime >= since
    except OSError:
        return False


def train_experiment(
    experiment,
    *,
    optimizers=None,
    runs=None,
    seed=0,
    out_dir="results",
    data_dir=None,
    epochs=None,
    learning_rate=None,
    beta_2=None,
    schedule=None,
    bias_correction=None,
    loss=None,
    epsilon=None,
    flip=None,
    params=None,
    force=False,
    progress=True,
    fit_settings=None,
    max_points=DEFAULT_MAX_POINTS,
    callbacks=(),
    dataset=None,
) -> pd.DataFrame:
    """Train ``optimizers`` × ``runs`` of ``experiment`` (an ``Experiment`` or its name), write
    ``<out_dir>/<name>/{history.csv, iterations.csv, train.json, runs/}`` and return the history.

    ``optimizers`` defaults to the spec's (``Experiment.optimizers``); ``epochs``, ``schedule``,
    ``loss``, ``runs``, ``epsilon`` (ε, spec default 1e-7 or the source's, e.g. Pérez's 1e-8) and
    ``flip`` (left-right flip augmentation) override the spec when not None;
    ``learning_rate``/``beta_2``/``bias_correction`` override every optimizer's value; ``params`` is
    a parsed params file (:func:`read_params_file`) or a path to one. Precedence of α/β2/bias
    correction: arguments > ``params`` > ``<out_dir>/<name>/best_params.json`` > spec (bias
    correction on). Finished runs are skipped unless ``force``.
    ``dataset`` may pass an already loaded ``Dataset`` (skips :func:`load_dataset`).
    """
    plan = plan_training(experiment, optimizers=optimizers, runs=runs, seed=seed, out_dir=out_dir,
                         epochs=epochs, learning_rate=learning_rate, beta_2=beta_2, schedule=schedule,
                         bias_correction=bias_correction, loss=loss, epsilon=epsilon, flip=flip, params=params)
    if not force:
        _refuse_conflicts(plan)
    started_at, since = io.now_iso(), time.time()
    started_at = recycle.carried(plan.spec.name)[1] or started_at  # an earlier process of this command began
    bar = Progress(len(plan.configs), f"train {plan.spec.name}") if progress else None
    finished, damaged = _read_back(plan, force)
    if dataset is None and len(finished) < len(plan.configs):
        dataset = _load(plan.spec.dataset, data_dir)  # before anything is printed: a missing file is one line
    if dataset is not None:
        from .datasets import prepare_dataset

        dataset = prepare_dataset(dataset, plan.spec.input_scale, plan.spec.split)
    if progress:  # say once what is being run, and where each value comes from
        for line in describe_hyperparameters(plan.hyper, params_path=plan.params_path, best_path=plan.best_path):
            print(f"train {plan.spec.name}: {line}", file=sys.stderr, flush=True)
    clock = _EpochClock(bar, sum(c.epochs for c in plan.configs if c.stem not in finished)) if bar else None
    # trained pair by pair (stable sort: run k of every optimizer, then k + 1), so a stop leaves whole pairs
    in_pairs = sorted(plan.configs, key=lambda c: c.run)
    for config in in_pairs:
        if config.stem in finished and bar:
            bar.skip(_label(config))
    train_one = functools.partial(_train_one, plan=plan, dataset=dataset, damaged=damaged, force=force, bar=bar,
                                  clock=clock, fit={"fit_settings": fit_settings, "max_points": max_points,
                                                    "callbacks": callbacks})

    def work(config):  # between two runs, a command grown too big continues in a fresh process
        train_one(config)
        recycle.check(plan.spec.name, config.stem, started_at)
    # Several processes on one --out share the runs: each run is claimed before it is trained.
    trained = {c.stem for c in claims.share(
        [c for c in in_pairs if c.stem not in finished], lock_paths=lambda c: [plan.runs_dir / f"{c.stem}.lock"],
        is_done=lambda c: _finished_since(plan.runs_dir, c, since if force else None), work=work,
        say=lambda text: warn(bar, text), label=_label,
        found_done=lambda c: bar.skip(f"{_label(c)}: trained by another process") if bar else None)}
    return _assemble_experiment(plan, trained, fit_settings, started_at)


def _refuse_conflicts(plan):
    """A :class:`UserError` when this call would replace the results ``train.json`` lists in
    ``history.csv``: runs of another Keras backend (one backend per folder, so every number of
    ``history.csv`` comes from one), runs whose ids predate the backend (``replicate migrate``), or
    another configuration."""
    backend = plan.configs[0].backend if plan.configs else store.DEFAULT_BACKEND
    why = backend_conflict(plan.exp_dir, backend)
    if why:
        raise UserError(why)
    conflict = configuration_conflict(plan.exp_dir, {c.stem: c.to_dict() for c in plan.configs})
    if conflict:  # history.csv would silently switch to this call's configuration
        raise UserError(f"{plan.exp_dir} holds the results of another configuration ({conflict}); train this one "
                        "into another --out, or pass --force to replace them")


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    """What one ``train`` call will do: the experiment as overridden, its folders, each optimizer's
    hyperparameters (with their sources), the seeds and the run configurations, optimizer by
    optimizer (the order of train.json's ``run_files``)."""

    spec: object
    optimizers: list
    exp_dir: Path
    hyper: dict
    seed: int
    seeds: dict
    configs: list
    params_path: object = None
    best_path: object = None

    @property
    def runs_dir(self) -> Path:
        return self.exp_dir / "runs"


def plan_training(experiment, *, optimizers=None, runs=None, seed=0, out_dir="results", epochs=None,
                  learning_rate=None, beta_2=None, schedule=None, bias_correction=None, loss=None,
                  epsilon=None, flip=None, params=None) -> TrainPlan:
    """The :class:`TrainPlan` of :func:`train_experiment`'s arguments; nothing is trained or written.
    A :class:`UserError` for an unknown experiment or optimizer, or a missing search choice."""
    from .experiments import get_experiment, with_overrides

    if isinstance(experiment, str):
        try:
            experiment = get_experiment(experiment)
        except (KeyError, ValueError) as exc:
            raise UserError(str(exc).strip("'\"")) from None
    optimizers = list(dict.fromkeys(experiment.optimizers if optimizers is None else optimizers))
    if not optimizers:
        raise UserError(f"unknown optimizer (none given); choose from {', '.join(OPTIMIZERS)} or module:Class")
    for name in optimizers:
        get_optimizer_class(name)  # a built-in or a user's Optimizer subclass, else one line (UserError)
    spec = with_overrides(experiment, epochs=epochs, schedule=schedule, loss=loss, runs=runs,
                          epsilon=None if epsilon is None else float(epsilon), flip=flip)
    # Checked, not made: the first finished run's files make the folders, so a start that fails
    # (missing data, bad params file) leaves no empty <out>/<experiment>/runs/ behind.
    exp_dir = io.check_writable(Path(out_dir) / spec.name)
    params_path = None
    if isinstance(params, (str, Path)):
        params_path, params = params, read_params_file(params)
    flags = {"learning_rate": learning_rate, "beta_2": beta_2,
             "bias_correction": None if bias_correction is None else bool(bias_correction)}
    best_path, best_params = _search_choice(spec, out_dir, exp_dir, flags, params)
    hyper = {name: resolve_hyperparameters(spec, name, flags=flags, params=params, best_params=best_params)
             for name in optimizers}
    seeds = {k: derive_seed(seed, k) for k in range(int(spec.runs))}
    backend = store.keras_backend()  # part of each run's identity
    configs = [_run_config(spec, name, hyper[name], k, seeds[k], backend) for name in optimizers for k in seeds]
    return TrainPlan(spec, optimizers, exp_dir, hyper, int(seed), seeds, configs, params_path, best_path)


def _search_choice(spec, out_dir, exp_dir, flags, params):
    """(path of the best_params.json this experiment reads, its parsed choice or None)."""
    # An experiment with ``params_from`` trains at another experiment's search choice.
    best_path = (Path(out_dir) / spec.params_from if spec.params_from else exp_dir) / "best_params.json"
    # McGill's code trained at its param_config.yml whatever its search chose (final_params="spec").
    best_params = read_params_file(best_path) if best_path.exists() and spec.final_params == "search" else None
    both_flags = None not in (flags["learning_rate"], flags["beta_2"])
    if spec.params_from and best_params is None and params is None and not both_flags:
        # Its spec values are McGill's Table I, which its source experiment already trains at:
        # never fall back to them silently.
        raise UserError(
            f"{spec.name} trains at the α and β2 that {spec.params_from}'s grid search chose, and {best_path} "
            f"does not exist: run `replicate gridsearch {spec.params_from}` first (with the same --out), "
            "or give --params FILE or both --learning-rate and --beta2"
        )
    return best_path, best_params


def _run_config(spec, optimizer, hyper, run, seed, backend=store.DEFAULT_BACKEND) -> RunConfig:
    identity = optimizer_identity(optimizer, hyper["learning_rate"], beta_1=float(spec.beta_1),
                                  beta_2=hyper["beta_2"], epsilon=float(spec.epsilon),
                                  bias_correction=hyper["bias_correction"])
    return RunConfig(
        experiment=spec.name, dataset=spec.dataset, model=spec.model, model_kwargs=spec.builder_kwargs,
        loss_function=spec.loss, batch_size=int(spec.batch_size), epochs=int(spec.epochs), optimizer=optimizer,
        learning_rate=hyper["learning_rate"], schedule=spec.schedule, beta_1=float(spec.beta_1),
        beta_2=hyper["beta_2"], epsilon=float(spec.epsilon), bias_correction=hyper["bias_correction"],
        run=run, seed=seed, input_scale=spec.input_scale, split=spec.split,
        decay=float(spec.decay) if spec.schedule == "time-decay" else 0.0, backend=backend, **identity,
    )


def _read_back(plan, force):
    """({stem of each finished, intact run: its sidecar}, {stem: why its files are damaged});
    nothing under ``force``. A run of another Keras backend has another id: it is never read back."""
    finished, damaged = {}, {}  # stem -> its sidecar / why its files are damaged
    for config in plan.configs if not force else ():
        sidecar, why = _check_run(run_paths(plan.runs_dir, config.stem), config)
        if sidecar is not None:
            finished[config.stem] = sidecar
        elif why:
            damaged[config.stem] = why
    return finished, damaged


def _train_one(config, *, plan, dataset, damaged, force, bar, clock, fit):
    """Train the run ``config`` (from its checkpoint if any) and write its files, the sidecar last:
    its presence (with matching config) marks the run finished, and the row counts and checksums
    it records let a rerun tell intact files from damaged ones."""
    csv_path, it_path, json_path = run_paths(plan.runs_dir, config.stem)
    label = _label(config)
    if config.stem in damaged:
        warn(bar, f"{config.optimizer} run {config.run}: {damaged[config.stem]}; retraining")
    checkpoint = _checkpoint_path(plan.runs_dir, config)
    if force:
        remove_checkpoint(checkpoint)
    history, iterations, info = train_run(
        config, dataset, **fit, checkpoint=checkpoint, on_epoch=clock.for_run(label) if clock else None,
        on_note=lambda text: warn(bar, f"{label}: {text}"),
    )
    io.write_csv_atomic(history, csv_path)
    io.write_csv_atomic(iterations, it_path)
    io.write_json_atomic(
        {"config": config.to_dict(), "run_id": config.run_id, "schema": store.SCHEMA, "spec": plan.spec.to_dict(),
         **info, "files": store.manifest((csv_path, it_path)), "provenance": io.provenance()},
        json_path,
    )
    remove_checkpoint(checkpoint)  # the run is finished: its checkpoint is no longer needed
    if bar:
        bar.update(f"{label}: {_run_summary(history, info, plan.spec.loss)} in {info['seconds']:.1f}s")


def _run_summary(history, info, loss) -> str:
    last = history.iloc[-1] if len(history) else None
    if info["diverged"]:
        return f"diverged (NaN loss) at epoch {info['epochs_completed']}"
    if last is None:
        return "no epochs"
    if loss == "elbo":
        return f"test −ELBO {last['test_loss']:.2f} nats, train {last['loss']:.2f}"
    return f"test acc {last['test_accuracy']:.4f}, train loss {last['loss']:.4f}"


def _assemble_experiment(plan, trained, fit_settings, started_at) -> pd.DataFrame:
    """Write ``history.csv``/``iterations.csv`` from the finished run files and ``train.json`` (under
    the lock of ``history.csv``: several processes may finish at once); return the history."""
    spec, configs = plan.spec, plan.configs
    by_command = set(trained) | recycle.carried(spec.name)[0]  # also by this command's earlier processes
    with claims.merging(plan.exp_dir / "history.csv"):  # read the run files and write inside the lock
        history, iterations = assemble(plan.runs_dir, [c.stem for c in configs], plan.optimizers, spec.loss == "elbo")
        store.write_csv(history, plan.exp_dir / "history.csv")  # only if its bytes change
        store.write_csv(iterations, plan.exp_dir / "iterations.csv")
        meta = {
            "experiment": spec.to_dict(),
            "optimizers": plan.optimizers,
            "runs": int(spec.runs),
            "seed": plan.seed,
            "seeds": {str(k): v for k, v in plan.seeds.items()},
            "hyperparameters": {
                name: {**{k: v for k, v in plan.hyper[name].items() if k != "source"},
                       "beta_1": float(spec.beta_1), "epsilon": float(spec.epsilon),
                       "schedule": spec.schedule, "source": plan.hyper[name]["source"]}
                for name in plan.optimizers
            },
            "fit_settings": {**FIT_SETTINGS, **(fit_settings or {})},
            "run_files": [c.stem for c in configs],
            # every run was finished by now (a failed run raises before this point): here or by another process
            "trained": [c.stem for c in configs if c.stem in by_command],
            "skipped": [c.stem for c in configs if c.stem not in by_command],
            "started_at": started_at,
            "finished_at": io.now_iso(),
            "provenance": io.provenance(),
        }
        # A call that trained nothing only read finished runs back: its own times and provenance would
        # overwrite those of the calls that trained them, so an otherwise equal train.json is kept.
        store.write_sidecar(meta, plan.exp_dir / "train.json", computed=bool(meta["trained"]), ignore=_INVOCATION_KEYS)
    return history


# train.json keys that describe the call rather than its runs.
_INVOCATION_KEYS = ("trained", "skipped", "started_at", "finished_at", "provenance")


def _load(name, data_dir):
    from .datasets import load_dataset

    try:
        return load_dataset(name, data_dir=data_dir)
    except FileNotFoundError as exc:
        raise UserError(
            f"data for {name!r} not found ({exc}); pass --data-dir pointing at the folder holding it"
        ) from None
