"""replication.experiments and `replicate experiments`: the registry holds the study's settings."""
import dataclasses
import json
from pathlib import Path

import pytest

from replication.cli import main
from replication.errors import UserError
from replication.experiments import EXPERIMENTS, Experiment, get_experiment, with_overrides

REDDI_NAMES = ["mnist-logreg", "mnist-mlp", "cifar10-cifarnet", "cifar10-cifarnet-paper", "digits-logreg", "digits-mlp"]
MCGILL_CODE_NAMES = ["mnist-logreg-mcgill-code", "mnist-mlp-mcgill-code", "mnist-mlp-mcgill-code-3d52d12",
                     "cifar10-cifarnet-mcgill-code"]
NAMES = REDDI_NAMES[:4] + ["cifar10-cifarnet-searched"] + MCGILL_CODE_NAMES + REDDI_NAMES[4:] + ["cifar10-smallvgg", "cifar10-vgg", "mnist-logreg-l2", "mnist-mlp-2x1000", "mnist-cnn",
                       "mnist-vae"]

# McGill Table I: (experiment, optimizer) -> (alpha, beta_2)
TABLE_I = {
    ("mnist-logreg", "adam"): (0.001, 0.99),
    ("mnist-logreg", "amsgrad"): (0.001, 0.99),
    ("mnist-mlp", "adam"): (0.001, 0.99),
    ("mnist-mlp", "amsgrad"): (0.001, 0.999),
    ("cifar10-cifarnet", "adam"): (0.001, 0.999),
    ("cifar10-cifarnet", "amsgrad"): (0.001, 0.999),
    ("cifar10-cifarnet-paper", "adam"): (0.001, 0.999),
    ("cifar10-cifarnet-paper", "amsgrad"): (0.001, 0.999),
}


def test_registry_names():
    assert list(EXPERIMENTS) == NAMES
    assert all(EXPERIMENTS[n].name == n for n in NAMES)


@pytest.mark.parametrize("key", sorted(TABLE_I))
def test_table_one(key):
    name, optimizer = key
    alpha, beta_2 = TABLE_I[key]
    assert get_experiment(name).default_hyperparameters(optimizer) == {"learning_rate": alpha, "beta_2": beta_2}


def test_study_settings():
    for name in REDDI_NAMES:
        e = get_experiment(name)
        # Reddi et al. §5: batch 128, beta_1 0.9, alpha/sqrt(t); McGill: 5 runs per optimizer.
        assert (e.batch_size, e.beta_1, e.schedule, e.runs) == (128, 0.9, "inverse-sqrt", 5)
        assert (e.epsilon, e.flip, e.optimizers, e.grid, e.published) == (1e-7, False, ("adam", "amsgrad"), (), ())
        assert e.default_hyperparameters("adamax")["beta_2"] == 0.999
    for name in ("mnist-logreg", "mnist-mlp"):
        e = get_experiment(name)
        assert (e.dataset, e.epochs, e.gridsearch_epochs, e.loss) == ("mnist", 50, 30, "binary")
    for name in ("cifar10-cifarnet", "cifar10-cifarnet-paper"):
        e = get_experiment(name)
        assert (e.dataset, e.epochs, e.gridsearch_epochs) == ("cifar10", 30, 15)
    assert get_experiment("cifar10-cifarnet").model == "cifarnet"
    assert get_experiment("cifar10-cifarnet-paper").model == "cifarnet-paper"
    assert dict(get_experiment("mnist-mlp").model_kwargs) == {"hidden": (100,)}


def test_searched_cifarnet_is_mcgills_cifarnet_at_the_searchs_choice():
    """cifar10-cifarnet-searched differs from cifar10-cifarnet only in name, text and where its α and
    β2 come from (the other's best_params.json): same protocol, so the two sets compare."""
    base, searched = get_experiment("cifar10-cifarnet"), get_experiment("cifar10-cifarnet-searched")
    assert searched.params_from == "cifar10-cifarnet" and base.params_from == ""
    same = {f.name for f in dataclasses.fields(Experiment)} - {"name", "description", "source", "params_from", "claim"}
    assert {k: getattr(searched, k) for k in same} == {k: getattr(base, k) for k in same}
    # Only set where it is: every other spec's train.json keeps its keys.
    assert searched.to_dict()["params_from"] == "cifar10-cifarnet"
    assert all("params_from" not in e.to_dict() for e in EXPERIMENTS.values() if e is not searched)
    with pytest.raises(UserError, match="names the experiment itself"):
        with_overrides(base, params_from="cifar10-cifarnet")


