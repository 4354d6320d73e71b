"""Results on disk → DataFrames, and the statistics the report is built from.

Loaders (each takes a CSV file, an experiment folder, or an experiment name resolved under
``out``; a missing file is a :class:`UserError` naming it and the command that makes it):

* :func:`load_history`     ``<out>/<experiment>/history.csv``     columns/dtypes :data:`HISTORY_DTYPES`
* :func:`load_iterations`  ``<out>/<experiment>/iterations.csv``  :data:`ITERATION_DTYPES`
* :func:`load_gridsearch`  ``<out>/<experiment>/gridsearch.csv``  :data:`GRIDSEARCH_DTYPES` (+ extras)
* :func:`load_synthetic`   ``<out>/synthetic/trajectories.csv``   :data:`SYNTHETIC_DTYPES`

Statistics (McGill §VI-D's sensitivity analysis made quantitative):

* :func:`mean_ci` — mean, sample std and t-based confidence interval of one sample;
* :func:`summarize_epochs` — per (experiment, optimizer, bias correction, epoch, metric) over runs;
* :func:`final_epoch` — one row per run at its last epoch, with a ``diverged`` flag;
* :func:`compare_final` — Adam vs AMSGrad at the final epoch per metric. Unpaired (McGill-style):
  difference of means with a Welch CI, Welch's t-test, Mann–Whitney U, Cohen's d / Hedges' g.
  Paired (the design: run k of both optimizers shares its seed, hence initial weights and batch
  order): in how many runs Adam beat AMSGrad, the paired t-test and Wilcoxon signed-rank test on
  the per-run differences, t and bootstrap CIs of their mean, and the power of 5 pairs
  (:mod:`replication.stats`).

Nothing here imports TensorFlow/Keras, so the report can be rebuilt from the CSVs alone.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import stats as paired_stats
from .errors import UserError
from .io import read_csv
from .runfiles import HISTORY_COLUMNS, ITERATION_COLUMNS, verify_folder

STR, BOOL, INT, FLOAT = "str", "bool", "int64", "float64"

# The columns are the writer's (replication.runfiles, the one home of the history schema); the
# types: these columns as named, every other one float.
_TYPES = {"experiment": STR, "optimizer": STR, "bias_correction": BOOL, "run": INT, "seed": INT, "epoch": INT,
          "iteration": INT, "batches": INT, "schedule": STR, "batch_size": INT, "loss_function": STR,
          "diverged": BOOL}
HISTORY_DTYPES = {column: _TYPES.get(column, FLOAT) for column in HISTORY_COLUMNS}
ITERATION_DTYPES = {column: _TYPES.get(column, FLOAT) for column in ITERATION_COLUMNS}
GRIDSEARCH_DTYPES = {
    "experiment": STR, "optimizer": STR, "learning_rate": FLOAT, "beta_2": FLOAT, "bias_correction": BOOL,
    "mean_test_score": FLOAT, "std_test_score": FLOAT, "mean_train_score": FLOAT, "mean_val_loss": FLOAT,
    "mean_fit_time": FLOAT, "diverged": BOOL,
}
SYNTHETIC_DTYPES = {
    "setting": STR, "optimizer": STR, "learning_rate": FLOAT, "schedule": STR, "bias_correction": BOOL,
    "beta_1": FLOAT, "beta_2": FLOAT, "epsilon": FLOAT,
    # the rare large gradient: 1010 (online, stochastic) or C (the §3 family C·x / −x)
    "big_gradient": FLOAT,
    "seed": INT, "step": INT, "x": FLOAT,
    "x_min": FLOAT, "x_max": FLOAT, "avg_regret": FLOAT,
    # Reddi et al. eq. 2 over the steps since the previous record: share of steps with Γ < 0, min Γ
    "gamma_negative_fraction": FLOAT, "gamma_min": FLOAT,
}
SYNTHETIC_VALUES = ("step", "x", "x_min", "x_max", "avg_regret", "gamma_negative_fraction", "gamma_min")

# metric column -> (label, lower is better)
METRICS = {
    "loss": ("train loss", True),
    "test_loss": ("test loss", True),
    "accuracy": ("train accuracy", False),
    "test_accuracy": ("test accuracy", False),
}
RUN_KEY = ["experiment", "optimizer", "bias_correction", "run"]


# --------------------------------------------------------------------------------------- loading
def _locate(where, out, filename, command, subfolder=None) -> Path:
    """The CSV for ``where`` (file, folder, or name under ``out``); UserError if none exists."""
    where = Path(where)
    out = Path(out) if out is not None else Path("results")
    if where.suffix == ".csv":
        candidates = [where]
    elif len(where.parts) == 1 and not where.is_dir():
        candidates = [out / where / filename]  # a bare experiment name
    else:
        candidates = [where / filename] + ([where / subfolder / filename] if subfolder else [])
    for path in candidates:
        if path.is_file():
            return path
    expected = candidates[-1]
    name = expected.parent.name if where.suffix != ".csv" else where.parent.name
    hint = command.format(name=name, out=expected.parent.parent)
    raise UserError(f"{expected} not found; make it with `{hint}`")


def _to_bool(series: pd.Series) -> pd.Series:
    if series.dtype == bool:
        return series
    table = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False,
             "on": True, "off": False, "yes": True, "no": False}
    mapped = series.map(lambda v: v if isinstance(v, (bool, np.bool_)) else table.get(str(v).strip().lower()))
    return mapped.fillna(False).astype(bool)


def _coerce(frame: pd.DataFrame, dtypes: dict, path, required=()) -> pd.DataFrame:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}; regenerate it with the command that wrote it")
    for column, dtype in dtypes.items():
        if column not in frame.columns:
            continue
        try:
            if dtype == BOOL:
                frame[column] = _to_bool(frame[column])
            elif dtype == INT:
                values = pd.to_numeric(frame[column], errors="coerce")
                frame[column] = values.astype("int64") if values.notna().all() else values.astype("Int64")
            elif dtype == FLOAT:
                frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
            else:
                frame[column] = frame[column].astype(str)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{path}: column {column!r} is not {dtype} ({exc})") from None
    return frame


def _read(path) -> pd.DataFrame:
    return read_csv(path, float_precision="round_trip")


def load_history(where, out=None) -> pd.DataFrame:
    """The trainer's per-epoch table: one row per (experiment, optimizer, bias_correction, run, epoch),
    columns :data:`HISTORY_DTYPES` in that order (extra columns kept after them).

    ``where``: ``history.csv`` itself, its folder (``"results/mnist-mlp"``) or an experiment name
    resolved under ``out`` (default ``results``). Missing optional columns are filled:
    ``experiment`` = folder name, ``bias_correction`` = True, ``diverged`` = non-finite train loss,
    the other metrics NaN."""
    path = _locate(where, out, "history.csv", "replicate train {name} --out {out}")
    _check_against_runs(path)
    frame = _read(path)
    frame = _fill_defaults(frame, path)
    frame = _coerce(frame, HISTORY_DTYPES, path, required=("optimizer", "run", "epoch", "loss"))
    _check_history(frame, path)
    return _ordered(frame, HISTORY_DTYPES)


def _check_against_runs(path: Path):
    """A :class:`UserError` when ``path`` (``history.csv``/``iterations.csv`` beside a ``train.json``)
    is not what the runs it lists assemble to: an edited value, a cut file, a dropped column."""
    why = verify_folder(path.parent, files=(path.name,))
    if why:
        raise UserError(f"{why}, so its numbers are not the runs'; rerun `replicate train "
                        f"{path.parent.name} --out {path.parent.parent}` to rebuild it from them (a damaged run is retrained)")


# What one optimizer's runs share (the trainer writes one configuration per optimizer, seeds aside):
# runs that differ in one of these are different experiments, and a mean over them would mix them.
_SHARED_COLUMNS = ("learning_rate", "schedule", "beta_1", "beta_2", "epsilon", "batch_size", "loss_function")


def _describe_key(names, values) -> str:
    return ", ".join(f"{name} {value}" for name, value in zip(names, values))


def _check_history(frame, path):
    """A :class:`UserError` naming ``path`` when its rows cannot be averaged as they stand: a key
    (:data:`RUN_KEY` + epoch) on more than one row, one run with two seeds, or the runs of one
    optimizer with different hyperparameters (:data:`_SHARED_COLUMNS`)."""
    rebuild = "rebuild it by rerunning the `replicate train` command that wrote it (finished runs are skipped)"
    key = [*RUN_KEY, "epoch"]
    twice = frame.duplicated(key, keep=False)
    if twice.any():
        first = tuple(frame.loc[twice, key].iloc[0])
        count = int(frame.loc[twice].groupby(key, dropna=False, sort=False).size().iloc[0])
        raise UserError(f"{path} has duplicated rows: {_describe_key(key, first)} is on {count} rows; "
                        f"one row per run and epoch is expected: {rebuild}")
    checks = [(RUN_KEY, "seed", "one run")] + [(RUN_KEY[:3], c, "the runs of one optimizer") for c in _SHARED_COLUMNS]
    for group, column, what in checks:
        if column not in frame.columns:
            continue
        counts = frame.groupby(group, dropna=False)[column].nunique(dropna=False)
        if (counts > 1).any():
            where = counts.index[counts > 1][0]
            values = sorted(map(str, frame.set_index(group).loc[[where], column].unique()))
            raise UserError(f"{path}: {what} ({_describe_key(group, where)}) has different {column} values "
                            f"({', '.join(values)}), so its mean would mix configurations; {rebuild}, or keep "
                            "each configuration in its own --out folder")


def load_iterations(where, out=None) -> pd.DataFrame:
    """Training loss against iterations (thinned by the trainer), columns :data:`ITERATION_DTYPES`."""
    path = _locate(where, out, "iterations.csv", "replicate train {name} --out {out}")
    _check_against_runs(path)
    frame = _read(path)
    if "experiment" not in frame.columns:
        frame["experiment"] = path.parent.name
    if "bias_correction" not in frame.columns:
        frame["bias_correction"] = True
    frame = _coerce(frame, ITERATION_DTYPES, path, required=("optimizer", "run", "iteration", "loss"))
    return _ordered(frame, ITERATION_DTYPES)


def load_gridsearch(where, out=None) -> pd.DataFrame:
    """One row per (optimizer, grid point), columns :data:`GRIDSEARCH_DTYPES` first, every other
    column the search wrote (``split*_test_score`` …) after. Scores are neg log-loss (higher is
    better); ``mean_val_loss`` is taken from the file or, when absent, as −``mean_test_score``;
    ``diverged`` from the file or a non-finite validation loss."""
    path = _locate(where, out, "gridsearch.csv", "replicate gridsearch {name} --out {out}")
    from gridsearch.store import check_search_outputs  # Keras-free: the manifest of gridsearch.json

    why = check_search_outputs(path.parent)
    if why:
        raise UserError(f"{why}, so its numbers are not the search's; delete {path.name} and gridsearch.json and "
                        f"rerun `replicate gridsearch {path.parent.name} --out {path.parent.parent}` for each "
                        "optimizer (finished points are read back)")
    frame = _read(path)
    if "experiment" not in frame.columns:
        frame["experiment"] = path.parent.name
    if "mean_val_loss" not in frame.columns:
        frame["mean_val_loss"] = (-pd.to_numeric(frame["mean_test_score"], errors="coerce")
                                  if "mean_test_score" in frame.columns else np.nan)
    if "diverged" not in frame.columns:
        frame["diverged"] = ~np.isfinite(pd.to_numeric(frame["mean_val_loss"], errors="coerce"))
    frame = _coerce(frame, GRIDSEARCH_DTYPES, path, required=("optimizer", "learning_rate", "beta_2"))
    return _ordered(frame, GRIDSEARCH_DTYPES)


def load_synthetic(where="results", out=None, verify=True) -> pd.DataFrame:
    """The synthetic problem's trajectories (``replicate synthetic``), columns :data:`SYNTHETIC_DTYPES`.
    ``where``: the CSV, the ``synthetic`` folder, or a results folder holding ``synthetic/``. With
    ``verify``, a :class:`UserError` unless its runs are the rows trajectories.json records (the
    ``synthetic`` command reads with ``verify=False`` and recomputes a damaged sweep instead)."""
    path = _locate(where, out, "trajectories.csv", "replicate synthetic --out {out}", subfolder="synthetic")
    frame = _read(path)
    if "big_gradient" not in frame.columns and "setting" in frame.columns:
        # Files written before the column: online/stochastic always used 1010; C was not recorded.
        frame["big_gradient"] = np.where(frame["setting"] == "cyclic", np.nan, 1010.0)
    frame = _ordered(_coerce(frame, SYNTHETIC_DTYPES, path,
                             required=("setting", "optimizer", "learning_rate", "seed", "step", "x")), SYNTHETIC_DTYPES)
    if verify:
        _check_trajectories(frame, path)
    return frame


def _check_trajectories(frame, path):
    """A :class:`UserError` when the runs of ``path`` (trajectories.csv) are not the rows its sidecar
    trajectories.json records (:func:`replication.store.check_trajectories`): an edited or cut run."""
    from .io import read_json
    from .store import check_trajectories

    sidecar = Path(path).parent / "trajectories.json"
    sweeps = read_json(sidecar).get("sweeps") if sidecar.is_file() else None
    if not isinstance(sweeps, dict):
        return  # no record to hold it to
    why = check_trajectories(frame, sweeps)
    if why:
        raise UserError(f"{path}: {why}; rerun `replicate synthetic --out {path.parent.parent}` with that sweep's "
                        "settings to recompute it")


def _fill_defaults(frame, path):
    if "experiment" not in frame.columns:
        frame["experiment"] = Path(path).parent.name
    if "bias_correction" not in frame.columns:
        frame["bias_correction"] = True
    for column in ("accuracy", "test_loss", "test_accuracy", "gamma_negative_fraction", "gamma_min"):
        if column not in frame.columns:
            frame[column] = np.nan  # histories written before the Γ diagnostic lack the last two
    if "diverged" not in frame.columns:
        frame["diverged"] = ~np.isfinite(pd.to_numeric(frame["loss"], errors="coerce")) if "loss" in frame else False
    return frame


def _ordered(frame, dtypes):
    lead = [c for c in dtypes if c in frame.columns]
    return frame[lead + [c for c in frame.columns if c not in dtypes]].reset_index(drop=True)


def list_experiments(out) -> list[str]:
    """Experiment folders under ``out`` (those with a history, grid search or best params), in the
    registry's order, then any others alphabetically."""
    from .experiments import EXPERIMENTS

    out = Path(out)
    if not out.is_dir():
        return []
    found = {p.name for p in out.iterdir() if p.is_dir() and any(
        (p / f).is_file() for f in ("history.csv", "gridsearch.csv", "best_params.json"))}
    return [n for n in EXPERIMENTS if n in found] + sorted(found - set(EXPERIMENTS))


