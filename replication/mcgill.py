"""McGill's report against McGill's code (issue 27): the facts of their repository, our reruns of
their code's protocol beside the values read off their figures, and the ablation between the two.

No TensorFlow: everything here reads committed CSV/JSON files, for ``replicate report`` and the
generated blocks of the README and ``docs/``. The facts below were checked in the public repository
``tamirbennatan/Adam-Convergence`` (the commit of each is named); ``../shared/mcgill/README.md`` of
this workplace lists the same points with the files that show them.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

REPOSITORY = "tamirbennatan/Adam-Convergence"
FIGURE_COMMIT = "3d93029"  # "experiment scripts and result charts": run scripts, param_config.yml, figures
READINGS = Path("mcgill-code") / "mcgill-figure-readings.csv"
FIGURE_DIR = Path("mcgill-code") / "figures"

# Their figure prefix -> (our as-coded experiment, other versions of it to compare with their figures)
FIGURE_MODELS = {
    "logreg": ("mnist-logreg-mcgill-code", ()),
    "ffnn": ("mnist-mlp-mcgill-code", ("mnist-mlp-mcgill-code-3d52d12",)),
    "cifarnet": ("cifar10-cifarnet-mcgill-code", ()),
}
FIGURE_STEMS = {"logreg": "logreg", "ffnn": "ffnn", "cifarnet": "cifar"}
QUANTITY_COLUMNS = {"train_loss": "loss", "test_loss": "test_loss", "train_accuracy": "accuracy",
                    "test_accuracy": "test_accuracy"}

# Table I three ways: (model, optimizer) -> (α, β2). The report's Table I; the grid search's pickles
# AWS/gridsearch/best_params/*.pkl (decoded here: dicts of lr and a float64 beta_2); the final runs'
# AWS/experiments/param_config.yml at 3d93029 (logistic regression: α replaced by a hard-coded 0.001).
TABLE_ONE = {
    "report Table I": {("logreg", "adam"): (0.001, 0.99), ("logreg", "amsgrad"): (0.001, 0.99),
                       ("ffnn", "adam"): (0.001, 0.99), ("ffnn", "amsgrad"): (0.001, 0.999),
                       ("cifarnet", "adam"): (0.001, 0.999), ("cifarnet", "amsgrad"): (0.001, 0.999)},
    "their search (pickles)": {("logreg", "adam"): (0.001, 0.9975), ("logreg", "amsgrad"): (0.001, 0.999),
                               ("ffnn", "adam"): (0.001, 0.9925), ("ffnn", "amsgrad"): (0.001, 0.9975)},
    "their final runs (param_config.yml 3d93029)": {
        ("logreg", "adam"): (0.001, 0.999), ("logreg", "amsgrad"): (0.001, 0.999),
        ("ffnn", "adam"): (0.001, 0.99), ("ffnn", "amsgrad"): (0.001, 0.999),
        ("cifarnet", "adam"): (0.001, 0.99), ("cifarnet", "amsgrad"): (0.001, 0.99)},
}
# Our experiments of each model: the report's protocol and the code's.
OURS = {"logreg": ("mnist-logreg", "mnist-logreg-mcgill-code"), "ffnn": ("mnist-mlp", "mnist-mlp-mcgill-code"),
        "cifarnet": ("cifar10-cifarnet", "cifar10-cifarnet-mcgill-code")}

# The differences between their report and their code, in our words: (point, report, code, where).
DIFFERENCES = (
    ("input scale", "not stated (we used [0, 1])", "raw pixels 0..255, MNIST and CIFAR",
     "data/MNIST/load_mnist.py, data/CIFAR/load_cifar.py, AWS/experiments/*_experiments.py"),
    ("MNIST split", "70,000 images", "all 70,000 split at random 60k/10k, seed 551 (`train_test_split`)",
     "data/MNIST/load_mnist.py"),
    ("CIFAR test set", "the test set", "training batch 5 read again: 'test' = training images 40,000..49,999",
     "data/CIFAR/load_cifar.py"),
    ("final-run schedule", "α/√t", "logreg: 0.001/√(1+epoch) set per epoch; FFNN, CifarNet: constant α",
     "AWS/experiments/*_experiments.py"),
    ("search schedule", "α/√t", "Keras 2 `decay=0.14`: α/(1 + 0.14·k) per update", "AWS/gridsearch/tune_*.py"),
    ("search loss, score, folds", "multiclass log-loss, smallest validation loss, 3 folds, early stopping",
     "categorical CE, validation accuracy, unshuffled KFold(3), 30 epochs, no early stopping",
     "AWS/gridsearch/tune_*.py"),
    ("CifarNet", "Appendix 1 (2 conv + pool + BN, Dense 384/192)",
     "6×6 kernels, one 2×2 pooling, BN, Dense 384, dropout, softmax (Dense 192 added later, e7d1bb6)",
     "AWS/experiments/models.py (3d93029)"),
    ("final-run α, β2", "Table I", "param_config.yml: logreg 0.001/0.999 (α hard-coded), FFNN Adam 0.001/0.99, "
     "AMSGrad 0.001/0.999, CifarNet 0.001/0.99", "AWS/experiments/param_config.yml (3d93029; 3d52d12: FFNN α 0.0001)"),
    ("FFNN epochs", "50", "35 (their figures end at epoch 34)", "results/images/ffnn_*.png"),
    ("training loss", "per epoch", "Keras's running mean over the epoch's batches (dropout on) — as our `loss`",
     "AWS/experiments/*_experiments.py (history['loss'])"),
)


def load_ablations(out) -> dict:
    """{base: frame} of every ``mcgill-code/ablation-<base>.csv`` under ``out`` (``control`` False
    where a file predates controls)."""
    frames = {}
    for path in sorted((Path(out) / "mcgill-code").glob("ablation-*.csv")):
        frame = pd.read_csv(path)
        if "control" not in frame.columns:
            frame["control"] = False
        frames[path.stem.removeprefix("ablation-")] = frame
    return frames


def load_readings(out) -> pd.DataFrame | None:
    path = Path(out) / READINGS
    return pd.read_csv(path) if path.is_file() else None


def our_values(history: pd.DataFrame, quantity: str, optimizer: str, curve: str, epoch: int) -> float:
    """Our value of a reading: ``curve`` mean / run_min / run_max over runs of ``optimizer`` at
    McGill's ``epoch`` (from 0, our epoch + 1); NaN if we have no such epoch."""
    column = QUANTITY_COLUMNS[quantity]
    rows = history[(history["optimizer"] == optimizer) & (history["epoch"] == epoch + 1)][column]
    if rows.empty:
        return math.nan
    return float({"mean": rows.mean, "run_min": rows.min, "run_max": rows.max}[curve]())


