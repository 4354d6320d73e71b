"""Figures (matplotlib, Agg backend; each saved as PNG and SVG).

Colours follow the paper: Adam blue, AMSGrad red; AdaMax green. Runs without bias correction are
drawn in a lighter shade of the same colour. Colours and names are the registry's
(:data:`replication.registry.OPTIMIZER_COLORS`, :func:`replication.registry.optimizer_label`).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from .errors import write_failed  # noqa: E402
from .registry import OPTIMIZER_COLORS, OPTIMIZER_LIGHT_COLORS, optimizer_label  # noqa: E402


def color_for(optimizer: str, bias_correction: bool = True) -> str:
    """The registry's colour of ``optimizer`` (its lighter shade without bias correction); grey for
    an optimizer it does not list (a user's)."""
    table = OPTIMIZER_COLORS if bias_correction else OPTIMIZER_LIGHT_COLORS
    return table.get(optimizer, "#555555")


# The × on a diverged grid point of a search's heat map: red on viridis, whichever optimizer's panel.
DIVERGED_MARK = "#c0262d"


def save_figure(fig, path_stem) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.svg``; returns both paths."""
    stem = Path(path_stem)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(paths[0], dpi=110, bbox_inches="tight")
        # A fixed salt for the SVG's element ids: the same data gives the same file (no churn in git).
        with matplotlib.rc_context({"svg.hashsalt": "replication"}):
            fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})
    except OSError as exc:  # disk full, permissions: one line from the CLI, not a traceback
        raise write_failed(exc.filename or f"{stem}.png/.svg", exc) from None
    finally:
        plt.close(fig)
    return paths


# Columns that tell one sweep of the synthetic problem from another (results.SYNTHETIC_GROUP,
# restated so that drawing needs no import of the results module).
SWEEP = ["setting", "schedule", "bias_correction", "beta_1", "beta_2", "epsilon", "big_gradient"]
HORIZON_MARK = 1_000_000  # the reproduction's (and McGill's) run length, marked on longer runs


def sweep_stem(setting, schedule="inverse-sqrt", beta_1=0.9, beta_2=0.99, bias_correction=True) -> str:
    """File stem of a synthetic figure: ``synthetic-online`` for the paper's setting (α/√t,
    β1 = 0.9, β2 = 0.99, bias correction on), with what differs appended (``-constant``, the βs,
    ``-no-bias-correction``). The §3 family's βs depend on C, so they never name its file."""
    stem = f"synthetic-{setting}"
    if schedule != "inverse-sqrt":
        stem += f"-{schedule}"
    if setting != "cyclic" and (float(beta_1), float(beta_2)) != (0.9, 0.99):
        stem += f"-beta1-{beta_1:g}-beta2-{beta_2:g}"
    return stem + ("" if bias_correction else "-no-bias-correction")


def _sweep_rows(frame):
    """(stem, [(row label, rows of one α)]) per figure: one figure per sweep, the §3 family's
    sweeps (one per C) together."""
    present = [c for c in SWEEP if c in frame.columns]
    figures = {}
    for key, sweep in frame.groupby(present, dropna=False, sort=False):
        k = dict(zip(present, key))
        stem = sweep_stem(k["setting"], k.get("schedule", "constant"), k.get("beta_1", 0.9),
                          k.get("beta_2", 0.99), k.get("bias_correction", True))
        for lr, rows in sweep.groupby("learning_rate", sort=True):
            label = f"α={lr:g}"
            if k["setting"] == "cyclic":
                label = f"C={k.get('big_gradient', float('nan')):g}, β1={k['beta_1']:g}, β2={k['beta_2']:.3g}, " + label
            order = (k.get("beta_1", 0.0), k.get("big_gradient", 0.0), lr)  # §3: Theorem 1's βs first, C up
            figures.setdefault(stem, (k, []))[1].append((order, label, rows))
    return {stem: (k, [(label, rows) for _o, label, rows in sorted(entries, key=lambda e: e[0])])
            for stem, (k, entries) in figures.items()}