# ------------------------------------------------------------------------------------ statistics
def mean_ci(values, confidence: float = 0.95) -> dict:
    """``{"n", "mean", "std", "sem", "ci_low", "ci_high"}`` of the finite ``values``: sample std
    (ddof=1) and the t-based interval mean ± t_{(1+c)/2, n−1}·std/√n. n < 2 gives NaN std and CI
    (n = 0 also a NaN mean); a constant sample gives a zero-width interval."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "std": math.nan, "sem": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    std = float(x.std(ddof=1))
    sem = std / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return {"n": n, "mean": mean, "std": std, "sem": sem, "ci_low": mean - half, "ci_high": mean + half}


def diverged_runs(history: pd.DataFrame) -> pd.DataFrame:
    """One row per run (:data:`RUN_KEY`) with ``diverged`` = the trainer flagged any epoch, or any
    train/test loss is non-finite."""
    losses = [c for c in ("loss", "test_loss") if c in history.columns]
    bad = history["diverged"].astype(bool).copy()
    for column in losses:
        values = history[column].astype(float)
        # A test loss that was never recorded (all NaN for the run) is not divergence; inf/NaN
        # amid finite values is.
        bad |= np.isinf(values) | (values.isna() & history.groupby(RUN_KEY)[column].transform("count").gt(0))
    return bad.groupby([history[k] for k in RUN_KEY]).any().rename("diverged").reset_index()


def summarize_epochs(history: pd.DataFrame, metrics=tuple(METRICS), confidence: float = 0.95,
                     exclude_diverged: bool = True) -> pd.DataFrame:
    """Long table, one row per (experiment, optimizer, bias_correction, epoch, metric): ``n`` runs,
    ``mean``, ``std``, ``sem``, ``ci_low``, ``ci_high`` (t-based, :func:`mean_ci`) and
    ``diverged`` (runs left out because they diverged, when ``exclude_diverged``)."""
    frame = history
    runs = diverged_runs(history)
    n_div = runs.groupby(["experiment", "optimizer", "bias_correction"])["diverged"].sum()
    if exclude_diverged:
        frame = history.merge(runs[runs["diverged"]][RUN_KEY], how="left", indicator=True)
        frame = frame[frame["_merge"] == "left_only"].drop(columns="_merge")
    rows = []
    keys = ["experiment", "optimizer", "bias_correction", "epoch"]
    for key, group in frame.groupby(keys, sort=True):
        for metric in metrics:
            if metric not in group.columns:
                continue
            row = dict(zip(keys, key))
            row["metric"] = metric
            row.update(mean_ci(group[metric], confidence))
            row["diverged"] = int(n_div.get(tuple(key[:3]), 0)) if exclude_diverged else 0
            rows.append(row)
    columns = keys + ["metric", "n", "mean", "std", "sem", "ci_low", "ci_high", "diverged"]
    return pd.DataFrame(rows, columns=columns)


def final_epoch(history: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its row at its last recorded epoch, ``diverged`` from :func:`diverged_runs`
    (a run the trainer stopped early still counts, as diverged)."""
    last = history[history["epoch"] == history.groupby(RUN_KEY)["epoch"].transform("max")]
    last = last.drop(columns="diverged").merge(diverged_runs(history), on=RUN_KEY, how="left")
    return last.sort_values(RUN_KEY).reset_index(drop=True)