def compare_with_figures(histories: dict, readings: pd.DataFrame) -> pd.DataFrame:
    """One row per reading of their figures (first/last epoch, run extremes, plateaus) with ours
    beside it: ``ours`` (the as-coded experiment), ``ours_<version>`` for other versions, and
    ``diff`` = ours − theirs. ``histories``: {experiment: history DataFrame}."""
    rows = []
    for reading in readings.itertuples(index=False):
        experiment, versions = FIGURE_MODELS[reading.model]
        row = reading._asdict()
        for name in (experiment, *versions):
            history = histories.get(name)
            key = "ours" if name == experiment else f"ours_{name.rsplit('-', 1)[-1]}"
            row[key] = (our_values(history, reading.quantity, reading.optimizer, reading.curve, int(reading.epoch))
                        if history is not None else math.nan)
        row["diff"] = row["ours"] - reading.value
        rows.append(row)
    return pd.DataFrame(rows)


def version_distance(comparison: pd.DataFrame, model="ffnn") -> dict:
    """Mean |ours − theirs| over the mean-curve readings of ``model``, per version of our runs
    (``ours`` and each ``ours_<version>``): which param_config.yml their figures match better."""
    sub = comparison[(comparison["model"] == model) & (comparison["curve"] == "mean")]
    return {column: float(np.nanmean(np.abs(sub[column] - sub["value"])))
            for column in sub.columns if column.startswith("ours") and sub[column].notna().any()}