def plot_synthetic(frame, out_dir) -> list[Path]:
    """One figure per sweep (the §3 family's C values together): x_t (left), R_t/t (middle) and the
    share of steps with Γ_t < 0 (right) against t, one row per learning rate in ``frame``, every
    seed drawn (the stochastic end state depends on the draw). The band is x's range between
    records; a dotted line marks 1 M steps on longer runs. Files :func:`sweep_stem` ``.{png,svg}``."""
    out_dir = Path(out_dir)
    written = []
    has_gamma = "gamma_negative_fraction" in frame.columns
    for stem, (k, rows) in _sweep_rows(frame).items():
        ncols = 3 if has_gamma else 2
        fig, axes = plt.subplots(len(rows), ncols, figsize=(5.5 * ncols, 2.6 * len(rows)), squeeze=False)
        for row, (label, sub) in enumerate(rows):
            ax_x, ax_r = axes[row][:2]
            for (name, bc, seed), run in sub.groupby(["optimizer", "bias_correction", "seed"], sort=False):
                color = color_for(name, bool(bc))
                first = seed == sub["seed"].min()
                legend = f"{optimizer_label(name)}{'' if bc else ' (no bias corr.)'}" if first else None
                ax_x.plot(run["step"], run["x"], color=color, lw=1.0, alpha=0.9, label=legend)
                ax_x.fill_between(run["step"], run["x_min"], run["x_max"], color=color, alpha=0.08, lw=0)
                ax_r.plot(run["step"], run["avg_regret"], color=color, lw=1.0, alpha=0.9, label=legend)
                if has_gamma:
                    axes[row][2].plot(run["step"], run["gamma_negative_fraction"], color=color, lw=1.0,
                                      alpha=0.9, label=legend)
            ax_x.axhline(-1.0, color="k", lw=0.6, ls=":")
            ax_x.set_ylim(-1.05, 1.05)
            ax_x.set_ylabel("x_t")
            ax_r.set_ylabel("R_t / t")
            ax_r.set_yscale("symlog", linthresh=1e-2)  # regret against x* can be negative (stochastic)
            for ax in axes[row]:
                ax.grid(alpha=0.3)
                if sub["step"].max() > HORIZON_MARK:
                    ax.axvline(HORIZON_MARK, color="0.4", lw=0.8, ls=":")
            if has_gamma:
                axes[row][2].set_ylim(-0.05, 1.05)
                axes[row][2].set_ylabel("share of steps with Γ_t < 0")
            # Each row says its α (and C, β for the §3 family) in its own titles.
            ax_x.set_title(f"{label}: iterate x_t (optimum −1)", fontsize=10)
            ax_r.set_title(f"{label}: average regret", fontsize=10)
            if has_gamma:
                axes[row][2].set_title(f"{label}: Γ_t < 0 (Reddi et al. eq. 2)", fontsize=10)
            if row == 0:
                ax_x.legend(loc="best", fontsize=8)
        for ax in axes[-1]:
            ax.set_xlabel("iteration t")
        schedule = {"inverse-sqrt": "α_t = α/√t", "constant": "α_t = α"}.get(k.get("schedule"), k.get("schedule"))
        fig.suptitle(f"{k['setting']} setting, {schedule}" + ("" if k.get("bias_correction", True)
                                                              else ", no bias correction"))
        fig.tight_layout()
        written += save_figure(fig, out_dir / stem)
    return written