def _welch(a: np.ndarray, b: np.ndarray, confidence: float) -> dict:
    """Difference of means b − a, its Welch CI, Welch's t (of b vs a) and p; NaN when n < 2."""
    na, nb = a.size, b.size
    out = {"diff": (b.mean() - a.mean()) if na and nb else math.nan,
           "diff_ci_low": math.nan, "diff_ci_high": math.nan, "welch_df": math.nan,
           "welch_t": math.nan, "welch_p": math.nan}
    if na < 2 or nb < 2:
        return out
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    se = math.sqrt(va + vb)
    if se == 0.0:
        # Two constant samples: the difference is exact. t is ±inf (or undefined if equal).
        out.update(diff_ci_low=out["diff"], diff_ci_high=out["diff"])
        if out["diff"] != 0.0:
            out.update(welch_t=math.copysign(math.inf, out["diff"]), welch_p=0.0)
        return out
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    res = stats.ttest_ind(b, a, equal_var=False)
    out.update(diff_ci_low=out["diff"] - half, diff_ci_high=out["diff"] + half, welch_df=df,
               welch_t=float(res.statistic), welch_p=float(res.pvalue))
    return out


def effect_size(a, b) -> tuple[float, float]:
    """Cohen's d and Hedges' g of ``b`` − ``a`` (pooled sample std; g = d·(1 − 3/(4(n_a+n_b) − 9))).
    NaN when either group has fewer than 2 values or the pooled std is 0 with equal means."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = a.size, b.size
    if na < 2 or nb < 2:
        return math.nan, math.nan
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    diff = b.mean() - a.mean()
    if pooled == 0.0:
        d = math.nan if diff == 0.0 else math.copysign(math.inf, diff)
    else:
        d = diff / pooled
    return d, d * (1.0 - 3.0 / (4.0 * (na + nb) - 9.0))


def count_wins(a: pd.Series, b: pd.Series, lower_is_better: bool) -> dict:
    """Pair ``a`` and ``b`` by index (run number) where both are finite: ``pairs``, ``a_wins``
    (a strictly better), ``b_wins``, ``ties``."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    both = both[np.isfinite(both["a"]) & np.isfinite(both["b"])]
    better = both["a"] < both["b"] if lower_is_better else both["a"] > both["b"]
    worse = both["a"] > both["b"] if lower_is_better else both["a"] < both["b"]
    return {"pairs": int(len(both)), "a_wins": int(better.sum()), "b_wins": int(worse.sum()),
            "ties": int(len(both) - better.sum() - worse.sum())}


