"""``replicate migrate``: bring the results under ``--out`` to this code's identity schema.

Identity schema 2 (:mod:`replication.store`) adds the Keras backend to a training run's id, except
for TensorFlow: runs trained under another backend before it (e.g. the JAX runs of
``results/cifar10-cifarnet-mcgill-code``) get their new ids, their files renamed and their sidecars
and ``train.json`` rewritten; their CSVs, ``history.csv`` and ``iterations.csv`` keep their bytes.
Nothing else is touched, and a second call finds nothing to do.
"""
from __future__ import annotations

from pathlib import Path

from ._args import add_out


def add_parser(sub):
    p = sub.add_parser(
        "migrate",
        help="give results written by older code this code's run ids (no training, no TensorFlow)",
        description="Rename the runs under --out whose ids predate the Keras backend in a run's identity "
        "(runs trained under JAX or torch before identity schema 2) and rewrite their sidecars and "
        "train.json; TensorFlow runs keep their ids. One line per folder changed.",
    )
    add_out(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..errors import UserError
    from ..store import migrate

    out = Path(args.out)
    if not out.is_dir():
        raise UserError(f"no results folder {str(out)!r}; give the folder that `train` wrote with --out")
    changed = migrate(out)
    if not changed:
        print(f"{out}: nothing to migrate")
    return 0
