"""replication.experiments and `replicate experiments`: the registry holds the study's settings."""
import dataclasses
import json

import pytest

from replication.cli import main
from replication.errors import UserError
from replication.experiments import EXPERIMENTS, Experiment, get_experiment, with_overrides

NAMES = ["mnist-logreg", "mnist-mlp", "cifar10-cifarnet", "cifar10-cifarnet-paper", "digits-logreg", "digits-mlp"]

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
    for name in NAMES:
        e = get_experiment(name)
        # Reddi et al. §5: batch 128, beta_1 0.9, alpha/sqrt(t); McGill: 5 runs per optimizer.
        assert (e.batch_size, e.beta_1, e.schedule, e.runs) == (128, 0.9, "inverse-sqrt", 5)
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


def test_to_dict_is_json_ready():
    data = get_experiment("mnist-mlp").to_dict()
    assert data["beta_2"] == {"adam": 0.99, "amsgrad": 0.999, "adamax": 0.999}
    assert data["model_kwargs"] == {"hidden": (100,)}
    round_trip = json.loads(json.dumps(data))
    assert round_trip["epochs"] == 50 and round_trip["model_kwargs"] == {"hidden": [100]}
    rebuilt = with_overrides(get_experiment("mnist-logreg"), **{k: v for k, v in data.items()})
    assert rebuilt == get_experiment("mnist-mlp")


def test_cli_table(capsys):
    assert main(["experiments"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    row = next(line for line in out.splitlines() if line.startswith("mnist-mlp "))
    assert "0.001/0.99" in row and "0.001/0.999" in row and "inverse-sqrt" in row


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