def plateau_runs(history: pd.DataFrame, column="loss", jump=0.1, ratio=2.0) -> pd.DataFrame:
    """Runs whose curve sits on a plateau and then drops, as McGill's logistic-regression figures
    show: epoch e (≥ 4) is the end of a plateau when the drop L[e−1] − L[e] exceeds ``jump`` and
    ``ratio`` times the decrease over the three epochs before (L[e−4] − L[e−1]). One row per run:
    optimizer, run, the epochs (from 0, as their figures) where a plateau ends."""
    rows = []
    for (optimizer, run), r in history.groupby(["optimizer", "run"], sort=True):
        values = r.sort_values("epoch")[column].to_numpy(dtype=float)
        ends = [e for e in range(4, len(values))
                if values[e - 1] - values[e] > jump and values[e - 1] - values[e] > ratio * max(values[e - 4] - values[e - 1], 0.0)]
        rows.append({"optimizer": optimizer, "run": int(run), "plateau_ends": ends})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------- figures
def write_figures(data) -> list[Path]:
    """Our as-coded runs in the form of McGill's per-run figures, into ``<out>/mcgill-code/figures/``
    (their file names, e.g. ``logreg_multi_trainloss.png``); only for experiments with runs."""
    from .plots import plot_mcgill_form

    written = []
    for model, (experiment, _versions) in FIGURE_MODELS.items():
        entry = data["experiments"].get(experiment)
        if not entry or entry["history"] is None:
            continue
        history = entry["history"]
        runs = history.groupby("optimizer")["run"].nunique().to_dict()
        note = f"ours, {experiment} (" + ", ".join(f"{k} {v} runs" for k, v in sorted(runs.items())) + ")"
        written += plot_mcgill_form(history, FIGURE_STEMS[model], Path(data["out"]) / FIGURE_DIR, note=note)
    return written


# ----------------------------------------------------------------------------------- report
def _f(x, digits=4) -> str:
    from .report import _fmt  # report imports this module: import at call time

    return _fmt(x, digits)


def _table(header, rows) -> list[str]:
    from .report import _table as table

    return table(header, rows)


def _table_one_rows(data) -> list[list[str]]:
    def pick(best, optimizer):
        if not best or optimizer not in best:
            return "—"
        return f"{best[optimizer]['learning_rate']:g} / {best[optimizer]['beta_2']:g}"

    rows = []
    for model, (ours, coded) in OURS.items():
        for optimizer in ("adam", "amsgrad"):
            cells = [model, optimizer]
            for source in TABLE_ONE.values():
                value = source.get((model, optimizer))
                cells.append(f"{value[0]:g} / {value[1]:g}" if value else "—")
            for name in (coded, ours):
                entry = data["experiments"].get(name) or {}
                cells.append(pick(entry.get("best_params"), optimizer))
            rows.append(cells)
    return rows


def _ablation_rows(ablations) -> list[list[str]]:
    rows = []
    for frame in ablations.values():
        for (base, step, control), group in frame.groupby(["base", "step", "control"], sort=False):
            g = group.set_index("optimizer")
            first = group.iloc[0]

            def cell(optimizer, column, digits=4):
                return _f(float(g.loc[optimizer, column]), digits) if optimizer in g.index else "—"

            rows.append([f"`{base}`", f"{int(step)}{'c' if control else ''}", first["change"],
                         " / ".join(f"{cell(o, 'learning_rate', 3)}, {cell(o, 'beta_2', 4)}" for o in ("adam", "amsgrad")),
                         " / ".join(cell(o, "loss_mean") for o in ("adam", "amsgrad")),
                         " / ".join(cell(o, "test_loss_mean") for o in ("adam", "amsgrad")),
                         " / ".join(cell(o, "test_accuracy_mean") for o in ("adam", "amsgrad")),
                         f"{_f(first['train_loss_diff'], 3)} (p {_f(first['train_loss_p'], 2)})",
                         f"{_f(first['test_loss_diff'], 3)} (p {_f(first['test_loss_p'], 2)})",
                         f"{int(first['runs'])} × {int(first['epochs'])}",
                         " / ".join(f"{int(g.loc[o, 'plateau_runs'])}" if o in g.index and "plateau_runs" in g.columns
                                    else "—" for o in ("adam", "amsgrad"))])
    return rows


