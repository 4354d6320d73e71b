"""The result tables of the README and of ``docs/`` are generated from the committed results (issue
12 §6): every ``<!-- generated:NAME -->`` block, wherever it lives, must equal what ``replicate report
--readme README.md`` writes from them, each block exactly once; and every relative link of the README
and ``docs/`` must lead to a file and heading that exist."""
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


def test_generated_tables_equal_what_the_committed_results_give(blocks):
    files = readme.block_files(ROOT / "README.md")
    # the README's compact verdicts, the results and McGill's code in docs/; no other file has blocks
    assert [path.relative_to(ROOT).as_posix() for path in files] == [
        "README.md", "docs/mcgill-code.md", "docs/results.md"]
    names = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        names += re.findall(r"<!-- generated:([a-z0-9-]+) -->", text)
        # Which block drifted, and how: compare block by block before the whole file.
        for match in readme.MARK.finditer(text):
            assert match.group("body").rstrip("\n") == blocks[match.group("name")].rstrip("\n"), (
                path.name, match.group("name"))
        assert readme.update_readme(text, blocks) == text, path.name
    assert sorted(names) == sorted(blocks)  # every table is generated, each once across all files
    assert "verdicts-summary" in re.findall(r"<!-- generated:([a-z0-9-]+) -->",
                                            (ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_compact_verdicts_are_the_full_ones_without_the_numbers(blocks):
    full = [row.split(" | ") for row in blocks["verdicts"].splitlines()[2:]]
    compact = [row.split(" | ") for row in blocks["verdicts-summary"].splitlines()[2:]]
    assert len(full) == len(compact) > 0
    for long, short in zip(full, compact):
        assert long[0] == short[0] and long[3] == short[3]  # claim and McGill's conclusion
        for cell, brief in zip(long[1:3], short[1:3]):
            assert cell.split(" — ")[0].split(" (`")[0] == brief.split(" — ")[0].split(" (`")[0]  # the verdict
            for kind in re.findall(r"(?:train|test): ([a-z ]+)", brief):
                assert f"→ {kind.strip()}" in cell
    assert "**not supported** — train: evidence against; test: supported" in blocks["verdicts-summary"]


def test_report_readme_updates_blocks_in_docs_and_rejects_a_block_in_two_places(tmp_path, capsys):
    out = tmp_path / "results"
    (out / "mnist-logreg").mkdir(parents=True)
    for name in ("history.csv", "best_params.json", "train.json", "gridsearch.csv", "gridsearch.json"):
        (out / "mnist-logreg" / name).write_bytes((ROOT / "results/mnist-logreg" / name).read_bytes())
    (tmp_path / "docs").mkdir()
    readme_path, doc, other = tmp_path / "README.md", tmp_path / "docs/results.md", tmp_path / "docs/plain.md"
    readme_path.write_text("# x\n<!-- generated:mnist-final -->\n<!-- /generated:mnist-final -->\n", encoding="utf-8")
    doc.write_text("# r\n<!-- generated:table-one -->\nold\n<!-- /generated:table-one -->\nend\n", encoding="utf-8")
    other.write_text("# no blocks here\n", encoding="utf-8")
    assert main(["report", "--no-figures", "--out", str(out), "--readme", str(readme_path)]) == 0
    said = capsys.readouterr().out
    assert f"updated: {readme_path}" in said and f"updated: {doc}" in said and "plain.md" not in said
    assert "| LR (MNIST) | AMSGrad | 0.1 | 0.99 | 0.001 | 0.99 |" in doc.read_text(encoding="utf-8")
    assert "| experiment | optimizer | train loss |" in readme_path.read_text(encoding="utf-8")
    assert main(["report", "--no-figures", "--out", str(out), "--readme", str(readme_path)]) == 0
    assert f"unchanged: {doc}" in capsys.readouterr().out
    # the same block in the README and in docs/: an error, and nothing is written
    before = readme_path.read_text(encoding="utf-8")
    readme_path.write_text(before + "<!-- generated:table-one -->\n<!-- /generated:table-one -->\n", encoding="utf-8")
    assert main(["report", "--no-figures", "--out", str(out), "--readme", str(readme_path)]) == 2
    assert "'table-one' appears 2 times" in capsys.readouterr().err
    assert readme_path.read_text(encoding="utf-8").endswith("<!-- generated:table-one -->\n<!-- /generated:table-one -->\n")
    # a block without its closing marker would never be rewritten: an error naming the file
    readme_path.write_text(before, encoding="utf-8")
    doc.write_text("# r\n<!-- generated:table-one -->\nold\n", encoding="utf-8")
    assert main(["report", "--no-figures", "--out", str(out), "--readme", str(readme_path)]) == 2
    err = capsys.readouterr().err
    assert "results.md" in err and "no closing" in err


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, inline code and link marks dropped, every
    character but letters, digits, ``_``, ``-`` and spaces removed, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set:
    anchors, seen, fence = set(), {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,6} ", line):
            slug = _slug(line.lstrip("#"))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links(path: Path):
    fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            yield number, target


def test_every_relative_link_of_the_readme_and_docs_resolves():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(files) >= 8  # README, method, usage, results, mcgill-code, corrections, performance, gpu
    broken = []
    for path in files:
        for number, target in _links(path):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            name, _, anchor = target.partition("#")
            where = (path.parent / name).resolve() if name else path
            if not where.exists():
                broken.append(f"{path.relative_to(ROOT)}:{number}: {target} (no such file)")
            elif anchor and (where.suffix != ".md" or anchor not in _anchors(where)):
                broken.append(f"{path.relative_to(ROOT)}:{number}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
    # every docs page is reachable from the README
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, target in _links(ROOT / "README.md")}
    assert set(files[1:]) <= linked and (ROOT / "results/REPORT.md").resolve() in linked


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "Two commands" and headings[1] == "Verdicts"


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
