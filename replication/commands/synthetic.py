"""``replicate synthetic``: Reddi et al.'s synthetic convex problem (online, stochastic, §3 family)."""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import sys
import time
from pathlib import Path

# A synthetic unit's checks live in the store (report verifies the CSV with them, without Keras).
from ..registry import COMPARED, OPTIMIZER_NAMES
from ..store import check_sweep, digest_rows, rows_of as _rows_of, run_key as _run_key  # noqa: F401
from ._args import add_out, beta, nonnegative_int, on_off, positive_float, positive_int

# The α grid of the search (1-2-5 steps, 0.001 to 10). The paper gives no range; 0.001 is the
# reproduction's α (0.001/√t) and 10 the smallest upper end the issue asked for: AMSGrad's best α
# in the stochastic setting lies well inside it (0.5–2).
SEARCH_RATES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
# Beyond this many α in a sweep, the trajectory figures show the chosen α (and --plot-rates) only;
# the α-search figure shows them all.
MAX_PLOTTED_RATES = 4


def add_parser(sub):
    default = _defaults()  # run_experiment's: the paper's, kept in one place
    p = sub.add_parser(
        "synthetic",
        help="the synthetic problem on which Adam provably fails (paper §3 and §5, McGill §III-A)",
        description="f_t(x) = 1010x once every 101 steps (online) or with probability 0.01 "
        "(stochastic), else -10x, on [-1, 1]; or the §3 family Cx / -x (cyclic). Runs an α grid "
        "with the paper's α_t = α/√t and reports the α search: AMSGrad's median final distance to "
        "the optimum -1 over seeds, per α.",
    )
    p.add_argument("--setting", default=default["setting"], choices=["online", "stochastic", "cyclic", "all"],
                   help="which problem; 'all' = online and stochastic (default)")
    p.add_argument("--optimizers", nargs="+", default=list(default["optimizers"]), choices=list(OPTIMIZER_NAMES))
    p.add_argument("--steps", type=positive_int, default=default["steps"], help="iterations (default 1000000)")
    p.add_argument("--learning-rates", nargs="+", type=positive_float, default=list(default["learning_rates"]),
                   help="α grid (default: 0.001 to 10 in 1-2-5 steps, 13 values)")
    p.add_argument("--schedule", choices=["constant", "inverse-sqrt"], default=default["schedule"],
                   help="α_t = α/√t (default, the paper's) or constant α")
    p.add_argument("--beta1", type=beta, default=default["beta_1"],
                   help="default 0.9; 0 for the §3 family (Reddi et al. Theorem 1)")
    p.add_argument("--beta2", type=beta, default=default["beta_2"],
                   help="default 0.99; 1/(1+C²) for the §3 family (Reddi et al. Theorem 1)")
    p.add_argument("--bias-correction", type=on_off, default=default["bias_correction"], metavar="on|off")
    p.add_argument("--seeds", nargs="+", type=nonnegative_int, default=list(default["seeds"]),
                   help="seeds of the stochastic draws (online/cyclic are deterministic: first seed only)")
    p.add_argument("--C", nargs="+", type=positive_float, default=list(default["C"]),
                   help="C of the §3 'cyclic' family, one or more (each > 2; default 3)")
    p.add_argument("--record-every", type=positive_int, default=default["record_every"],
                   help="steps between recorded points (default: steps/100)")
    p.add_argument("--plot-rates", nargs="+", type=positive_float, default=list(default["plot_rates"]),
                   help="α to draw besides the chosen one when a sweep has more than 4")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--force", action="store_true",
                   help="recompute the runs this call names even if the CSV has them (other rows are kept)")
    add_out(p, default=default["out"])
    p.set_defaults(func=run)


def _defaults() -> dict:
    """:func:`run_experiment`'s defaults by parameter name."""
    return {name: p.default for name, p in inspect.signature(run_experiment).parameters.items()}


def _sweep_label(config) -> str:
    label = f"{config.setting} {config.schedule} beta1={config.beta_1:g} beta2={config.beta_2:g}"
    label += "" if config.bias_correction else " no-bias-correction"
    return label + (f" C={config.big:g}" if config.setting == "cyclic" else "")


def run(args) -> int:
    result = run_experiment(
        out=args.out, setting=args.setting, optimizers=args.optimizers, steps=args.steps,
        learning_rates=args.learning_rates, schedule=args.schedule, beta_1=args.beta1, beta_2=args.beta2,
        bias_correction=args.bias_correction, seeds=args.seeds, C=args.C, record_every=args.record_every,
        plot_rates=args.plot_rates, plots=not args.no_plots, force=args.force,
    )
    say_results(result)
    return 0