def _readings_rows(comparison) -> list[list[str]]:
    rows = []
    sub = comparison[(comparison["curve"] == "mean")]
    for r in sub.itertuples(index=False):
        versions = [c for c in comparison.columns if c.startswith("ours_")]
        extra = "; ".join(f"{c[5:]}: {_f(getattr(r, c))}" for c in versions if math.isfinite(getattr(r, c)))
        rows.append([r.model, r.quantity, r.optimizer, int(r.epoch), f"{_f(r.value)} ± {_f(r.precision, 2)}",
                     _f(r.ours), _f(r.diff, 3), extra or "", (r.note or "") if isinstance(r.note, str) else ""])
    return rows


def section(data, figures=None) -> list[str]:
    """REPORT.md's section on McGill's code: differences, Table I three ways, our reruns beside
    their figures, plateaus, and the ablation."""
    out = Path(data["out"])
    coded = [name for _model, (name, versions) in FIGURE_MODELS.items() for name in (name, *versions)]
    present = [name for name in coded if (data["experiments"].get(name) or {}).get("history") is not None]
    lines = ["## McGill's report and McGill's code", "",
             f"McGill's code ({REPOSITORY}; run scripts, `param_config.yml` and figures from commit "
             f"{FIGURE_COMMIT}) ran another protocol than their report describes. The `*-mcgill-code` "
             "experiments rerun the code's protocol with our optimizers and losses (`replicate experiments NAME` "
             "shows each field).", ""]
    lines += _table(["point", "their report", "their code", "where (their repository)"],
                    [list(d) for d in DIFFERENCES])
    lines += ["### Table I three ways, and ours", "",
              "α / β2 per model and optimizer: their report's Table I, their grid search's pickled choice, their "
              "final runs' `param_config.yml`; then our rerun of their code's search (accuracy-scored, decay 0.14, "
              "raw pixels, their split) and our search under the report's protocol.", ""]
    lines += _table(["model", "optimizer", *TABLE_ONE, "our rerun of their search", "our search (report's protocol)"],
                    _table_one_rows(data))
    lines += ["### Their figures beside our rerun", ""]
    readings = load_readings(out)
    histories = {name: data["experiments"][name]["history"] for name in present}
    if readings is None or not present:
        lines += ["Needs `mcgill-code/mcgill-figure-readings.csv` and runs of the `*-mcgill-code` experiments.", ""]
    else:
        comparison = compare_with_figures(histories, readings)
        lines += [f"Values read off their per-run figures (`results/images/*_multi_*.png` of {REPOSITORY}, "
                  f"`{READINGS.as_posix()}`: pixel positions calibrated on the axes' grid lines and ticks, "
                  "± the reading's half-width) beside ours at the same epoch (theirs count from 0): the mean "
                  "over runs at the first and last epoch and at each plateau's start. Their figures are not "
                  "committed here; ours in their form are below.", ""]
        lines += _table(["model", "quantity", "optimizer", "epoch", "theirs", "ours (as coded)", "ours − theirs",
                         "other version", "their curve"], _readings_rows(comparison))
        distance = version_distance(comparison, "ffnn")
        if len(distance) > 1:
            lines += ["Mean |ours − theirs| over the FFNN's mean-curve readings, per `param_config.yml` version: "
                      + ", ".join(f"{'3d93029' if k == 'ours' else k[5:]} {v:.4f}" for k, v in distance.items())
                      + f" (their figures match {'3d93029' if min(distance, key=distance.get) == 'ours' else min(distance, key=distance.get)[5:]} better).", ""]
        logreg = histories.get("mnist-logreg-mcgill-code")
        if logreg is not None:
            plateaus = plateau_runs(logreg)
            counts = {o: int(sum(1 for ends in g["plateau_ends"] if ends)) for o, g in plateaus.groupby("optimizer")}
            lines += ["**Plateaus of logistic regression.** Runs whose training loss sits on a plateau and then "
                      "drops (a drop > 0.1 after three epochs that fell less than half as much; epochs from 0): "
                      + "; ".join(f"{o} {counts.get(o, 0)}/{len(g)} ("
                                  + ", ".join(f"run {r.run}: {r.plateau_ends}" for r in g.itertuples() if r.plateau_ends)
                                  + ")" for o, g in plateaus.groupby("optimizer"))
                      + ". Their figure shows such steps in 3 drawn Adam and 2 AMSGrad runs.", ""]
    if figures and figures.get("_mcgill"):
        for path in figures["_mcgill"]:
            lines += [f"![{path.stem}]({os.path.relpath(path, out)})", ""]
    ablations = load_ablations(out)
    rows = _ablation_rows(ablations)
    lines += ["### From our protocol to their code's, one factor at a time", "",
              "`replicate ablation BASE`: each step switches one more factor to the code's value (steps 1-5: "
              "a new grid search where the search changed, and 5 × 2 final runs; step 0 and the last step are "
              "the committed experiments). Cells: Adam / AMSGrad; Δ = AMSGrad − Adam per seed pair, paired t-test "
              "p (not Holm-adjusted).", ""]
    if rows:
        lines += _plateau_story(ablations)
        lines += _table(["base", "step", "change", "α, β2 used", "train loss", "test loss", "test acc.",
                         "Δ train loss", "Δ test loss", "runs × epochs",
                         "runs with plateaus"], rows)
    else:
        lines += ["No `mcgill-code/ablation-*.csv` yet (run `replicate ablation mnist-logreg`).", ""]
    return lines