def comparison_columns(a: str = "adam", b: str = "amsgrad") -> list[str]:
    """The columns of :func:`compare_final` for optimizers ``a`` (baseline) and ``b``."""
    return [
        "experiment", "bias_correction", "metric", "lower_is_better",
        f"n_{a}", f"n_{b}", f"diverged_{a}", f"diverged_{b}",
        f"mean_{a}", f"std_{a}", f"mean_{b}", f"std_{b}",
        "diff", "diff_ci_low", "diff_ci_high", "welch_df", "welch_t", "welch_p",
        "mannwhitney_u", "mannwhitney_p", "cohens_d", "hedges_g",
        "pairs", f"{a}_wins", f"{b}_wins", "ties",
        *PAIRED_COLUMNS,
    ]


# The paired statistics of compare_final (replication.stats.paired_tests and the power analysis).
PAIRED_COLUMNS = [
    "paired_diff", "paired_diff_std", "paired_ci_low", "paired_ci_high", "bootstrap_ci_low",
    "bootstrap_ci_high", "paired_t", "paired_p", "wilcoxon_w", "wilcoxon_p", "cohens_dz",
    "mde", "mde_dz", "runs_needed",
]


COMPARISON_COLUMNS = comparison_columns()


def compare_final(history: pd.DataFrame, metrics=tuple(METRICS), confidence: float = 0.95,
                  a: str = "adam", b: str = "amsgrad") -> pd.DataFrame:
    """Adam (``a``) vs AMSGrad (``b``) at each run's final epoch, one row per (experiment,
    bias_correction, metric) with both optimizers present; columns :data:`COMPARISON_COLUMNS`
    (:func:`comparison_columns` ``(a, b)`` for another pair, e.g. Pérez's Adam vs AdaMax: the
    optimizer names replace ``adam``/``amsgrad`` in them).

    ``diff`` = mean(AMSGrad) − mean(Adam) with its Welch CI (negative loss diff / positive accuracy
    diff = AMSGrad better); ``welch_t``/``welch_p`` Welch's unequal-variance t-test; Mann–Whitney U
    (two-sided, U of AMSGrad); Cohen's d and Hedges' g of AMSGrad − Adam (pooled std).
    ``adam_wins``: runs, paired by run index (same seeds), in which Adam's value is strictly better
    — lower for losses, higher for accuracies.

    Paired, on d_k = AMSGrad_k − Adam_k over the ``pairs`` runs both finished
    (:func:`replication.stats.paired_tests`): ``paired_diff`` (mean d) and ``paired_diff_std``,
    its t CI (``paired_ci_*``) and percentile-bootstrap CI (``bootstrap_ci_*``, seeded), the
    paired t-test (``paired_t``/``paired_p``), the Wilcoxon signed-rank test (``wilcoxon_*``),
    d_z = mean/sd (``cohens_dz``). Power of the paired t-test (two-sided, α = 0.05, 80 %):
    ``mde_dz`` = the smallest d_z that ``pairs`` runs detect, ``mde`` = that effect in the
    metric's units (``mde_dz`` × sd of d, the observed spread), ``runs_needed`` = the pairs the
    observed d_z would need (inf for d_z = 0).

    Diverged runs are left out of everything and counted in ``diverged_*``. n < 2 gives NaN
    statistics, never an exception."""
    finals = final_epoch(history)
    rows = []
    for (experiment, bc), group in finals.groupby(["experiment", "bias_correction"], sort=False):
        ga, gb = group[group["optimizer"] == a], group[group["optimizer"] == b]
        if ga.empty or gb.empty:
            continue
        oka, okb = ga[~ga["diverged"]], gb[~gb["diverged"]]
        for metric in metrics:
            if metric not in group.columns:
                continue
            lower = METRICS.get(metric, (metric, metric.endswith("loss")))[1]
            sa = oka.set_index("run")[metric].astype(float)
            sb = okb.set_index("run")[metric].astype(float)
            sa, sb = sa[np.isfinite(sa)], sb[np.isfinite(sb)]
            xa, xb = sa.to_numpy(), sb.to_numpy()
            row = {"experiment": experiment, "bias_correction": bool(bc), "metric": metric,
                   "lower_is_better": lower, f"n_{a}": xa.size, f"n_{b}": xb.size,
                   f"diverged_{a}": int(ga["diverged"].sum()), f"diverged_{b}": int(gb["diverged"].sum()),
                   f"mean_{a}": xa.mean() if xa.size else math.nan,
                   f"std_{a}": xa.std(ddof=1) if xa.size > 1 else math.nan,
                   f"mean_{b}": xb.mean() if xb.size else math.nan,
                   f"std_{b}": xb.std(ddof=1) if xb.size > 1 else math.nan}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                row.update(_welch(xa, xb, confidence))
                u = p = math.nan
                if xa.size >= 2 and xb.size >= 2:
                    res = stats.mannwhitneyu(xb, xa, alternative="two-sided")
                    u, p = float(res.statistic), float(res.pvalue)
                row.update(mannwhitney_u=u, mannwhitney_p=p)
                row["cohens_d"], row["hedges_g"] = effect_size(xa, xb)
            wins = count_wins(sa, sb, lower)
            row.update({"pairs": wins["pairs"], f"{a}_wins": wins["a_wins"], f"{b}_wins": wins["b_wins"],
                        "ties": wins["ties"]})
            row.update(_paired(sa, sb, confidence))
            rows.append(row)
    return pd.DataFrame(rows, columns=comparison_columns(a, b))


