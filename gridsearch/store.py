"""Persistence of finished grid points and the search's exports (CSV, best params, Table I).

A finished point is one JSON file ``<out>/<experiment>/gridsearch_points/<key>.json`` written
atomically (temp file + rename), so an interrupted search leaves no partial record; the key
(:meth:`gridsearch.search.SearchSettings.point_key`) names the point and hashes everything that
decides its result (optimizer, α, β2, bias correction, folds, epochs, loss, schedule, seed, ...).

A record is read back only if it passes :func:`check_point_record` (a fold's,
:func:`check_fold_record`); a damaged one is recomputed, with a line saying why. These records are
checked by validation, not by a checksum: the numbers and their record are one file written in one
atomic rename, so there is no torn pair to detect, only a file cut short or corrupted (it no longer
parses) or emptied of fields (a hand edit, an older format); a checksum stored in the same file
would add only a guard against deliberate edits, which can update it too.

The search's outputs (``gridsearch.csv``, ``best_params.json``) are assembled from many points, so
``gridsearch.json`` records their manifest (:mod:`replication.store`: rows and sha256 of each), which
``report`` and the next merge check (:func:`check_search_outputs`); sidecars written before it
(identity schema 1, the committed searches) have none and are read as they are. They are rewritten
only when their bytes change, and ``gridsearch.json`` only when a point was computed or it would say
something else than the call's own times (:func:`replication.store.write_sidecar`).

Records name the code that computed them (the source fingerprint of
:func:`replication.io.code_version`). A finished point is kept across code changes, as a finished
run is (its record says which code it came from); a fold of an unfinished point that other code
computed is recomputed, with a line saying so, so that one point's folds never mix two versions.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from replication import store
from replication.claims import merging
from replication.errors import UserError
from replication.io import code_version, read_csv, read_json, write_json_atomic

__all__ = ["PointStore", "check_point_record", "check_fold_record", "write_search_outputs", "write_table",
           "collect_table"]



class PointStore:
    """Records of finished grid points under ``folder`` (``<out>/<experiment>/gridsearch_points``)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def path(self, settings, point) -> Path:
        return self.folder / f"{settings.point_key(point)}.json"

    def load(self, settings, point, on_damaged=None):
        """The stored row of ``point`` under ``settings``, or ``None`` if not finished. A damaged
        record is not finished either: ``on_damaged(why)`` is called and the point is recomputed."""
        path = self.path(settings, point)
        if not path.exists():
            return None
        record, why = _read_record(path)
        why = why or check_point_record(record, settings.point_key(point), point, settings.to_dict())
        if why:
            if on_damaged is not None:
                on_damaged(f"{self.folder.name}/{path.name} {why}")
            return None
        return record["row"]

    def save(self, settings, point, row) -> Path:
        record = {"key": settings.point_key(point), "settings": settings.to_dict(), "row": row,
                  "code": code_version()["source_sha256"], "schema": store.SCHEMA}
        return write_json_atomic(record, self.path(settings, point))

    # A point's finished folds (the stacked engine's unit of work is one fold of many points);
    # removed once the point's record is saved.
    def fold_path(self, settings, point, fold) -> Path:
        return self.folder / "folds" / f"{settings.point_key(point)}.fold{int(fold)}.json"

    def load_fold(self, settings, point, fold, on_damaged=None):
        """The stored result of ``point`` on fold ``fold``, or ``None`` if not finished (or damaged:
        then ``on_damaged(why)`` is called, as by :meth:`load`)."""
        path = self.fold_path(settings, point, fold)
        if not path.exists():
            return None
        record, why = _read_record(path)
        why = why or check_fold_record(record, settings.point_key(point), fold, settings.epochs)
        code = code_version()["source_sha256"]
        if not why and record.get("code") != code:
            written = str(record.get("code") or "code that did not record itself")[:12]
            why = f"was computed by other code (source {written}, now {code[:12]})"
        if why:
            if on_damaged is not None:
                on_damaged(f"{self.folder.name}/folds/{path.name} {why}")
            return None
        return record["result"]

    def save_fold(self, settings, point, fold, result) -> Path:
        record = {"key": settings.point_key(point), "fold": int(fold), "result": result,
                  "code": code_version()["source_sha256"]}
        return write_json_atomic(record, self.fold_path(settings, point, fold))

    def drop_folds(self, settings, point) -> None:
        for fold in range(settings.cv):
            self.fold_path(settings, point, fold).unlink(missing_ok=True)

    # Claims (replication.claims): a fold, or halving's whole grid of points, is claimed on lock
    # files beside its records before it is computed, so processes sharing a folder compute it once.
    def fold_lock(self, settings, point, fold) -> Path:
        return self.fold_path(settings, point, fold).with_suffix(".lock")

    def point_lock(self, settings, point) -> Path:
        return self.path(settings, point).with_suffix(".lock")


