"""``replicate report``: figures and ``<out>/REPORT.md`` from the results under ``--out``."""
from __future__ import annotations

from pathlib import Path

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
    from .. import report
    from ..errors import UserError
    from ..io import check_writable, write_text_atomic

    out = Path(args.out)
    if not out.is_dir():
        raise UserError(f"results folder {str(out)!r} does not exist; run `replicate demo --out {out}` "
                        "or pass the folder with --out")
    check_writable(out)
    data = report.collect(out)
    if not data["experiments"] and data["synthetic"] is None:
        raise UserError(f"no results under {out} (no synthetic/trajectories.csv, no <experiment>/history.csv); "
                        "run `replicate synthetic` or `replicate train EXPERIMENT` first")
    figures = None if getattr(args, "no_figures", False) else report.write_figures(data)
    path = write_text_atomic(report.build_report(data, figures), out / "REPORT.md")
    n = sum(len(v) for v in (figures or {}).values())
    print(f"wrote {path} ({n} figures)")
    if args.readme:
        from ..readme import readme_blocks, update_files

        # README and docs/*.md; an unchanged file keeps its bytes and its time stamp
        for path, changed in update_files(args.readme, readme_blocks(data)):
            print(f"{'updated' if changed else 'unchanged'}: {path}")
    return 0
