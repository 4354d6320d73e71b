"""``REPORT.md``: what was run, the hyperparameters, final metrics, Adam vs AMSGrad statistics,
the figures, and a verdict on each claim of Reddi et al. next to the McGill study's conclusion.

Built only from the CSV/JSON files under a results folder (no TensorFlow), so a committed results
folder regenerates its report. :func:`write_figures` draws the figures, :func:`build_report`
returns the Markdown; ``replicate report`` (:mod:`replication.commands.report`) writes both.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import mcgill, plots, results, verdicts
from .errors import UserError
from .experiments import EXPERIMENTS, SYNTHETIC_CLAIMS, Claim, loss_claims
from .stats import ALPHA, POWER

# The reproduction with α = 0.001/√t (papers/001, §2.2.1 and Table 1): its exact synthetic setting
# and what it reports; the starting point x₀ is not stated (ours: 0, the centre of F).
REPRODUCTION_001 = {
    "setting": "stochastic", "learning_rate": 0.001, "steps": 1_000_000,
    "theirs": "Adam converges to +1, AMSGrad reaches the optimum −1 (their §2.2.1 and Fig. 2a)",
}


def _claimed_experiments(data) -> list[str]:
    """The experiments whose loss claim (:attr:`Experiment.claim`) is a row of the verdict table: the
    paper's always, the others when they were run. Their train and test loss tests are Holm's family."""
    return [spec.name for spec in loss_claims() if spec.claim.paper or spec.name in data["experiments"]]


# -------------------------------------------------------------------------------------- loading
def _maybe(loader, path, where=None):
    """``loader(where or path)``, or None if ``path`` is absent; a file that is there but cannot be
    read is left out of the report with one line on stderr saying which and why."""
    try:
        return loader(where if where is not None else path)
    except UserError as err:
        if Path(path).exists():
            print(f"report: left out {path}: {err}", file=sys.stderr, flush=True)
        return None


def collect(out) -> dict:
    """Everything under ``out`` the report uses: per experiment its history, iterations, grid
    search, best params and train.json (None where absent), and the synthetic trajectories."""
    out = Path(out)
    data = {"out": out, "synthetic": _maybe(results.load_synthetic, out / "synthetic" / "trajectories.csv", out),
            "experiments": {}}
    for name in results.list_experiments(out):
        folder = out / name
        entry = {
            "history": _maybe(results.load_history, folder / "history.csv"),
            "iterations": _maybe(results.load_iterations, folder / "iterations.csv"),
            "gridsearch": _maybe(results.load_gridsearch, folder / "gridsearch.csv"),
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
            scores = {name: EXPERIMENTS[name].gridsearch_score} if name in EXPERIMENTS else None
            paths += plots.plot_gridsearch(entry["gridsearch"], folder, scores=scores)
        figures[name] = [p for p in paths if p.suffix == ".png"]
    shared = []
    if data["synthetic"] is not None:
        # `replicate synthetic` already drew them beside the CSV: link those, draw only if missing.
        # The paper's schedule first, then its α search, the §3 family, the secondary sweeps.
        first = ["synthetic-online", "synthetic-stochastic", "synthetic-alpha-search", "synthetic-cyclic"]
        existing = sorted((out / "synthetic").glob("synthetic-*.png"),
                          key=lambda p: (first.index(p.stem) if p.stem in first else len(first), p.stem))
        shared += existing or plots.plot_synthetic(data["synthetic"], out / "figures")
    if all_iterations:
        shared += plots.plot_iterations_overview(pd.concat(all_iterations, ignore_index=True),
                                                 out / "figures" / "networks-iterations")
    figures["_all"] = [p for p in shared if p.suffix == ".png"]
    figures["_mcgill"] = [p for p in mcgill.write_figures(data) if p.suffix == ".png"]
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


def pm_values(values, scale=1.0, digits=4, unit="") -> str:
    """``mean ± std`` (sample std) of raw ``values`` × ``scale``; the mean alone for one value."""
    values = np.asarray(values, dtype=float) * scale
    if len(values) == 0:
        return "—"
    text = f"{values.mean():.{digits}f}"
    if len(values) > 1:
        text += f" ± {values.std(ddof=1):.{digits}f}"
    return text + unit


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
             "What the final runs used and where it came from (`train.json`: the grid search's "
             "`best_params.json`, a `--params` file, flags or the spec), else the grid search's choice, "
             "else the values recorded in `history.csv`; McGill's Table I values (the specs' defaults) "
             "alongside.", ""]
    names = {"best_params.json": "grid search", "params file": "--params file", "flag": "flags", "spec": "spec"}
    rows = []
    for name, entry in data["experiments"].items():
        best, history = entry["best_params"] or {}, entry["history"]
        used = (entry["train"] or {}).get("hyperparameters") or {}
        optimizers = list(used) or list(best) or (list(history["optimizer"].unique()) if history is not None else [])
        for opt in optimizers:
            if opt in used:
                lr, b2 = used[opt].get("learning_rate"), used[opt].get("beta_2")
                sources = {names.get(v, v) for k, v in (used[opt].get("source") or {}).items()
                           if k in ("learning_rate", "beta_2")}
                source = ", ".join(sorted(sources)) or "train.json"
            elif opt in best:
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


def short_runs(history, name) -> str:
    """A flag for a verdict cell or table when the runs of ``name`` (not diverged) stopped short of
    its spec's epochs (e.g. ``replicate train NAME --epochs 5``): their numbers are not the
    protocol's. Empty otherwise."""
    spec = EXPERIMENTS.get(name)
    if spec is None or history is None:
        return ""
    rows = history[(history["experiment"] == name) & ~history["diverged"].astype(bool)]
    epochs = int(rows["epoch"].max()) if len(rows) else 0
    return f"runs of {epochs} of the spec's {spec.epochs} epochs" if 0 < epochs < spec.epochs else ""


