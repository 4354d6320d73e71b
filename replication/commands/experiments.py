"""``replicate experiments``: list the registered experiments; ``replicate experiments NAME`` shows
one in full."""
from __future__ import annotations

import json
import textwrap

from ..experiments import EXPERIMENTS, get_experiment

WIDTH = 100  # the table and the details fit a 100-column terminal


def add_parser(subparsers):
    p = subparsers.add_parser(
        "experiments",
        help="list the experiments; NAME: one experiment's settings in full",
        description="List the registered experiments (model, loss, schedule, epochs, runs and the "
        "optimizers each compares), or with NAME show every setting of those experiments (default "
        "alpha/beta2 per optimizer from McGill Table I or the source, batch, grid-search epochs, "
        "source, published numbers).",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="show these experiments in full")
    p.add_argument("--json", action="store_true", help="print the full specs as JSON")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    experiments = [get_experiment(n) for n in args.names] if args.names else list(EXPERIMENTS.values())
    if args.json:
        print(json.dumps({e.name: e.to_dict() for e in experiments}, indent=2))
    elif args.names:
        print("\n\n".join(format_details(e) for e in experiments))
    else:
        print(format_table(experiments))
        print("\nOne experiment in full: `replicate experiments NAME`; every spec as JSON: --json.")
    return 0


def format_table(experiments) -> str:
    """A plain-text table, one row per experiment, at most :data:`WIDTH` columns."""
    header = ["name", "model", "loss", "schedule", "epochs", "compares"]
    rows = [[e.name, e.model, e.loss, e.schedule, str(e.epochs), "/".join(e.optimizers)]
            for e in experiments]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for r in [header, ["-" * w for w in widths]] + rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def format_details(e) -> str:
    """Every setting of one experiment, ``key: value`` lines wrapped at :data:`WIDTH` columns."""
    hyper = "; ".join(
        f"{name} α {hp['learning_rate']:g}, β2 {hp['beta_2']:g}"
        for name, hp in ((name, e.default_hyperparameters(name)) for name in e.optimizers)
    )
    spec = e.to_dict()
    fields = [
        ("description", e.description),
        ("source", e.source),
        ("data, model", f"{e.dataset}, {e.model}"
         + (f" ({', '.join(f'{k}={v}' for k, v in spec['model_kwargs'].items())})" if spec["model_kwargs"] else "")),
        ("loss", e.loss),
        ("schedule", e.schedule),
        ("batch size", str(e.batch_size)),
        ("epochs", f"{e.epochs} per final run, {e.gridsearch_epochs} per grid-search fit"),
        ("runs", f"{e.runs} per optimizer"),
        ("compares", " vs ".join(e.optimizers)),
        ("defaults", f"{hyper} (`replicate train` uses <out>/{e.name}/best_params.json instead "
                     "when the grid search wrote one)" if e.final_params == "search" else
                     f"{hyper} (always: final_params='spec', as McGill's code trained at param_config.yml "
                     "whatever its search chose)"),
        ("β1, ε", f"{e.beta_1:g}, {e.epsilon:g}"),
        ("flip", "left-right flips during training" if e.flip else "no augmentation"),
    ]
    protocol = e.protocol()
    if protocol or e.code_of:
        fields.append(("protocol", ", ".join(f"{k}={v}" for k, v in protocol.items()) or "the default"))
        fields.append(("search", f"schedule {e.search_schedule}, loss {e.search_loss}, best by validation "
                                 f"{e.gridsearch_score}, {e.gridsearch_folds} folds, early stopping "
                                 f"{'on' if e.early_stopping else 'off'}"))
    if e.code_of:
        fields.append(("code of", f"{e.code_of} (its protocol as McGill's code ran it)"))
    if spec["published"]:
        fields.append(("published", ", ".join(f"{k} {100 * v:.2f} %" for k, v in spec["published"].items())))
    if spec["grid"]:
        fields.append(("source's grid", "; ".join(f"{k} {v}" for k, v in spec["grid"].items())))
    key_width = max(len(k) for k, _ in fields) + 2
    lines = [e.name]
    for key, value in fields:
        lines += textwrap.wrap(value, WIDTH, initial_indent=f"  {key + ':':<{key_width}}",
                               subsequent_indent=" " * (key_width + 2), break_on_hyphens=False) or [f"  {key}:"]
    return "\n".join(lines)
