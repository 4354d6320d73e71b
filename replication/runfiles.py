"""A trained experiment's folder, as files: no Keras here, so ``report`` and the Python API can read
and verify results without it.

    <out>/<experiment>/
        runs/<stem>.csv              one finished run's epochs (HISTORY_COLUMNS)
        runs/<stem>.iterations.csv   its thinned iteration points (ITERATION_COLUMNS)
        runs/<stem>.json             its sidecar: config, row count and sha256 of both CSVs, provenance
        history.csv, iterations.csv  every run of train.json's ``run_files``, assembled (:func:`assemble`)
        train.json                   the call: spec, hyperparameters, seeds, ``run_files``

:func:`verify_folder` checks the assembled files against the run files and those against their
sidecars, so a hand-edited, truncated or column-dropped ``history.csv`` is never averaged as if it
were the runs. :func:`configuration_conflict` keeps one configuration per folder, :func:`backend_conflict` one Keras
backend.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import io, store
from .errors import UserError

HISTORY_COLUMNS = [
    "experiment", "optimizer", "bias_correction", "run", "seed", "epoch", "iteration",
    "learning_rate", "schedule", "beta_1", "beta_2", "epsilon", "batch_size", "loss_function",
    "loss", "accuracy", "test_loss", "test_accuracy", "diverged", "epoch_seconds",
    "gamma_negative_fraction", "gamma_min",
]
# The VAE (loss "elbo") adds its ELBO terms after the common columns; its accuracy columns are NaN.
ELBO_COLUMNS = ["reconstruction", "kl", "test_reconstruction", "test_kl"]
# Runs on a data set with a ``test_exact`` mask (cifar10.npz: 1,000 exact test images among 9,000
# decoded from JPEG copies) add the test metrics on the exact images alone.
EXACT_COLUMNS = ["test_exact_loss", "test_exact_accuracy"]
ITERATION_COLUMNS = [
    "experiment", "optimizer", "bias_correction", "run", "seed", "epoch", "iteration", "batches",
    "loss",
]


def read_csv(path):
    return io.read_csv(path, float_precision="round_trip")


def _name(path) -> str:
    return f"{path.parent.name}/{path.name}"  # runs/<stem>.csv: what the progress lines name


def check_run_files(csv_path, it_path, sidecar) -> str | None:
    """Why the run files ``csv_path`` and ``it_path`` are not the finished run their sidecar (parsed
    JSON) records, or None if they are. A sidecar's ``files`` (row count and sha256 of each CSV,
    written when the run finished) must match exactly; see :func:`_check_legacy_run` for older ones."""
    files = sidecar.get("files")
    if files is None:
        return _check_legacy_run(csv_path, it_path, sidecar)
    return store.check_manifest(files, (csv_path, it_path), name=_name)


def _check_legacy_run(csv_path, it_path, sidecar) -> str | None:
    """Sidecars written before checksums (e.g. the committed ``results/*/runs``) say how many epochs
    the run finished: the epoch CSV must hold exactly those rows, numbered 1..n, with a value in every
    metric a finished run has, and the iteration CSV must reach the last epoch's iteration. A diverged
    run (``diverged: true``) legitimately ends in NaN/inf losses and may stop mid-epoch: only its row
    count is checked. Edited values go unseen here; those need the checksums."""
    try:
        history, iterations = read_csv(csv_path), read_csv(it_path)
    except (OSError, ValueError) as exc:  # pandas' EmptyDataError and ParserError are ValueErrors
        return f"{_name(csv_path)} or {_name(it_path)} cannot be read ({str(exc).splitlines()[0]})"
    epochs = sidecar.get("epochs_completed")
    if len(history) != epochs:
        return f"{_name(csv_path)} has {len(history)} rows, its sidecar says {epochs}"
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    missing += [c for c in ITERATION_COLUMNS if c not in iterations.columns]
    if missing:
        return f"the run files lack column(s) {', '.join(missing)}"
    if list(pd.to_numeric(history["epoch"], errors="coerce")) != list(range(1, epochs + 1)):
        return f"{_name(csv_path)} does not hold epochs 1..{epochs} in order"
    if sidecar.get("diverged"):
        return None
    config = sidecar.get("config") or {}
    if epochs != config.get("epochs"):
        return f"its sidecar says {epochs} of {config.get('epochs')} epochs, without diverging"
    metrics = ["loss", "test_loss"] + ([] if config.get("loss_function") == "elbo" else ["accuracy", "test_accuracy"])
    for column in metrics:
        if not np.isfinite(pd.to_numeric(history[column], errors="coerce").to_numpy(dtype=float)).all():
            return f"{_name(csv_path)} lacks {column} values of a run that did not diverge"
    its = pd.to_numeric(iterations["iteration"], errors="coerce")
    if len(its) == 0 or its.iloc[-1] != history["iteration"].iloc[-1]:
        return (f"{_name(it_path)} ends at iteration {its.iloc[-1] if len(its) else 0}, "
                f"the run at {history['iteration'].iloc[-1]}")
    if not np.isfinite(pd.to_numeric(iterations["loss"], errors="coerce").to_numpy(dtype=float)).all():
        return f"{_name(it_path)} lacks loss values of a run that did not diverge"
    return None




def _sorted(frame, order, last):
    # Fixed order (optimizer name, bias correction, run, epoch/iteration): stable across reruns.
    key = frame["optimizer"].map(order)
    frame = frame.assign(_k=key).sort_values(["_k", "bias_correction", "run", last], kind="stable")
    return frame.drop(columns="_k").reset_index(drop=True)


def history_columns(elbo: bool, exact: bool) -> list[str]:
    """The columns of a history, in order: the common ones, the VAE's ELBO terms (``elbo``), the
    exact-test metrics (``exact``: a data set with a ``test_exact`` mask)."""
    return HISTORY_COLUMNS + (ELBO_COLUMNS if elbo else []) + (EXACT_COLUMNS if exact else [])


def run_paths(runs_dir: Path, stem: str):
    """(epoch CSV, iteration CSV, sidecar) of the run ``stem`` in ``runs_dir``."""
    return runs_dir / f"{stem}.csv", runs_dir / f"{stem}.iterations.csv", runs_dir / f"{stem}.json"


def assemble(runs_dir: Path, stems, optimizers, elbo: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, iterations) of the runs ``stems``, as ``history.csv``/``iterations.csv`` hold them:
    the common columns (the ELBO terms for the VAE, the exact-test columns where the runs have them),
    rows sorted by optimizer name, bias correction, run and epoch/iteration."""
    paths = [run_paths(runs_dir, stem) for stem in stems]
    history = pd.concat([read_csv(p[0]) for p in paths], ignore_index=True)
    iterations = pd.concat([read_csv(p[1]) for p in paths], ignore_index=True)
    order = {name: i for i, name in enumerate(sorted(optimizers))}
    columns = history_columns(elbo, exact=all(c in history.columns for c in EXACT_COLUMNS))
    return (_sorted(history.reindex(columns=columns), order, "epoch"),
            _sorted(iterations[ITERATION_COLUMNS], order, "iteration"))


def _read_meta(exp_dir: Path):
    path = exp_dir / "train.json"
    if not path.is_file():
        return None
    try:
        meta = io.read_json(path)
    except UserError:  # unreadable: reported where train.json itself is read; nothing to check against
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("run_files"), list):
        return None
    return meta


def verify_folder(exp_dir, files=("history.csv", "iterations.csv")) -> str | None:
    """Why ``exp_dir``'s ``files`` (``history.csv``, ``iterations.csv``) are not the runs its ``train.json`` lists
    (each verified against its sidecar), or None if they are, or if there is no ``train.json`` to
    say which runs they hold (a folder not written by ``replicate train``)."""
    exp_dir = Path(exp_dir)
    meta = _read_meta(exp_dir)
    if meta is None:
        return None
    runs_dir = exp_dir / "runs"
    for stem in meta["run_files"]:
        csv_path, it_path, json_path = run_paths(runs_dir, str(stem))
        if not json_path.is_file():
            return f"runs/{json_path.name}, a run train.json lists, is missing"
        why = check_run_files(csv_path, it_path, io.read_json(json_path))
        if why:
            return why
    elbo = (meta.get("experiment") or {}).get("loss") == "elbo"
    try:
        want = assemble(runs_dir, meta["run_files"], meta.get("optimizers") or [], elbo)
    except (KeyError, ValueError) as exc:
        return f"its run files cannot be assembled ({str(exc).splitlines()[0]})"
    for name, expected in zip(("history.csv", "iterations.csv"), want):
        if name not in files:
            continue
        path = exp_dir / name
        if not path.is_file():
            return f"{name} is missing"
        # The trainer writes exactly this text (io.write_csv_atomic): any other byte is an edit.
        if path.read_bytes() == expected.to_csv(index=False, lineterminator="\n").encode():
            continue
        got = read_csv(path)
        lost = [c for c in expected.columns if c not in got.columns]
        if lost:
            return f"{name} lacks column(s) {', '.join(lost)} of its runs"
        if len(got) != len(expected):
            return f"{name} has {len(got)} rows, its runs {len(expected)}"
        return f"{name} differs from its runs' files"
    return None


def configuration_conflict(exp_dir, configs: dict) -> str | None:
    """Why training the runs ``configs`` ({stem: config dict}) into ``exp_dir`` would replace results
    of another configuration: its ``train.json`` lists runs this call would leave out of
    ``history.csv``. None if it lists none (or there is no ``train.json``)."""
    meta = _read_meta(Path(exp_dir))
    if meta is None:
        return None
    left_out = [s for s in meta["run_files"] if s not in configs]
    if not left_out:
        return None
    new = {_slot(c): c for c in configs.values()}
    for old_stem in left_out:
        old = _config(Path(exp_dir) / "runs", old_stem)
        if old is not None and _slot(old) in new:
            return _differs(_slot(old), old, new[_slot(old)])
    return (f"its history.csv holds {len(left_out)} run(s) this call leaves out (e.g. {left_out[0]}): "
            "give the same --runs and --optimizers as the call that trained them")


def backend_conflict(exp_dir, backend: str) -> str | None:
    """Why training under ``backend`` into ``exp_dir`` would mix two Keras backends' runs of one
    experiment (one folder, one backend: ``history.csv`` has no backend column), or why its runs
    must be migrated first (:func:`replication.store.needs_migration`); None if neither."""
    exp_dir = Path(exp_dir)
    meta = _read_meta(exp_dir)
    if meta is None:
        return None
    sidecars = [_sidecar(exp_dir / "runs", str(stem)) for stem in meta["run_files"]]
    sidecars = [s for s in sidecars if s is not None]
    old = [s for s in sidecars if store.needs_migration(s)]
    if old:
        return (f"{exp_dir} holds {len(old)} run(s) trained under {store.run_backend(old[0])} whose ids predate the "
                f"backend in a run's identity: run `replicate migrate {exp_dir.parent}` once, then this command")
    other = sorted({store.run_backend(s) for s in sidecars} - {backend})
    if not other:
        return None
    return (f"{exp_dir} holds runs trained under the {other[0]} backend, and this process trains under {backend}: "
            f"rerun with KERAS_BACKEND={other[0]}, train into another --out, or pass --force to replace them")


def _sidecar(runs_dir, stem):
    try:
        sidecar = json.loads((runs_dir / f"{stem}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return sidecar if isinstance(sidecar, dict) else None


def _slot(config: dict):
    return config.get("optimizer"), config.get("bias_correction"), config.get("run")


def _config(runs_dir, stem):
    config = (_sidecar(runs_dir, stem) or {}).get("config")
    return config if isinstance(config, dict) else None


def _differs(key, old, new) -> str:
    optimizer, _bc, run = key
    new = json.loads(json.dumps(new, default=str))  # as a sidecar stores it
    changed = [f"{k} {old.get(k)} (this call: {new.get(k)})" for k in sorted(old)
               if k in new and old.get(k) != new.get(k)]
    return f"its {optimizer} run {run} was trained with {', '.join(changed) or 'another configuration'}"