def _final_section(histories) -> list[str]:
    lines = ["## Final metrics (last epoch, mean ± std over runs)", ""]
    if histories is None:
        return lines + ["No `history.csv` found (run `replicate train EXPERIMENT`).", ""]
    summary = results.summarize_final(histories)
    rows = [[f"`{r['experiment']}`", _opt_name(r["optimizer"], r["bias_correction"]),
             f"{r['runs'] - r['diverged']}/{r['runs']}",
             f"{r['final_epoch']} ⚠ {short}" if (short := short_runs(histories, r["experiment"])) else r["final_epoch"],
             _pm(r["loss_mean"], r["loss_std"]), _pm(r["test_loss_mean"], r["test_loss_std"]),
             _pm(r["accuracy_mean"], r["accuracy_std"]), _pm(r["test_accuracy_mean"], r["test_accuracy_std"])]
            for _, r in summary.iterrows()]
    return lines + _table(["Experiment", "Optimizer", "Runs ok/all", "Epoch", "Train loss", "Test loss",
                           "Train acc.", "Test acc."], rows)


def _comparison_section(comparison, a="adam", b="amsgrad", note=None) -> list[str]:
    """Optimizer ``b`` against ``a`` at the final epoch (:func:`results.compare_final` ``(a=a, b=b)``):
    the paired statistics first (the design), then the unpaired ones (McGill's readers know them)."""
    A, B = _opt_name(a), _opt_name(b)
    lines = [f"## {A} vs {B} at the final epoch", "",
             f"Run k of both optimizers shares its seed (initial weights, batch order), so the first table "
             f"works on the per-seed differences d = {B} − {A}: their mean with a 95% t interval and a "
             f"seeded percentile-bootstrap interval (too narrow with 5 pairs: shown beside the t interval, "
             f"not instead of it), the paired t-test, Holm's adjustment of its p over the verdict table's "
             f"family of tests (— outside it), the Wilcoxon signed-rank test (exact; with 5 pairs its "
             f"smallest p is 0.0625, so it cannot reach {ALPHA}), d_z = mean(d)/sd(d), the power analysis of "
             f"the paired t-test (MDE: the smallest |mean d| the pairs detect with {POWER:.0%} power at "
             f"α = {ALPHA} given the observed sd of d; runs needed: pairs the observed d_z would need), and "
             f"*{A} better* = runs in which {A}'s value is strictly better (lower loss, higher accuracy). "
             f"For losses negative d = {B} better, for accuracies positive. Diverged runs are excluded and "
             "counted." + (f" {note}" if note else ""), ""]
    if comparison is None or comparison.empty:
        return lines + [f"Needs a `history.csv` with both {A} and {B}.", ""]
    paired, unpaired = [], []
    for _, r in comparison.iterrows():
        label, lower = results.METRICS.get(r["metric"], (r["metric"], r["lower_is_better"]))
        if not (math.isfinite(r[f"mean_{a}"]) or math.isfinite(r[f"mean_{b}"])):
            continue  # e.g. the VAE's accuracy: not measured
        exp = f"`{r['experiment']}`" + ("" if r["bias_correction"] else " (no bias corr.)")
        metric = f"{label} ({'↓' if lower else '↑'})"
        needed = r["runs_needed"]
        paired.append([exp, metric, _fmt(r[f"mean_{a}"]), _fmt(r[f"mean_{b}"]),
                       f"{_fmt(r['paired_diff'], 3)} [{_fmt(r['paired_ci_low'], 3)}, {_fmt(r['paired_ci_high'], 3)}]",
                       f"[{_fmt(r['bootstrap_ci_low'], 3)}, {_fmt(r['bootstrap_ci_high'], 3)}]",
                       _fmt(r["paired_t"], 3), _fmt_p(r["paired_p"]), _fmt_p(r.get("holm_p", math.nan)),
                       _fmt(r["wilcoxon_w"], 3), _fmt_p(r["wilcoxon_p"]), _fmt(r["cohens_dz"], 3),
                       _fmt(r["mde"], 3), "∞" if needed == math.inf else _fmt(needed, 6),
                       f"{r[f'{a}_wins']}/{r['pairs']}"])
        unpaired.append([exp, metric, _fmt(r[f"mean_{a}"]), _fmt(r[f"mean_{b}"]),
                         f"{_fmt(r['diff'], 3)} [{_fmt(r['diff_ci_low'], 3)}, {_fmt(r['diff_ci_high'], 3)}]",
                         _fmt(r["welch_t"], 3), _fmt_p(r["welch_p"]), _fmt(r["mannwhitney_u"], 3),
                         _fmt_p(r["mannwhitney_p"]), _fmt(r["hedges_g"], 3), f"{r[f'n_{a}']}+{r[f'n_{b}']}",
                         f"{r[f'diverged_{a}']}+{r[f'diverged_{b}']}"])
    lines += ["Paired (per-seed differences):", ""]
    lines += _table(["Experiment", "Metric", A, B, "mean d [95% t CI]", "[95% bootstrap CI]", "paired t", "p",
                     "Holm p", "Wilcoxon W", "p", "d_z", f"MDE ({POWER:.0%})", "runs needed", f"{A} better"],
                    paired)
    lines += [f"Unpaired (independent samples, as McGill would test them): Δ = mean({B}) − mean({A}) with "
              "its 95% Welch CI, Welch's t-test, Mann–Whitney U (two-sided), Hedges' g.", ""]
    return lines + _table(["Experiment", "Metric", A, B, "Δ [95% Welch CI]", "Welch t", "p", "MWU U", "p",
                           "Hedges g", f"n ({A}+{B})", "diverged"], unpaired)


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
            seconds = history[(history["optimizer"] == optimizer)]["epoch_seconds"].median()
            rows.append([f"`{name}`", _opt_name(optimizer, bc), f"{len(group)}", int(group["epoch"].max()),
                         pm_values(group["test_accuracy"], 100, 2, " %"),
                         pm_values(group["test_exact_accuracy"], 100, 2, " %"),
                         pm_values(group["test_loss"]), pm_values(group["test_exact_loss"]),
                         pm_values(group["loss"]), f"{seconds:.0f} s"])
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
             "How each verdict is reached (`replication/verdicts.py`, the one place these rules live):", ""]
    lines += [f"- {verdicts.RULES[key]}" for key in ("loss", "synthetic", "section3")]
    lines += ["", f"Synthetic α search criterion, fixed before the runs: {results.SEARCH_CRITERION}", ""]
    lines += ["The column *as McGill ran it* is our rerun of the protocol McGill's code ran (the "
              "`*-mcgill-code` experiments, see the section on McGill's code below), with Holm's adjustment "
              "over those experiments' loss tests alone; — where it has not been run.", ""]
    rows = [[r.claim, f"{r.what} (`{r.name}`)" if r.name else r.what, f"**{r.verdict}**", r.detail, r.as_coded,
             r.mcgill] for r in claim_verdicts(data, comparison)]
    return lines + _table(["Claim", "Experiment", "Our verdict", "Our numbers", "As McGill ran it (our rerun)",
                           "McGill study"], rows)