def test_korzeniowski_settings():
    """Korzeniowski: 150 epochs, batch 128, linear decay to 0, left-right flips, 5 runs per grid
    point of lr x beta2 x bias correction; published result in the description."""
    for name, model in (("cifar10-smallvgg", "small-vgg"), ("cifar10-vgg", "vgg")):
        e = get_experiment(name)
        assert (e.dataset, e.model, e.loss, e.epochs, e.batch_size, e.runs) == ("cifar10", model, "categorical", 150, 128, 5)
        assert (e.schedule, e.flip, e.beta_1, e.optimizers) == ("linear-decay", True, 0.9, ("adam", "amsgrad"))
        assert dict(e.grid) == {"learning_rate": (1e-2, 1e-3, 1e-4), "beta_2": (0.99, 0.999),
                                "bias_correction": (True, False)}
        assert "78 %" in e.description and "no meaningful gap" in e.description


def test_perez_settings():
    """Pérez §4: 20 epochs, alpha/sqrt(t), batch 128, beta1 0.9, beta2 0.999, eps 1e-8, Adam and
    AdaMax; Table 1 (without dropout) in ``published``."""
    table = {"mnist-logreg-l2": ("logreg", 0.9269, 0.9238), "mnist-mlp-2x1000": ("mlp", 0.9817, 0.9833),
             "mnist-cnn": ("cnn", 0.9921, 0.9909)}
    for name, (model, adam, adamax) in table.items():
        e = get_experiment(name)
        assert (e.dataset, e.model, e.epochs, e.batch_size, e.schedule) == ("mnist", model, 20, 128, "inverse-sqrt")
        assert (e.beta_1, e.epsilon, e.optimizers, e.flip) == (0.9, 1e-8, ("adam", "adamax"), False)
        assert e.default_hyperparameters("adam")["beta_2"] == e.default_hyperparameters("adamax")["beta_2"] == 0.999
        assert dict(e.published) == {"adam": adam, "adamax": adamax}
        assert f"{adam * 100:.2f} %" in e.description and f"{adamax * 100:.2f} %" in e.description
    assert dict(get_experiment("mnist-mlp-2x1000").model_kwargs) == {"hidden": (1000, 1000), "dropout": 0.0}
    assert dict(get_experiment("mnist-logreg-l2").model_kwargs) == {"l2": 0.0}
    assert "98.43 %" in get_experiment("mnist-mlp-2x1000").description


def test_new_fields_validated():
    e = get_experiment("mnist-cnn")
    assert with_overrides(e, schedule="linear-decay", flip=True, epsilon=1e-7).schedule == "linear-decay"
    with pytest.raises(UserError, match="epsilon"):
        with_overrides(e, epsilon=-1.0)
    with pytest.raises(UserError, match="flip"):
        with_overrides(e, flip="yes")
    with pytest.raises(UserError, match="unknown optimizer 'sgd'"):
        with_overrides(e, optimizers=("sgd",))
    with pytest.raises(UserError, match="unknown grid key"):
        with_overrides(e, grid={"momentum": (0.9,)})


def test_unknown_names():
    with pytest.raises(UserError, match="unknown experiment 'mnist'.*mnist-logreg, mnist-mlp"):
        get_experiment("mnist")
    with pytest.raises(UserError, match="unknown optimizer 'sgd'"):
        get_experiment("mnist-mlp").default_hyperparameters("sgd")


def test_frozen_and_overrides():
    e = get_experiment("mnist-mlp")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.epochs = 3
    changed = with_overrides(e, epochs=3, runs=None, learning_rate=0.01, beta_2={"adam": 0.995})
    assert (changed.epochs, changed.runs, changed.learning_rate) == (3, 5, 0.01)
    assert changed.default_hyperparameters("adam") == {"learning_rate": 0.01, "beta_2": 0.995}
    assert changed.default_hyperparameters("amsgrad")["beta_2"] == 0.999  # Keras default when unset
    assert e.epochs == 50  # the registered spec is untouched
    assert with_overrides(e) == e
    with pytest.raises(UserError, match="unknown experiment field"):
        with_overrides(e, epoch=3)
    with pytest.raises(UserError, match="schedule"):
        with_overrides(e, schedule="cosine")
    with pytest.raises(UserError, match="epochs must be a positive integer"):
        with_overrides(e, epochs=0)
    with pytest.raises(UserError, match="unknown dataset"):
        Experiment(name="x", dataset="svhn", model="mlp", epochs=1, gridsearch_epochs=1)


