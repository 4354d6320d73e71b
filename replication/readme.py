"""The result tables of the README and of ``docs/``, generated from the committed results so they cannot drift.

Each table lives between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``, in ``README.md``
(the compact verdict table) or in a Markdown file of the ``docs/`` folder beside it (``docs/results.md``,
``docs/mcgill-code.md``: the tables go with the prose that reads them). ``replicate report --readme
README.md`` rewrites every such block of those files (:func:`update_files`) from :func:`readme_blocks`
(built from :func:`replication.report.collect`'s data, the same as ``REPORT.md``) and leaves the prose
around them alone; a block name may appear once across all the files. ``tests/test_readme.py`` checks
that the committed files equal what the committed results give, each block present exactly once.
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import mcgill, results, verdicts
from .errors import UserError
from .experiments import EXPERIMENTS
from .registry import COMPARED, optimizer_label
from .report import CIFAR_PROVENANCE, KORZENIOWSKI_CIFARNET, _claimed_experiments, _table, claim_verdicts, pm_values

MARK = re.compile(r"(<!-- generated:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)
OPEN = re.compile(r"<!-- generated:([a-z0-9-]+) -->")
DOCS = "docs"  # the folder beside the README whose Markdown files may hold blocks too
SHORT = {"mnist-logreg": "LR", "mnist-mlp": "MLP"}


def update_readme(text: str, blocks: dict, where: str = "README") -> str:
    """``text`` with every generated block replaced by ``blocks[name]``; a block this code does not
    know is an error (a typo in the README would otherwise go stale silently), and so is an opening
    marker without its closing one. ``where`` names the file in the messages."""
    def replace(match):
        name = match.group("name")
        if name not in blocks:
            raise UserError(f"{where} block {name!r} is not one replicate report generates "
                            f"({', '.join(sorted(blocks))})")
        return match.group(1) + blocks[name].rstrip("\n") + "\n" + match.group(4)

    closed = [m.group("name") for m in MARK.finditer(text)]
    unclosed = [name for name in OPEN.findall(text) if name not in closed]
    if unclosed:
        raise UserError(f"{where}: block {unclosed[0]!r} has no closing <!-- /generated:{unclosed[0]} --> line")
    return MARK.sub(replace, text)


def block_files(readme) -> list[Path]:
    """The files whose generated blocks ``replicate report --readme README`` rewrites: ``readme``
    itself, then every ``*.md`` of the ``docs/`` folder beside it that has a block (sorted by name)."""
    readme = Path(readme)
    docs = readme.parent / DOCS
    found = [path for path in sorted(docs.glob("*.md")) if path.resolve() != readme.resolve()
             and OPEN.search(path.read_text(encoding="utf-8", errors="replace"))] if docs.is_dir() else []
    return [readme, *found]


def update_files(readme, blocks: dict) -> list[tuple[Path, bool]]:
    """Rewrite the generated blocks of every file of :func:`block_files` from ``blocks``; ``[(path,
    changed)]``. A block name found in two places (two files, or twice in one) is an error, and
    nothing is written unless every file updates: an unchanged file keeps its bytes and time stamp."""
    from .io import read_text, write_text_atomic

    texts = {path: read_text(path) for path in block_files(readme)}
    where: dict[str, list[str]] = {}
    for path, text in texts.items():
        for name in OPEN.findall(text):
            where.setdefault(name, []).append(str(path))
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    if twice:
        name, paths = sorted(twice.items())[0]
        raise UserError(f"block {name!r} appears {len(paths)} times ({', '.join(paths)}); "
                        "each generated block belongs in one place")
    new = {path: update_readme(text, blocks, str(path)) for path, text in texts.items()}
    for path, text in new.items():
        if text != texts[path]:
            write_text_atomic(text, path)
    return [(path, new[path] != texts[path]) for path in texts]


def readme_blocks(data: dict) -> dict:
    """``{block name: Markdown}`` from :func:`replication.report.collect`'s data."""
    histories = [e["history"] for e in data["experiments"].values() if e["history"] is not None]
    history = pd.concat(histories, ignore_index=True) if histories else None
    comparison = (verdicts.add_holm(results.compare_final(history), _claimed_experiments(data))
                  if history is not None else pd.DataFrame())
    return {
        "synthetic-table": _synthetic(data["synthetic"]),
        "mnist-final": _mnist_final(data, comparison),
        "verdicts": _verdicts(data, comparison),
        "verdicts-summary": _verdicts_summary(data, comparison),
        "table-one": _table_one(data),
        "cifarnet": _cifarnet(data, comparison, "cifar10-cifarnet"),
        "cifarnet-paper": _cifarnet(data, comparison, "cifar10-cifarnet-paper"),
        "cifarnet-search": _cifarnet_search(data, "cifar10-cifarnet"),
        "cifarnet-searched": _cifarnet(data, comparison, "cifar10-cifarnet-searched"),
        "beyond-mcgill": _beyond(data),
        "mcgill-code": mcgill.readme_block(data),
    }


