"""The suite from Python: load every result of a folder, run an experiment, compare your optimizer.

Each function calls the library the commands call, so a result made here is the result
``replicate`` makes (same ids, same files, same verification); see ``docs/api.md``.

* :func:`load_results` — one tidy DataFrame of every experiment's history under a results folder,
  each ``history.csv`` verified against its run files as ``replicate report`` verifies it;
* :func:`train` — ``replicate train`` (:func:`replication.trainer.train_experiment`);
* :func:`gridsearch` — ``replicate gridsearch``: the grid search and its outputs;
* :func:`compare` — your own ``keras.optimizers.Optimizer`` subclass against Adam and AMSGrad
  under an experiment's protocol: its grid search, then its final runs.

Nothing is imported here until a function is called: ``import replication`` stays light.
"""
from __future__ import annotations

from pathlib import Path

from .registry import COMPARED

__all__ = ["load_results", "train", "gridsearch", "compare", "optimizer_path", "LEADING_COLUMNS"]

# The tidy frame's first columns; the history's other columns (metrics, hyperparameters) follow.
LEADING_COLUMNS = ["experiment", "optimizer", "run", "epoch"]


def load_results(folder="results"):
    """Every experiment's ``history.csv`` under ``folder`` as one tidy DataFrame, one row per
    (experiment, optimizer, bias correction, run, epoch): columns :data:`LEADING_COLUMNS`, then the
    rest of :data:`replication.results.HISTORY_DTYPES` (metrics, hyperparameters, ``diverged``)
    and any extra columns (the VAE's ELBO terms, CIFAR-10's exact-test metrics; NaN elsewhere).

    Each file is read with :func:`replication.results.load_history`, which checks it against the
    run files its ``train.json`` lists (sha256 and rows in each run's sidecar): a hand-edited,
    truncated or column-dropped history raises :class:`replication.errors.UserError` naming it.
    Folders with only a grid search are skipped; an empty frame when there is no history at all."""
    import pandas as pd

    from . import results

    folder = Path(folder)
    frames = [results.load_history(folder / name) for name in results.list_experiments(folder)
              if (folder / name / "history.csv").is_file()]
    if not frames:
        return pd.DataFrame(columns=[*LEADING_COLUMNS, *(c for c in results.HISTORY_DTYPES if c not in LEADING_COLUMNS)])
    frame = pd.concat(frames, ignore_index=True, sort=False)
    return frame[[*LEADING_COLUMNS, *(c for c in frame.columns if c not in LEADING_COLUMNS)]]


def optimizer_path(optimizer) -> str:
    """The name the suite knows ``optimizer`` by: a name as it is (``"adam"``, ``"mypkg.opt:MyOpt"``,
    an entry point's name), a class as ``module:QualName``. A class must be importable by that path
    (defined in a module, not in ``__main__`` or a function), since runs record it and reruns load
    it: a :class:`UserError` otherwise."""
    from .errors import UserError

    if isinstance(optimizer, str):
        return optimizer
    if not isinstance(optimizer, type):
        raise UserError(f"optimizer must be a name or a class, got {type(optimizer).__name__}")
    path = f"{optimizer.__module__}:{optimizer.__qualname__}"
    if optimizer.__module__ == "__main__" or "<locals>" in optimizer.__qualname__:
        raise UserError(f"{path} cannot be loaded again by name; define the class in a module on PYTHONPATH")
    return path


def train(experiment, **options):
    """Train ``experiment`` (a name or an :class:`~replication.experiments.Experiment`) as
    ``replicate train`` does and return its history (the DataFrame ``history.csv`` holds).

    ``options`` are :func:`replication.trainer.train_experiment`'s: ``optimizers`` (names, a
    user's ``module:Class``, or classes), ``runs``, ``epochs``, ``seed``, ``out_dir`` (default
    ``results``), ``data_dir``, ``learning_rate``, ``beta_2``, ``schedule``, ``params``, ``force``,
    ``progress`` (default False here: no lines on stderr)..."""
    from .trainer import train_experiment

    options.setdefault("progress", False)
    if options.get("optimizers") is not None:
        options["optimizers"] = [optimizer_path(o) for o in options["optimizers"]]
    return train_experiment(experiment, **options)


def gridsearch(experiment, *, optimizers=COMPARED, learning_rates=None, beta_2s=None, cv=3, epochs=None,
               seed=0, engine="auto", out="results", data_dir=None, force=False, n_jobs=1, bias_correction=None,
               quiet=True) -> dict:
    """Grid-search ``experiment`` as ``replicate gridsearch`` does (McGill §IV-A: every (α, β2) of
    the grid, ``cv``-fold cross-validation) and write the same files. ``learning_rates`` and
    ``beta_2s`` default to McGill's grid; ``optimizers`` may hold a user's ``module:Class`` or a
    class (the stacked engine stacks only the built-ins: ``engine="auto"`` then takes GridSearchCV).

    Returns ``{"folder": Path, "gridsearch": DataFrame of gridsearch.csv, "best_params": dict of
    best_params.json}``."""
    from gridsearch.experiment import search_experiment
    from gridsearch.search import DEFAULT_BETA_2S, DEFAULT_LEARNING_RATES

    from . import results
    from .commands.gridsearch import say_choices
    from .io import read_json

    name = experiment if isinstance(experiment, str) else experiment.name
    # The library function the command calls, so the checks, the engine choice and every file
    # written are the command's; and the lines it prints after the search (the choices, the files).
    say_choices(search_experiment(
        name, out=out, optimizers=[optimizer_path(o) for o in optimizers],
        learning_rates=learning_rates or DEFAULT_LEARNING_RATES, beta_2s=beta_2s or DEFAULT_BETA_2S,
        bias_correction=bias_correction, cv=cv, epochs=epochs, seed=seed, n_jobs=n_jobs, engine=engine,
        data_dir=data_dir, force=force, progress=not quiet,
    ))
    folder = Path(out) / name
    best = folder / "best_params.json"
    return {"folder": folder, "gridsearch": results.load_gridsearch(folder),
            "best_params": read_json(best) if best.is_file() else {}}


def compare(optimizer, experiment, *, against=COMPARED, search=True, out="results", runs=None,
            epochs=None, learning_rates=None, beta_2s=None, cv=3, gridsearch_epochs=None, seed=0, data_dir=None,
            force=False) -> dict:
    """Your optimizer (a ``keras.optimizers.Optimizer`` subclass, or its ``module:Class`` path)
    against ``against`` under ``experiment``'s protocol: with ``search`` the grid search of every
    one of them first (its α and β2 then train the final runs, as for the built-ins), then the
    experiment's runs (``runs``/``epochs`` override the spec's), paired by seed.

    Returns ``{"history": DataFrame, "summary": per-optimizer final-epoch means and stds
    (:func:`replication.results.summarize_final`), "best_params": dict or None, "name": the name
    the optimizer has in the files}``. ``replicate report --out OUT`` then shows it too."""
    from . import results

    name = optimizer_path(optimizer)
    optimizers = [*dict.fromkeys(against), name]
    best = None
    if search:
        best = gridsearch(experiment, optimizers=optimizers, learning_rates=learning_rates, beta_2s=beta_2s, cv=cv,
                          epochs=gridsearch_epochs, seed=seed, out=out, data_dir=data_dir, force=force)["best_params"]
    history = train(experiment, optimizers=optimizers, runs=runs, epochs=epochs, seed=seed, out_dir=out,
                    data_dir=data_dir, force=force)
    return {"history": history, "summary": results.summarize_final(history), "best_params": best, "name": name}
