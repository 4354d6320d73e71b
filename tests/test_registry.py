"""The registry (replication/registry.py) is the one home of the suite's name lists.

(a) it imports without Keras/TensorFlow; (b) no other module of replication/ or gridsearch/ spells a
list of registered names again, nor an optimizer's colour; (c) the class tables cover exactly the
registry's names; (d) the claims' texts live on the experiments (replication/experiments.py) only.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from replication import registry

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {
    "optimizer": set(registry.OPTIMIZER_NAMES),
    "schedule": set(registry.SCHEDULES),
    "loss": set(registry.LOSSES),
}

# Literals with two or more registered names that are not copies of a registry list, by (file,
# scope): the scope is the keyword or field the literal is the value of, else the enclosing
# function, class or assigned name. Each says why.
ALLOWED = {
    # Per-experiment configuration: which optimizers an experiment compares (Adam vs AMSGrad for
    # Reddi et al.'s claims, Adam vs AdaMax for Pérez's): a choice per spec, not the list of names.
    ("replication/experiments.py", "optimizers"): "per-experiment choice of the optimizers compared",
    # McGill's code's figures compare exactly Adam and AMSGrad (readme.py says registry.COMPARED).
    ("replication/mcgill.py", "*"): "McGill's figures: Adam vs AMSGrad, the pair their code ran",
    # The synthetic problem has its own float64 optimizer loop, run under α/√t or a constant α only.
    ("replication/plots.py", "plot_synthetic"): "the synthetic problem's schedule captions",
    ("replication/commands/synthetic.py", "add_parser"): "the synthetic problem's two schedules",
}


def test_registry_imports_without_keras_or_tensorflow():
    code = ("import sys; import replication.registry as r; import replication.experiments, replication.hyperparameters; "
            "print(r.OPTIMIZER_NAMES); sys.exit(1 if {'keras', 'tensorflow'} & set(sys.modules) else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(registry.OPTIMIZER_NAMES)


def _scope(node, parents) -> str:
    """Where literal ``node`` sits: the value of an ``optimizers`` keyword or of an annotated field,
    a module-level assignment's name, else the innermost function or class ("<module>" at the top)."""
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.keyword) and parent.arg == "optimizers":
            return parent.arg
        if isinstance(parent, ast.AnnAssign) and isinstance(parent.target, ast.Name):
            return parent.target.id
        if (isinstance(parent, ast.Assign) and isinstance(parent.targets[0], ast.Name)
                and isinstance(parents.get(parent), ast.Module)):
            return parent.targets[0].id
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return parent.name
        node = parent
    return "<module>"


