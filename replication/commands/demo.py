"""``replicate demo``: the whole pipeline on data every machine has, in about ten minutes.

1. the synthetic problem with the paper's defaults (both settings, 1 M steps, several seeds);
2. for ``digits-logreg`` and ``digits-mlp`` (scikit-learn's 8×8 digits, no download) — or the MNIST
   experiments when ``--data-dir`` is given: a reduced grid search, then 5 runs per optimizer with
   the chosen hyperparameters;
3. figures and the report, where the stages that exist write them.
"""
from __future__ import annotations

import importlib
from argparse import Namespace
from pathlib import Path

from ._args import add_out, positive_int


def add_parser(sub):
    p = sub.add_parser("demo", help="run the whole pipeline on the embedded digits data (~10 min)")
    p.add_argument("--data-dir", default=None,
                   help="folder with mnist.npz: run the MNIST experiments instead of digits")
    p.add_argument("--steps", type=positive_int, default=1_000_000, help="synthetic steps")
    p.add_argument("--runs", type=positive_int, default=5, help="final runs per optimizer")
    p.add_argument("--force", action="store_true")
    add_out(p)
    p.set_defaults(func=run)


def _stage(name):
    """The command module for a stage, or None while it is not built."""
    try:
        return importlib.import_module(f"replication.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"replication.commands.{name}":
            return None
        raise


def run(args) -> int:
    from . import synthetic

    out = Path(args.out)
    print("== 1. synthetic problem (Reddi et al. §5) ==", flush=True)
    synthetic_args = Namespace(
        setting="all", optimizers=["adam", "amsgrad"], steps=args.steps,
        learning_rates=list(synthetic.DEFAULT_RATES), schedule="constant", beta1=0.9, beta2=0.99,
        bias_correction=True, seeds=[0, 1, 2, 3, 4], C=3.0, record_every=None, no_plots=False,
        force=args.force, out=str(out),
    )
    synthetic.run(synthetic_args)

    experiments = ["mnist-logreg", "mnist-mlp"] if args.data_dir else ["digits-logreg", "digits-mlp"]
    gridsearch, train, report = _stage("gridsearch"), _stage("train"), _stage("report")
    for number, name in enumerate(experiments, start=2):
        if gridsearch is not None:
            print(f"\n== {number}a. grid search: {name} (reduced grid) ==", flush=True)
            gridsearch.run_demo(name, out=str(out), data_dir=args.data_dir, force=args.force)
        if train is not None:
            print(f"\n== {number}b. final runs: {name} ==", flush=True)
            train.run_demo(name, out=str(out), data_dir=args.data_dir, runs=args.runs, force=args.force)
    if report is not None:
        print("\n== report ==", flush=True)
        report.run(Namespace(out=str(out)))
    print(f"\nEverything is under {out.resolve()}")
    return 0