def _paired(sa: pd.Series, sb: pd.Series, confidence: float) -> dict:
    """The :data:`PAIRED_COLUMNS` of two per-run series, paired by run index (the index)."""
    both = pd.concat([sa.rename("a"), sb.rename("b")], axis=1, join="inner").dropna()
    out = paired_stats.paired_tests(both["a"].to_numpy(), both["b"].to_numpy(), confidence)
    del out["pairs"]  # count_wins already gave it
    n, sd = len(both), out["paired_diff_std"]
    mde_dz = paired_stats.min_detectable_effect(n)
    out["mde_dz"] = mde_dz
    out["mde"] = mde_dz * sd if n >= 2 else math.nan
    out["runs_needed"] = paired_stats.runs_needed(out["cohens_dz"])
    return out


def summarize_final(history: pd.DataFrame, metrics=tuple(METRICS)) -> pd.DataFrame:
    """Per (experiment, optimizer, bias_correction): ``runs``, ``diverged`` and, over the
    non-diverged runs' final epochs, ``<metric>_mean`` / ``<metric>_std``."""
    finals = final_epoch(history)
    rows = []
    for key, group in finals.groupby(["experiment", "optimizer", "bias_correction"], sort=False):
        ok = group[~group["diverged"]]
        row = dict(zip(["experiment", "optimizer", "bias_correction"], key))
        row.update(runs=len(group), diverged=int(group["diverged"].sum()),
                   final_epoch=int(group["epoch"].max()))
        for metric in metrics:
            if metric in ok.columns:
                s = mean_ci(ok[metric])
                row[f"{metric}_mean"], row[f"{metric}_std"] = s["mean"], s["std"]
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- synthetic problem
# What distinguishes one sweep of the synthetic problem from another (everything but the runs'
# own α, seed and optimizer); present columns only, so older files still group.
SYNTHETIC_GROUP = ["setting", "schedule", "bias_correction", "beta_1", "beta_2", "epsilon", "big_gradient"]
SYNTHETIC_RUN = SYNTHETIC_GROUP + ["optimizer", "learning_rate", "seed"]
X_STAR = -1.0