def coded_experiments(data) -> dict:
    """{experiment of a verdict row: its as-coded experiment} for the coded experiments with runs."""
    return {EXPERIMENTS[name].code_of: name for name in data["experiments"]
            if name in EXPERIMENTS and EXPERIMENTS[name].code_of and data["experiments"][name]["history"] is not None}


def coded_comparison(data):
    """Adam vs AMSGrad of the as-coded experiments, Holm-adjusted over their own loss tests."""
    coded = list(coded_experiments(data).values())
    if not coded:
        return pd.DataFrame()
    history = pd.concat([data["experiments"][name]["history"] for name in coded], ignore_index=True)
    return verdicts.add_holm(results.compare_final(history), coded)


class ClaimRow(NamedTuple):
    """One row of the verdict table. ``verdict``/``detail`` are ours; ``as_coded`` is the cell of our
    verdict on the row's as-coded experiment (``Experiment.code_of``), or — where none has runs.
    The loss claims also carry what the cells were written from: ``losses`` (:func:`verdicts.loss_claim`'s
    per-loss entries), ``short`` (:func:`short_runs`' flag) and ``coded`` (the as-coded experiment's
    name, verdict, losses and flag, or None). ``spec`` is the :class:`~replication.experiments.Claim`
    the row tests, whose texts ``claim``, ``what`` and ``mcgill`` are."""

    claim: str
    name: str | None
    what: str
    verdict: str
    detail: str
    mcgill: str
    as_coded: str
    losses: tuple = ()
    short: str = ""
    coded: tuple | None = None
    spec: Claim | None = None