# ------------------------------------------------------------------------------------ helpers
def _finals(entry):
    history = entry["history"]
    if history is None:
        return None
    finals = results.final_epoch(history)
    return finals[~finals["diverged"].astype(bool)]


def _seconds(data, name, kind="train"):
    """Wall seconds of the command that wrote ``<name>/train.json`` (its start to its end, as
    :func:`~replication.report.collect` read it) or ``<name>/gridsearch.json`` (its
    ``wall_seconds``); None where absent."""
    if kind == "gridsearch":
        from .io import read_json

        path = data["out"] / name / "gridsearch.json"
        return read_json(path).get("wall_seconds") if path.is_file() else None
    sidecar = (data["experiments"].get(name) or {}).get("train") or {}
    try:
        start = _dt.datetime.fromisoformat(sidecar["started_at"])
        end = _dt.datetime.fromisoformat(sidecar["finished_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return (end - start).total_seconds()


def _signed(x, digits=3) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


# ------------------------------------------------------------------------------------- blocks
def _synthetic(trajectories) -> str:
    if trajectories is None or trajectories.empty:
        return "No synthetic results (run `replicate synthetic`)."
    search = results.search_learning_rate(trajectories)
    rows = []
    for setting in ("online", "stochastic"):
        paper = verdicts._paper_rows(search, setting)
        for steps in (1_000_000, 10_000_000):
            at = paper[(paper["steps"] == steps) & paper["chosen"]]
            if at.empty:
                continue
            r = at.iloc[0]
            amsgrad = _signed(r["amsgrad_x_median"])
            if r["seeds"] > 1:
                low, high = r["amsgrad_distance_min"] + results.X_STAR, r["amsgrad_distance_max"] + results.X_STAR
                amsgrad += f" [{_signed(low)}, {_signed(high)}]"
            reached = "yes" if r["reached"] else ("**no** (at no α)" if not paper[paper["steps"] == steps]["reached"].any()
                                                 else "**no**")
            rows.append([setting, f"{steps // 1_000_000} M", f"{r['learning_rate']:g}", _signed(r["adam_x_median"]),
                         amsgrad, f"{r['adam_regret_median']:.3f}", f"{r['amsgrad_regret_median']:.3f}", reached])
    lines = _table(["setting", "steps", "chosen α", "Adam x_T", "AMSGrad x_T (median [range])", "Adam R_T/T",
                    "AMSGrad R_T/T", "AMSGrad reaches −1"], rows)
    return "\n".join(lines)


def _mnist_final(data, comparison) -> str:
    rows, times = [], []
    for name in ("mnist-logreg", "mnist-mlp"):
        entry = data["experiments"].get(name)
        finals = None if entry is None else _finals(entry)
        if finals is None:
            continue
        for optimizer in COMPARED:
            f = finals[(finals["optimizer"] == optimizer) & finals["bias_correction"].astype(bool)]
            wins = ""
            if optimizer == "amsgrad" and not comparison.empty:
                c = comparison[(comparison["experiment"] == name) & comparison["bias_correction"]].set_index("metric")
                if {"loss", "test_loss"} <= set(c.index):
                    wins = f"{c.loc['loss', 'adam_wins']} / {c.loc['test_loss', 'adam_wins']} of {c.loc['loss', 'pairs']}"
            rows.append([SHORT[name], optimizer_label(optimizer), pm_values(f["loss"]), pm_values(f["test_loss"]),
                         pm_values(f["test_accuracy"], 100, 2, " %"), wins])
        seconds = _seconds(data, name)
        if seconds is not None:
            times.append(f"{seconds:.0f} s ({SHORT[name]})")
    lines = _table(["experiment", "optimizer", "train loss", "test loss", "test accuracy",
                    "Adam better (paired runs: train / test loss)"], rows)
    if times:
        lines.append(f"Training took {' and '.join(times)} (from `started_at` to `finished_at` in each "
                     "`train.json`), on 2 CPU cores shared with other work (`results/logs/train-mnist.log`).")
    return "\n".join(lines)


def _verdicts(data, comparison) -> str:
    # The report's verdict rows in the wording of docs/results.md; the demos' rows stay in the report.
    return _verdict_table(data, comparison, lambda row: f"**{row.verdict}** — {row.detail}", lambda row: row.as_coded)


def _verdicts_summary(data, comparison) -> str:
    """The front door's verdict table: :func:`_verdicts`'s rows with only the verdicts and, per
    loss, its classification (the numbers stay in ``docs/results.md`` and ``REPORT.md``)."""
    def coded(row):
        if row.coded is None:
            return row.as_coded
        name, verdict, losses, short = row.coded
        return f"{_compact(verdict, losses, short)} (`{name}`)"

    return _verdict_table(data, comparison, lambda row: _compact(row.verdict, row.losses, row.short), coded)


def _verdict_table(data, comparison, ours, as_coded) -> str:
    """The verdict rows of :func:`replication.report.claim_verdicts` but the demos' ones, in the
    README's words of each claim (:class:`~replication.experiments.Claim`'s ``brief`` and
    ``mcgill_brief``); ``ours(row)`` writes our cell and ``as_coded(row)`` the as-coded one."""
    rows = [[row.spec.brief, ours(row), as_coded(row), row.spec.mcgill_brief]
            for row in claim_verdicts(data, comparison) if not row.spec.demo]
    return "\n".join(_table(["claim of Reddi et al.", "ours", "as McGill ran it (our rerun)", "McGill"], rows))


def _compact(verdict, losses, short) -> str:
    """``**verdict**``, then the short-runs flag if any and what each loss says (``train:
    evidence against; test: supported``; ``no pairs`` where a loss is unpaired)."""
    parts = ([f"⚠ {short}"] if short else []) + [
        f"{name.split()[0]}: {kind or 'no pairs'}" for name, kind, _text in losses]
    return f"**{verdict}**" + (" — " + "; ".join(parts) if parts else "")


def _table_one(data) -> str:
    rows, times = [], []
    for name in ("mnist-logreg", "mnist-mlp"):
        entry = data["experiments"].get(name)
        best = (entry or {}).get("best_params") or {}
        for optimizer in COMPARED:
            if optimizer not in best:
                continue
            mcgill = EXPERIMENTS[name].default_hyperparameters(optimizer)
            rows.append([f"{SHORT[name]} (MNIST)", optimizer_label(optimizer), f"{best[optimizer]['learning_rate']:g}",
                         f"{best[optimizer]['beta_2']:g}", f"{mcgill['learning_rate']:g}", f"{mcgill['beta_2']:g}"])
        seconds = _seconds(data, name, "gridsearch")
        if seconds is not None:
            times.append(f"{seconds:.0f} s ({SHORT[name]})")
    lines = _table(["experiment", "optimizer", "α (ours)", "β2 (ours)", "α (McGill)", "β2 (McGill)"], rows)
    grid = (data["experiments"].get("mnist-logreg") or {}).get("gridsearch")
    if grid is not None and not grid.empty:
        near, spread = [], []
        for optimizer in COMPARED:
            g = grid[(grid["optimizer"] == optimizer) & ~grid["diverged"].astype(bool)]
            if g.empty:
                continue
            best = g.loc[g["mean_val_loss"].idxmin()]
            at = g[np.isclose(g["learning_rate"], 0.01)]["mean_val_loss"]
            chosen = g[np.isclose(g["learning_rate"], best["learning_rate"])]["mean_val_loss"]
            if len(at):
                near.append(f"{100 * (at.min() / best['mean_val_loss'] - 1):.1f} % ({optimizer_label(optimizer)})")
            spread.append(f"{100 * (chosen.max() / chosen.min() - 1):.1f} % ({optimizer_label(optimizer)})")
        lines.append(f"LR: the best β2 at α = 0.01 is within {' and '.join(near)} of the best validation loss; at "
                     f"the chosen α the worst β2 is {' and '.join(spread)} above the best.")
        lines.append("")
    if times:
        lines.append(f"The searches took {' and '.join(times)} with the stacked engine (`wall_seconds` in each "
                     "`gridsearch.json`), on 2 CPU cores shared with other work (`results/logs/gridsearch-mnist.log`).")
    return "\n".join(lines)


def _cifarnet_search(data, name) -> str:
    """Our grid search of ``name`` (CifarNet): every point's validation loss, the choice per
    optimizer against McGill's Table I, and what it cost (the fits' own times). The choice bolded is
    the search's own ``best_params.json`` (what ``cifar10-cifarnet-searched`` trains at), not
    recomputed here."""
    entry = data["experiments"].get(name) or {}
    grid = entry.get("gridsearch")
    if grid is None or grid.empty:
        return (f"Not finished yet (no `results/{name}/gridsearch.csv`); the finished points and folds are "
                f"under `results/{name}/gridsearch_points/`.")
    best = entry.get("best_params") or {}
    grid = grid.sort_values(["optimizer", "learning_rate", "beta_2"], kind="stable")
    rows = []
    for _, r in grid.iterrows():
        loss = "diverged" if r["diverged"] else f"{r['mean_val_loss']:.4f} ± {r['std_test_score']:.4f}"
        epochs = r.get("mean_epochs_run", math.nan)
        rows.append([optimizer_label(r["optimizer"]), f"{r['learning_rate']:g}", f"{r['beta_2']:g}",
                     f"**{loss}**" if _is_choice(r, best.get(r["optimizer"])) else loss,
                     "—" if pd.isna(epochs) else f"{epochs:g}", f"{r['mean_fit_time']:.0f} s"])
    lines = _table(["optimizer", "α", "β2", "validation loss (mean ± std over folds)", "epochs run (mean)",
                    "fit time (mean)"], rows)
    spec = EXPERIMENTS[name]
    choice, differs = [], False
    for optimizer in sorted(best):
        ours, mcgill = best[optimizer], spec.default_hyperparameters(optimizer)
        same = _same_point(ours, mcgill)
        differs |= not same
        theirs = "McGill's too" if same else f"McGill: α {mcgill['learning_rate']:g}, β2 {mcgill['beta_2']:g}"
        choice.append(f"{optimizer_label(optimizer)} α {ours['learning_rate']:g}, β2 {ours['beta_2']:g} ({theirs})")
    cv = grid["cv"].astype(int)
    fits = int(cv.sum())
    hours = float((cv * (grid["mean_fit_time"] + grid["mean_score_time"])).sum()) / 3600
    chosen = "; ".join(choice) or f"none (no `results/{name}/best_params.json`)"
    edges = _alpha_edges(grid, best)
    lines.append(f"Chosen (bold; `best_params.json`, the smallest mean validation loss, McGill §IV-A): {chosen}. "
                 + (f"{edges} " if edges else "") +
                 f"Cost: {fits} fits, {hours:.1f} h of fitting and scoring on this CPU (the fits' own times in "
                 f"`gridsearch.csv`, summed). "
                 + ("" if not best else
                    "The choice differs from McGill's, so the 5 × 2 final runs at it are "
                    "`cifar10-cifarnet-searched` below." if differs else
                    "The choice is McGill's: the final runs above are our search's final runs too."))
    return "\n".join(lines)


def _alpha_edges(grid, best) -> str:
    """A sentence for the choices whose α is the largest or smallest α the search tried for that
    optimizer (the grid says nothing about the α beyond it), or "" if none is."""
    rates = {o: grid.loc[grid["optimizer"] == o, "learning_rate"] for o in best}
    said = []
    for side, pick in (("largest", max), ("smallest", min)):
        at = [o for o in sorted(best)
              if rates[o].nunique() > 1 and math.isclose(best[o]["learning_rate"], pick(rates[o]))]
        if at:
            whose = " and ".join(optimizer_label(o) for o in at)
            rate = ", ".join(sorted({f"{best[o]['learning_rate']:g}" for o in at}))
            beyond = "larger" if side == "largest" else "smaller"
            said.append(f"α {rate} ({whose}) is the {side} α of the grid, so the search says nothing about "
                        f"whether a {beyond} α would do better still.")
    return " ".join(said)


def _same_point(a, b) -> bool:
    """Whether two mappings with ``learning_rate`` and ``beta_2`` (a grid row, a ``best_params.json``
    entry, a spec's defaults) name the same α and β2."""
    return math.isclose(a["learning_rate"], b["learning_rate"]) and math.isclose(a["beta_2"], b["beta_2"])


def _is_choice(row, best) -> bool:
    """Whether the grid row ``row`` is the point ``best`` (a ``best_params.json`` entry) names."""
    if not best:
        return False
    if "bias_correction" in best and str(row.get("bias_correction", "default")) != ("on" if best["bias_correction"] else "off"):
        return False
    return _same_point(row, best)


def _cifarnet(data, comparison, name) -> str:
    """McGill's CifarNet (``cifar10-cifarnet``), the paper's (``cifar10-cifarnet-paper``), or McGill's
    at our own search's choice (``cifar10-cifarnet-searched``)."""
    paper = name == "cifar10-cifarnet-paper"
    entry = data["experiments"].get(name)
    finals = None if entry is None else _finals(entry)
    if finals is None or finals.empty:
        return "Not run yet."
    rows = []
    for optimizer in COMPARED:
        f = finals[finals["optimizer"] == optimizer]
        rows.append([optimizer_label(optimizer), str(len(f)), pm_values(f["loss"]), pm_values(f["test_loss"]),
                     pm_values(f["test_exact_loss"]) if "test_exact_loss" in f else "—",
                     pm_values(f["test_accuracy"], 100, 2, " %"),
                     pm_values(f["test_exact_accuracy"], 100, 2, " %") if "test_exact_accuracy" in f else "—"])
    a = finals[finals["optimizer"] == "adam"].set_index("run")
    b = finals[finals["optimizer"] == "amsgrad"].set_index("run")
    pairs = sorted(set(a.index) & set(b.index))
    spec_runs = EXPERIMENTS[name].runs
    hyper = ((entry["train"] or {}).get("hyperparameters") or {})
    source = {v.get("source", {}).get("learning_rate") for v in hyper.values()}
    used = "; ".join(f"{optimizer_label(o)} α {v['learning_rate']:g}, β2 {v['beta_2']:g}" for o, v in hyper.items())
    lines = [("CifarNet as Reddi et al. describe it (6×6 convolutions, LRN, one dropout layer), trained with "
              if paper else "") + f"McGill's final protocol (α/√t, batch 128, multiclass log-loss, {int(finals['epoch'].max())} epochs, "
             f"run k of both optimizers paired by seed) at {used}"
             + (" — **McGill's Table I values**, from the `--params` file, not our search's" if source == {"params file"} else "")
             + (f" — **our search's choice** (`{EXPERIMENTS[name].params_from}/best_params.json`)"
                if EXPERIMENTS[name].params_from and source == {"best_params.json"} else "")
             + f". Runs finished: {len(a)} Adam, {len(b)} AMSGrad of {spec_runs} each"
             + ("" if len(pairs) >= spec_runs else " (the rest resume in later sessions)") + ". "
             + CIFAR_PROVENANCE + " Final epoch, mean ± std over runs:", ""]
    lines += _table(["optimizer", "runs", "train loss", "test loss (10,000)", "test loss (exact 1,000)",
                     "test acc. (10,000)", "test acc. (exact 1,000)"], rows)
    if pairs:
        d = {m: (b.loc[pairs, m] - a.loc[pairs, m]).to_numpy() for m in ("loss", "test_loss", "test_accuracy")}
        verdict, detail = verdicts.loss_verdict(comparison, name)
        lines.append(
            f"AMSGrad − Adam per paired run: train loss {', '.join(f'{x:+.4f}' for x in d['loss'])}; test loss "
            f"{', '.join(f'{x:+.4f}' for x in d['test_loss'])}; test accuracy "
            f"{', '.join(f'{100 * x:+.2f}' for x in d['test_accuracy'])} points (AMSGrad lower train loss in "
            f"{int((d['loss'] < 0).sum())} of {len(pairs)} pairs, lower test loss in {int((d['test_loss'] < 0).sum())}). "
            f"Verdict by the report's rule: **{verdict}** ({detail})"
            + ("; provisional until all runs are in." if len(pairs) < spec_runs else "."))
    seconds = entry["history"]["epoch_seconds"].median()
    published = ("Reddi et al. (Fig. 2, bottom row) show AMSGrad with lower training and test loss on this network; McGill did "
                 "not run it" if paper else f"{KORZENIOWSKI_CIFARNET}; McGill \"AMSGrad slightly lower\" loss")
    lines += ["", f"Published: {published}. Median epoch time here {seconds:.0f} s on 2 CPU cores (training and the "
              "test pass; McGill's CifarNet: ≈ 90 s on a GK104 GPU)."]
    return "\n".join(lines)


def _beyond(data) -> str:
    rows = []
    for name in ("mnist-logreg-l2", "mnist-mlp-2x1000", "mnist-cnn", "mnist-vae"):
        entry = data["experiments"].get(name)
        finals = None if entry is None else _finals(entry)
        if finals is None or finals.empty:
            continue
        spec = EXPERIMENTS[name]
        hyper = (entry["train"] or {}).get("hyperparameters") or {}
        ours, used, shape = [], [], set()
        for optimizer in spec.optimizers:
            f = finals[finals["optimizer"] == optimizer]
            if f.empty:
                continue
            shape.add((len(f), int(f["epoch"].max())))
            label = optimizer_label(optimizer) + ("" if f["bias_correction"].all() else " (no bias corr.)")
            if spec.loss == "elbo":
                ours.append(f"{label} {pm_values(f['test_loss'], digits=2)} nats")
            else:
                ours.append(f"{label} {pm_values(f['test_accuracy'], 100, 2, ' %')}")
            h = hyper.get(optimizer, {})
            where = {"best_params.json": "grid search", "spec": "spec", "params file": "--params"}.get(
                (h.get("source") or {}).get("learning_rate"), "?")
            used.append(f"{optimizer_label(optimizer)} {h.get('learning_rate', math.nan):g} ({where})")
        published = dict(spec.published)
        theirs = (" / ".join(f"{100 * published[o]:.2f} %" for o in spec.optimizers if o in published)
                  if published else "AMSGrad lower over 100 epochs (CelebA)")
        runs = ", ".join(f"{r} run{'s' * (r != 1)} × {e} epoch{'s' * (e != 1)}" for r, e in sorted(shape))
        metric = "test −ELBO" if spec.loss == "elbo" else "test accuracy"
        rows.append([f"`{name}`", runs, "; ".join(used), f"{metric}: " + ", ".join(ours), theirs])
    return "\n".join(_table(["experiment", "runs per optimizer", "α (from)", "ours (final epoch)", "published"], rows))