def _plateau_story(ablations) -> list[str]:
    """Which ablation step makes the plateaus of McGill's logistic-regression figures appear."""
    frame = ablations.get("mnist-logreg")
    if frame is None or "plateau_runs" not in frame.columns:
        return []
    counts = frame.groupby(["step", "factor"], sort=False).apply(
        lambda g: {r.optimizer: (int(r.plateau_runs), int(r.runs)) for r in g.itertuples()}, include_groups=False)
    text = []
    for (step, factor), by_optimizer in counts.items():
        text.append(f"step {step} ({factor}) " + ", ".join(f"{o} {n}/{m}" for o, (n, m) in sorted(by_optimizer.items())))
    first = next(((step, factor) for (step, factor), v in counts.items()
                  if any(n for n, _ in v.values()) and not factor.startswith("control")), None)
    lines = ["**Where the plateaus of their logistic-regression figures come from.** Runs of `mnist-logreg` whose "
             "training loss sits on a plateau and then drops, per ablation step: " + "; ".join(text) + "."]
    if first is not None:
        lines[0] += (f" They first appear at step {first[0]} ({LABELS_FOR_REPORT.get(first[1], first[1])}), "
                     "with every earlier switch still on; our protocol (step 0) shows none.")
        control = counts.get((first[0], "control-unit-pixels"))
        if control is not None:
            found = sum(n for n, _ in control.values())
            lines[0] += (f" The control that runs step {first[0]} on pixels in [0, 1] (same α, β2 and schedule) has "
                         f"{found} such run{'s' if found != 1 else ''}: "
                         + ("the plateaus need the raw pixels." if found == 0 else "raw pixels alone do not explain them."))
    return lines + [""]


LABELS_FOR_REPORT = {"raw-pixels": "raw pixels", "final-schedule": "raw pixels with the code's per-epoch schedule",
                     "grid-schedule": "the search's decay", "grid-score": "the search's scoring", "split": "the split"}