def claim_verdicts(data, comparison):
    """Each :class:`ClaimRow` of the verdict table, for REPORT.md, the README and docs/results.md alike:
    the synthetic problem's claims (:data:`~replication.experiments.SYNTHETIC_CLAIMS`), then each
    experiment's loss claim (:func:`~replication.experiments.loss_claims`)."""
    for claim in SYNTHETIC_CLAIMS:
        verdict, detail = (verdicts.section3_verdict(data["synthetic"]) if claim.setting == "cyclic"
                           else verdicts.synthetic_verdict(data["synthetic"], claim.setting))
        yield ClaimRow(claim.text, None, claim.what, verdict, detail, claim.mcgill, "—", spec=claim)
    claimed = _claimed_experiments(data)
    coded = coded_experiments(data)
    coded_comp = coded_comparison(data) if coded else None
    for spec in loss_claims():
        name, claim = spec.name, spec.claim
        if name in claimed:
            verdict, losses, short, detail = _loss_cell(comparison, data, name)
            as_coded, coded_row = "—", None
            if name in coded:
                coded_verdict, coded_losses, coded_short, coded_detail = _loss_cell(coded_comp, data, coded[name])
                as_coded = f"**{coded_verdict}** (`{coded[name]}`) — {coded_detail}"
                coded_row = (coded[name], coded_verdict, coded_losses, coded_short)
            yield ClaimRow(claim.text, name, claim.what, verdict, detail, claim.mcgill, as_coded, losses, short,
                           coded_row, claim)


def _loss_cell(comparison, data, name):
    """(verdict, losses, short-runs flag, detail) of ``name``'s loss claim; the detail starts with
    the flag (``⚠ …: ``) where its runs stopped short of the spec."""
    verdict, losses = verdicts.loss_claim(comparison if comparison is not None else pd.DataFrame(), name)
    detail = "; ".join(text for _name, _kind, text in losses) or verdicts.NOT_RUN_DETAIL
    short = short_runs((data["experiments"].get(name) or {}).get("history"), name)
    return verdict, losses, short, f"⚠ {short}: {detail}" if short else detail


def _x_range(row) -> str:
    """AMSGrad's median final x with its range over seeds, from the α search's distances."""
    text = f"{row['amsgrad_x_median']:+.3f}"
    if row["seeds"] > 1:
        text += f" [{row['amsgrad_distance_min'] + results.X_STAR:+.3f}, {row['amsgrad_distance_max'] + results.X_STAR:+.3f}]"
    return text