# The α grid search of the synthetic problem, stated before it was run (McGill §III-A: "a grid
# search to find a learning rate α which yields good convergence"; the paper gives no criterion).
SEARCH_TOLERANCE = 0.05
SEARCH_CRITERION = (
    "for each α, AMSGrad's final distance to the optimum, x_T − (−1), median over seeds; the α "
    "with the smallest median wins (ties: the smaller α). AMSGrad *reaches* −1 when that median "
    f"is ≤ {SEARCH_TOLERANCE:g}. Evaluated at every power of ten of steps (≥ 10⁴) that all runs of a "
    "sweep recorded and at their common last step; the choice is the one at the last step."
)


def _present(frame, columns):
    return [c for c in columns if c in frame.columns]


def synthetic_endpoints(frame: pd.DataFrame) -> pd.DataFrame:
    """x and R_t/t of every run at each *budget* of its sweep: every power of ten ≥ 10⁴ that all
    runs of the sweep recorded, and the sweep's common last step (the smallest last step of its
    runs). The loop's iterates do not depend on the horizon (α_t = α/√t and the draws are fixed
    per step), so a run's state at step T is the end point of a T-step run. Columns: the run's
    key, ``steps`` (the budget), ``x``, ``avg_regret``, ``distance`` = x − (−1)."""
    group, run = _present(frame, SYNTHETIC_GROUP), _present(frame, SYNTHETIC_RUN)
    rows = []
    for _, sweep in frame.groupby(group, dropna=False, sort=False):
        runs = sweep.groupby(run, dropna=False, sort=False)
        horizon = int(runs["step"].max().min())
        recorded = set.intersection(*(set(steps) for steps in runs["step"].agg(list)))
        decades = {10**k for k in range(4, 20) if 10**k < horizon and 10**k in recorded}
        budgets = sorted(decades | {horizon})
        at = sweep[sweep["step"].isin(budgets)]
        rows.append(at[run + ["step", "x", "avg_regret"]])
    if not rows:
        return pd.DataFrame(columns=run + ["steps", "x", "avg_regret", "distance"])
    out = pd.concat(rows, ignore_index=True).rename(columns={"step": "steps"})
    out["distance"] = out["x"] - X_STAR
    return out