@dataclasses.dataclass(frozen=True)
class SyntheticResult:
    """What :func:`run_experiment` wrote: the trajectories, the α search and the figures (.png and
    .svg); ``wanted`` holds the CSV's rows of the runs the call named, ``search`` the α search of
    every sweep in the CSV."""

    trajectories: Path  # <out>/synthetic/trajectories.csv
    alpha_search: Path  # <out>/synthetic/alpha_search.csv
    figures: list
    wanted: object  # pandas.DataFrame
    search: object  # pandas.DataFrame


def run_experiment(*, out="results", setting="all", optimizers=COMPARED, steps=1_000_000, learning_rates=SEARCH_RATES,
                   schedule="inverse-sqrt", beta_1=None, beta_2=None, bias_correction=True, seeds=(0, 1, 2, 3, 4),
                   C=(3.0,), record_every=None, plot_rates=(), plots=True, force=False) -> SyntheticResult:
    """Reddi et al.'s synthetic problem as ``replicate synthetic`` runs it, with the paper's defaults
    (the command's defaults are these): each sweep (setting × optimizer, every α and seed) computed
    unless ``trajectories.csv`` under ``<out>/synthetic`` holds it finished (``force``: recompute the
    runs named here), merged into trajectories.csv/.json, then the α search (alpha_search.csv) and,
    with ``plots``, the figures. ``setting`` "all" is online and stochastic; ``beta_1``/``beta_2``
    None take each setting's default; ``C`` is the §3 family's; ``record_every`` None: steps/100.
    Progress lines go to stderr; bad settings raise :class:`~replication.errors.UserError`."""
    import pandas as pd

    from .. import claims, io, results, store, synthetic
    from ..errors import UserError
    from ..progress import Progress

    if setting == "cyclic" and any(c <= 2 for c in C):
        raise UserError(f"--C must be > 2 for the §3 family, got {' '.join(f'{c:g}' for c in C)}")
    # Checked, not made: the first finished sweep makes the folder (none if the first is interrupted).
    out = io.check_writable(Path(out) / "synthetic")
    csv_path, json_path = out / "trajectories.csv", out / "trajectories.json"
    mixed = store.sweeps_backend_conflict(json_path, store.keras_backend())  # one folder, one backend
    if mixed:
        raise UserError(mixed)
    settings = ["online", "stochastic"] if setting == "all" else [setting]
    record_every = record_every or max(1, steps // synthetic.DEFAULT_RECORDS)
    configs = synthetic.synthetic_configs(
        settings, list(optimizers), list(learning_rates), list(seeds), steps,
        schedule=schedule, beta_1=beta_1, beta_2=beta_2,
        bias_correction=bias_correction, record_every=record_every, C=list(C),
    )
    progress = Progress(len(configs), "synthetic")
    started, t0 = io.now_iso(), time.perf_counter()
    todo = _plan(configs, csv_path, json_path, progress, force=force)
    # Several processes on one --out share the sweeps: each is claimed before it is computed and
    # merged into trajectories.csv/.json as they are then, under their lock (issue 26 §3).
    computed = claims.share(
        todo, lock_paths=lambda config: [_claim_path(out, config)], label=_label,
        is_done=lambda config: _done_now(config, csv_path, json_path, started if force else None),
        work=lambda config: _compute(config, csv_path, json_path, progress, lambda: (started, time.perf_counter() - t0)),
        say=progress.note, found_done=lambda config: progress.skip(f"{_label(config)}: computed by another process"))
    with claims.merging(csv_path):
        # The α search and figures from the rows as the CSV stores them (8 digits), not as computed,
        # so a later call that reads every sweep back redraws them byte for byte the same.
        frame, sweeps = _read_sweeps(csv_path, json_path)
        # A call that computed no sweep only read finished ones back: the sidecar keeps the times and
        # argv of the calls that computed them (rewriting it said 0.07 s for a 24 s run).
        _write_sidecar(json_path, sweeps, started, time.perf_counter() - t0, computed=bool(computed))
        wanted = pd.concat([_rows_of(c, frame) for c in configs])
        search = results.search_learning_rate(frame)
        search_path = out / "alpha_search.csv"
        store.write_csv(search, search_path, float_format="%.8g")  # only if its bytes change
        figures = _draw(frame, wanted, search, out, list(plot_rates)) if plots else []
    return SyntheticResult(csv_path, search_path, figures, wanted, search)


def say_results(result):
    """What :func:`run_experiment` wrote, then its α search (stdout)."""
    print(f"trajectories: {result.trajectories}")
    print(f"alpha search: {result.alpha_search}")
    for path in result.figures:
        if path.suffix == ".png":
            print(f"figure:       {path}")
    _print_search(result.wanted, result.search)


def _label(config) -> str:
    return f"{_sweep_label(config)} {config.optimizer}"  # a sweep's key in trajectories.json


def _claim_path(out, config) -> Path:
    """The lock file claiming ``config``'s sweep: one per key of trajectories.json (two commands
    computing one sweep at other α take turns, and the second computes only what it lacks)."""
    return out / f"trajectories.{hashlib.sha256(_label(config).encode()).hexdigest()[:12]}.lock"


def _read_sweeps(csv_path, json_path):
    """trajectories.csv (None while there is none) and trajectories.json's sweeps, as they are now."""
    from .. import io, results, synthetic

    # verify=False: check_sweep verifies each sweep here, and a damaged one is recomputed, not refused
    frame = results.load_synthetic(csv_path, verify=False)[synthetic.COLUMNS] if csv_path.exists() else None
    sidecar = io.read_json(json_path) if json_path.exists() else {}
    return frame, dict(sidecar.get("sweeps", {}))


def _plan(configs, csv_path, json_path, progress, *, force):
    """The configs whose sweep is not finished (all with ``force``); says which are skipped, and
    which are recomputed because their rows are damaged."""
    if force:
        return list(configs)
    frame, sweeps = _read_sweeps(csv_path, json_path)
    todo = []
    for config in configs:
        complete, why = _finished(config, frame, sweeps)
        if complete:
            progress.skip(_label(config))
            continue
        if why:
            progress.note(f"{_label(config)}: {why}; recomputing")
        todo.append(config)
    return todo


def _done_now(config, csv_path, json_path, since=None) -> bool:
    """Whether ``config``'s sweep is finished in the files as they are now (another process may have
    computed it since :func:`_plan`); with ``since`` (``--force``: this call's start, to the second)
    only if computed in a later second: a sweep of the same second is computed again, never kept."""
    from .. import claims

    with claims.merging(csv_path):  # the CSV and its digests as one merge left them
        frame, sweeps = _read_sweeps(csv_path, json_path)
    if not _finished(config, frame, sweeps)[0]:
        return False
    return since is None or str(sweeps[_label(config)].get("written_at", "")) > since


def _finished(config, frame, sweeps):
    """(complete, why not) of ``config``'s sweep in ``frame`` and ``sweeps`` (:func:`check_sweep`);
    ``(False, None)`` where it has no rows yet."""
    rows = _rows_of(config, frame)
    if rows is None or rows.empty:
        return False, None
    return check_sweep(config, rows, sweeps.get(_label(config)))


def _compute(config, csv_path, json_path, progress, invocation):
    """Compute ``config``'s sweep and merge it into trajectories.csv and .json, under their lock."""
    from .. import claims, synthetic

    start = time.perf_counter()
    frame = synthetic.run_synthetic(config)
    seconds = time.perf_counter() - start
    with claims.merging(csv_path):
        _merge(config, frame, seconds, csv_path, json_path, invocation)
    rate = config.steps * len(config.columns) / seconds
    progress.update(f"{_label(config)}: {len(config.columns)} runs x {config.steps} steps "
                    f"in {seconds:.1f}s ({rate / 1e6:.1f} M steps/s)")


def _merge(config, frame, seconds, csv_path, json_path, invocation):
    """Replace ``config``'s rows of trajectories.csv (as it is now: call under its lock) by
    ``frame``, and record the sweep with its runs' digests in trajectories.json."""
    import pandas as pd

    from .. import io, store, synthetic

    previous, sweeps = _read_sweeps(csv_path, json_path)
    if previous is not None:
        previous = previous.drop(index=_rows_of(config, previous).index)
        frame = pd.concat([previous, frame], ignore_index=True)
    frame = frame.sort_values(synthetic.KEY + ["step"], kind="stable").reset_index(drop=True)
    io.write_csv_atomic(frame[synthetic.COLUMNS], csv_path, float_format="%.8g")
    label = _label(config)
    rows = _rows_of(config, frame)
    # Runs of this sweep at other α, kept in the CSV, keep their digests.
    runs = {**sweeps.get(label, {}).get("runs", {}), **{
        _run_key(lr, seed): digest_rows(run) for (lr, seed), run in rows.groupby(["learning_rate", "seed"])}}
    sweeps[label] = {
        "config": config.__dict__, "seconds": round(seconds, 2), "argv": ["replicate"] + sys.argv[1:],
        "runs": runs, "schema": store.SCHEMA, **io.provenance(),
    }
    # Beside the rows at once: rows whose digests are not on disk would pass for older ones.
    _write_sidecar(json_path, sweeps, *invocation())


# trajectories.json keys that describe the last call rather than its sweeps (provenance() is spread in).
_INVOCATION_KEYS = ("last_invocation", "versions", "device", "code", "written_at")


def _write_sidecar(path, sweeps, started, seconds, computed=True):
    from .. import io, results, store

    store.write_sidecar(
        {
            "command": "synthetic",
            "search_criterion": results.SEARCH_CRITERION,
            "last_invocation": {"argv": ["replicate"] + sys.argv[1:], "started_at": started,
                                "seconds": round(seconds, 2)},
            # one entry per sweep and optimizer: the invocation that last computed it
            "sweeps": sweeps,
            **io.provenance(),
        },
        path, computed=computed, ignore=_INVOCATION_KEYS,
    )


def _draw(frame, wanted, search, out, plot_rates):
    """The figures of every sweep this invocation touched, from all its rows in the CSV: the
    trajectories at the chosen α (all α when the sweep has at most 4) and the α search."""
    import pandas as pd

    from .. import results
    from ..plots import plot_alpha_search, plot_synthetic, sweep_stem

    group = results.SYNTHETIC_GROUP

    def stems(table):
        return table.apply(lambda r: sweep_stem(r["setting"], r["schedule"], r["beta_1"], r["beta_2"],
                                                r["bias_correction"]), axis=1)

    touched = wanted[group].drop_duplicates()
    # Every sweep drawn in a figure this invocation redraws (the §3 family's C and βs share one).
    sweeps = frame[group].drop_duplicates()
    sweeps = sweeps[stems(sweeps).isin(set(stems(touched)))]
    rows = frame.merge(sweeps, on=group)
    chosen = search[search["chosen"]]
    last = chosen[chosen["steps"] == chosen.groupby(group, dropna=False)["steps"].transform("max")]
    keep = []
    for key, sweep in rows.groupby(group, dropna=False, sort=False):
        rates = set(sweep["learning_rate"].unique())
        if len(rates) > MAX_PLOTTED_RATES:
            pick = last.merge(pd.DataFrame([key], columns=group), on=group)
            rates = set(pick["learning_rate"]) | (rates & set(plot_rates))
        keep.append(sweep[sweep["learning_rate"].isin(rates)])
    paths = plot_synthetic(pd.concat(keep, ignore_index=True), out) if keep else []
    return paths + plot_alpha_search(search.merge(sweeps, on=group), out)


def _print_search(wanted, search):
    from .. import results

    group = results.SYNTHETIC_GROUP
    mine = search.merge(wanted[group].drop_duplicates(), on=group)
    if mine.empty:
        return
    print(f"\nalpha search: {results.SEARCH_CRITERION}")
    for key, sweep in mine.groupby(group, dropna=False, sort=False):
        setting, schedule, bc, b1, b2, _eps, big = key
        head = f"{setting} ({schedule}, beta1 {b1:g}, beta2 {b2:g}" + ("" if bc else ", no bias corr.")
        head += f", C {big:g})" if setting == "cyclic" else ")"
        print(f"\n{head}")
        for steps, at in sweep.groupby("steps"):
            best = at[at["chosen"]].iloc[0]
            verdict = "reaches -1" if best["reached"] else "does not reach -1"
            print(f"  T = {steps:>11,d}: chosen alpha {best['learning_rate']:g}: AMSGrad median x_T "
                  f"{best['amsgrad_x_median']:+.3f} (distance {best['amsgrad_distance_median']:.3f}: "
                  f"{verdict}), Adam {best['adam_x_median']:+.3f}")
        last = sweep[sweep["steps"] == sweep["steps"].max()]
        table = last[["learning_rate", "seeds", "adam_x_median", "amsgrad_x_median", "amsgrad_distance_median",
                      "amsgrad_distance_max", "adam_regret_median", "amsgrad_regret_median", "chosen"]]
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