def _synthetic_section(trajectories) -> list[str]:
    """The α search of the paper's sweep (chosen α per budget, every α at the last budget), the
    reproduction's setting beside what it reports, the §3 family, and the constant-α sweep."""
    lines = ["## Synthetic problem (Reddi et al. §3 and §5)", ""]
    if trajectories is None or trajectories.empty:
        return lines + ["No `synthetic/trajectories.csv` (run `replicate synthetic`).", ""]
    search = results.search_learning_rate(trajectories)
    lines += [f"α search criterion: {results.SEARCH_CRITERION} x_T is the median over seeds, with its range "
              "in brackets; R_T/T the median average regret against x* = −1.", ""]
    chosen, every = [], []
    for setting in ("online", "stochastic"):
        rows = verdicts._paper_rows(search, setting)
        for steps, at in rows.groupby("steps", sort=True):
            best = at[at["chosen"]].iloc[0]
            chosen.append([setting, f"{steps:,}", f"{best['learning_rate']:g}", _x_range(best),
                           f"{best['amsgrad_distance_median']:.3f}", "yes" if best["reached"] else "**no**",
                           f"{best['adam_x_median']:+.3f}", _fmt(best["adam_regret_median"], 3),
                           _fmt(best["amsgrad_regret_median"], 3), int(best["seeds"])])
        if not rows.empty:
            last = rows[rows["steps"] == rows["steps"].max()]
            one_m = rows[rows["steps"] == 1_000_000].set_index("learning_rate")
            for _, r in last.iterrows():
                at_1m = one_m["amsgrad_x_median"].get(r["learning_rate"], math.nan) if not one_m.empty else math.nan
                every.append([setting, f"{r['steps']:,}", f"{r['learning_rate']:g}" + (" ★" if r["chosen"] else ""),
                              f"{r['adam_x_median']:+.3f}", _x_range(r), f"{r['amsgrad_distance_median']:.3f}",
                              _fmt(at_1m, 3), _fmt(r["adam_regret_median"], 3), _fmt(r["amsgrad_regret_median"], 3)])
    if chosen:
        lines += ["The paper's sweep (α_t = α/√t, β1 = 0.9, β2 = 0.99, x₀ = 0): the α the criterion chooses at "
                  "each budget (one long run gives every shorter budget: the iterates do not depend on the "
                  "horizon).", ""]
        lines += _table(["Setting", "Steps T", "Chosen α", "AMSGrad x_T", "distance to −1", "reaches −1",
                         "Adam x_T", "Adam R_T/T", "AMSGrad R_T/T", "Seeds"], chosen)
        lines += ["Every α of the grid at the longest budget (★ = chosen):", ""]
        lines += _table(["Setting", "Steps T", "α", "Adam x_T", "AMSGrad x_T", "distance to −1",
                         "AMSGrad x at 1 M steps", "Adam R_T/T", "AMSGrad R_T/T"], every)
    lines += _reproduction_001(search)
    lines += _section3_table(search)
    lines += _constant_table(search)
    return lines


def _reproduction_001(search) -> list[str]:
    spec = REPRODUCTION_001
    rows = verdicts._paper_rows(search, spec["setting"])
    rows = rows[(rows["steps"] == spec["steps"]) & np.isclose(rows["learning_rate"], spec["learning_rate"])]
    if rows.empty:
        return []
    r = rows.iloc[0]
    lines = [f"The reproduction with α = {spec['learning_rate']:g}/√t ({spec['setting']}, {spec['steps']:,} steps, "
             "β1 = 0.9, β2 = 0.99), its exact setting beside what it reports:", ""]
    return lines + _table(["", "Adam x_T", "AMSGrad x_T", "Adam R_T/T", "AMSGrad R_T/T"], [
        ["theirs", "+1", "−1", "—", "—"],
        [f"ours (median of {int(r['seeds'])} seeds, x₀ = 0)", f"{r['adam_x_median']:+.3f}", _x_range(r),
         _fmt(r["adam_regret_median"], 3), _fmt(r["amsgrad_regret_median"], 3)],
    ]) + [f"Theirs in words: {spec['theirs']}.", ""]


