"""REPORT.md verdicts on constructed results folders, and `replicate report` end to end."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from replication import report, results
from replication.cli import main
from tests.test_results import make_history, synthetic_frame

LOWER = ([0.50, 0.55, 0.60, 0.52, 0.58], [0.30, 0.33, 0.31, 0.29, 0.32])
EQUAL = ([0.50, 0.55, 0.60, 0.52, 0.58], [0.50, 0.55, 0.60, 0.52, 0.58])


def write_experiment(out, name, adam, ams, iterations=True, grid=False):
    folder = out / name
    folder.mkdir(parents=True)
    h = make_history(adam, ams, experiment=name)
    h.to_csv(folder / "history.csv", index=False)
    if iterations:
        it = h.assign(batches=1)[list(results.ITERATION_DTYPES)]
        it.to_csv(folder / "iterations.csv", index=False)
    if grid:
        rows = [{"optimizer": o, "learning_rate": lr, "beta_2": b2, "bias_correction": True,
                 "mean_test_score": -0.3 - lr, "mean_val_loss": float("nan") if lr == 0.1 else 0.3 + lr,
                 "diverged": lr == 0.1} for o in ("adam", "amsgrad") for lr in (0.001, 0.01, 0.1) for b2 in (0.99, 0.999)]
        pd.DataFrame(rows).to_csv(folder / "gridsearch.csv", index=False)
        (folder / "best_params.json").write_text(json.dumps(
            {"adam": {"learning_rate": 0.001, "beta_2": 0.99}, "amsgrad": {"learning_rate": 0.001, "beta_2": 0.999}}))


@pytest.fixture()
def results_dir(tmp_path):
    write_experiment(tmp_path, "mnist-logreg", *EQUAL)
    write_experiment(tmp_path, "mnist-mlp", *LOWER, grid=True)
    (tmp_path / "synthetic").mkdir()
    synthetic_frame([1.0, 1.0, 0.95], [-1.0, -0.9, -0.8]).to_csv(tmp_path / "synthetic" / "trajectories.csv", index=False)
    return tmp_path


def verdict_rows(text):
    return {line.split("|")[2].strip(): line.split("|")[3].strip() for line in text.splitlines()
            if line.startswith("| AMSGrad")}


def test_loss_verdicts_from_constructed_histories(results_dir):
    data = report.collect(results_dir)
    comparison = results.compare_final(pd.concat([e["history"] for e in data["experiments"].values()]))
    assert report.loss_verdict(comparison, "mnist-mlp")[0] == "supported"
    verdict, detail = report.loss_verdict(comparison, "mnist-logreg")
    assert verdict == "not supported" and "not lower" in detail
    assert report.loss_verdict(comparison, "cifar10-cifarnet")[0] == "not run"


def test_lower_but_not_significant_says_which_part_fails():
    h = make_history([0.50, 0.40], [0.45, 0.44], experiment="mnist-mlp")
    verdict, detail = report.loss_verdict(results.compare_final(h), "mnist-mlp")
    assert verdict == "not supported" and "not significant" in detail


def test_synthetic_verdict():
    assert report.synthetic_verdict(synthetic_frame([1.0, 0.95], [-1.0, -0.5]))[0] == "supported"
    only_online = synthetic_frame([1.0, 0.95], [-1.0, -0.5], settings=("online",))
    assert report.synthetic_verdict(only_online)[0] == "not supported"
    assert report.synthetic_verdict(synthetic_frame([0.2], [-1.0]))[0] == "not supported"
    assert report.synthetic_verdict(None)[0] == "not run"


def test_report_markdown_and_no_tensorflow(results_dir):
    data = report.collect(results_dir)
    text = report.build_report(data)
    rows = verdict_rows(text)
    assert rows["synthetic (online & stochastic)"] == "**supported**"
    assert rows["1-hidden-layer MLP (MNIST) (`mnist-mlp`)"] == "**supported**"
    assert rows["logistic regression (MNIST) (`mnist-logreg`)"] == "**not supported**"
    assert rows["CifarNet (CIFAR-10) (`cifar10-cifarnet`)"] == "**not run**"
    assert "no discernible difference" in text  # McGill's conclusion beside ours
    assert "| `mnist-mlp` | AMSGrad | 0.001 | 0.999 | grid search |" in text
    assert "| `mnist-logreg` | Adam | 0.001 | 0.99 | history.csv |" in text
    assert "0/5" in text  # Adam beat AMSGrad in 0 of 5 paired runs (mnist-mlp loss)


def test_report_modules_do_not_import_tensorflow():
    code = ("import sys, replication.results, replication.report, replication.plots, replication.commands.report;"
            "sys.exit(int(any(m in sys.modules for m in ('tensorflow', 'keras'))))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_cli_report_writes_report_and_figures(results_dir, capsys):
    assert main(["report", "--out", str(results_dir)]) == 0
    text = (results_dir / "REPORT.md").read_text()
    for png in ("mnist-mlp/figures/mnist-mlp-runs.png", "mnist-mlp/figures/mnist-mlp-mean-ci.png",
                "mnist-mlp/figures/mnist-mlp-iterations.png", "mnist-mlp/figures/mnist-mlp-gridsearch.png",
                "mnist-logreg/figures/mnist-logreg-runs.png", "figures/networks-iterations.png",
                "figures/synthetic-online.png"):
        assert (results_dir / png).stat().st_size > 1000, png
        assert (results_dir / png).with_suffix(".svg").exists()
        assert f"]({png})" in text  # relative link
    assert "wrote" in capsys.readouterr().out


def test_cli_report_missing_folder_is_one_line_error(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert main(["report", "--out", str(tmp_path)]) == 2


def test_adamax_comparison_and_perez_table():
    """Pérez's experiments: an Adam vs AdaMax section with the same statistics, and his Table 1
    beside our final test accuracy (mean ± std over runs)."""
    adam_loss, adamax_loss = [0.010, 0.012, 0.011], [0.020, 0.021, 0.019]
    h = make_history(adam_loss, adamax_loss, experiment="mnist-cnn")
    h["optimizer"] = h["optimizer"].replace({"amsgrad": "adamax"})
    cmp = results.compare_final(h, a="adam", b="adamax")
    loss = cmp[cmp["metric"] == "loss"].iloc[0]
    assert loss["mean_adamax"] == pytest.approx(0.02) and loss["adam_wins"] == 3 and loss["adamax_wins"] == 0
    assert list(cmp.columns) == results.comparison_columns("adam", "adamax")
    text = report.build_report({"out": ".", "synthetic": None, "experiments": {"mnist-cnn": {
        "history": h, "iterations": None, "gridsearch": None, "best_params": None, "train": None}}})
    assert "## Adam vs AdaMax at the final epoch" in text
    assert "| `mnist-cnn` | train loss (↓) | 0.011 | 0.02 |" in text
    # accuracy = 1 − loss at the last epoch: Adam 98.90 ± 0.10 %, AdaMax 98.00 ± 0.10 %
    assert "| `mnist-cnn` | Adam | 99.21 % | 98.90 ± 0.10 % | 3 | 3/3 |" in text
    assert "| `mnist-cnn` | AdaMax | 99.09 % | 98.00 ± 0.10 % | 3 | 3/3 |" in text
    assert "| `mnist-logreg-l2` | Adam | 92.69 % | not run |" in text


def test_cifar_section_reports_all_and_exact_test_metrics(tmp_path):
    """A CIFAR history with the exact-test-image columns: the report's CIFAR-10 table gives, per
    optimizer, the final-epoch mean ± std of both test accuracies and losses, the median epoch
    time, the provenance and the published figures."""
    folder = tmp_path / "cifar10-cifarnet"
    folder.mkdir()
    h = make_history([0.50, 0.60], [0.40, 0.44], experiment="cifar10-cifarnet")
    h["test_exact_accuracy"] = h["test_accuracy"] + 0.01
    h["test_exact_loss"] = h["test_loss"] - 0.02
    h["epoch_seconds"] = [70.0, 72.0, 74.0] * 4
    h.to_csv(folder / "history.csv", index=False)
    text = report.build_report(report.collect(tmp_path))
    section = text.split("## CIFAR-10")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `cifar10-cifarnet`")]
    assert len(rows) == 2
    adam = [c.strip() for c in rows[0].split("|")[1:-1]]
    # adam final: test acc 1 − {0.50, 0.60} → 45.00 ± 7.07 %, exact +1 point; losses 0.55 ± 0.0707
    assert adam[1] == "Adam" and adam[2] == "2" and adam[3] == "3"
    assert adam[4] == "45.00 ± 7.07 %" and adam[5] == "46.00 ± 7.07 %"
    assert adam[6] == "0.5500 ± 0.0707" and adam[7] == "0.5300 ± 0.0707"
    assert adam[9] == "72 s"
    assert "1,000 exact official test images" in section and "78 %" in section and "GK104" in section
