"""``replicate synthetic``: Reddi et al.'s synthetic convex problem (online and stochastic)."""
from __future__ import annotations

import time
from pathlib import Path

from ._args import add_out, beta, on_off, positive_float, positive_int

DEFAULT_RATES = (0.001, 0.01, 0.1, 0.5)


def add_parser(sub):
    p = sub.add_parser(
        "synthetic",
        help="the synthetic problem on which Adam provably fails (paper §5, McGill §III-A)",
        description="f_t(x) = 1010x once every 101 steps (online) or with probability 0.01 "
        "(stochastic), else -10x, on [-1, 1]: Adam settles at +1, AMSGrad moves to the optimum -1.",
    )
    p.add_argument("--setting", default="all", choices=["online", "stochastic", "cyclic", "all"],
                   help="which problem; 'all' = online and stochastic (default)")
    p.add_argument("--optimizers", nargs="+", default=["adam", "amsgrad"],
                   choices=["adam", "amsgrad", "adamax"])
    p.add_argument("--steps", type=positive_int, default=1_000_000, help="iterations (default 1000000)")
    p.add_argument("--learning-rates", nargs="+", type=positive_float, default=list(DEFAULT_RATES),
                   help="α grid (default 0.001 0.01 0.1 0.5)")
    p.add_argument("--schedule", choices=["constant", "inverse-sqrt"], default="constant",
                   help="α_t = α (default) or the paper's α/√t")
    p.add_argument("--beta1", type=beta, default=0.9)
    p.add_argument("--beta2", type=beta, default=0.99)
    p.add_argument("--bias-correction", type=on_off, default=True, metavar="on|off")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4],
                   help="seeds of the stochastic draws (online is deterministic: first seed only)")
    p.add_argument("--C", type=positive_float, default=3.0, help="C of the §3 'cyclic' family (> 2)")
    p.add_argument("--record-every", type=positive_int, default=None,
                   help="steps between recorded points (default: steps/400)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--force", action="store_true", help="recompute runs already in the CSV")
    add_out(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from .. import io, synthetic
    from ..progress import Progress

    out = io.ensure_dir(Path(args.out) / "synthetic")
    csv_path = out / "trajectories.csv"
    existing = pd.read_csv(csv_path) if csv_path.exists() and not args.force else None
    settings = ["online", "stochastic"] if args.setting == "all" else [args.setting]
    record_every = args.record_every or max(1, args.steps // synthetic.DEFAULT_RECORDS)
    if args.setting == "cyclic" and args.C <= 2:
        from ..errors import UserError

        raise UserError(f"--C must be > 2 for the §3 family, got {args.C}")

    def rows_of(config, frame):
        if frame is None or frame.empty:
            return frame.iloc[0:0] if frame is not None else None
        mask = (
            (frame.setting == config.setting) & (frame.optimizer == config.optimizer)
            & frame.learning_rate.isin(config.learning_rates) & (frame.schedule == config.schedule)
            & (frame.bias_correction == config.bias_correction) & (frame.beta_1 == config.beta_1)
            & (frame.beta_2 == config.beta_2) & frame.seed.isin(config.seeds)
        )
        return frame[mask]

    def done_already(config):
        rows = rows_of(config, existing)
        if rows is None or rows.empty:
            return False
        finals = rows.groupby(["learning_rate", "seed"])["step"].max()
        complete = len(finals) == len(config.columns) and (finals == config.steps).all()
        if complete:
            progress.skip(f"{config.setting} {config.optimizer}")
        return complete

    state = {"frame": existing}

    def on_done(config, frame, seconds):
        previous = state["frame"]
        if previous is not None:
            stale = rows_of(config, previous).index
            previous = previous.drop(index=stale)
            frame = pd.concat([previous, frame], ignore_index=True)
        frame = frame.sort_values(synthetic.KEY + ["step"], kind="stable").reset_index(drop=True)
        io.write_csv_atomic(frame[synthetic.COLUMNS], csv_path, float_format="%.8g")
        state["frame"] = frame
        rate = config.steps * len(config.columns) / seconds
        progress.update(
            f"{config.setting} {config.optimizer}: {len(config.columns)} runs x {config.steps} steps "
            f"in {seconds:.1f}s ({rate / 1e6:.1f} M steps/s)"
        )

    progress = Progress(len(settings) * len(args.optimizers), "synthetic")
    started = io.now_iso()
    t0 = time.perf_counter()
    configs = synthetic.run_synthetic_grid(
        settings, args.optimizers, args.learning_rates, args.seeds, args.steps,
        schedule=args.schedule, beta_1=args.beta1, beta_2=args.beta2,
        bias_correction=args.bias_correction, record_every=record_every, C=args.C,
        skip=done_already, on_done=on_done,
    )
    frame = state["frame"]
    if frame is None:
        frame = pd.read_csv(csv_path)
    io.write_json_atomic(
        {
            "command": "synthetic",
            "settings": settings,
            "configs": [c.__dict__ for c in configs],
            "started_at": started,
            "seconds": round(time.perf_counter() - t0, 2),
            **io.provenance(),
        },
        out / "trajectories.json",
    )
    wanted = pd.concat([synthetic_rows for c in configs if (synthetic_rows := rows_of(c, frame)) is not None])
    print(f"trajectories: {csv_path}")
    if not args.no_plots:
        from ..plots import plot_synthetic

        for path in plot_synthetic(wanted, out):
            if path.suffix == ".png":
                print(f"figure:       {path}")
    if {"adam", "amsgrad"} <= set(args.optimizers):
        claim = synthetic.check_claim(wanted)
        print("\nfinal x (median over seeds): Adam should settle near +1, AMSGrad move toward -1")
        print(claim.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0