def _committed_specs():
    """(file, the experiment entry) of every committed sidecar that records its spec's to_dict():
    train.json and each run's sidecar ("spec"), gridsearch.json ("experiment")."""
    root = Path(__file__).resolve().parents[1] / "results"
    for path in sorted([*root.glob("*/train.json"), *root.glob("*/gridsearch.json"), *root.glob("*/runs/*.json")]):
        data = json.loads(path.read_text())
        entry = data.get("experiment", data.get("spec"))
        if isinstance(entry, dict) and entry.get("name") in EXPERIMENTS:
            yield path, entry


def test_to_dict_is_what_the_committed_sidecars_hold():
    """Every registered spec's to_dict() is the one its committed results recorded (with the runs'
    own --runs/--epochs): a field added to Experiment (e.g. its claim's texts) changes no sidecar,
    so no rerun rewrites one or reports a conflict. gridsearch.json predates final_params."""
    seen = set()
    for path, entry in _committed_specs():
        spec = with_overrides(EXPERIMENTS[entry["name"]], runs=entry["runs"], epochs=entry["epochs"])
        ours = json.loads(json.dumps(spec.to_dict()))
        if path.name == "gridsearch.json":
            assert set(ours) - set(entry) <= {"final_params"}, path
            ours = {key: ours[key] for key in entry}
        assert entry == ours, path
        seen.add(entry["name"])
    assert {"mnist-logreg", "cifar10-cifarnet-searched", "mnist-mlp-mcgill-code", "mnist-vae"} <= seen
    assert "claim" not in get_experiment("mnist-logreg").to_dict() and get_experiment("mnist-logreg").claim


def test_to_dict_is_json_ready():
    data = get_experiment("mnist-mlp").to_dict()
    assert data["beta_2"] == {"adam": 0.99, "amsgrad": 0.999, "adamax": 0.999}
    assert data["model_kwargs"] == {"hidden": (100,)}
    round_trip = json.loads(json.dumps(data))
    assert round_trip["epochs"] == 50 and round_trip["model_kwargs"] == {"hidden": [100]}
    rebuilt = with_overrides(get_experiment("mnist-logreg"), **{k: v for k, v in data.items()})
    assert rebuilt == get_experiment("mnist-mlp")
    vgg = get_experiment("cifar10-vgg")
    data = json.loads(json.dumps(vgg.to_dict()))
    assert data["grid"]["learning_rate"] == [0.01, 0.001, 0.0001] and data["flip"] is True
    assert json.loads(json.dumps(get_experiment("mnist-cnn").to_dict()))["published"] == {"adam": 0.9921, "adamax": 0.9909}
    assert with_overrides(get_experiment("mnist-logreg"), **data) == vgg


def test_cli_table_fits_100_columns_with_the_optimizers_compared(capsys):
    assert main(["experiments"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    for name in NAMES:
        assert name in out
    row = next(line for line in out.splitlines() if line.startswith("mnist-mlp "))
    assert "inverse-sqrt" in row and row.endswith("adam/amsgrad")
    # Pérez's experiments compare Adam with AdaMax, not AMSGrad
    for name in ("mnist-logreg-l2", "mnist-mlp-2x1000", "mnist-cnn"):
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert row.endswith("adam/adamax") and "amsgrad" not in row


def test_cli_details_of_one_experiment(capsys):
    assert main(["experiments", "mnist-mlp", "mnist-cnn"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    mlp, cnn = out.split("\n\n")
    assert mlp.startswith("mnist-mlp\n")
    # McGill Table I defaults per optimizer, and what overrides them
    assert "adam α 0.001, β2 0.99; amsgrad α 0.001, β2 0.999" in " ".join(mlp.split())
    assert "<out>/mnist-mlp/best_params.json" in mlp
    assert "adam vs adamax" in cnn and "adamax α 0.001, β2 0.999" in " ".join(cnn.split())
    assert "99.21 %" in cnn


def test_cli_json(capsys):
    assert main(["experiments", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == NAMES
    assert data["mnist-mlp"]["beta_2"]["amsgrad"] == 0.999
    assert main(["experiments", "--json", "digits-mlp"]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["digits-mlp"]


def test_cli_unknown_name(capsys):
    assert main(["experiments", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown experiment 'nope'" in err
