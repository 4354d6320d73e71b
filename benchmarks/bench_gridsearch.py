"""Where a grid-search fit spends its time, and what the full default search would take.

Measures, on a handful of real fits (a 2/3 fold of the training set, as 3-fold CV trains on):

* ``setup``  : ``KerasClassifier.fit`` entry → first batch (data checks, target encoding, model
               build, compile);
* ``epoch1`` : first epoch, which includes tracing (and XLA compilation with ``jit_compile``);
* ``epoch``  : median steady-state epoch;
* ``score``  : the scorer's two eager forward passes (validation fold + training fold);

and the same for one fold of the stacked engine (25 grid points trained at once as one model),

for several compile settings (Keras's default ``steps_per_execution=1`` without XLA up to XLA with
a whole epoch per call), then runs two fits side by side in two single-threaded worker processes
to measure the throughput of ``--n-jobs 2`` against one two-threaded fit. It projects the full
default search (25 points × 2 optimizers × 3 folds, ``gridsearch_epochs`` epochs, upper bound:
no early stopping) for mnist-logreg + mnist-mlp.

    python benchmarks/bench_gridsearch.py --data-dir ../shared/data [--epochs 3]

Everything is measured in this one run (ratios are meaningful; absolute numbers depend on load).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def _timer_class():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.t_begin = None
            self.epoch_ends = []

        def on_train_begin(self, logs=None):
            self.t_begin = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_ends.append(time.perf_counter())

    return EpochTimer


def time_fit(experiment, X, y, X_val, y_val, *, epochs, jit_compile, steps_per_execution, seed=0):
    """One fit + scoring; returns the breakdown in seconds."""
    from gridsearch.estimator import ValidationLoss, make_estimator
    from replication.experiments import get_experiment

    spec = get_experiment(experiment)
    if steps_per_execution == "epoch":  # as the search does: one call per epoch
        steps_per_execution = -(-len(X) // spec.batch_size)
    timer = _timer_class()()
    est = make_estimator(
        spec, "adam", epochs=epochs, seed=seed, jit_compile=jit_compile,
        steps_per_execution=steps_per_execution, early_stopping=False,
        optimizer__learning_rate=1e-3, optimizer__beta_2=0.999,
    )
    est.set_params(callbacks=list(est.callbacks) + [timer])
    t0 = time.perf_counter()
    est.fit(X, y)
    t1 = time.perf_counter()
    scorer = ValidationLoss(spec.loss)
    val = scorer(est, X_val, y_val)
    scorer(est, X, y)  # the train score GridSearchCV keeps
    t2 = time.perf_counter()
    ends = timer.epoch_ends
    steady = [b - a for a, b in zip(ends, ends[1:])]
    return {
        "setup": timer.t_begin - t0,
        "epoch1": ends[0] - timer.t_begin,
        "epoch": statistics.median(steady) if steady else float("nan"),
        "score": t2 - t1,
        "total": t2 - t0,
        "val_loss": -val,
    }


def _fit_in_worker(args):
    """Two fits in a row in one worker; the second is the measured one (the first pays the
    worker's one-off TensorFlow/XLA start-up, as only the first fit of a long search does)."""
    experiment, data_dir, epochs, jit, spe = args
    X, y, Xv, yv = _fold(experiment, data_dir)
    time_fit(experiment, X, y, Xv, yv, epochs=epochs, jit_compile=jit, steps_per_execution=spe)
    t0 = time.perf_counter()
    row = time_fit(experiment, X, y, Xv, yv, epochs=epochs, jit_compile=jit, steps_per_execution=spe)
    row["started"] = t0
    return row


_CACHE = {}


def _fold(experiment, data_dir):
    """A stratified 2/3 | 1/3 split of the training set, float32 once."""
    if experiment in _CACHE:
        return _CACHE[experiment]
    from sklearn.model_selection import StratifiedKFold

    from replication.datasets import load_dataset
    from replication.experiments import get_experiment

    spec = get_experiment(experiment)
    data = load_dataset(spec.dataset, data_dir)
    X = np.asarray(data.x_train, dtype=np.float32)
    y = np.asarray(data.y_train)
    train, val = next(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    _CACHE[experiment] = (X[train], y[train], X[val], y[val])
    return _CACHE[experiment]


def time_stacked_fold(experiment, X, y, X_val, y_val, *, epochs, members=25, seed=0):
    """One fold of the stacked engine: ``members`` grid points (McGill's 25 by default) trained at
    once with the search's settings (XLA, one call per epoch); the same breakdown as time_fit, for
    the whole fold."""
    from gridsearch.search import DEFAULT_BETA_2S, DEFAULT_LEARNING_RATES
    from gridsearch.stacked import fit_fold
    from replication.experiments import get_experiment

    spec = get_experiment(experiment)
    grid = [(a, b) for a in DEFAULT_LEARNING_RATES for b in DEFAULT_BETA_2S][:members]
    onehot = np.eye(10, dtype=np.float32)
    timer = _timer_class()()
    t0 = time.perf_counter()
    results = fit_fold(spec, "adam", grid, X, onehot[y], X_val, onehot[y_val], epochs=epochs, seed=seed,
                       early_stopping=False, jit_compile=True, steps_per_execution=-(-len(X) // spec.batch_size),
                       callbacks=[timer])
    t2 = time.perf_counter()
    ends = timer.epoch_ends
    steady = [b - a for a, b in zip(ends, ends[1:])]
    score = sum(r["score_time"] for r in results)
    return {
        "setup": timer.t_begin - t0,
        "epoch1": ends[0] - timer.t_begin,
        "epoch": statistics.median(steady) if steady else float("nan"),
        "score": score,
        "total": t2 - t0,
        "members": len(grid),
    }


def project(row, n_fits, epochs, parallel_speedup):
    per_fit = row["setup"] + row["epoch1"] + (epochs - 1) * row["epoch"] + row["score"]
    return n_fits * per_fit / parallel_speedup


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measured fit (>= 2)")
    parser.add_argument("--experiments", nargs="+", default=["mnist-mlp", "mnist-logreg"])
    parser.add_argument("--skip-parallel", action="store_true")
    args = parser.parse_args(argv)

    from replication.experiments import get_experiment

    configs = [  # (label, jit_compile, steps_per_execution)
        ("keras default: no XLA, 1 step/call", False, 1),
        ("no XLA, 32 steps/call", False, 32),
        ("XLA, 32 steps/call", True, 32),
        ("XLA, 1 epoch/call (search default)", True, "epoch"),
    ]
    print(f"cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}  epochs per fit: {args.epochs}")
    results = {}
    for experiment in args.experiments:
        X, y, Xv, yv = _fold(experiment, args.data_dir)
        print(f"\n== {experiment}: fit on {len(X)} examples, score on {len(Xv)} + {len(X)} ==")
        print(f"{'config':40s} {'setup':>7s} {'epoch1':>7s} {'epoch':>7s} {'score':>7s} {'val loss':>9s}")
        for label, jit, spe in configs:
            if experiment != args.experiments[0] and (jit, spe) not in ((False, 1), (True, "epoch")):
                continue  # the other model: just the default and the chosen settings
            row = time_fit(experiment, X, y, Xv, yv, epochs=args.epochs, jit_compile=jit, steps_per_execution=spe)
            results[(experiment, jit, spe)] = row
            print(f"{label:40s} {row['setup']:7.2f} {row['epoch1']:7.2f} {row['epoch']:7.2f} {row['score']:7.2f} {row['val_loss']:9.4f}")

    stacked = {}
    for experiment in args.experiments:
        X, y, Xv, yv = _fold(experiment, args.data_dir)
        stacked[experiment] = row = time_stacked_fold(experiment, X, y, Xv, yv, epochs=args.epochs)
        single = results[(experiment, True, "epoch")]
        print(f"\n== {experiment}, stacked engine: one fold of {row['members']} grid points at once ==")
        print(f"setup {row['setup']:.2f}s  epoch1 {row['epoch1']:.2f}s  epoch {row['epoch']:.2f}s  "
              f"score {row['score']:.2f}s  -> {row['epoch'] / row['members']:.3f} s per point-epoch vs "
              f"{single['epoch']:.3f} s for one fit (x{single['epoch'] * row['members'] / row['epoch']:.1f})")

    speedup = 1.0
    if not args.skip_parallel:
        # Two fits in two single-threaded processes vs one fit using both cores.
        from joblib import Parallel, delayed

        from gridsearch.search import _worker_threads

        experiment = args.experiments[0]
        with _worker_threads(2):
            with Parallel(n_jobs=2, backend="loky") as parallel:
                rows = parallel(delayed(_fit_in_worker)((experiment, args.data_dir, args.epochs, True, "epoch")) for _ in range(2))
        single = results[(experiment, True, "epoch")]["total"]
        paired = statistics.mean(r["total"] for r in rows)
        overlap = abs(rows[0]["started"] - rows[1]["started"])
        speedup = 2 * single / paired
        print(f"\n== parallel: fits of {experiment} in 2 loky workers x 1 TF thread (side by side) ==")
        print(f"per-fit {paired:.2f}s in each worker (start offset {overlap:.1f}s) vs {single:.2f}s for one fit "
              f"with 2 threads -> throughput x{speedup:.2f} with --n-jobs 2")
        print(f"worker breakdown: setup {rows[0]['setup']:.2f}s epoch1 {rows[0]['epoch1']:.2f}s "
              f"epoch {rows[0]['epoch']:.2f}s score {rows[0]['score']:.2f}s")

    print("\n== projection: full default search, 2 optimizers x 25 points x 3 folds = 150 fits per experiment ==")
    total = {}
    for label, jit, spe in configs:
        keys = [(e, jit, spe) for e in args.experiments]
        if not all(k in results for k in keys):
            continue
        for parallel_label, s in (("--n-jobs 1", 1.0), (f"--n-jobs 2 (x{speedup:.2f})", speedup)):
            if (jit, spe) != (True, "epoch") and s != 1.0:
                continue
            seconds = sum(project(results[k], 150, get_experiment(k[0]).gridsearch_epochs, s) for k in keys)
            total[(label, parallel_label)] = seconds
            print(f"{label:40s} {parallel_label:22s} {seconds / 60:7.1f} min (no early stopping: upper bound)")
    seconds = 0.0
    for experiment, row in stacked.items():
        epochs = get_experiment(experiment).gridsearch_epochs
        per_fold = row["setup"] + row["epoch1"] + (epochs - 1) * row["epoch"] + row["score"]
        seconds += 2 * 3 * per_fold * 25 / row["members"]  # 2 optimizers x 3 folds
    if stacked:
        print(f"{'stacked engine (search default)':40s} {'one process':22s} {seconds / 60:7.1f} min (no early stopping: upper bound)")
    # --halving (factor 3, epochs as the resource, min_resources="exhaust"): fewer, shorter fits.
    key = [(e, True, "epoch") for e in args.experiments]
    if all(k in results for k in key):
        seconds = 0.0
        for k in key:
            epochs = get_experiment(k[0]).gridsearch_epochs
            row = results[k]
            for fit_epochs, n_candidates in halving_schedule(25, epochs):
                per_fit = row["setup"] + row["epoch1"] + (fit_epochs - 1) * row["epoch"] + row["score"]
                seconds += 2 * 3 * n_candidates * per_fit  # 2 optimizers x 3 folds
        print(f"{'XLA, 1 epoch/call, --halving':40s} {'--n-jobs 1':22s} {seconds / 60:7.1f} min "
              f"(schedule per optimizer: {halving_schedule(25, get_experiment(key[0][0]).gridsearch_epochs)})")
    return 0


def halving_schedule(n_candidates, max_epochs, factor=3):
    """[(epochs, candidates)] per iteration, as HalvingGridSearchCV(min_resources="exhaust") runs."""
    import math

    n_iterations = 1 + int(math.floor(math.log(n_candidates, factor) + 1e-9))
    min_epochs = max(1, max_epochs // factor ** (n_iterations - 1))
    schedule = []
    for i in range(n_iterations):
        schedule.append((min_epochs * factor**i, n_candidates))
        n_candidates = math.ceil(n_candidates / factor)
    return schedule


if __name__ == "__main__":
    sys.exit(main())