def plot_alpha_search(search, out_dir) -> list[Path]:
    """The α grid search (:func:`replication.results.search_learning_rate`), one column per
    online/stochastic sweep: top, the median over seeds of the final distance to the optimum,
    x_T − (−1), against α — AMSGrad with its range over seeds at every budget (1 M steps dashed),
    Adam at the last budget, the tolerance of "reaches −1" dotted, the chosen α starred; bottom,
    the median R_T/T at the last budget. Files ``synthetic-alpha-search[-<schedule>…].{png,svg}``."""
    from .results import SEARCH_TOLERANCE  # Keras-free, like this module

    out_dir = Path(out_dir)
    search = search[search["setting"] != "cyclic"]
    written = []
    if search.empty:
        return written
    present = [c for c in SWEEP if c in search.columns and c != "setting"]
    for key, family in search.groupby(present, dropna=False, sort=False):
        k = dict(zip(present, key))
        sweeps = list(family.groupby("setting", sort=False))
        fig, axes = plt.subplots(2, len(sweeps), figsize=(6.0 * len(sweeps), 7.0), squeeze=False)
        for col, (setting, table) in enumerate(sweeps):
            ax_d, ax_r = axes[0][col], axes[1][col]
            budgets = sorted(table["steps"].unique())
            last = table[table["steps"] == budgets[-1]].sort_values("learning_rate")
            for steps in budgets:
                at = table[table["steps"] == steps].sort_values("learning_rate")
                final = steps == budgets[-1]
                style = "-" if final else ("--" if steps == HORIZON_MARK else ":")
                med = at["amsgrad_distance_median"].to_numpy()
                err = np.vstack([med - at["amsgrad_distance_min"].to_numpy(), at["amsgrad_distance_max"].to_numpy() - med])
                ax_d.errorbar(at["learning_rate"], med, yerr=err if final else None, color=color_for("amsgrad"),
                              ls=style, marker="o", ms=3, lw=1.2 if final else 0.9, capsize=2,
                              alpha=1.0 if final else 0.6, label=f"AMSGrad, T = {steps:,}")
            ax_d.plot(last["learning_rate"], last["adam_x_median"] + 1.0, color=color_for("adam"), marker="o", ms=3,
                      lw=1.2, label=f"Adam, T = {budgets[-1]:,}")
            best = last[last["chosen"]]
            ax_d.plot(best["learning_rate"], best["amsgrad_distance_median"], marker="*", ms=14, color="k",
                      ls="none", label=f"chosen α = {best['learning_rate'].iloc[0]:g}")
            ax_d.axhline(SEARCH_TOLERANCE, color="k", lw=0.7, ls=":")
            ax_d.set_yscale("log")
            ax_d.set_ylim(1e-4, 3)
            ax_d.set_ylabel("median x_T − (−1) over seeds")
            ax_d.set_title(f"{setting}, {k.get('schedule', 'constant')}: distance to the optimum")
            ax_d.legend(fontsize=7)
            for name, column in (("amsgrad", "amsgrad_regret_median"), ("adam", "adam_regret_median")):
                ax_r.plot(last["learning_rate"], last[column], color=color_for(name), marker="o", ms=3,
                          label=f"{optimizer_label(name)}, T = {budgets[-1]:,}")
            ax_r.set_yscale("symlog", linthresh=1e-2)
            ax_r.set_ylabel("median R_T / T")
            ax_r.set_xlabel("α (α_t = α/√t)" if k.get("schedule") == "inverse-sqrt" else "α")
            ax_r.legend(fontsize=7)
            for ax in (ax_d, ax_r):
                ax.set_xscale("log")
                ax.grid(alpha=0.3, which="both")
        fig.tight_layout()
        stem = sweep_stem("alpha-search", k.get("schedule", "constant"), k.get("beta_1", 0.9),
                          k.get("beta_2", 0.99), k.get("bias_correction", True))
        written += save_figure(fig, out_dir / stem)
    return written


# ----------------------------------------------------------------- networks (report figures)
PANELS = (("loss", "train loss"), ("test_loss", "test loss"), ("accuracy", "train accuracy"),
          ("test_accuracy", "test accuracy"))


def _label(optimizer, bias_correction=True) -> str:
    return f"{optimizer_label(optimizer)}{'' if bias_correction else ' (no bias corr.)'}"


def _metric_axes(title):
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), squeeze=False)
    fig.suptitle(title)
    return fig, axes.ravel()


def _t_band(values: np.ndarray, n: np.ndarray, std: np.ndarray, confidence=0.95):
    from scipy import stats

    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(n > 1, stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)), np.nan)
        half = t * std / np.sqrt(n)
    return values - half, values + half


def plot_runs(history, out_dir) -> list[Path]:
    """McGill Appendix 2: per experiment, every run of every optimizer (run 0 in bold, the run the
    paper's figures show), train/test loss and accuracy against epoch in 2×2 panels. Files
    ``<out_dir>/<experiment>-runs.{png,svg}`` (``out_dir`` may hold a ``{experiment}`` field)."""
    written = []
    for experiment, frame in history.groupby("experiment", sort=False):
        fig, axes = _metric_axes(f"{experiment}: every run (first in bold)")
        first_run = frame["run"].min()
        for ax, (metric, name) in zip(axes, PANELS):
            if metric not in frame.columns or frame[metric].isna().all():
                ax.set_visible(False)
                continue
            for (opt, bc, run), r in frame.groupby(["optimizer", "bias_correction", "run"], sort=False):
                bold = run == first_run
                r = r.sort_values("epoch")
                ax.plot(r["epoch"], r[metric], color=color_for(opt, bool(bc)), lw=2.2 if bold else 0.9,
                        alpha=1.0 if bold else 0.55, label=_label(opt, bool(bc)) if bold else None,
                        zorder=3 if bold else 2)
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if "loss" in metric:
                ax.set_yscale("log")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        written += save_figure(fig, Path(str(out_dir).format(experiment=experiment)) / f"{experiment}-runs")
    return written


