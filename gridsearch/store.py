"""Persistence of finished grid points and the search's exports (CSV, best params, Table I).

A finished point is one JSON file ``<out>/<experiment>/gridsearch_points/<key>.json`` written
atomically (temp file + rename), so an interrupted search leaves no partial record; the key
(:meth:`gridsearch.search.SearchSettings.point_key`) names the point and hashes everything that
decides its result (optimizer, α, β2, bias correction, folds, epochs, loss, schedule, seed, ...).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from replication.io import read_csv, read_json, write_csv_atomic, write_json_atomic, write_text_atomic

__all__ = ["PointStore", "write_search_outputs", "write_table", "collect_table"]



class PointStore:
    """Records of finished grid points under ``folder`` (``<out>/<experiment>/gridsearch_points``)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def path(self, settings, point) -> Path:
        return self.folder / f"{settings.point_key(point)}.json"

    def load(self, settings, point):
        """The stored row of ``point`` under ``settings``, or ``None`` if not finished."""
        path = self.path(settings, point)
        if not path.exists():
            return None
        record = read_json(path)
        return record.get("row")

    def save(self, settings, point, row) -> Path:
        record = {"key": settings.point_key(point), "settings": settings.to_dict(), "row": row}
        return write_json_atomic(record, self.path(settings, point))

    # A point's finished folds (the stacked engine's unit of work is one fold of many points);
    # removed once the point's record is saved.
    def fold_path(self, settings, point, fold) -> Path:
        return self.folder / "folds" / f"{settings.point_key(point)}.fold{int(fold)}.json"

    def load_fold(self, settings, point, fold):
        """The stored result of ``point`` on fold ``fold``, or ``None`` if not finished."""
        path = self.fold_path(settings, point, fold)
        return read_json(path)["result"] if path.exists() else None

    def save_fold(self, settings, point, fold, result) -> Path:
        record = {"key": settings.point_key(point), "fold": int(fold), "result": result}
        return write_json_atomic(record, self.fold_path(settings, point, fold))

    def drop_folds(self, settings, point) -> None:
        for fold in range(settings.cv):
            self.fold_path(settings, point, fold).unlink(missing_ok=True)


def _ordered(frame):
    from .search import order_columns

    cv = int(frame["cv"].max()) if "cv" in frame and len(frame) else 0
    return frame[order_columns(frame.columns, cv)]


def write_search_outputs(frame, experiment_dir, *, sidecar=None):
    """Write ``gridsearch.csv`` and ``best_params.json`` in ``experiment_dir``; return the best.

    Rows of optimizers in ``frame`` replace that optimizer's rows of an existing CSV; other
    optimizers' rows (an earlier ``--optimizers`` run) are kept, and best params are chosen over
    the merged table, so searching optimizers one command at a time gives the same files.
    """
    from .search import select_best

    experiment_dir = Path(experiment_dir)
    csv_path = experiment_dir / "gridsearch.csv"
    merged = frame
    if csv_path.exists():
        old = read_csv(csv_path)
        if "optimizer" in old.columns:
            old = old[~old["optimizer"].isin(set(frame["optimizer"]))]
            if not old.empty:
                merged = pd.concat([old, frame], ignore_index=True)
    merged = _ordered(merged.reset_index(drop=True))
    write_csv_atomic(merged, csv_path)
    best = select_best(merged)
    write_json_atomic(best, experiment_dir / "best_params.json")
    if sidecar is not None:
        write_json_atomic(sidecar, experiment_dir / "gridsearch.json")
    return best


def collect_table(out):
    """McGill's Table I (experiment, optimizer, α, β2) from every ``<out>/*/best_params.json``."""
    rows = []
    for path in sorted(Path(out).glob("*/best_params.json")):
        best = read_json(path)
        for optimizer, params in best.items():
            row = {"experiment": path.parent.name, "optimizer": optimizer,
                   "learning_rate": params.get("learning_rate"), "beta_2": params.get("beta_2")}
            if "bias_correction" in params:
                row["bias_correction"] = "on" if params["bias_correction"] else "off"
            rows.append(row)
    columns = ["experiment", "optimizer", "learning_rate", "beta_2"]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    if "bias_correction" in frame.columns:
        columns.append("bias_correction")
    return frame[columns]


def _markdown(frame):
    names = {"experiment": "Experiment", "optimizer": "Optimizer", "learning_rate": "α",
             "beta_2": "β2", "bias_correction": "Bias correction"}
    header = [names.get(c, c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            if isinstance(value, float):
                cells.append("" if math.isnan(value) else f"{value:g}")
            else:
                cells.append("" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "Grid search results (McGill Table I layout).\n\n" + "\n".join(lines) + "\n"


def write_table(out):
    """Write ``<out>/gridsearch_table.csv`` and ``.md`` across every searched experiment."""
    frame = collect_table(out)
    write_csv_atomic(frame, Path(out) / "gridsearch_table.csv")
    write_text_atomic(_markdown(frame), Path(out) / "gridsearch_table.md")
    return frame