def _read_record(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:  # a cut-short file; UnicodeDecodeError is a ValueError too
        return None, f"is not valid JSON ({exc})"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_point_record(record, key, point, settings) -> str | None:
    """Why ``record`` (a parsed point record) is not the finished row of ``point`` (a
    :class:`gridsearch.search.GridPoint`) under the key ``key`` and ``settings`` (their dict), or
    None if it is: every column a row has, for this point, cv and epochs, with legal values (scores
    finite unless the point diverged, which a non-finite mean score and nothing else marks)."""
    if not isinstance(record, dict) or record.get("key") != key:
        return "belongs to another grid point"
    row = record.get("row")
    if not isinstance(row, dict):
        return "holds no row"
    cv, epochs = int(settings["cv"]), int(settings["epochs"])
    scores = [f"split{k}_{kind}_score" for kind in ("test", "train") for k in range(cv)]
    scores += ["mean_test_score", "std_test_score", "mean_train_score", "std_train_score", "mean_val_loss",
               "mean_train_loss"]
    times = ["mean_fit_time", "std_fit_time", "mean_score_time"]
    # Successive halving scores one metric; GridSearchCV scores the epochs each fit ran too.
    counts = ["iter", "n_resources"] if settings.get("halving") else [f"split{k}_epochs_run" for k in range(cv)]
    required = ["experiment", "optimizer", "learning_rate", "beta_2", "bias_correction", "schedule", "loss",
                "cv", "epochs", "seed", "engine", "diverged", *scores, *times, *counts]
    missing = [name for name in required if name not in row]
    if missing:
        return f"lacks {', '.join(missing)}"
    bias = {None: "default", True: "on", False: "off"}[point.bias_correction]
    if (row["optimizer"], row["bias_correction"], row["cv"], row["epochs"]) != (point.optimizer, bias, cv, epochs) \
            or not all(_is_number(row[name]) and math.isclose(row[name], value, rel_tol=1e-12)
                       for name, value in (("learning_rate", point.learning_rate), ("beta_2", point.beta_2))):
        return "holds the row of another grid point"
    if not isinstance(row["diverged"], bool) or not all(_is_number(row[name]) for name in scores + times + counts):
        return "holds a value of the wrong type"
    if row["diverged"] == (math.isfinite(row["mean_test_score"]) and math.isfinite(row["mean_train_score"])):
        return "has a diverged flag that its scores contradict"
    if not row["diverged"] and not all(math.isfinite(row[name]) for name in scores):
        return "lacks a score of a point that did not diverge"
    why = _contradicted_means(row, cv)
    if why:
        return why
    if not all(math.isfinite(row[name]) and row[name] >= 0 for name in times):
        return "holds an impossible fit or score time"
    return None


def _agree(value, want) -> bool:
    if not _is_number(value):
        return False
    if math.isnan(want) or math.isnan(value):
        return math.isnan(want) and math.isnan(value)
    return math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-12)


def _contradicted_means(row, cv) -> str | None:
    """Why a point's means (the numbers that choose the best point) disagree with its own fold
    scores, or None: a record edited by hand, or damaged without ceasing to parse (issue 26 §5).
    The means are recomputed as :func:`gridsearch.search._row_from_results` computes them; a
    non-finite fold score makes its mean NaN."""
    def mean_std(values):
        if not all(_is_number(v) and math.isfinite(v) for v in values):
            return math.nan, math.nan
        mean = math.fsum(values) / len(values)
        return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))

    for kind in ("test", "train"):
        mean, std = mean_std([row[f"split{k}_{kind}_score"] for k in range(cv)])
        if not (_agree(row[f"mean_{kind}_score"], mean) and _agree(row[f"std_{kind}_score"], std)):
            return f"has a mean_{kind}_score or std_{kind}_score that its fold scores contradict"
    for loss, score in (("mean_val_loss", "mean_test_score"), ("mean_train_loss", "mean_train_score")):
        if not _agree(row[loss], -row[score]):
            return f"has a {loss} that its fold scores contradict"
    for kind in ("val", "train"):
        splits = [f"split{k}_{kind}_accuracy" for k in range(cv)]
        if f"mean_{kind}_accuracy" in row and all(name in row for name in splits):
            if not _agree(row[f"mean_{kind}_accuracy"], mean_std([row[name] for name in splits])[0]):
                return f"has a mean_{kind}_accuracy that its fold accuracies contradict"
    return None


def check_fold_record(record, key, fold, epochs) -> str | None:
    """Why ``record`` (a parsed fold record) is not the finished fold ``fold`` of the point keyed
    ``key``, or None if it is: its losses are numbers (NaN = diverged), its times finite and its
    epoch count within ``epochs``."""
    if not isinstance(record, dict) or record.get("key") != key or record.get("fold") != int(fold):
        return "belongs to another grid point or fold"
    result = record.get("result")
    names = ("val_loss", "train_loss", "epochs_run", "fit_time", "score_time")
    if not isinstance(result, dict) or not all(_is_number(result.get(name)) for name in names):
        return f"lacks one of {', '.join(names)}"
    if not (0 <= result["epochs_run"] <= int(epochs)) or not all(
            math.isfinite(result[name]) and result[name] >= 0 for name in ("fit_time", "score_time")):
        return "holds an impossible epoch count or time"
    return None