# -------------------------------------------------------------------- docs/mcgill-code.md
# Each difference (DIFFERENCES' first column) -> the ablation factor that measures it, if any.
DIFFERENCE_FACTORS = {"input scale": "raw-pixels", "MNIST split": "split", "final-run schedule": "final-schedule",
                      "search schedule": "grid-schedule", "search loss, score, folds": "grid-score",
                      "final-run α, β2": "as-coded"}


def factor_effects(ablations) -> dict:
    """{factor: [(base, "what switching it changed"), ...]} from ``mcgill-code/ablation-*.csv``: per base, the α
    the final runs used, the mean final test loss (Adam / AMSGrad) and the paired AMSGrad − Adam
    test-loss difference, before → after the step. ``ablations``: :func:`load_ablations`."""
    effects = {}
    for frame in ablations.values():
        frame = frame[~frame["control"].astype(bool)]
        steps = sorted(set(frame["step"]))
        for before, after in zip(steps, steps[1:]):
            a, b = frame[frame["step"] == before].set_index("optimizer"), frame[frame["step"] == after].set_index("optimizer")
            if after != before + 1 or not {"adam", "amsgrad"} <= set(a.index) & set(b.index):
                continue
            factor = b["factor"].iloc[0]

            def pair(g, column, digits=3):
                return "/".join(_f(float(g.loc[o, column]), digits) for o in ("adam", "amsgrad"))

            text = (f"{b['base'].iloc[0].replace('mnist-', '')}: α {pair(a, 'learning_rate', 2)} → {pair(b, 'learning_rate', 2)}, "
                    f"test loss {pair(a, 'test_loss_mean')} → {pair(b, 'test_loss_mean')}, "
                    f"Δ test loss {_f(a['test_loss_diff'].iloc[0], 2)} → {_f(b['test_loss_diff'].iloc[0], 2)}")
            effects.setdefault(factor, []).append((b["base"].iloc[0], text))
    return effects


def readme_block(data) -> str:
    """The table of differences between McGill's report and their code (``docs/mcgill-code.md``),
    each with what it changes in our numbers (the ablation's step, or the as-coded CifarNet's runs)."""
    out = Path(data["out"])
    effects = factor_effects(load_ablations(out))

    def effect(factor, base=None):
        texts = [text for b, text in effects.get(factor, []) if base is None or b == base]
        return "; ".join(texts) or f"ablation step not run yet{f' for {base}' if base else ''}"
    cifar = (data["experiments"].get("cifar10-cifarnet-mcgill-code") or {}).get("history")
    if cifar is not None:
        finals = cifar[cifar["epoch"] == cifar.groupby(["optimizer", "run"])["epoch"].transform("max")]
        runs = finals.groupby("optimizer")["test_accuracy"].agg(["mean", "count"])
        cifar_text = ("`cifar10-cifarnet-mcgill-code`: 'test' accuracy "
                      + " / ".join(f"{runs.loc[o, 'mean']:.3f} ({int(runs.loc[o, 'count'])} run{'s' * (int(runs.loc[o, 'count']) != 1)})" for o in runs.index)
                      + " (Adam / AMSGrad) on images it trains on")
    else:
        cifar_text = "`cifar10-cifarnet-mcgill-code` (runs in progress)"
    rows = []
    for point, report, code, where in DIFFERENCES:
        factor = DIFFERENCE_FACTORS.get(point)
        if factor:
            change = effect(factor)
        elif point in ("CIFAR test set", "CifarNet"):
            change = cifar_text
        elif point == "training loss":
            change = "none: our `loss` column is that running mean too"
        else:
            change = effect("as-coded", "mnist-mlp") if point == "FFNN epochs" else "—"
        rows.append([point, report, code, f"`{where}`", change])
    return "\n".join(_table(["point", "their report", "their code", "where", "what it changes in our numbers"],
                            rows)).rstrip()
