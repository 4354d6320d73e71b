"""The stages as library functions (issue 25 item 3): the demo and the API call functions, not argv.

``replicate gridsearch``, ``synthetic`` and ``report`` each parse their arguments, call one library
function (:func:`gridsearch.experiment.search_experiment`, :func:`replication.commands.synthetic.run_experiment`,
:func:`replication.report.write_report`) and print what it returns. Here each function is run beside its
command, on digits and short synthetic runs, and must write the same files (byte for byte, apart from
times) and lead to the same printed lines; the demo and the API hold no command-line parsing.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from replication.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
EXP = "digits-logreg"
ARGV_CALLS = {"parse_args", "build_parser", "Namespace", "parse_known_args"}
TIME_COLUMNS = ["mean_fit_time", "std_fit_time", "mean_score_time"]


def argv_calls(source: str) -> list[str]:
    """Names of the calls in ``source`` that build or parse a command line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ARGV_CALLS:
                found.append(name)
    return found


def test_demo_and_api_call_functions_not_argv():
    # the check sees such calls: the demo as it was chained its stages through the parser
    assert argv_calls("synthetic.run(build_parser().parse_args(argv))") == ["parse_args", "build_parser"]
    assert argv_calls("command.run(argparse.Namespace(experiment=name))") == ["Namespace"]
    for rel in ("replication/commands/demo.py", "replication/api.py", "gridsearch/experiment.py",
                "replication/commands/gridsearch.py"):
        source = (ROOT / rel).read_text(encoding="utf-8")
        assert argv_calls(source) == [], rel
    # the commands only parse, call and print: the search, its outputs and the table are the library's
    command = (ROOT / "replication/commands/gridsearch.py").read_text(encoding="utf-8")
    for name in ("run_grid_search", "write_search_outputs", "write_table", "PointStore", "load_dataset"):
        assert name not in command, name
    called = {node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
              for node in ast.walk(ast.parse((ROOT / "replication/commands/demo.py").read_text(encoding="utf-8")))
              if isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))}
    assert {"run_experiment", "run_demo", "write_report"} <= called
    # the demo's tuning stage is the library's search, printed as the command prints it
    from replication.commands import gridsearch

    source = ast.unparse(ast.parse(Path(gridsearch.__file__).read_text(encoding="utf-8")))
    run_demo = source[source.index("def run_demo("):]
    assert "search_experiment(" in run_demo and "say_choices(" in run_demo


def test_command_defaults_are_the_library_functions_defaults():
    """One home for the defaults: each flag's default is the keyword's of the function it calls; the
    synthetic ones are the paper's (§5: α/√t, 5 seeds; the α grid in 1-2-5 steps from 0.001 to 10)."""
    import inspect

    from gridsearch.experiment import search_experiment
    from replication.commands.synthetic import run_experiment

    def defaults(function):
        return {name: p.default for name, p in inspect.signature(function).parameters.items()}

    synthetic = vars(build_parser().parse_args(["synthetic"]))
    mine = defaults(run_experiment)
    renamed = {"beta_1": "beta1", "beta_2": "beta2"}
    for name, value in mine.items():
        if name == "plots":
            assert synthetic["no_plots"] is (not value)
            continue
        parsed = synthetic[renamed.get(name, name)]
        assert (list(value) if isinstance(value, tuple) else value) == parsed, name
    rates = [m * 10.0 ** e for e in range(-3, 1) for m in (1, 2, 5)] + [10.0]
    assert [pytest.approx(r) for r in rates] == list(mine["learning_rates"])
    assert mine["schedule"] == "inverse-sqrt" and list(mine["seeds"]) == [0, 1, 2, 3, 4]
    assert mine["steps"] == 1_000_000 and mine["setting"] == "all" and mine["bias_correction"] is True

    search = vars(build_parser().parse_args(["gridsearch", EXP]))
    theirs = defaults(search_experiment)
    renamed = {"beta_2s": "beta2s"}
    for name, value in theirs.items():
        if name in ("experiment", "progress"):
            continue
        parsed = search[renamed.get(name, name)]
        assert (list(value) if isinstance(value, tuple) else value) == parsed, name
    # McGill §IV-A: five α of increasing orders of magnitude, five β2, 3 folds
    assert list(theirs["learning_rates"]) == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert list(theirs["beta_2s"]) == [0.99, 0.9925, 0.995, 0.9975, 0.999] and theirs["cv"] == 3


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*")
                  if p.is_file() and not p.name.endswith(".lock"))


def _without(record, keys):
    return {k: v for k, v in record.items() if k not in keys}


def _stdout(function, *args, **kwargs):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        result = function(*args, **kwargs)
    return result, buffer.getvalue()