def search_learning_rate(frame: pd.DataFrame) -> pd.DataFrame:
    """The α grid search of :data:`SEARCH_CRITERION`, per sweep and budget
    (:func:`synthetic_endpoints`). One row per (sweep, ``steps``, ``learning_rate``):
    ``seeds``; AMSGrad's ``amsgrad_x_median``, ``amsgrad_distance_median`` / ``_min`` / ``_max``
    (over seeds) and ``amsgrad_regret_median`` (R_T/T); Adam's ``adam_x_median``, ``adam_x_min``
    and ``adam_regret_median`` at the same α (NaN if Adam was not run); ``chosen`` (the
    criterion's α at that budget) and ``reached`` (median distance ≤ :data:`SEARCH_TOLERANCE`).
    Sweeps without AMSGrad are left out."""
    ends = synthetic_endpoints(frame)
    group = _present(ends, SYNTHETIC_GROUP) + ["steps", "learning_rate"]
    ams, adam = ends[ends["optimizer"] == "amsgrad"], ends[ends["optimizer"] == "adam"]
    table = ams.groupby(group, dropna=False, sort=True).agg(
        seeds=("seed", "nunique"), amsgrad_x_median=("x", "median"),
        amsgrad_distance_median=("distance", "median"), amsgrad_distance_min=("distance", "min"),
        amsgrad_distance_max=("distance", "max"), amsgrad_regret_median=("avg_regret", "median"),
    ).reset_index()
    if not adam.empty:
        other = adam.groupby(group, dropna=False).agg(
            adam_x_median=("x", "median"), adam_x_min=("x", "min"),
            adam_regret_median=("avg_regret", "median")).reset_index()
        table = table.merge(other, on=group, how="left")
    for column in ("adam_x_median", "adam_x_min", "adam_regret_median"):
        if column not in table.columns:
            table[column] = np.nan
    table["reached"] = table["amsgrad_distance_median"] <= SEARCH_TOLERANCE
    best = (table.sort_values(["amsgrad_distance_median", "learning_rate"], kind="stable")
            .groupby(group[:-1], dropna=False, sort=False).head(1).index)
    table["chosen"] = table.index.isin(best)
    return table.reset_index(drop=True)