def plot_bands(summary, out_dir) -> list[Path]:
    """Mean ± CI band over runs per optimizer, train/test loss and accuracy against epoch.
    ``summary``: :func:`replication.results.summarize_epochs`'s long table. Files
    ``<out_dir>/<experiment>-mean-ci.{png,svg}``."""
    written = []
    for experiment, frame in summary.groupby("experiment", sort=False):
        fig, axes = _metric_axes(f"{experiment}: mean over runs, 95% CI band")
        for ax, (metric, name) in zip(axes, PANELS):
            sub = frame[frame["metric"] == metric]
            if sub.empty or sub["mean"].isna().all():
                ax.set_visible(False)
                continue
            for (opt, bc), r in sub.groupby(["optimizer", "bias_correction"], sort=False):
                r = r.sort_values("epoch")
                color = color_for(opt, bool(bc))
                n = int(r["n"].max())
                ax.plot(r["epoch"], r["mean"], color=color, lw=1.6, label=f"{_label(opt, bool(bc))} (n={n})")
                ax.fill_between(r["epoch"], r["ci_low"], r["ci_high"], color=color, alpha=0.2, lw=0)
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        written += save_figure(fig, Path(str(out_dir).format(experiment=experiment)) / f"{experiment}-mean-ci")
    return written


def _iteration_curves(ax, frame):
    for (opt, bc), sub in frame.groupby(["optimizer", "bias_correction"], sort=False):
        g = sub.groupby("iteration")["loss"].agg(["mean", "std", "count"]).reset_index()
        color = color_for(opt, bool(bc))
        runs = sub["run"].nunique()
        ax.plot(g["iteration"], g["mean"], color=color, lw=1.2, label=f"{_label(opt, bool(bc))} (n={runs})")
        low, high = _t_band(g["mean"].to_numpy(), g["count"].to_numpy(), g["std"].to_numpy())
        ax.fill_between(g["iteration"], low, high, color=color, alpha=0.2, lw=0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)


def plot_iterations(iterations, out_dir) -> list[Path]:
    """Training loss against iterations (the paper's figure layout for the networks): mean over
    runs per optimizer with a 95% CI band. One file per experiment,
    ``<out_dir>/<experiment>-iterations.{png,svg}``."""
    written = []
    for experiment, frame in iterations.groupby("experiment", sort=False):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        _iteration_curves(ax, frame)
        ax.set_title(f"{experiment}: training loss")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written += save_figure(fig, Path(str(out_dir).format(experiment=experiment)) / f"{experiment}-iterations")
    return written


def plot_iterations_overview(iterations, path_stem) -> list[Path]:
    """All experiments side by side (one panel each), training loss against iterations."""
    groups = list(iterations.groupby("experiment", sort=False))
    if not groups:
        return []
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.0), squeeze=False)
    for ax, (experiment, frame) in zip(axes[0], groups):
        _iteration_curves(ax, frame)
        ax.set_title(experiment)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path_stem)


