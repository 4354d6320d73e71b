"""``REPORT.md``: what was run, the hyperparameters, final metrics, Adam vs AMSGrad statistics,
the figures, and a verdict on each claim of Reddi et al. next to the McGill study's conclusion.

Built only from the CSV/JSON files under a results folder (no TensorFlow), so a committed results
folder regenerates its report. :func:`write_figures` draws the figures, :func:`build_report`
returns the Markdown; ``replicate report`` (:mod:`replication.commands.report`) writes both.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from . import plots, results
from .errors import UserError
from .experiments import EXPERIMENTS

ALPHA = 0.05
SUPPORTED, NOT_SUPPORTED, NOT_RUN = "supported", "not supported", "not run"

SYNTHETIC_CLAIM = "AMSGrad converges on the synthetic problem and Adam does not"
LOSS_CLAIM = "AMSGrad reaches lower train and test loss than Adam"
# (experiment, what the paper calls it, McGill's conclusion, is the paper's own experiment)
LOSS_CLAIMS = (
    ("mnist-logreg", "logistic regression (MNIST)", "no discernible difference in final train loss (§V)", True),
    ("mnist-mlp", "1-hidden-layer MLP (MNIST)", "AMSGrad slightly lower train loss, smaller gap than the paper (§V)", True),
    ("cifar10-cifarnet", "CifarNet (CIFAR-10)", "AMSGrad slightly lower train loss, smaller gap than the paper (§V)", True),
    ("cifar10-cifarnet-paper", "CifarNet as the paper describes it (CIFAR-10)", "— (McGill ran the batch-norm variant)", False),
    ("mnist-vae", "VAE (MNIST; the reproduction that added one ran it on CelebA)",
     "— (not in McGill; that reproduction saw AMSGrad reach a lower loss over 100 epochs)", False),
    ("digits-logreg", "demo: logistic regression (8×8 digits)", "— (demo data, not in McGill)", False),
    ("digits-mlp", "demo: MLP (8×8 digits)", "— (demo data, not in McGill)", False),
)
SYNTHETIC_MCGILL = "reproduced: results virtually identical to the paper, both settings (§V)"


# ------------------------------------------------------------------------------------- verdicts
def synthetic_verdict(trajectories: pd.DataFrame | None) -> tuple[str, str]:
    """Supported if the claim holds (:func:`results.check_synthetic_claim`) in both the online and
    the stochastic setting at ≥ 1 learning rate each."""
    if trajectories is None or trajectories.empty:
        return NOT_RUN, "no synthetic/trajectories.csv"
    claim = results.check_synthetic_claim(trajectories)
    parts, holds = [], True
    for setting in ("online", "stochastic"):
        rows = claim[claim["setting"] == setting]
        rates = sorted(rows.loc[rows["claim_holds"], "learning_rate"])
        if rows.empty:
            parts.append(f"{setting}: not run")
            holds = False
        else:
            parts.append(f"{setting}: holds at α ∈ {{{', '.join(f'{r:g}' for r in rates)}}} of {len(rows)}"
                         if rates else f"{setting}: holds at none of {len(rows)} α")
            holds &= bool(rates)
    if claim.empty:
        return NOT_RUN, "trajectories lack Adam or AMSGrad"
    return (SUPPORTED if holds else NOT_SUPPORTED), "; ".join(parts)


def loss_verdict(comparison: pd.DataFrame, experiment: str) -> tuple[str, str]:
    """Supported if AMSGrad's mean final train AND test loss are lower than Adam's and Welch's
    p < 0.05 for both; otherwise "not supported", saying which part fails."""
    rows = comparison[comparison["experiment"] == experiment] if not comparison.empty else comparison
    if rows.empty:
        return NOT_RUN, "no history.csv with both Adam and AMSGrad"
    if rows["bias_correction"].any():
        rows = rows[rows["bias_correction"]]
    failures, facts = [], []
    for metric, name in (("loss", "train loss"), ("test_loss", "test loss")):
        row = rows[rows["metric"] == metric]
        if row.empty or not math.isfinite(row["mean_adam"].iloc[0]) or not math.isfinite(row["mean_amsgrad"].iloc[0]):
            failures.append(f"no {name}")
            continue
        r = row.iloc[0]
        p = r["welch_p"]
        facts.append(f"{name} Δ={r['diff']:+.3g}, p={_fmt_p(p)}")
        if not r["mean_amsgrad"] < r["mean_adam"]:
            failures.append(f"AMSGrad's mean {name} is not lower")
        elif not (isinstance(p, float) and p < ALPHA):
            failures.append(f"{name} difference not significant (p={_fmt_p(p)}, n={r['n_adam']}+{r['n_amsgrad']})")
    detail = "; ".join(facts)
    if failures:
        return NOT_SUPPORTED, "; ".join(failures) + (f" ({detail})" if detail else "")
    return SUPPORTED, detail


# -------------------------------------------------------------------------------------- loading
def _maybe(loader, *args, **kwargs):
    try:
        return loader(*args, **kwargs)
    except UserError:
        return None


def collect(out) -> dict:
    """Everything under ``out`` the report uses: per experiment its history, iterations, grid
    search, best params and train.json (None where absent), and the synthetic trajectories."""
    out = Path(out)
    data = {"out": out, "synthetic": _maybe(results.load_synthetic, out), "experiments": {}}
    for name in results.list_experiments(out):
        folder = out / name
        entry = {
            "history": _maybe(results.load_history, folder),
            "iterations": _maybe(results.load_iterations, folder),
            "gridsearch": _maybe(results.load_gridsearch, folder),
            "best_params": _maybe(results_io_json, folder / "best_params.json"),
            "train": _maybe(results_io_json, folder / "train.json"),
        }
        data["experiments"][name] = entry
    return data


def results_io_json(path):
    from .io import read_json

    if not Path(path).is_file():
        raise UserError(f"{path} not found")
    return read_json(path)


# -------------------------------------------------------------------------------------- figures
def write_figures(data: dict) -> dict:
    """Draw every figure the data allows; returns ``{experiment or "_all": [png paths]}``.
    Per experiment into ``<out>/<experiment>/figures/``, cross-experiment ones into ``<out>/figures/``."""
    out = data["out"]
    figures = {}
    all_iterations = []
    for name, entry in data["experiments"].items():
        folder = out / name / "figures"
        paths = []
        if entry["history"] is not None:
            paths += plots.plot_runs(entry["history"], folder)
            paths += plots.plot_bands(results.summarize_epochs(entry["history"]), folder)
        if entry["iterations"] is not None:
            paths += plots.plot_iterations(entry["iterations"], folder)
            all_iterations.append(entry["iterations"])
        if entry["gridsearch"] is not None and not entry["gridsearch"].empty:
            paths += plots.plot_gridsearch(entry["gridsearch"], folder)
        figures[name] = [p for p in paths if p.suffix == ".png"]
    shared = []
    if data["synthetic"] is not None:
        # `replicate synthetic` already drew them beside the CSV: link those, draw only if missing.
        existing = sorted((out / "synthetic").glob("synthetic-*.png"))
        shared += existing or plots.plot_synthetic(data["synthetic"], out / "figures")
    if all_iterations:
        shared += plots.plot_iterations_overview(pd.concat(all_iterations, ignore_index=True),
                                                 out / "figures" / "networks-iterations")
    figures["_all"] = [p for p in shared if p.suffix == ".png"]
    return figures


# ------------------------------------------------------------------------------------- markdown
def _fmt(x, digits=4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float):
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return f"{x:.{digits}g}"
    return str(x)


def _fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _pm(mean, std) -> str:
    if isinstance(mean, float) and math.isnan(mean):
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if isinstance(std, float) and not math.isnan(std) else f"{mean:.4f}"


def _table(header, rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _opt_name(optimizer, bias_correction=True) -> str:
    return plots._label(optimizer, bool(bias_correction))


def _setup_section(data) -> list[str]:
    lines = ["## Setup", ""]
    rows = []
    for name, entry in data["experiments"].items():
        spec = (entry["train"] or {}).get("experiment")
        source = "train.json"
        if spec is None:
            spec = EXPERIMENTS[name].to_dict() if name in EXPERIMENTS else {}
            source = "spec (no train.json)"
        history = entry["history"]
        runs = epochs = "—"
        if history is not None:
            runs = history.groupby(["optimizer", "bias_correction"])["run"].nunique().max()
            epochs = int(history["epoch"].max())
        device = (((entry["train"] or {}).get("provenance") or {}).get("device") or {})
        hardware = ", ".join(device.get("accelerators") or []) or ("CPU" if device else "—")
        rows.append([f"`{name}`", spec.get("dataset", "—"), spec.get("model", "—"), spec.get("loss", "—"),
                     spec.get("batch_size", "—"), spec.get("schedule", "—"), spec.get("beta_1", "—"),
                     epochs, runs, f"{device.get('backend', '—')} / {hardware}", source])
        if spec.get("description"):
            lines.append(f"- `{name}`: {spec['description']}")
    if not rows:
        return lines + ["No experiment folders found.", ""]
    lines.append("")
    return lines + _table(["Experiment", "Data", "Model", "Loss", "Batch", "α schedule", "β1",
                           "Epochs", "Runs/optimizer", "Backend / device", "Setup from"], rows)


def _table_one(data) -> list[str]:
    lines = ["## Table I: hyperparameters used", "",
             "From the grid search (`best_params.json`) where it ran, otherwise the resolved values "
             "recorded in `history.csv`; McGill's Table I values (the specs' defaults) alongside.", ""]
    rows = []
    for name, entry in data["experiments"].items():
        best, history = entry["best_params"] or {}, entry["history"]
        optimizers = list(best) or (list(history["optimizer"].unique()) if history is not None else [])
        for opt in optimizers:
            if opt in best:
                lr, b2, source = best[opt].get("learning_rate"), best[opt].get("beta_2"), "grid search"
            else:
                sub = history[history["optimizer"] == opt]
                lr = ", ".join(f"{v:g}" for v in sorted(sub["learning_rate"].unique()))
                b2 = ", ".join(f"{v:g}" for v in sorted(sub["beta_2"].unique()))
                source = "history.csv"
            mcgill = "—"
            if name in EXPERIMENTS and not name.startswith("digits"):
                try:
                    d = EXPERIMENTS[name].default_hyperparameters(opt)
                    mcgill = f"α={d['learning_rate']:g}, β2={d['beta_2']:g}"
                except UserError:
                    pass
            rows.append([f"`{name}`", _opt_name(opt), _fmt(lr) if not isinstance(lr, str) else lr,
                         _fmt(b2) if not isinstance(b2, str) else b2, source, mcgill])
    if not rows:
        return lines + ["No grid search or training results found.", ""]
    return lines + _table(["Experiment", "Optimizer", "α", "β2", "Source", "McGill Table I"], rows)


def _final_section(histories) -> list[str]:
    lines = ["## Final metrics (last epoch, mean ± std over runs)", ""]
    if histories is None:
        return lines + ["No `history.csv` found (run `replicate train EXPERIMENT`).", ""]
    summary = results.summarize_final(histories)
    rows = [[f"`{r['experiment']}`", _opt_name(r["optimizer"], r["bias_correction"]),
             f"{r['runs'] - r['diverged']}/{r['runs']}", r["final_epoch"],
             _pm(r["loss_mean"], r["loss_std"]), _pm(r["test_loss_mean"], r["test_loss_std"]),
             _pm(r["accuracy_mean"], r["accuracy_std"]), _pm(r["test_accuracy_mean"], r["test_accuracy_std"])]
            for _, r in summary.iterrows()]
    return lines + _table(["Experiment", "Optimizer", "Runs ok/all", "Epoch", "Train loss", "Test loss",
                           "Train acc.", "Test acc."], rows)


def _comparison_section(comparison, a="adam", b="amsgrad", note=None) -> list[str]:
    """Optimizer ``b`` against ``a`` at the final epoch (:func:`results.compare_final` ``(a=a, b=b)``)."""
    A, B = _opt_name(a), _opt_name(b)
    lines = [f"## {A} vs {B} at the final epoch", "",
             f"Δ = mean({B}) − mean({A}) with its 95% Welch CI (for losses negative = {B} "
             f"better, for accuracies positive = {B} better); Welch's t-test and Mann–Whitney U "
             f"(two-sided); Hedges' g of {B} − {A}; *{A} better* = runs, paired by run index "
             f"(same seeds), in which {A}'s value is strictly better (lower loss, higher accuracy). "
             "Diverged runs are excluded and counted." + (f" {note}" if note else ""), ""]
    if comparison is None or comparison.empty:
        return lines + [f"Needs a `history.csv` with both {A} and {B}.", ""]
    rows = []
    for _, r in comparison.iterrows():
        label, lower = results.METRICS.get(r["metric"], (r["metric"], r["lower_is_better"]))
        if not (math.isfinite(r[f"mean_{a}"]) or math.isfinite(r[f"mean_{b}"])):
            continue  # e.g. the VAE's accuracy: not measured
        exp = f"`{r['experiment']}`" + ("" if r["bias_correction"] else " (no bias corr.)")
        rows.append([exp, f"{label} ({'↓' if lower else '↑'})", _fmt(r[f"mean_{a}"]), _fmt(r[f"mean_{b}"]),
                     f"{_fmt(r['diff'], 3)} [{_fmt(r['diff_ci_low'], 3)}, {_fmt(r['diff_ci_high'], 3)}]",
                     _fmt(r["welch_t"], 3), _fmt_p(r["welch_p"]), _fmt(r["mannwhitney_u"], 3),
                     _fmt_p(r["mannwhitney_p"]), _fmt(r["hedges_g"], 3),
                     f"{r[f'{a}_wins']}/{r['pairs']}", f"{r[f'n_{a}']}+{r[f'n_{b}']}",
                     f"{r[f'diverged_{a}']}+{r[f'diverged_{b}']}"])
    return lines + _table(["Experiment", "Metric", A, B, "Δ [95% CI]", "Welch t", "p",
                           "MWU U", "p", "Hedges g", f"{A} better", f"n ({A}+{B})", "diverged"], rows)


def _published_section(data, history) -> list[str]:
    """Test accuracy of every experiment whose spec carries a published table (Pérez's Table 1),
    ours (final epoch, mean ± std over runs) beside theirs."""
    lines = ["## Pérez's Table 1: test accuracy, ours beside his", "",
             "His protocol: 20 epochs, α/√t, batch 128, β1 = 0.9, β2 = 0.999, ε = 1e-8, no dropout; his "
             "α is not stated, so ours is our grid search's where one ran (Table I above), else the spec's "
             "0.001. Ours: the final epoch's test accuracy, mean ± std over the runs we trained (epochs and "
             "runs as recorded: fewer than his where the CPU could not afford more).", ""]
    rows = []
    summary = results.summarize_final(history) if history is not None else pd.DataFrame()
    for name, spec in EXPERIMENTS.items():
        published = dict(spec.published)
        if not published:
            continue
        for optimizer, accuracy in published.items():
            ours, runs, epochs = "not run", "—", "—"
            if not summary.empty:
                got = summary[(summary["experiment"] == name) & (summary["optimizer"] == optimizer)]
                if not got.empty:
                    r = got.iloc[0]  # bias correction on first if both were run
                    ours = (f"{100 * r['test_accuracy_mean']:.2f} ± {100 * r['test_accuracy_std']:.2f} %"
                            if isinstance(r["test_accuracy_std"], float) and math.isfinite(r["test_accuracy_std"])
                            else f"{100 * r['test_accuracy_mean']:.2f} %")
                    ours += "" if r["bias_correction"] else " (no bias corr.)"
                    runs, epochs = f"{r['runs'] - r['diverged']}/{r['runs']}", r["final_epoch"]
            rows.append([f"`{name}`", _opt_name(optimizer), f"{100 * accuracy:.2f} %", ours, epochs, runs])
    if not rows:
        return []
    return lines + _table(["Experiment", "Optimizer", "Pérez", "Ours", "Epochs", "Runs ok/all"], rows)


# Published CIFAR-10 figures shown beside ours (issue: CifarNet on real CIFAR-10).
KORZENIOWSKI_CIFARNET = "≈ 78 % validation accuracy for both optimizers, no meaningful gap (Korzeniowski)"
MCGILL_EPOCH_SECONDS = "≈ 90 s per epoch on an NVIDIA Kepler GK104 GPU (McGill §IV-A)"
CIFAR_PROVENANCE = ("Test metrics on all 10,000 test images, of which 9,000 were decoded from JPEG copies "
                    "(quality 75; mean PSNR 30.5 dB), and on the 1,000 exact official test images alone "
                    "(`test_exact` in `cifar10.npz`); the 50,000 training images are the official pixels.")


def _cifar_section(data) -> list[str]:
    """Final-epoch test metrics on all test images and on the exact ones (runs on a cifar10.npz
    with a ``test_exact`` mask), epoch time, and the published figures beside them."""
    rows = []
    for name, entry in data["experiments"].items():
        history = entry["history"]
        if history is None or "test_exact_accuracy" not in history.columns:
            continue
        last = history[history["epoch"] == history.groupby(["optimizer", "bias_correction", "run"])["epoch"]
                       .transform("max")]
        for (optimizer, bc), group in last.groupby(["optimizer", "bias_correction"], sort=True):
            def pm(column, scale=1.0, digits=4):
                values = group[column].astype(float) * scale
                std = values.std(ddof=1) if len(values) > 1 else float("nan")
                return (f"{values.mean():.{digits}f} ± {std:.{digits}f}" if math.isfinite(std)
                        else f"{values.mean():.{digits}f}")
            seconds = history[(history["optimizer"] == optimizer)]["epoch_seconds"].median()
            rows.append([f"`{name}`", _opt_name(optimizer, bc), f"{len(group)}", int(group["epoch"].max()),
                         pm("test_accuracy", 100, 2) + " %", pm("test_exact_accuracy", 100, 2) + " %",
                         pm("test_loss"), pm("test_exact_loss"), pm("loss"), f"{seconds:.0f} s"])
    if not rows:
        return []
    lines = ["## CIFAR-10: test metrics on all 10,000 and on the 1,000 exact test images", "",
             CIFAR_PROVENANCE + " Final epoch, mean ± std over runs; epoch time = median wall time of an "
             "epoch (training + test evaluation) on this machine.", ""]
    lines += _table(["Experiment", "Optimizer", "Runs", "Epoch", "Test acc. (10,000)", "Test acc. (exact 1,000)",
                     "Test loss (10,000)", "Test loss (exact 1,000)", "Train loss", "Epoch time"], rows)
    return lines + [f"Published: {KORZENIOWSKI_CIFARNET}; McGill's CifarNet runs took {MCGILL_EPOCH_SECONDS}.",
                    ""]


def _claims_section(data, comparison) -> list[str]:
    lines = ["## Claims of Reddi et al. (ICLR 2018): our verdict next to McGill's", "",
             f"Loss claims are *supported* when AMSGrad's mean final train **and** test loss are "
             f"lower than Adam's with Welch p < {ALPHA} for both. The synthetic claim is supported "
             "when, in both the online and the stochastic setting, for at least one α the median "
             "final x over seeds is > 0.9 for Adam and < 0 for AMSGrad.", ""]
    verdict, detail = synthetic_verdict(data["synthetic"])
    rows = [[SYNTHETIC_CLAIM, "synthetic (online & stochastic)", f"**{verdict}**", detail, SYNTHETIC_MCGILL]]
    for name, what, mcgill, paper in LOSS_CLAIMS:
        if not paper and name not in data["experiments"]:
            continue
        v, d = loss_verdict(comparison if comparison is not None else pd.DataFrame(), name)
        rows.append([LOSS_CLAIM, f"{what} (`{name}`)", f"**{v}**", d, mcgill])
    return lines + _table(["Claim", "Experiment", "Our verdict", "Our numbers", "McGill study"], rows)


def _figures_section(data, figures) -> list[str]:
    lines = ["## Figures", ""]
    out = data["out"]
    if not figures:
        return lines + ["(figures not drawn)", ""]

    def link(path):
        rel = Path(os.path.relpath(path, out)).as_posix()
        return f"![{Path(path).stem}]({rel})"

    for path in figures.get("_all", []):
        lines += [link(path), ""]
    for name in data["experiments"]:
        if figures.get(name):
            lines += [f"### `{name}`", ""] + [x for p in figures[name] for x in (link(p), "")]
    return lines


def build_report(data: dict, figures: dict | None = None) -> str:
    """The Markdown of ``REPORT.md`` from :func:`collect`'s data and :func:`write_figures`'s paths."""
    histories = [e["history"] for e in data["experiments"].values() if e["history"] is not None]
    history = pd.concat(histories, ignore_index=True) if histories else None
    comparison = results.compare_final(history) if history is not None else None
    lines = ["# Adam vs AMSGrad: replication report", "",
             "Reddi, Kale & Kumar, *On the Convergence of Adam and Beyond* (ICLR 2018), replicated "
             "after the McGill reproducibility study. Regenerate with "
             f"`replicate report --out {data['out']}` (reads only the CSV/JSON files here).", ""]
    lines += _claims_section(data, comparison)
    lines += _setup_section(data)
    lines += _table_one(data)
    lines += _final_section(history)
    lines += _comparison_section(
        comparison, note="McGill §VI-D saw Adam beat AMSGrad in some logistic-regression runs; this table "
                         "says how often.")
    if history is not None and (history["optimizer"] == "adamax").any():
        lines += _comparison_section(results.compare_final(history, a="adam", b="adamax"), a="adam", b="adamax",
                                     note="Pérez compares the two on MNIST (his Table 1).")
    lines += _cifar_section(data)
    lines += _published_section(data, history)
    lines += _figures_section(data, figures)
    return "\n".join(lines).rstrip() + "\n"
