"""``replicate demo``: the whole pipeline on data every machine has, in a few minutes.

1. the synthetic problem with the paper's defaults (both settings, α/√t, the α grid, 10 M steps,
   5 seeds: the committed run, read back when it is there);
2. for ``digits-logreg`` and ``digits-mlp`` (scikit-learn's 8×8 digits, no download) — or the MNIST
   experiments when ``--data-dir`` is given: a reduced grid search, then 5 runs per optimizer with
   the chosen hyperparameters;
3. figures and the report.

Everything goes to ``--out`` (default ``demo/``, ignored by git), never over the committed
replication in ``results/``: a demo in a fresh clone leaves ``git status`` clean. Stage headers
go to stderr with the progress lines they introduce; stdout carries the results.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ._args import add_out, positive_int, runs

DEMO_OUT = "demo"  # ignored by git (.gitignore): the committed results/ stay as they are


def add_parser(sub):
    p = sub.add_parser(
        "demo", help="run the whole pipeline on the embedded digits data into demo/ (~3 min on 2 CPU cores)",
        description="The synthetic problem (10 M steps), a reduced grid search and 5 runs per optimizer "
                    "of digits-logreg and digits-mlp (or, with --data-dir, the MNIST experiments), then "
                    "figures and REPORT.md, all under --out (default demo/, apart from the committed "
                    "results/). Rerunning reads finished work back; --force recomputes it.")
    p.add_argument("--data-dir", default=None,
                   help="folder with mnist.npz: run the MNIST experiments instead of digits")
    # The committed synthetic run's length: the stochastic setting needs it (docs/results.md).
    p.add_argument("--steps", type=positive_int, default=10_000_000,
                   help="synthetic steps (default 10000000, as the committed results)")
    p.add_argument("--runs", type=runs, default=5, help="final runs per optimizer")
    p.add_argument("--force", action="store_true",
                   help="recompute everything, even finished synthetic runs, grid points and runs")
    add_out(p, default=DEMO_OUT)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report import write_report
    from . import gridsearch, report, synthetic, train

    out = Path(args.out)
    header("== 1. synthetic problem (Reddi et al. §5) ==")
    # The synthetic command's own defaults (the paper's: run_experiment's), only the length and the
    # reproduction's α = 0.001 drawn besides the chosen one given here.
    synthetic.say_results(synthetic.run_experiment(out=out, steps=args.steps, plot_rates=(0.001,), force=args.force))

    experiments = ["mnist-logreg", "mnist-mlp"] if args.data_dir else ["digits-logreg", "digits-mlp"]
    for number, name in enumerate(experiments, start=2):
        header(f"\n== {number}a. grid search: {name} (reduced grid) ==")
        gridsearch.run_demo(name, out=out, data_dir=args.data_dir, force=args.force)
        header(f"\n== {number}b. final runs: {name} ==")
        train.run_demo(name, out=str(out), data_dir=args.data_dir, runs=args.runs, force=args.force)
    header("\n== report ==")
    report.say_report(write_report(out))
    print(f"\nEverything is under {out.resolve()}")
    return 0


def header(text):
    # With the progress lines it introduces (stderr), so `demo > file` keeps them together.
    print(text, file=sys.stderr, flush=True)