def _section3_table(search) -> list[str]:
    rows = search[(search["setting"] == "cyclic") & search["chosen"]]
    rows = rows[rows["steps"] == rows.groupby(["beta_1", "beta_2", "big_gradient"], dropna=False)["steps"].transform("max")]
    if rows.empty:
        return []
    lines = ["The §3 family f_t = Cx (t mod 3 = 1), else −x, α_t = α/√t, at the α the criterion chooses: with "
             "Theorem 1's β1 = 0, β2 = 1/(1 + C²) Adam sits at +1, where R_T/T → 2(C − 2)/3; with β1 = 0.9, "
             "β2 = 0.99 this sequence does not trap Adam.", ""]
    table = []
    for _, r in rows.sort_values(["beta_1", "big_gradient"]).iterrows():
        C = r["big_gradient"]
        table.append([f"{C:g}", f"{r['beta_1']:g}", f"{r['beta_2']:.4g}", f"{r['steps']:,}", f"{r['learning_rate']:g}",
                      f"{r['adam_x_median']:+.3f}", f"{r['amsgrad_x_median']:+.3f}", _fmt(r["adam_regret_median"], 4),
                      f"{2 * (C - 2) / 3:.4g}", _fmt(r["amsgrad_regret_median"], 3)])
    return lines + _table(["C", "β1", "β2", "Steps T", "Chosen α", "Adam x_T", "AMSGrad x_T", "Adam R_T/T",
                           "2(C − 2)/3", "AMSGrad R_T/T"], table)


def _constant_table(search) -> list[str]:
    rows = search[(search["schedule"] == "constant") & (search["setting"] != "cyclic")]
    if rows.empty:
        return []
    rows = rows[rows["steps"] == rows.groupby("setting")["steps"].transform("max")]
    lines = ["Secondary sweep, constant α (this project's first committed synthetic runs; McGill §III-A does "
             "not state the schedule of its synthetic runs):", ""]
    table = [[r["setting"], f"{r['steps']:,}", f"{r['learning_rate']:g}" + (" ★" if r["chosen"] else ""),
              f"{r['adam_x_median']:+.3f}", _x_range(r), f"{r['amsgrad_distance_median']:.3f}",
              _fmt(r["adam_regret_median"], 3), _fmt(r["amsgrad_regret_median"], 3)] for _, r in rows.iterrows()]
    return lines + _table(["Setting", "Steps T", "α", "Adam x_T", "AMSGrad x_T", "distance to −1", "Adam R_T/T",
                           "AMSGrad R_T/T"], table)


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
    comparison = (verdicts.add_holm(results.compare_final(history), _claimed_experiments(data))
                  if history is not None else None)
    lines = ["# Adam vs AMSGrad: replication report", "",
             "Reddi, Kale & Kumar, *On the Convergence of Adam and Beyond* (ICLR 2018), replicated "
             "after the McGill reproducibility study. Regenerate with "
             f"`replicate report --out {data['out']}` (reads only the CSV/JSON files here).", ""]
    lines += _claims_section(data, comparison)
    lines += _synthetic_section(data["synthetic"])
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
    lines += mcgill.section(data, figures)
    lines += _published_section(data, history)
    lines += _figures_section(data, figures)
    return "\n".join(lines).rstrip() + "\n"


# -------------------------------------------------------------------------------------- entry point
class WrittenReport(NamedTuple):
    """What :func:`write_report` wrote: ``REPORT.md``, the figures by experiment (``None`` without
    figures) and, with a README, ``[(path, changed)]`` of the files whose generated blocks it rewrote."""

    path: Path
    figures: dict | None
    readme: list


def write_report(out, *, figures=True, readme=None) -> WrittenReport:
    """``replicate report``: read the results under ``out`` (no training, no TensorFlow), draw the
    figures (unless ``figures`` is false) and write ``<out>/REPORT.md``; with ``readme`` (a README.md
    path) also rewrite the generated blocks of it and of the Markdown files of the docs/ folder beside
    it from the same results. A missing or empty results folder is a :class:`UserError`."""
    from .io import check_writable, write_text_atomic

    out = Path(out)
    if not out.is_dir():
        raise UserError(f"results folder {str(out)!r} does not exist; run `replicate demo --out {out}` "
                        "or pass the folder with --out")
    check_writable(out)
    data = collect(out)
    if not data["experiments"] and data["synthetic"] is None:
        raise UserError(f"no results under {out} (no synthetic/trajectories.csv, no <experiment>/history.csv); "
                        "run `replicate synthetic` or `replicate train EXPERIMENT` first")
    drawn = write_figures(data) if figures else None
    path = write_text_atomic(build_report(data, drawn), out / "REPORT.md")
    updated = []
    if readme:
        from .readme import readme_blocks, update_files

        # README and docs/*.md; an unchanged file keeps its bytes and its time stamp
        updated = update_files(readme, readme_blocks(data))
    return WrittenReport(path, drawn, updated)