def test_search_experiment_writes_what_the_command_writes(tmp_path, clock, capsys):
    from gridsearch.experiment import search_experiment
    from replication.commands.gridsearch import say_choices

    by_command, by_function = tmp_path / "command", tmp_path / "function"
    assert main(["gridsearch", EXP, "--optimizers", "adam", "--learning-rates", "0.01", "0.1", "--beta2s", "0.99",
                 "--epochs", "1", "--cv", "2", "--quiet", "--out", str(by_command)]) == 0
    printed = capsys.readouterr().out
    result = search_experiment(EXP, out=by_function, optimizers=["adam"], learning_rates=[0.01, 0.1], beta_2s=[0.99],
                               epochs=1, cv=2, progress=False)
    assert capsys.readouterr() == ("", "")  # progress=False: not a line; the choices are the command's to print
    assert result.folder == by_function / EXP and result.engine == "stacked" and result.optimizers == ("adam",)
    _, said = _stdout(say_choices, result)
    assert said == printed.replace(str(by_command), str(by_function))
    assert said.startswith(f"{EXP} adam: α=") and "(2 points, 0 diverged)" in said

    assert _files(by_function) == _files(by_command)
    for name in ("best_params.json", "../gridsearch_table.csv", "../gridsearch_table.md"):
        assert (by_function / EXP / name).read_bytes() == (by_command / EXP / name).read_bytes(), name
    mine, theirs = (pd.read_csv(folder / EXP / "gridsearch.csv") for folder in (by_function, by_command))
    assert list(mine.columns) == list(theirs.columns) and len(mine) == 2
    pd.testing.assert_frame_equal(mine.drop(columns=TIME_COLUMNS), theirs.drop(columns=TIME_COLUMNS))
    # best_params.json: the point of smallest mean validation loss (McGill), as the rows say
    best = json.loads((by_function / EXP / "best_params.json").read_text())
    assert best == result.best == {"adam": {"learning_rate": mine.loc[mine["mean_val_loss"].idxmin(), "learning_rate"],
                                            "beta_2": 0.99}}
    # gridsearch.json: the same record, apart from this call's wall time and the checksums of the
    # CSV (whose fit times differ); the stopped clock gives both calls the same time stamps
    mine, theirs = (json.loads((folder / EXP / "gridsearch.json").read_text()) for folder in (by_function, by_command))
    for folder, record in ((by_function, mine), (by_command, theirs)):
        csv = record["files"].pop("gridsearch.csv")  # checks the file of its own folder
        assert csv == {"rows": 2, "sha256": hashlib.sha256((folder / EXP / "gridsearch.csv").read_bytes()).hexdigest()}
    assert _without(mine, {"wall_seconds"}) == _without(theirs, {"wall_seconds"})
    assert mine["points_computed"] == 2 and mine["started_at"] == clock().isoformat()


SYNTHETIC = dict(setting="online", steps=2000, learning_rates=(0.01, 0.1))


def test_run_experiment_and_write_report_write_what_the_commands_write(tmp_path, clock, capsys):
    from replication.commands.report import say_report
    from replication.commands.synthetic import run_experiment, say_results
    from replication.report import write_report

    by_command, by_function = tmp_path / "command", tmp_path / "function"
    assert main(["synthetic", "--setting", "online", "--steps", "2000", "--learning-rates", "0.01", "0.1",
                 "--no-plots", "--out", str(by_command)]) == 0
    printed = capsys.readouterr().out
    result, said = _stdout(run_experiment, out=by_function, plots=False, **SYNTHETIC)
    assert said == ""  # the lines are the command's (say_results)
    _, said = _stdout(say_results, result)
    assert said == printed.replace(str(by_command), str(by_function))
    assert result.trajectories == by_function / "synthetic" / "trajectories.csv" and result.figures == []

    assert _files(by_function) == _files(by_command)
    for name in ("trajectories.csv", "alpha_search.csv"):
        assert (by_function / "synthetic" / name).read_bytes() == (by_command / "synthetic" / name).read_bytes()
    frame = pd.read_csv(result.trajectories)
    # online, deterministic: one seed; both optimizers at both α, steps/100 apart up to 2000
    assert sorted(set(zip(frame["optimizer"], frame["learning_rate"]))) == [
        ("adam", 0.01), ("adam", 0.1), ("amsgrad", 0.01), ("amsgrad", 0.1)]
    assert frame["step"].max() == 2000 and set(frame["seed"]) == {0}
    # trajectories.json: the same record but for the seconds each call took (the stopped clock
    # gives both the same time stamps)
    mine, theirs = (json.loads((folder / "synthetic" / "trajectories.json").read_text())
                    for folder in (by_function, by_command))
    for record in (mine, theirs):
        record["last_invocation"].pop("seconds")
        for sweep in record["sweeps"].values():
            assert sweep.pop("seconds") >= 0
    assert mine == theirs and len(mine["sweeps"]) == 2

    # the report of one folder, by the command and then by the function: byte for byte the same
    assert main(["report", "--no-figures", "--out", str(by_command)]) == 0
    printed = capsys.readouterr().out
    report = by_command / "REPORT.md"
    written = report.read_bytes()
    report.unlink()
    done, said = _stdout(write_report, by_command, figures=False)
    assert said == ""
    assert done.path == report and done.figures is None and done.readme == []
    assert report.read_bytes() == written and b"## " in written
    _, said = _stdout(say_report, done)
    assert said == printed == f"wrote {report} (0 figures)\n"
