"""Figures (matplotlib, Agg backend; each saved as PNG and SVG).

Colours follow the paper: Adam blue, AMSGrad red; AdaMax green. Runs without bias correction are
drawn in a lighter shade of the same colour.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"adam": "#1f4e9c", "amsgrad": "#c0262d", "adamax": "#2a8a3e"}
LIGHT = {"adam": "#8fb0e3", "amsgrad": "#ef9a9e", "adamax": "#9ad3a6"}
LABELS = {"adam": "Adam", "amsgrad": "AMSGrad", "adamax": "AdaMax"}


def color_for(optimizer: str, bias_correction: bool = True) -> str:
    table = COLORS if bias_correction else LIGHT
    return table.get(optimizer, "#555555")


def save_figure(fig, path_stem) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.svg``; returns both paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return paths


def plot_synthetic(frame, out_dir) -> list[Path]:
    """Per setting: x_t (left) and R_t/t (right) against t, one row per learning rate, every seed
    drawn (the stochastic end state depends on the draw). The band is x's range between records."""
    out_dir = Path(out_dir)
    written = []
    for setting, by_setting in frame.groupby("setting", sort=False):
        rates = sorted(by_setting["learning_rate"].unique())
        fig, axes = plt.subplots(len(rates), 2, figsize=(11, 2.6 * len(rates)), squeeze=False)
        for row, lr in enumerate(rates):
            ax_x, ax_r = axes[row]
            sub = by_setting[by_setting["learning_rate"] == lr]
            for (name, bc, seed), run in sub.groupby(["optimizer", "bias_correction", "seed"], sort=False):
                color = color_for(name, bool(bc))
                first = seed == sub["seed"].min()
                label = f"{LABELS.get(name, name)}{'' if bc else ' (no bias corr.)'}" if first else None
                ax_x.plot(run["step"], run["x"], color=color, lw=1.0, alpha=0.9, label=label)
                ax_x.fill_between(run["step"], run["x_min"], run["x_max"], color=color, alpha=0.08, lw=0)
                ax_r.plot(run["step"], run["avg_regret"], color=color, lw=1.0, alpha=0.9, label=label)
            ax_x.axhline(-1.0, color="k", lw=0.6, ls=":")
            ax_x.set_ylim(-1.05, 1.05)
            ax_x.set_ylabel(f"x_t  (α={lr:g})")
            ax_r.set_ylabel("R_t / t")
            ax_r.set_yscale("log")
            for ax in (ax_x, ax_r):
                ax.grid(alpha=0.3)
            if row == 0:
                ax_x.set_title(f"{setting}: iterate x_t (optimum −1)")
                ax_r.set_title(f"{setting}: average regret")
                ax_x.legend(loc="best", fontsize=8)
        for ax in axes[-1]:
            ax.set_xlabel("iteration t")
        fig.tight_layout()
        written += save_figure(fig, out_dir / f"synthetic-{setting}")
    return written
