"""``replicate experiments``: list the registered experiments and their default settings."""
from __future__ import annotations

import json

from ..experiments import EXPERIMENTS, get_experiment

_OPTIMIZERS = ("adam", "amsgrad")  # the two the study compares; adamax is in --json


def add_parser(subparsers):
    p = subparsers.add_parser(
        "experiments",
        help="list the experiments and their settings",
        description="List the registered experiments (data set, model, loss, schedule, epochs, "
        "runs, default alpha/beta2 per optimizer from McGill Table I).",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="show only these experiments")
    p.add_argument("--json", action="store_true", help="print the full specs as JSON")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    experiments = [get_experiment(n) for n in args.names] if args.names else list(EXPERIMENTS.values())
    if args.json:
        print(json.dumps({e.name: e.to_dict() for e in experiments}, indent=2))
        return 0
    print(format_table(experiments))
    return 0


def format_table(experiments) -> str:
    """A plain-text table, one row per experiment, columns padded to fit."""
    header = ["name", "dataset", "model", "loss", "schedule", "batch", "epochs", "grid epochs", "runs"]
    header += [f"{opt} α/β2" for opt in _OPTIMIZERS] + ["description"]
    rows = []
    for e in experiments:
        row = [e.name, e.dataset, e.model, e.loss, e.schedule, e.batch_size, e.epochs, e.gridsearch_epochs, e.runs]
        for opt in _OPTIMIZERS:
            hp = e.default_hyperparameters(opt)
            row.append(f"{hp['learning_rate']:g}/{hp['beta_2']:g}")
        row.append(e.description)
        rows.append([str(c) for c in row])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for r in [header, ["-" * w for w in widths]] + rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)