def check_synthetic_claim(frame: pd.DataFrame, adam_above: float = 0.9, amsgrad_below: float = 0.0) -> pd.DataFrame:
    """The synthetic claim (also :func:`replication.synthetic.check_claim`), free of Keras: per
    sweep and α the median over seeds of the final x; the claim holds when Adam's is >
    ``adam_above`` and AMSGrad's < ``amsgrad_below``."""
    run = _present(frame, SYNTHETIC_RUN)
    last = frame[frame["step"] == frame.groupby(run, dropna=False)["step"].transform("max")]
    group = _present(frame, SYNTHETIC_GROUP) + ["optimizer", "learning_rate"]
    summary = (last.groupby(group, dropna=False).agg(x_median=("x", "median"), avg_regret=("avg_regret", "median"))
               .reset_index())
    keys = [c for c in group if c != "optimizer"]
    both = summary[summary.optimizer == "adam"].merge(
        summary[summary.optimizer == "amsgrad"], on=keys, suffixes=("_adam", "_amsgrad"))
    both = both.drop(columns=["optimizer_adam", "optimizer_amsgrad"])
    both["claim_holds"] = (both["x_median_adam"] > adam_above) & (both["x_median_amsgrad"] < amsgrad_below)
    return both[keys + ["x_median_adam", "x_median_amsgrad", "avg_regret_adam", "avg_regret_amsgrad",
                        "claim_holds"]].reset_index(drop=True)
