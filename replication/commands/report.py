"""``replicate report``: figures and ``<out>/REPORT.md`` from the results under ``--out``."""
from __future__ import annotations

from ._args import add_out


def add_parser(sub):
    p = sub.add_parser(
        "report",
        help="write REPORT.md and the figures from the results folder",
        description="Read every experiment's CSV/JSON under --out (no training, no TensorFlow), draw "
        "the figures into <out>/<experiment>/figures/ and <out>/figures/, and write <out>/REPORT.md: "
        "setup, Table I, final metrics, Adam vs AMSGrad statistics and a verdict per claim.",
    )
    p.add_argument("--no-figures", action="store_true", help="write REPORT.md only")
    p.add_argument("--readme", default=None, metavar="FILE",
                   help="also rewrite the generated tables of FILE (README.md) and of the Markdown files of "
                        "the docs/ folder beside it (the blocks between <!-- generated:NAME --> markers) "
                        "from the same results")
    add_out(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..report import write_report

    say_report(write_report(args.out, figures=not getattr(args, "no_figures", False), readme=args.readme))
    return 0


def say_report(written):
    """The lines ``replicate report`` prints for a :class:`replication.report.WrittenReport`."""
    n = sum(len(v) for v in (written.figures or {}).values())
    print(f"wrote {written.path} ({n} figures)")
    for path, changed in written.readme:
        print(f"{'updated' if changed else 'unchanged'}: {path}")