def _ink_on(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba`` (WCAG relative luminance:
    black above 0.179, where its contrast ratio beats white's)."""
    def linear(c):
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(float(c)) for c in rgba[:3])
    return "k" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "w"


def plot_gridsearch(grid, out_dir, scores=None) -> list[Path]:
    """Grid-search heatmaps: per experiment one panel per optimizer (and bias-correction setting),
    α across, β2 down, colour = mean validation log-loss (lower is better, shared scale), or mean
    validation accuracy for an experiment whose search picks by accuracy (``scores``:
    {experiment: "accuracy"}; McGill's code), diverged cells marked ×, the chosen point boxed
    (for accuracy the first maximum with β2 outer, α inner, as GridSearchCV). Files
    ``<out_dir>/<experiment>-gridsearch.{png,svg}``."""
    written = []
    for experiment, frame in grid.groupby("experiment", sort=False):
        accuracy = (scores or {}).get(experiment) == "accuracy" and "mean_val_accuracy" in frame.columns
        value = "mean_val_accuracy" if accuracy else "mean_val_loss"
        keys = ["optimizer"] + (["bias_correction"] if "bias_correction" in frame.columns
                                and frame["bias_correction"].nunique() > 1 else [])
        panels = list(frame.groupby(keys, sort=False))
        rates = sorted(frame["learning_rate"].unique())
        betas = sorted(frame["beta_2"].unique())
        finite = frame.loc[~frame["diverged"].astype(bool), value]
        finite = finite[np.isfinite(finite)]
        vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
        fig, axes = plt.subplots(1, len(panels), figsize=(1.1 * len(rates) * len(panels) + 2.5, 0.6 * len(betas) + 2.2),
                                 squeeze=False)
        image = None
        for ax, (key, sub) in zip(axes[0], panels):
            key = key if isinstance(key, tuple) else (key,)
            opt, bc = key[0], (bool(key[1]) if len(key) > 1 else True)
            table = np.full((len(betas), len(rates)), np.nan)
            dead = np.zeros_like(table, dtype=bool)
            for _, row in sub.iterrows():
                i, j = betas.index(row["beta_2"]), rates.index(row["learning_rate"])
                if bool(row["diverged"]) or not np.isfinite(row[value]):
                    dead[i, j] = True
                else:
                    table[i, j] = row[value]
            image = ax.imshow(table, cmap="viridis" if accuracy else "viridis_r", vmin=vmin, vmax=vmax, aspect="auto", origin="lower")
            for i in range(len(betas)):
                for j in range(len(rates)):
                    if dead[i, j]:
                        ax.text(j, i, "×", ha="center", va="center", color=DIVERGED_MARK, fontsize=16, weight="bold")
                    elif np.isfinite(table[i, j]):
                        ax.text(j, i, f"{table[i, j]:.3g}", ha="center", va="center", fontsize=8,
                                color=_ink_on(image.cmap(image.norm(table[i, j]))))
            if np.isfinite(table).any():
                # rows are β2 (outer), columns α (inner): argmax's first maximum is GridSearchCV's tie rule
                i, j = np.unravel_index(np.nanargmax(table) if accuracy else np.nanargmin(table), table.shape)
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec=color_for(opt, bc), lw=2.5))
            ax.set_xticks(range(len(rates)), [f"{r:g}" for r in rates], rotation=45)
            ax.set_yticks(range(len(betas)), [f"{b:g}" for b in betas])
            ax.set_xlabel("α (learning rate)")
            if ax is axes[0][0]:  # the panels share β2: one label, clear of the neighbour's ticks
                ax.set_ylabel("β2")
            ax.set_title(_label(opt, bc), color=color_for(opt, bc))
        fig.colorbar(image, ax=list(axes[0]), label=("mean validation accuracy (× = diverged)" if accuracy
                                                      else "mean validation log-loss (× = diverged)"))
        fig.suptitle(f"{experiment}: grid search")
        written += save_figure(fig, Path(str(out_dir).format(experiment=experiment)) / f"{experiment}-gridsearch")
    return written


# McGill's per-run figures (results/images/<model>_multi_<quantity>.png of their repository): one
# quantity a figure, a thin line per run, a thick line for the mean, epoch counted from 0.
MCGILL_QUANTITIES = (("loss", "trainloss", "Training Loss"), ("test_loss", "testloss", "Test Loss"),
                     ("accuracy", "train_acc", "Training Accuracy"), ("test_accuracy", "test_acc", "Test Accuracy"))


def plot_mcgill_form(history, model, out_dir, note="") -> list[Path]:
    """Our runs drawn as McGill drew theirs: ``<out_dir>/<model>_multi_<quantity>.{png,svg}`` for
    ``model`` in logreg/ffnn/cifar, thin line per run, thick mean over runs, x = epoch − 1 (their
    epochs count from 0). ``note`` goes under the title (what was run)."""
    written = []
    for metric, stem, label in MCGILL_QUANTITIES:
        if metric not in history.columns:
            continue
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        for optimizer, frame in history.groupby("optimizer", sort=True):
            color = color_for(optimizer)
            for _run, r in frame.groupby("run"):
                r = r.sort_values("epoch")
                ax.plot(r["epoch"] - 1, r[metric], color=color, lw=0.8, alpha=0.6)
            mean = frame.groupby("epoch")[metric].mean()
            ax.plot(mean.index - 1, mean.values, color=color, lw=2.6, label=optimizer_label(optimizer))
        ax.set_xlabel("epoch (from 0, as McGill's figures)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(title="optimizer", fontsize=8)
        ax.set_title(f"{model}: {label.lower()} per run, mean bold" + (f"\n{note}" if note else ""), fontsize=9)
        fig.tight_layout()
        written += save_figure(fig, Path(out_dir) / f"{model}_multi_{stem}")
    return written
