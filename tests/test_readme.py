"""The README's result tables are generated from the committed results (issue 12 §6): every
``<!-- generated:NAME -->`` block must equal what ``replicate report --readme`` writes from them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from replication import readme, report
from replication.cli import main
from replication.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def blocks():
    return readme.readme_blocks(report.collect(ROOT / "results"))


def test_readme_tables_equal_what_the_committed_results_give(blocks):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    names = re.findall(r"<!-- generated:([a-z0-9-]+) -->", text)
    assert sorted(names) == sorted(blocks)  # every table is generated, each once
    # Which block drifted, and how: compare block by block before the whole file.
    for match in readme.MARK.finditer(text):
        assert match.group("body").rstrip("\n") == blocks[match.group("name")].rstrip("\n"), match.group("name")
    assert readme.update_readme(text, blocks) == text


def test_numbers_come_from_the_sidecars(blocks):
    # train.json's start and end, gridsearch.json's wall_seconds: not a log's or a hand's numbers
    import datetime as dt
    import json

    train = json.loads((ROOT / "results/mnist-logreg/train.json").read_text())
    seconds = (dt.datetime.fromisoformat(train["finished_at"]) - dt.datetime.fromisoformat(train["started_at"]))
    assert f"Training took {seconds.total_seconds():.0f} s (LR)" in blocks["mnist-final"]
    search = json.loads((ROOT / "results/mnist-mlp/gridsearch.json").read_text())
    assert f"{search['wall_seconds']:.0f} s (MLP)" in blocks["table-one"]


def test_update_readme_replaces_only_the_blocks_and_rejects_unknown_ones(tmp_path, capsys):
    text = "intro 1.23\n<!-- generated:verdicts -->\nold\n<!-- /generated:verdicts -->\noutro\n"
    assert readme.update_readme(text, {"verdicts": "new table\n"}) == (
        "intro 1.23\n<!-- generated:verdicts -->\nnew table\n<!-- /generated:verdicts -->\noutro\n")
    with pytest.raises(UserError, match="'typo' is not one"):
        readme.update_readme("<!-- generated:typo -->\nx\n<!-- /generated:typo -->", {"verdicts": ""})
    # through the command: a README in a copy of one experiment's results
    out = tmp_path / "results"
    (out / "mnist-logreg").mkdir(parents=True)
    for name in ("history.csv", "best_params.json", "train.json", "gridsearch.csv", "gridsearch.json"):
        (out / "mnist-logreg" / name).write_bytes((ROOT / "results/mnist-logreg" / name).read_bytes())
    path = tmp_path / "README.md"
    path.write_text("# x\n<!-- generated:table-one -->\n<!-- /generated:table-one -->\nend\n", encoding="utf-8")
    assert main(["report", "--no-figures", "--out", str(out), "--readme", str(path)]) == 0
    written = path.read_text(encoding="utf-8")
    assert "| LR (MNIST) | AMSGrad | 0.1 | 0.99 | 0.001 | 0.99 |" in written and written.endswith("end\n")
    path.write_bytes(b"\xff\xfe not utf-8")
    assert main(["report", "--no-figures", "--out", str(out), "--readme", str(path)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def _cifar_grid(chosen):
    """A CifarNet search table: 2 optimizers × α {1e-3, 1e-2} × β2 {0.99, 0.999}; ``chosen`` maps each
    optimizer to the (α, β2) given the smallest validation loss; α 1e-2, β2 0.99 of AMSGrad diverged
    (NaN, smaller than any loss as a number would be: it must never be chosen)."""
    import pandas as pd

    rows = []
    for optimizer in ("adam", "amsgrad"):
        for lr in (1e-3, 1e-2):
            for b2 in (0.99, 0.999):
                diverged = (optimizer, lr, b2) == ("amsgrad", 1e-2, 0.99)
                loss = float("nan") if diverged else (0.15 if chosen[optimizer] == (lr, b2) else 0.2 + lr + b2 / 100)
                rows.append({"experiment": "cifar10-cifarnet", "optimizer": optimizer, "learning_rate": lr, "beta_2": b2,
                             "cv": 3, "mean_val_loss": loss, "std_test_score": 0.001, "mean_epochs_run": 15.0,
                             "mean_fit_time": 600.0, "mean_score_time": 10.0, "diverged": diverged})
    return pd.DataFrame(rows)


def _searched(grid):
    """The entry :func:`replication.report.collect` reads for a finished search: its table and the
    ``best_params.json`` the search wrote from it (through the search's own selection)."""
    from gridsearch.search import select_best

    return {"gridsearch": grid, "best_params": select_best(grid)}


def test_cifarnet_search_block_names_the_choice_against_mcgills_and_its_cost():
    data = {"experiments": {}}
    assert readme._cifarnet_search(data, "cifar10-cifarnet").startswith("Not finished yet")
    grid = _cifar_grid({"adam": (1e-2, 0.99), "amsgrad": (1e-3, 0.999)})
    text = readme._cifarnet_search({"experiments": {"cifar10-cifarnet": _searched(grid)}}, "cifar10-cifarnet")
    assert "| Adam | 0.01 | 0.99 | **0.1500 ± 0.0010** | 15 | 600 s |" in text
    assert "| AMSGrad | 0.001 | 0.999 | **0.1500 ± 0.0010** | 15 | 600 s |" in text
    assert "| AMSGrad | 0.01 | 0.99 | diverged |" in text and text.count("**") == 4  # two choices, bold
    # 8 points × 3 folds × (600 + 10) s = 4.07 h
    assert "Adam α 0.01, β2 0.99 (McGill: α 0.001, β2 0.999); AMSGrad α 0.001, β2 0.999 (McGill's too)" in text
    assert "Cost: 24 fits, 4.1 h of fitting and scoring" in text and "`cifar10-cifarnet-searched` below" in text
    same = readme._cifarnet_search({"experiments": {"cifar10-cifarnet": _searched(_cifar_grid(
        {"adam": (1e-3, 0.999), "amsgrad": (1e-3, 0.999)}))}}, "cifar10-cifarnet")
    assert "The choice is McGill's" in same and "searched" not in same


def test_cifarnet_search_block_says_when_a_choice_sits_at_the_edge_of_the_alpha_range():
    edges = _cifar_grid({"adam": (1e-2, 0.99), "amsgrad": (1e-3, 0.999)})
    text = readme._cifarnet_search({"experiments": {"cifar10-cifarnet": _searched(edges)}}, "cifar10-cifarnet")
    assert ("α 0.01 (Adam) is the largest α of the grid, so the search says nothing about whether a larger α "
            "would do better still.") in text
    assert "α 0.001 (AMSGrad) is the smallest α of the grid" in text and "a smaller α" in text
    both = readme._cifarnet_search({"experiments": {"cifar10-cifarnet": _searched(_cifar_grid(
        {"adam": (1e-2, 0.999), "amsgrad": (1e-2, 0.999)}))}}, "cifar10-cifarnet")
    assert "α 0.01 (Adam and AMSGrad) is the largest α of the grid" in both and "smallest α" not in both
    # a third α above both: choices at 0.01 are inside the range, nothing is said
    wider = _cifar_grid({"adam": (1e-2, 0.999), "amsgrad": (1e-2, 0.999)})
    above = wider[wider["learning_rate"] == 1e-2].assign(learning_rate=1e-1, mean_val_loss=0.3, diverged=False)
    import pandas as pd

    inside = readme._cifarnet_search({"experiments": {"cifar10-cifarnet": {
        "gridsearch": pd.concat([wider, above]), "best_params": {o: {"learning_rate": 1e-2, "beta_2": 0.999}
                                                                for o in ("adam", "amsgrad")}}}}, "cifar10-cifarnet")
    assert "of the grid" not in inside and "Adam α 0.01, β2 0.999" in inside


def test_cifarnet_search_block_bolds_best_params_json_and_nothing_without_it():
    """The bold row is the one ``best_params.json`` names (what the searched runs train at), read,
    not recomputed: a file naming another point moves the bold; without the file nothing is bold."""
    grid = _cifar_grid({"adam": (1e-2, 0.99), "amsgrad": (1e-3, 0.999)})
    other = {"gridsearch": grid, "best_params": {"adam": {"learning_rate": 1e-3, "beta_2": 0.99}}}
    text = readme._cifarnet_search({"experiments": {"cifar10-cifarnet": other}}, "cifar10-cifarnet")
    assert text.count("**") == 2 and "| Adam | 0.001 | 0.99 | **0.2" in text
    assert "Adam α 0.001, β2 0.99 (McGill: α 0.001, β2 0.999)" in text and "AMSGrad α" not in text
    bare = readme._cifarnet_search({"experiments": {"cifar10-cifarnet": {"gridsearch": grid}}}, "cifar10-cifarnet")
    assert "**" not in bare and "none (no `results/cifar10-cifarnet/best_params.json`)" in bare
    assert "searched" not in bare and "McGill's:" not in bare