def copies_in(rel, source):
    """(file, scope, group, names) of every list/tuple/set literal or dict's keys in ``source`` with
    two or more registered names of one group."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            elements = node.elts
        elif isinstance(node, ast.Dict):
            elements = [key for key in node.keys if key is not None]
        else:
            continue
        names = {e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        for group, registered in GROUPS.items():
            if len(names & registered) >= 2:
                found.append((rel, _scope(node, parents), group, tuple(sorted(names & registered))))
    return found


def _sources():
    """(path, relative name) of every module of replication/ and gridsearch/ but the registry."""
    for path in sorted([*ROOT.glob("replication/**/*.py"), *ROOT.glob("gridsearch/*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel != "replication/registry.py":
            yield path, rel


def _copies():
    return [copy for path, rel in _sources() for copy in copies_in(rel, path.read_text(encoding="utf-8"))]


def test_no_other_module_keeps_a_copy_of_a_name_list():
    copies = _copies()
    unexplained = [c for c in copies if (c[0], c[1]) not in ALLOWED and (c[0], "*") not in ALLOWED]
    assert not unexplained, f"name lists outside replication/registry.py: {unexplained}"
    # The scan sees literals at all: the allowed per-experiment choice is found.
    assert ("replication/experiments.py", "optimizers", "optimizer", ("adam", "adamax")) in copies
    # A whole list anywhere fails, allowed scope or not.
    whole = [c for c in copies if set(c[3]) in ({*registry.OPTIMIZER_NAMES}, {*registry.SCHEDULES}, {*registry.LOSSES})]
    assert not whole, whole


def test_the_scan_catches_a_copy():
    """The check can fail: the tables this change removed are each reported, in their scope."""
    source = ('OPTIMIZERS = {"adam": Adam, "amsgrad": AMSGrad, "adamax": AdaMax}\n'
              'def add_parser(p):\n    p.add_argument("--loss", choices=("categorical", "binary"))\n'
              'E = Experiment(optimizers=("adam", "adamax"), schedule="constant")\n')
    assert sorted(copies_in("x.py", source)) == [
        ("x.py", "OPTIMIZERS", "optimizer", ("adam", "adamax", "amsgrad")),
        ("x.py", "add_parser", "loss", ("binary", "categorical")),
        ("x.py", "optimizers", "optimizer", ("adam", "adamax")),
    ]
    assert not copies_in("x.py", 'BETA_2 = (("adam", 0.99), ("amsgrad", 0.99))\n')  # per-experiment pairs pass


def test_class_tables_cover_exactly_the_registry():
    from gridsearch.estimator import SEARCH_OPTIMIZERS
    from gridsearch.stacked import STACKED_OPTIMIZERS
    from replication import losses, models, optimizers

    names = list(registry.OPTIMIZER_NAMES)
    assert list(optimizers.OPTIMIZERS) == names
    assert list(SEARCH_OPTIMIZERS) == names
    assert list(STACKED_OPTIMIZERS) == names
    for name in names:  # each table's class is the built-in one or its subclass
        assert issubclass(SEARCH_OPTIMIZERS[name], optimizers.OPTIMIZERS[name])
        assert issubclass(STACKED_OPTIMIZERS[name], optimizers.OPTIMIZERS[name])
    assert optimizers.SCHEDULES == registry.SCHEDULES
    assert losses.LOSSES == registry.LOSSES and losses.CLIP_EPSILON == registry.CLIP_EPSILON
    assert models.GENERATIVE_MODELS is registry.GENERATIVE_MODELS
    assert set(registry.CONV_MODELS) <= set(models.MODELS)
    for schedule in registry.SCHEDULES:  # make_schedule knows every registered schedule
        lr = optimizers.make_schedule(0.1, schedule, total_steps=10, steps_per_epoch=5, decay=0.1)
        assert lr is not None
    for loss in registry.LOSSES:
        assert losses.get_loss(loss) is not None


def test_history_schema_has_one_home():
    """results.py reads history.csv with the columns runfiles.py (the writer's schema) defines."""
    from replication import results, run, runfiles

    assert list(results.HISTORY_DTYPES) == runfiles.HISTORY_COLUMNS
    assert run.HISTORY_COLUMNS is runfiles.HISTORY_COLUMNS
    assert [c for c in results.ITERATION_DTYPES] == runfiles.ITERATION_COLUMNS


def test_one_xla_policy():
    from gridsearch import search
    from replication import run

    assert run.JIT_MIN_STEPS == search.XLA_MIN_STEPS == registry.XLA_MIN_STEPS
    assert run.CONV_MODELS is search.CONV_MODELS is registry.CONV_MODELS


def test_builtin_ids_unchanged():
    """A built-in optimizer's run id and grid-point key are what they were before the registry:
    the committed results' ids, recomputed from their sidecars."""
    from gridsearch.search import GridPoint, SearchSettings
    from replication.experiments import get_experiment
    from replication.trainer import RunConfig

    sidecars = sorted((ROOT / "results" / "mnist-logreg" / "runs").glob("*-run0-*.json"))
    assert sidecars
    for path in sidecars:
        data = json.loads(path.read_text())
        config = dict(data["config"])
        config["model_kwargs"] = tuple(config["model_kwargs"].items())
        config.pop("loss_definition", None)
        assert RunConfig(**config).run_id == data["run_id"] == path.stem.rsplit("-", 1)[1]
    settings = SearchSettings.from_spec(get_experiment("digits-mlp"), epochs=2, cv=2)
    key = settings.point_key(GridPoint("adam", 0.01, 0.99))
    assert key.startswith("adam_lr0.01_b20.99_bc-default_")


@pytest.mark.parametrize("name,path", [("adam", None), ("mypkg.opt:MyOpt", "mypkg.opt:MyOpt"), ("nothing", None),
                                       (":X", None), ("m:", None)])
def test_user_optimizer_path(name, path, monkeypatch):
    monkeypatch.setattr(registry, "entry_point_optimizers", lambda: {})
    assert registry.user_optimizer_path(name) == path


def test_one_default_epsilon():
    import dataclasses

    from gridsearch.search import SearchSettings
    from replication import run
    from replication.experiments import Experiment

    defaults = {f.name: f.default for f in dataclasses.fields(Experiment)}
    search_defaults = {f.name: f.default for f in dataclasses.fields(SearchSettings)}
    assert defaults["epsilon"] == search_defaults["epsilon"] == run.DEFAULT_EPSILON == registry.DEFAULT_EPSILON == 1e-7


# -- display names and colours of the optimizers ----------------------------------------------------
def test_every_optimizer_has_one_label_and_colour():
    names = list(registry.OPTIMIZER_NAMES)
    assert list(registry.OPTIMIZER_LABELS) == list(registry.OPTIMIZER_COLORS) == list(registry.OPTIMIZER_LIGHT_COLORS) == names
    # The paper's spelling and colours (Adam blue, AMSGrad red), lighter without bias correction.
    assert registry.OPTIMIZER_LABELS == {"adam": "Adam", "amsgrad": "AMSGrad", "adamax": "AdaMax"}
    for name in names:
        dark, light = (int(registry.OPTIMIZER_COLORS[name][i:i + 2], 16) for i in (1, 3, 5)), \
            (int(registry.OPTIMIZER_LIGHT_COLORS[name][i:i + 2], 16) for i in (1, 3, 5))
        assert sum(light) > sum(dark), name


@pytest.mark.parametrize("name,label", [("adam", "Adam"), ("amsgrad", "AMSGrad"),
                                        ("mypkg.opt:MyAdam", "mypkg.opt:MyAdam"),
                                        ("other.opt:MyAdam", "other.opt:MyAdam"), ("plain-rmsprop", "plain-rmsprop")])
def test_optimizer_label(name, label):
    """A built-in optimizer's label is the papers' spelling; a user's the name it was given, so two
    classes of one name in two modules stay apart."""
    assert registry.optimizer_label(name) == label


def test_figures_and_tables_use_the_registry_labels_and_colours():
    from replication import plots

    assert plots.color_for("amsgrad") == registry.OPTIMIZER_COLORS["amsgrad"]
    assert plots.color_for("adam", bias_correction=False) == registry.OPTIMIZER_LIGHT_COLORS["adam"]
    assert plots.color_for("mypkg.opt:MyAdam") == "#555555"
    assert plots._label("mypkg.opt:MyAdam", False) == "mypkg.opt:MyAdam (no bias corr.)"


def colour_copies(rel, source):
    """(file, colour) of each optimizer colour of the registry spelled in ``source``."""
    colours = {*registry.OPTIMIZER_COLORS.values(), *registry.OPTIMIZER_LIGHT_COLORS.values()}
    return [(rel, colour) for colour in sorted(colours) if colour.lower() in source.lower()]


# Colours spelled elsewhere for another purpose than an optimizer's, each with why.
OTHER_COLOURS = {("replication/plots.py", "#c0262d"): "DIVERGED_MARK: the × on a diverged grid point, any optimizer's"}


def test_no_other_module_keeps_the_colours():
    found = [c for path, rel in _sources() for c in colour_copies(rel, path.read_text(encoding="utf-8"))
             if c not in OTHER_COLOURS]
    assert not found, f"optimizer colours outside replication/registry.py: {found}"
    assert colour_copies("x.py", 'COLORS = {"adam": "#1F4E9C"}') == [("x.py", "#1f4e9c")]  # the check can fail


# -- the claims' texts live on the experiments (replication/experiments.py) --------------------------
def claim_texts() -> dict:
    """{text: where} of every text of every claim: the loss claims on the experiments and the
    synthetic problem's claims."""
    from replication.experiments import EXPERIMENTS, SYNTHETIC_CLAIMS

    claims = [(spec.name, spec.claim) for spec in EXPERIMENTS.values() if spec.claim is not None]
    claims += [(f"synthetic {claim.setting}", claim) for claim in SYNTHETIC_CLAIMS]
    return {text: where for where, claim in claims
            for text in (claim.text, claim.what, claim.mcgill, claim.brief, claim.mcgill_brief)}


def claim_copies(rel, source, texts):
    """(file, text) of each claim text spelled out in ``source``; the short ones (a few words that
    prose may use: "reproduced") are left out, and an f-string's literal parts count."""
    return [(rel, text) for text in sorted(texts) if len(text) >= 20 and text in source]


# Claim texts quoted elsewhere, each with why. Reported, not hidden: verdicts.py's rule for the loss
# claims (printed above the verdict table) and its docstring quote the claim; they could read
# experiments.LOSS_CLAIM once that module's owner touches it.
QUOTED_CLAIMS = {
    ("replication/verdicts.py", "AMSGrad reaches lower train and test loss than Adam"):
        "RULES['loss'] and the module docstring quote the claim the rule decides",
}


def test_no_other_module_keeps_a_claim_text():
    texts = claim_texts()
    assert len([t for t in texts if len(t) >= 20]) >= 20  # every experiment's and the synthetic ones
    found = [c for path, rel in _sources() if rel != "replication/experiments.py"
             for c in claim_copies(rel, path.read_text(encoding="utf-8"), texts) if c not in QUOTED_CLAIMS]
    assert not found, f"claim texts outside replication/experiments.py: {found}"
    # The check can fail: the table report.py kept before the texts moved is reported.
    old = ('LOSS_CLAIMS = (("mnist-logreg", "logistic regression (MNIST)", '
           '"no discernible difference in final train loss (§V)", True),)\n'
           'SECTION3_MCGILL = "— (not run by McGill)"\n')
    assert claim_copies("x.py", old, texts) == [
        ("x.py", "logistic regression (MNIST)"), ("x.py", "no discernible difference in final train loss"),
        ("x.py", "no discernible difference in final train loss (§V)"), ("x.py", "— (not run by McGill)")]


def test_the_claims_rows_come_from_the_experiments():
    """The verdict table's rows are the specs' claims: the synthetic ones, then the experiments'
    in registration order with the demos last; the paper's experiments' rows are there unrun."""
    from replication import report
    from replication.experiments import EXPERIMENTS, SYNTHETIC_CLAIMS, loss_claims

    assert [s.name for s in loss_claims()] == [
        "mnist-logreg", "mnist-mlp", "cifar10-cifarnet", "cifar10-cifarnet-paper", "cifar10-cifarnet-searched",
        "mnist-vae", "digits-logreg", "digits-mlp"]
    assert {s.name for s in loss_claims() if s.claim.paper} == {"mnist-logreg", "mnist-mlp", "cifar10-cifarnet"}
    assert all(s.claim.demo == (s.dataset == "digits") for s in loss_claims())
    data = {"out": ROOT, "synthetic": None, "experiments": {}}
    rows = list(report.claim_verdicts(data, None))
    assert [r.spec for r in rows] == [*SYNTHETIC_CLAIMS, *(EXPERIMENTS[n].claim for n in
                                                            ("mnist-logreg", "mnist-mlp", "cifar10-cifarnet"))]
    assert all((r.claim, r.what, r.mcgill) == (r.spec.text, r.spec.what, r.spec.mcgill) for r in rows)
    assert [r.spec.setting for r in rows[:3]] == ["online", "stochastic", "cyclic"]
