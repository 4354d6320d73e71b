"""``replicate ablation BASE``: from our protocol to McGill's coded one, one factor at a time."""
from __future__ import annotations

from ._args import add_out


def add_parser(sub):
    from ..ablation import BASES

    p = sub.add_parser(
        "ablation",
        help="switch our protocol to McGill's code's one factor at a time (issue 27)",
        description="For BASE (mnist-logreg or mnist-mlp): grid search and 5 x 2 final runs at each step "
        "from our protocol to the one McGill's code ran (raw pixels, final-run schedule, search schedule, "
        "search score/loss/folds/early stopping, split), into <out>/mcgill-code/ablation/; steps 0 and 6 are "
        "the committed <out>/BASE and <out>/BASE-mcgill-code. Writes <out>/mcgill-code/ablation-BASE.csv. "
        "Finished points and runs are read back, so a stopped command resumes.",
    )
    p.add_argument("base", choices=list(BASES), help="the experiment of our protocol to start from")
    p.add_argument("--data-dir", default=None, help="folder holding mnist.npz (default: $REPLICATION_DATA_DIR "
                   "or the Keras cache)")
    p.add_argument("--assemble-only", action="store_true",
                   help="only (re)write ablation-BASE.csv from the finished steps")
    add_out(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..ablation import assemble_ablation, run_ablation

    if args.assemble_only:
        frame = assemble_ablation(args.base, args.out)
    else:
        frame = run_ablation(args.base, out=args.out, data_dir=args.data_dir)
    steps = sorted(set(frame["step"])) if len(frame) else []
    print(f"ablation {args.base}: {len(steps)} step(s) with results ({', '.join(map(str, steps)) or 'none'}); "
          f"wrote {args.out}/mcgill-code/ablation-{args.base}.csv" if steps else
          f"ablation {args.base}: no step has results yet")
    return 0
