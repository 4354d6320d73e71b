"""The tuning stage (McGill §IV-A): a scikeras ``KerasClassifier`` factory, ``GridSearchCV`` jobs
over (α, β2[, bias correction]) per optimizer, the stacked engine that trains a fold's grid points
as one model (same fits, several times faster), and their export (tidy CSV, best params, Table I);
``search_experiment`` runs a whole search of an experiment and writes all of it (what ``replicate
gridsearch``, the demo and ``replication.gridsearch`` call).

Names are imported lazily so that ``replicate --help`` does not pay for importing Keras.
"""
import importlib

_EXPORTS = {
    "SEARCH_OPTIMIZERS": "estimator",
    "OneHotKerasClassifier": "estimator",
    "ValidationLoss": "estimator",
    "make_estimator": "estimator",
    "DEFAULT_BETA_2S": "search",
    "ENGINES": "search",
    "resolve_engine": "search",
    "fit_fold": "stacked",
    "why_not_stackable": "stacked",
    "DEFAULT_LEARNING_RATES": "search",
    "GridPoint": "search",
    "SearchSettings": "search",
    "make_grid": "search",
    "run_grid_search": "search",
    "select_best": "search",
    "validate_grid": "search",
    "PointStore": "store",
    "collect_table": "store",
    "write_search_outputs": "store",
    "write_table": "store",
    "SearchResult": "experiment",
    "search_experiment": "experiment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
