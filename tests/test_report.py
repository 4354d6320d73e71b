"""REPORT.md verdicts on constructed results folders, and `replicate report` end to end."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from replication import report, results, verdicts
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
    synthetic_frame([1.0, 1.0, 0.95], [-1.0, -0.98, -0.96]).to_csv(tmp_path / "synthetic" / "trajectories.csv", index=False)
    return tmp_path


def verdict_rows(text):
    """{experiment: verdict} of the verdict table."""
    section = text.split("## Claims of Reddi et al.")[1].split("\n## ")[0]
    return {line.split("|")[2].strip(): line.split("|")[3].strip() for line in section.splitlines()
            if line.startswith("| ") and "**" in line.split("|")[3]}


def test_report_markdown_and_no_tensorflow(results_dir):
    data = report.collect(results_dir)
    text = report.build_report(data)
    rows = verdict_rows(text)
    assert rows["synthetic, online (α/√t)"] == "**supported**"
    assert rows["synthetic, stochastic (α/√t)"] == "**supported**"
    assert rows["§3 family, β1 = 0, β2 = 1/(1 + C²)"] == "**not run**"
    assert rows["1-hidden-layer MLP (MNIST) (`mnist-mlp`)"] == "**supported**"
    assert rows["logistic regression (MNIST) (`mnist-logreg`)"] == "**not supported**"
    assert rows["CifarNet (CIFAR-10) (`cifar10-cifarnet`)"] == "**not run**"
    assert "no discernible difference" in text  # McGill's conclusion beside ours
    assert "| `mnist-mlp` | AMSGrad | 0.001 | 0.999 | grid search |" in text
    assert "| `mnist-logreg` | Adam | 0.001 | 0.99 | history.csv |" in text
    # every rule is shown, verbatim from the one place it lives
    for rule in verdicts.RULES.values():
        assert rule in text
    assert results.SEARCH_CRITERION in text
    assert "Paired (per-seed differences):" in text and "Unpaired (independent samples" in text


def test_report_comparison_tables_show_paired_holm_and_power(results_dir):
    """mnist-mlp train loss: d = AMSGrad − Adam per seed = −0.20, −0.22, −0.29, −0.23, −0.26; the
    family is the train and test loss of the two experiments run (mnist-logreg's d are all 0: no p)."""
    data = report.collect(results_dir)
    text = report.build_report(data)
    d = np.array(LOWER[1]) - np.array(LOWER[0])
    t = stats.ttest_rel(LOWER[1], LOWER[0])
    mde = 1.681997 * d.std(ddof=1)
    holm = min(1.0, 2 * t.pvalue)  # two finite p in the family (train and test loss are equal here)
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    line = next(x for x in text.splitlines() if x.startswith("| `mnist-mlp` | train loss (↓) |") and "/5 |" in x)
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[4] == f"{d.mean():.3g} [{d.mean() - half:.3g}, {d.mean() + half:.3g}]"
    assert cells[6] == f"{t.statistic:.3g}" and cells[7] == "<0.001" and cells[8] == "<0.001"
    assert cells[9] == "0" and cells[10] == "0.062"  # Wilcoxon: every pair negative, p = 2/32
    # runs needed: the smallest n whose noncentral-t power at the observed d_z = 6.8 reaches 80 %
    # (the lower rejection tail is below 1e-20 here, and scipy returns NaN for it at n = 3)
    dz = abs(d.mean() / d.std(ddof=1))

    def power(n):
        return stats.nct.sf(stats.t.ppf(0.975, n - 1), n - 1, dz * np.sqrt(n))

    needed = next(n for n in range(2, 50) if power(n) >= 0.8)
    assert needed == 3 and power(2) < 0.8
    assert cells[12] == f"{mde:.3g}" and cells[13] == str(needed) and cells[14] == "0/5"
    comparison = verdicts.add_holm(results.compare_final(pd.concat(
        [e["history"] for e in data["experiments"].values()])), ["mnist-logreg", "mnist-mlp"])
    loss = comparison.set_index(["experiment", "metric"])["holm_p"]
    assert loss[("mnist-mlp", "loss")] == pytest.approx(holm)
    assert np.isnan(loss[("mnist-mlp", "accuracy")]) and np.isnan(loss[("mnist-logreg", "loss")])


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


def test_cli_report_names_an_unreadable_file_it_leaves_out(results_dir, capsys):
    (results_dir / "mnist-logreg" / "history.csv").write_text("optimizer,run\nadam,not-a-number\n")
    (results_dir / "mnist-mlp" / "train.json").write_bytes(b"\xff\xfe not utf-8")
    assert main(["report", "--no-figures", "--out", str(results_dir)]) == 0
    err = capsys.readouterr().err
    assert f"report: left out {results_dir / 'mnist-logreg' / 'history.csv'}: " in err
    assert f"report: left out {results_dir / 'mnist-mlp' / 'train.json'}: " in err
    assert err.count("\n") == 2  # absent files (no gridsearch.csv for mnist-logreg, ...) say nothing
    assert "mnist-mlp" in (results_dir / "REPORT.md").read_text()


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


def test_table_one_says_where_the_final_runs_hyperparameters_came_from(tmp_path):
    """train.json's resolved hyperparameters win over best_params.json: a CIFAR run at McGill's
    values from a --params file is not reported as the grid search's choice."""
    write_experiment(tmp_path, "cifar10-cifarnet", *LOWER, grid=True)
    used = {o: {"learning_rate": 0.001, "beta_2": 0.999,
                "source": {"learning_rate": "params file", "beta_2": "params file", "bias_correction": "spec"}}
            for o in ("adam", "amsgrad")}
    (tmp_path / "cifar10-cifarnet" / "train.json").write_text(json.dumps({"hyperparameters": used}))
    text = report.build_report(report.collect(tmp_path))
    section = text.split("## Table I")[1].split("\n## ")[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in section.splitlines()
            if line.startswith("| `cifar10-cifarnet`")]
    assert [r[1:5] for r in rows] == [["Adam", "0.001", "0.999", "--params file"],
                                      ["AMSGrad", "0.001", "0.999", "--params file"]]


def test_grid_figure_labels_read_on_their_cells(tmp_path, monkeypatch):
    # Every cell value is written in the ink (black/white) with the larger WCAG contrast ratio
    # against its cell's colour, computed here from the definition; the shared β2 axis is labelled once.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from replication import plots

    def luminance(rgb):
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    def contrast(a, b):
        hi, lo = max(a, b), min(a, b)
        return (hi + 0.05) / (lo + 0.05)

    rows = [{"experiment": "toy", "optimizer": o, "learning_rate": lr, "beta_2": b2, "bias_correction": True,
             "mean_val_loss": v, "diverged": False}
            for o in ("adam", "amsgrad") for lr, v0 in ((1e-4, 0.25), (1e-3, 0.16), (1e-2, 0.15))
            for b2, v in ((0.99, v0 + 0.004), (0.999, v0))]
    figures = []
    real_save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, stem: figures.append(fig) or real_save(fig, stem))
    plots.plot_gridsearch(pd.DataFrame(rows), tmp_path)
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    assert [ax.get_ylabel() for ax in panels] == ["β2", ""]
    checked = set()
    for ax in panels:
        image = ax.images[0]
        for text in ax.texts:
            x, y = text.get_position()
            cell = image.cmap(image.norm(image.get_array()[int(round(y)), int(round(x))]))
            ink = matplotlib.colors.to_rgb(text.get_color())
            other = (1.0, 1.0, 1.0) if ink == (0.0, 0.0, 0.0) else (0.0, 0.0, 0.0)
            assert contrast(luminance(ink), luminance(cell)) >= contrast(luminance(other), luminance(cell)), text.get_text()
            checked.add(ink)
    assert checked == {(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)}  # the lightest cells in black, the darkest in white
    plt.close("all")
