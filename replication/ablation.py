"""From our protocol to the one McGill's code ran, one factor at a time (issue 27, §2.3).

Our ``mnist-logreg`` / ``mnist-mlp`` replicate McGill's *report*; ``*-mcgill-code`` replicate their
*code*. Between the two, each step below switches one factor (or one group of fields that only
make sense together) to the code's value and keeps the earlier switches:

====  ==============  =========================================================================
step  factor          fields taken from the coded experiment
====  ==============  =========================================================================
0     ours            — (the committed ``results/<base>``: its own search and final runs)
1     raw-pixels      ``input_scale``
2     final-schedule  ``schedule`` (the search keeps its schedule: only the final runs change,
                      so this step trains at step 1's search choice)
3     grid-schedule   ``gridsearch_schedule``, ``decay`` (Keras 2's α/(1 + 0.14·k))
4     grid-score      ``gridsearch_loss``, ``gridsearch_score``, ``gridsearch_folds``,
                      ``early_stopping`` (categorical CE, accuracy, unshuffled KFold, no early stop)
5     split           ``split`` (McGill's random 60k/10k of all 70,000 images, seed 551)
6     as-coded        ``final_params``, ``learning_rate``, ``beta_2``, ``epochs`` (param_config.yml,
                      the hard-coded 0.001): the committed ``results/<coded>`` itself
====  ==============  =========================================================================

Steps 1-5 live in ``<out>/mcgill-code/ablation/<base>-<k>-<factor>/`` (grid search and final runs,
resumable as any experiment's); steps 0 and 6 are read from ``<out>/<base>`` and
``<out>/<coded>``. :func:`assemble_ablation` writes ``<out>/mcgill-code/ablation-<base>.csv``.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pandas as pd

from .errors import UserError
from .experiments import get_experiment, with_overrides

# (factor, fields of the coded experiment it switches)
FACTORS = (
    ("raw-pixels", ("input_scale",)),
    ("final-schedule", ("schedule",)),
    ("grid-schedule", ("gridsearch_schedule", "decay")),
    ("grid-score", ("gridsearch_loss", "gridsearch_score", "gridsearch_folds", "early_stopping")),
    ("split", ("split",)),
    ("as-coded", ("final_params", "learning_rate", "beta_2", "epochs")),
)
LABELS = {
    "ours": "our protocol (McGill's report as we read it)",
    "raw-pixels": "+ raw pixels 0..255",
    "final-schedule": "+ the code's final-run schedule",
    "grid-schedule": "+ search under Keras 2 decay 0.14",
    "grid-score": "+ search by accuracy, categorical CE, unshuffled KFold, no early stopping",
    "split": "+ McGill's random 60k/10k split (seed 551)",
    "as-coded": "+ param_config.yml's α, β2 and epochs (= the coded experiment)",
    "control-unit-pixels": "control: step 2 on pixels in [0, 1] (same α, β2 and schedule)",
}
# Controls: a step with one of its switches undone, to tell which switch an effect needs.
CONTROLS = {"final-schedule": ("control-unit-pixels", {"input_scale": "unit"})}
BASES = {"mnist-logreg": "mnist-logreg-mcgill-code", "mnist-mlp": "mnist-mlp-mcgill-code"}
ABLATION_DIR = Path("mcgill-code") / "ablation"


@dataclasses.dataclass(frozen=True)
class Step:
    index: int
    factor: str
    spec: object  # an Experiment
    folder: Path  # relative to the results folder: where its history.csv and best_params.json are
    computed: bool  # trained by run_ablation (steps 1-5), or read from a committed experiment
    control: bool = False  # a control of step ``index`` (not on the path from ours to the code)


def _search_view(spec):
    """What decides a grid search's result, whatever the spec's name."""
    from gridsearch.search import SearchSettings

    data = SearchSettings.from_spec(spec).to_dict()
    data.pop("experiment")
    protocol = data.get("protocol", {})
    for key in ("gridsearch_schedule", "gridsearch_loss", "schedule", "final_params"):  # folded in, or not the search's
        protocol.pop(key, None)
    return data


def plan_ablation(base, coded=None) -> list[Step]:
    """The steps from ``base`` (``mnist-logreg`` or ``mnist-mlp``, or an Experiment) to its coded
    experiment (``coded``: by default the registered ``<base>-mcgill-code``)."""
    if isinstance(base, str):
        if base not in BASES:
            raise UserError(f"no ablation for {base!r}; choose one of: {', '.join(BASES)}")
        coded = coded or get_experiment(BASES[base])
        base = get_experiment(base)
    if coded is None:
        raise UserError(f"no coded experiment given for {base.name}")
    ours = base
    steps = [Step(0, "ours", ours, Path(ours.name), False)]
    changes = {}
    for index, (factor, fields) in enumerate(FACTORS, start=1):
        changes.update({field: getattr(coded, field) for field in fields})
        if factor == "as-coded":
            steps.append(Step(index, factor, coded, Path(coded.name), False))
            break
        step_changes = dict(changes)
        if "gridsearch_schedule" not in step_changes:  # the search keeps our schedule until step 3
            step_changes["gridsearch_schedule"] = ours.search_schedule
        name = f"{ours.name}-{index}-{factor}"
        spec = with_overrides(ours, name=name, code_of="", **step_changes)
        previous = next(s for s in reversed(steps) if not s.control)
        if previous.computed and _search_view(previous.spec) == _search_view(spec):
            spec = dataclasses.replace(spec, params_from=previous.spec.name)  # same search: reuse its choice
        steps.append(Step(index, factor, spec, ABLATION_DIR / name, True))
        if factor in CONTROLS:
            control, undo = CONTROLS[factor]
            name = f"{ours.name}-{index}c-{control.removeprefix('control-')}"
            source = spec.params_from or spec.name  # the same α and β2 as the step it controls
            steps.append(Step(index, control, with_overrides(spec, name=name, params_from=source, **undo),
                              ABLATION_DIR / name, True, control=True))
    return steps


def run_ablation(base, *, coded=None, out="results", data_dir=None, progress=True) -> pd.DataFrame:
    """Grid search and final runs of every computed step (finished work is read back), then
    :func:`assemble_ablation`."""
    from .datasets import load_dataset
    from .trainer import train_experiment

    out = Path(out)
    steps = plan_ablation(base, coded)
    data = None
    for step in steps:
        if not step.computed:
            continue
        if data is None:
            data = load_dataset(step.spec.dataset, data_dir)
        if progress:
            print(f"ablation {steps[0].spec.name} step {step.index} ({step.factor}): {LABELS[step.factor]}", file=sys.stderr, flush=True)
        if not step.spec.params_from:
            search(step.spec, data, out / step.folder, progress=progress)
        train_experiment(step.spec, out_dir=out / step.folder.parent, dataset=data, progress=progress)
    return assemble_ablation(base, out, coded=coded)


def search(spec, data, folder, *, progress=True):
    """The experiment's grid search on the default grid (McGill's 25 points, both optimizers, 3
    folds), written to ``folder`` as ``replicate gridsearch`` writes it (points resumable)."""
    from gridsearch.search import SearchSettings, make_grid, resolve_engine, run_grid_search
    from gridsearch.store import PointStore, write_search_outputs

    from .datasets import prepare_dataset
    from .io import provenance
    from .progress import Progress

    prepared = prepare_dataset(data, spec.input_scale, spec.split)
    points = make_grid(list(spec.optimizers))
    engine = resolve_engine(spec)
    settings = SearchSettings.from_spec(spec, engine=engine)
    bar = Progress(len(points) * settings.cv, f"gridsearch {spec.name}") if progress else None
    frame = run_grid_search(spec, prepared.x_train, prepared.y_train, points, engine=engine,
                            store=PointStore(Path(folder) / "gridsearch_points"), progress=bar)
    sidecar = {"experiment": spec.to_dict(), "settings": settings.to_dict(), "engine": engine,
               "points_computed": len(points) - frame.attrs["points_reused"], **provenance()}
    return write_search_outputs(frame, folder, score=settings.score, sidecar=sidecar)


def assemble_ablation(base, out="results", *, coded=None) -> pd.DataFrame:
    """One row per (step, optimizer) with the α and β2 its final runs used, their final-epoch
    train/test loss and test accuracy (mean and std over runs), and per step the paired
    AMSGrad − Adam difference of each loss with its paired-t p-value. Written to
    ``<out>/mcgill-code/ablation-<base>.csv``; steps without results yet are left out."""
    from . import io, results
    from .mcgill import plateau_runs

    out = Path(out)
    rows = []
    steps = plan_ablation(base, coded)
    base = steps[0].spec.name
    for step in steps:
        folder = out / step.folder
        if not (folder / "history.csv").is_file() or not (folder / "train.json").is_file():
            continue
        history = results.load_history(folder / "history.csv")
        hyper = io.read_json(folder / "train.json")["hyperparameters"]
        finals = results.final_epoch(history)
        comparison = results.compare_final(history).set_index("metric")
        plateaus = plateau_runs(history).groupby("optimizer")["plateau_ends"].apply(lambda ends: sum(1 for e in ends if e))
        for optimizer, group in finals.groupby("optimizer", sort=True):
            row = {"base": base, "step": step.index, "control": step.control, "factor": step.factor,
                   "change": LABELS[step.factor],
                   "folder": step.folder.as_posix(), "optimizer": optimizer,
                   "learning_rate": hyper[optimizer]["learning_rate"], "beta_2": hyper[optimizer]["beta_2"],
                   "schedule": hyper[optimizer]["schedule"], "runs": len(group),
                   "epochs": int(group["epoch"].max()),
                   # runs whose training loss sits on a plateau, then drops (replication.mcgill.plateau_runs)
                   "plateau_runs": int(plateaus.get(optimizer, 0))}
            for metric in ("loss", "test_loss", "test_accuracy"):
                row[f"{metric}_mean"] = float(group[metric].mean())
                row[f"{metric}_std"] = float(group[metric].std(ddof=1)) if len(group) > 1 else float("nan")
            for metric, name in (("loss", "train_loss"), ("test_loss", "test_loss")):
                hit = comparison.loc[metric] if metric in comparison.index else None
                row[f"{name}_diff"] = float(hit["paired_diff"]) if hit is not None else float("nan")
                row[f"{name}_p"] = float(hit["paired_p"]) if hit is not None else float("nan")
                row[f"{name}_adam_wins"] = int(hit["adam_wins"]) if hit is not None else -1
            rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        io.write_csv_atomic(frame, out / "mcgill-code" / f"ablation-{base}.csv")
    return frame