def _ordered(frame):
    from .search import order_columns

    cv = int(frame["cv"].max()) if "cv" in frame and len(frame) else 0
    return frame[order_columns(frame.columns, cv)]


# gridsearch.json keys that describe the call rather than its points (provenance() is spread in).
SIDECAR_INVOCATION_KEYS = ("started_at", "finished_at", "wall_seconds", "points_computed", "points_reused",
                           "versions", "device", "written_at")
# The files gridsearch.json's manifest ("files") records: the search's outputs as last written.
OUTPUT_FILES = ("gridsearch.csv", "best_params.json")


def check_search_outputs(experiment_dir) -> str | None:
    """Why ``gridsearch.csv``/``best_params.json`` of ``experiment_dir`` are not the files its
    ``gridsearch.json`` manifest records (:func:`replication.store.check_manifest`), or None if they
    are, or if there is no manifest to hold them to (no sidecar, or one written before manifests:
    identity schema 1, e.g. the committed searches)."""
    path = Path(experiment_dir) / "gridsearch.json"
    try:
        files = read_json(path).get("files") if path.is_file() else None
    except (UserError, AttributeError):
        return "its sidecar gridsearch.json is not a JSON object"
    if files is None:
        return None
    return store.check_manifest(files, [Path(experiment_dir) / name for name in OUTPUT_FILES],
                                unit="gridsearch.json")


def write_search_outputs(frame, experiment_dir, *, sidecar=None, score="loss"):
    """Write ``gridsearch.csv`` and ``best_params.json`` in ``experiment_dir``; return the best.

    Rows of optimizers in ``frame`` replace that optimizer's rows of an existing CSV; other
    optimizers' rows (an earlier ``--optimizers`` run) are kept, and best params are chosen over
    the merged table, so searching optimizers one command at a time gives the same files.
    """
    experiment_dir = Path(experiment_dir)
    # Under the lock of gridsearch.csv, read inside it: processes sharing the folder merge in turn.
    with merging(experiment_dir / "gridsearch.csv"):
        return _merge_search_outputs(frame, experiment_dir, sidecar, score)


def _merge_search_outputs(frame, experiment_dir, sidecar, score):
    from .search import select_best

    csv_path = experiment_dir / "gridsearch.csv"
    merged = frame
    if csv_path.exists():
        why = check_search_outputs(experiment_dir)
        if why:  # its other optimizers' rows would be merged as they are: refuse, as report does
            raise UserError(f"{csv_path}: {why}; delete gridsearch.csv and gridsearch.json and rerun the search "
                            "of each optimizer (finished points are read back)")
        old = read_csv(csv_path, float_precision="round_trip")  # rewritten byte for byte
        if "optimizer" in old.columns:
            old = old[~old["optimizer"].isin(set(frame["optimizer"]))]
            if not old.empty:
                merged = pd.concat([old, frame], ignore_index=True)
    merged = _ordered(merged.reset_index(drop=True))
    store.write_csv(merged, csv_path)  # only if its bytes change (nothing computed, nothing rewritten)
    best = select_best(merged, score=score)
    store.write_json(best, experiment_dir / "best_params.json")
    if sidecar is not None:
        _write_sidecar(sidecar, experiment_dir)
    return best


def _write_sidecar(sidecar, experiment_dir):
    """gridsearch.json with the manifest of the outputs as they are now. A call that computed no point
    only read finished ones back: its times and provenance would overwrite those of the calls that
    computed them, so an otherwise equal gridsearch.json is kept, a schema-1 one (no manifest) too."""
    path = experiment_dir / "gridsearch.json"
    files = store.manifest([experiment_dir / name for name in OUTPUT_FILES])
    try:
        old = read_json(path) if path.is_file() else {}
    except UserError:
        old = {}
    recorded = old.get("files") if isinstance(old, dict) else None
    ignore = SIDECAR_INVOCATION_KEYS + (("files",) if recorded is None else ())
    store.write_sidecar({**sidecar, "files": files, "schema": store.SCHEMA}, path,
                        computed=bool(sidecar.get("points_computed", 1)), ignore=ignore + ("schema",))


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
    """Write ``<out>/gridsearch_table.csv`` and ``.md`` across every searched experiment (read and
    written under the lock of the CSV: a search of another experiment may be writing it too)."""
    with merging(Path(out) / "gridsearch_table.csv"):
        frame = collect_table(out)
        store.write_csv(frame, Path(out) / "gridsearch_table.csv")  # only what changed is rewritten
        store.write_text(_markdown(frame), Path(out) / "gridsearch_table.md")
    return frame
