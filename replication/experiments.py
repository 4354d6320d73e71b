"""The experiments as data: one frozen :class:`Experiment` per (data set, model) of the study.

Sources: Reddi, Kale & Kumar, ICLR 2018, §5 (batch 128, β1 = 0.9, β2 searched in {0.99, 0.999},
step size α/√t); McGill reproducibility study §III-B/C/D, §IV-A (50 epochs for the MNIST models,
30 for CifarNet; grid search over 30 resp. 15 epochs; 5 runs per optimizer) and Table I (tuned α
and β2). The ``digits-*`` entries are small offline demos of the same pipelines.

The CLI overrides fields with :func:`with_overrides`; the resolved spec is written next to the
results with :meth:`Experiment.to_dict`. This module imports no Keras, so listing is instant.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .datasets import DATASETS, INPUT_SCALES, SPLITS, check_protocol
from .errors import UserError
from .hyperparameters import DECAY_RATE_RANGE, is_decay_rate
from .registry import COMPARED, CLASSIFIER_LOSSES, DEFAULT_EPSILON, GENERATIVE_MODELS, OPTIMIZER_NAMES, SCHEDULES  # noqa: F401 - re-exported
from .registry import LOSSES as LOSS_NAMES
from .registry import user_optimizer_path

GRIDSEARCH_SCORES = ("loss", "accuracy")  # what picks a grid point: smallest validation loss, or highest accuracy
GRIDSEARCH_FOLDS = ("stratified", "kfold")  # shuffled StratifiedKFold (ours), or scikit-learn's unshuffled KFold
# The protocol fields (issue 27: McGill's code ran another protocol than their report describes).
# Each is left out of to_dict() and of run ids / grid-point keys while at its default, so every
# result computed before these fields existed keeps its identity.
PROTOCOL_DEFAULTS = (
    ("input_scale", "unit"),
    ("split", "official"),
    ("decay", 0.0),
    ("gridsearch_schedule", ""),
    ("gridsearch_loss", ""),
    ("gridsearch_score", "loss"),
    ("gridsearch_folds", "stratified"),
    ("early_stopping", True),
)
GRID_KEYS = ("learning_rate", "beta_2", "bias_correction")

# Keras's default β2, for an optimizer an experiment was not tuned for (a user's class included).
_KERAS_BETA_2 = 0.999

_MCGILL = "McGill reproducibility study (Bennatan, Collin & Ng Cheng Hin)"
_REDDI = "Reddi, Kale & Kumar, On the Convergence of Adam and Beyond, ICLR 2018"
_KORZENIOWSKI = "Korzeniowski, Experiments with AMSGrad (blog post, 2017)"
_PEREZ = "Pérez, Review and investigation of Adam (MNIST: LR, NN, CNN with Adam and AdaMax)"
_VAE_REPRODUCTION = "Reproducing «On The Convergence of ADAM and Beyond» (the reproduction that added a VAE)"

# Part of every run id and grid-point key whose loss is listed: a change to a loss's definition
# must never let a result computed with the old one be read back as finished. "binary" was, until
# this definition, Keras's BinaryCrossentropy, which on TensorFlow computed sigmoid cross-entropy
# of the pre-softmax logits (replication.losses says why).
LOSS_DEFINITIONS = {
    "binary": "mean over K outputs of -[y log p + (1-y) log(1-p)], p softmax probabilities clipped to [1e-7, 1-1e-7]",
}


# -- the claims of Reddi et al. the verdict table tests (replication.report.claim_verdicts) ----------
# Their texts live here, on the experiment (Experiment.claim) or, for the synthetic problem that has
# no spec, in SYNTHETIC_CLAIMS: the report, the README and docs/ read them, and keep no copy
# (tests/test_registry.py). REPORT.md writes `text`, `what` and `mcgill`; the README its `brief` and
# `mcgill_brief`.
LOSS_CLAIM = "AMSGrad reaches lower train and test loss than Adam"


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A claim of Reddi et al. as one row of the verdict table tests it, with McGill's conclusion.

    Never part of :meth:`Experiment.to_dict`, run ids or grid-point keys: rewording a claim changes
    no sidecar and recomputes nothing.
    """

    text: str  # the claim, as REPORT.md words it
    what: str  # what the row tests it on (REPORT.md's "Experiment" column)
    mcgill: str  # McGill's conclusion, as REPORT.md words it
    brief: str  # the claim and where, as the README's verdict table words it
    mcgill_brief: str  # McGill's conclusion in the README
    setting: str = ""  # the synthetic problem's setting the row tests; "" = an experiment's losses
    paper: bool = False  # the paper's own experiment: its row is in the table even before it has runs
    demo: bool = False  # demo data: its row comes after the others in REPORT.md and is not in the README


def loss_claim(what: str, mcgill: str, *, paper: bool = False, demo: bool = False) -> Claim:
    """The :data:`LOSS_CLAIM` row of an experiment: ``what`` it is called and McGill's conclusion;
    the README drops McGill's section reference."""
    return Claim(text=LOSS_CLAIM, what=what, mcgill=mcgill, brief=f"AMSGrad reaches lower train/test loss on {what}",
                 mcgill_brief=mcgill.replace(" (§V)", ""), paper=paper, demo=demo)


_SYNTHETIC_CLAIM = "AMSGrad converges on the synthetic problem and Adam does not"
# The synthetic problem (replication.synthetic): the paper's sweep, one row per setting, then §3's family.
SYNTHETIC_CLAIMS = (
    *(Claim(text=_SYNTHETIC_CLAIM, what=f"synthetic, {setting} (α/√t)", setting=setting,
            mcgill="reproduced: results virtually identical to the paper, both settings (§V)",
            brief=f"AMSGrad converges on the synthetic problem, Adam does not ({setting})", mcgill_brief="reproduced")
      for setting in ("online", "stochastic")),
    Claim(text="Adam converges to the worst point +1 on the §3 family f_t = Cx / −x",
          what="§3 family, β1 = 0, β2 = 1/(1 + C²)", setting="cyclic", mcgill="— (not run by McGill)",
          brief="Adam converges to the worst point on the §3 family", mcgill_brief="— (not run)"),
)
_MCGILL_LOSS = "AMSGrad slightly lower train loss, smaller gap than the paper (§V)"
_DEMO = "— (demo data, not in McGill)"


def loss_identity(name: str) -> dict:
    """``{"loss_definition": ...}`` for a loss whose definition changed since run ids were
    introduced, else ``{}`` (ids of the other losses stay as they were)."""
    return {"loss_definition": LOSS_DEFINITIONS[name]} if name in LOSS_DEFINITIONS else {}


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """One experiment: what to train, how long, and the default optimizer hyperparameters.

    ``beta_2``, ``model_kwargs``, ``grid`` and ``published`` are tuples of ``(key, value)`` pairs
    so the spec stays hashable and immutable; :meth:`to_dict` turns them into dicts.

    Validation is always on the test set: the trainer evaluates the whole test split after every
    epoch (Korzeniowski's "validation" curves are test-set curves too).
    """

    name: str  # CLI key and results folder, kebab-case
    dataset: str  # a name in replication.datasets.DATASETS
    model: str  # a name in replication.models.MODELS
    epochs: int  # final runs (McGill §IV-A: 50 for MNIST models, 30 for CifarNet)
    gridsearch_epochs: int  # each grid-search fit (McGill §III-D: 30, CifarNet 15)
    loss: str = "categorical"  # a name in replication.models.LOSSES
    batch_size: int = 128  # Reddi et al. §5
    beta_1: float = 0.9  # Reddi et al. §5, fixed
    schedule: str = "inverse-sqrt"  # α_t = α/√t (Reddi et al. §5), "constant" or "linear-decay"
    runs: int = 5  # repeated runs per optimizer (McGill §III-E)
    learning_rate: float = 0.001  # α, McGill Table I
    beta_2: tuple = (("adam", 0.99), ("amsgrad", 0.99), ("adamax", 0.999))  # McGill Table I
    model_kwargs: tuple = ()  # (key, value) pairs for the model builder
    epsilon: float = DEFAULT_EPSILON  # ε, Keras's default (McGill used Keras); Kingma & Ba / Pérez use 1e-8
    flip: bool = False  # left-right flip augmentation during training (Korzeniowski, CIFAR-10)
    optimizers: tuple = COMPARED  # what `replicate train` trains by default
    # The published study's own search, (hyperparameter, values) pairs; informational: the grid
    # search CLI keeps its own defaults.
    grid: tuple = ()
    published: tuple = ()  # (optimizer, test accuracy as a fraction) the source reports
    # The experiment whose grid search picks this one's α and β2 (its ``best_params.json`` under the
    # same ``--out``): a second set of final runs of the same protocol, kept apart from that
    # experiment's own. "" = this experiment's own search (or its spec values).
    params_from: str = ""
    # -- the protocol (issue 27); defaults = the protocol McGill's report describes, as we ran it --
    input_scale: str = "unit"  # "unit": pixels in [0, 1]; "raw": 0..255 as McGill's code fed them
    split: str = "official"  # "official", "mcgill-random" (MNIST) or "train-batch-5" (CIFAR-10)
    decay: float = 0.0  # d of the "time-decay" schedule α/(1 + d·k) (Keras 2's `decay`)
    gridsearch_schedule: str = ""  # the grid search's schedule; "" = `schedule`
    gridsearch_loss: str = ""  # the loss the grid-search fits minimise; "" = `loss`
    gridsearch_score: str = "loss"  # "loss": smallest validation loss wins; "accuracy": highest accuracy
    gridsearch_folds: str = "stratified"  # "stratified" (shuffled, seeded) or "kfold" (unshuffled)
    early_stopping: bool = True  # grid-search fits stop when the training loss stalls 3 epochs
    # Where the final runs' α and β2 come from: "search" = this experiment's grid search
    # (best_params.json) when it exists, else the spec; "spec" = always the spec, as McGill's code
    # trained at its param_config.yml (and logistic regression at a hard-coded 0.001) whatever its
    # search chose.
    final_params: str = "search"
    # The experiment (McGill's report's protocol) whose protocol as McGill's code ran it this one is:
    # its numbers fill the verdict table's "as McGill ran it (our rerun)" column for that row.
    code_of: str = ""
    description: str = ""
    source: str = ""
    # Its row of the verdict table (Reddi et al.'s loss claim), None = no row. Text only: left out of
    # to_dict(), so it changes no sidecar, and of == (a spec rebuilt from its to_dict() equals it).
    claim: Claim | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        def bad(message):
            raise UserError(f"experiment {self.name}: {message}")

        if self.dataset not in DATASETS:
            bad(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}")
        if self.loss not in LOSS_NAMES:
            bad(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSS_NAMES)}")
        if (self.loss == "elbo") != (self.model in GENERATIVE_MODELS):
            bad(f"loss {self.loss!r} does not fit model {self.model!r}: the elbo loss is for the "
                f"generative models ({', '.join(GENERATIVE_MODELS)}) and they take no other")
        for field_name in ("schedule", "gridsearch_schedule"):
            value = getattr(self, field_name)
            if value not in SCHEDULES and not (field_name == "gridsearch_schedule" and value == ""):
                bad(f"unknown {field_name} {value!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.gridsearch_loss not in ("", *CLASSIFIER_LOSSES) or (self.gridsearch_loss and self.loss == "elbo"):
            bad(f"gridsearch_loss {self.gridsearch_loss!r} does not fit: categorical or binary for a classifier, "
                "or empty for the final runs' loss")
        if self.gridsearch_score not in GRIDSEARCH_SCORES:
            bad(f"unknown gridsearch_score {self.gridsearch_score!r}; choose one of: {', '.join(GRIDSEARCH_SCORES)}")
        if self.gridsearch_folds not in GRIDSEARCH_FOLDS:
            bad(f"unknown gridsearch_folds {self.gridsearch_folds!r}; choose one of: {', '.join(GRIDSEARCH_FOLDS)}")
        if not isinstance(self.early_stopping, bool):
            bad(f"early_stopping must be True or False, got {self.early_stopping!r}")
        if isinstance(self.decay, bool) or not (isinstance(self.decay, (int, float)) and 0.0 <= self.decay < float("inf")):
            bad(f"decay must be a finite number >= 0, got {self.decay!r}")
        why = check_protocol(self.dataset, self.input_scale, self.split)
        if why:
            bad(why)
        for field_name in ("epochs", "gridsearch_epochs", "batch_size", "runs"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                bad(f"{field_name} must be a positive integer, got {value!r}")
        if not is_decay_rate(self.beta_1):
            bad(f"beta_1 must be in {DECAY_RATE_RANGE}, got {self.beta_1}")
        if not self.learning_rate > 0.0:
            bad(f"learning_rate must be positive, got {self.learning_rate}")
        for optimizer, value in self.beta_2:
            if not is_decay_rate(value):
                bad(f"beta_2 for {optimizer} must be in {DECAY_RATE_RANGE}, got {value}")
        if not (isinstance(self.epsilon, (int, float)) and self.epsilon >= 0.0):
            bad(f"epsilon must be a number >= 0, got {self.epsilon!r}")
        if not isinstance(self.flip, bool):
            bad(f"flip must be True or False, got {self.flip!r}")
        for optimizer in (*self.optimizers, *(name for name, _ in self.published)):
            if optimizer not in OPTIMIZER_NAMES:
                bad(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZER_NAMES)}")
        if not self.optimizers:
            bad("optimizers must name at least one optimizer")
        if self.final_params not in ("search", "spec"):
            bad(f"final_params must be 'search' or 'spec', got {self.final_params!r}")
        if self.params_from == self.name:
            bad("params_from names the experiment itself; leave it empty for its own search")
        for key, values in self.grid:
            if key not in GRID_KEYS:
                bad(f"unknown grid key {key!r}; choose among: {', '.join(GRID_KEYS)}")
            if not values:
                bad(f"grid {key} has no values")

    @property
    def builder_kwargs(self) -> tuple:
        """``model_kwargs`` as the model builder takes them: plus ``augment_flip=True`` when
        ``flip`` is on (only then, so specs without flips keep their run ids and point keys)."""
        return tuple(self.model_kwargs) + ((("augment_flip", True),) if self.flip else ())

    @property
    def search_schedule(self) -> str:
        """The grid search's schedule: ``gridsearch_schedule``, or the final runs' one."""
        return self.gridsearch_schedule or self.schedule

    @property
    def search_loss(self) -> str:
        """The loss the grid-search fits train on: ``gridsearch_loss``, or the final runs' one."""
        return self.gridsearch_loss or self.loss

    def protocol(self) -> dict:
        """The protocol fields that differ from their defaults (:data:`PROTOCOL_DEFAULTS`): what
        joins run ids and grid-point keys, so results of the default protocol keep theirs."""
        return {key: getattr(self, key) for key, default in PROTOCOL_DEFAULTS if getattr(self, key) != default}

    def default_hyperparameters(self, optimizer: str) -> dict:
        """``{"learning_rate": α, "beta_2": β2}`` for ``optimizer`` (a built-in name, or a user's
        ``module:Class`` / entry point: :func:`replication.registry.user_optimizer_path`).

        These are the tuned values (McGill Table I) used when no grid-search result is given;
        an optimizer the experiment was not tuned for gets its α and Keras's β2.
        """
        table = dict(self.beta_2)
        if optimizer not in OPTIMIZER_NAMES and user_optimizer_path(optimizer) is None:
            raise UserError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZER_NAMES)}")
        return {"learning_rate": self.learning_rate, "beta_2": table.get(optimizer, _KERAS_BETA_2)}

    def to_dict(self) -> dict:
        """A JSON-ready dict (pairs become dicts, tuples lists via ``json``)."""
        data = dataclasses.asdict(self)
        del data["claim"]  # text, not configuration: written sidecars stay as they were
        data["beta_2"] = dict(self.beta_2)
        data["model_kwargs"] = dict(self.model_kwargs)
        data["grid"] = dict(self.grid)
        data["published"] = dict(self.published)
        if not self.params_from:  # only where set: other specs' train.json stay as they were
            del data["params_from"]
        for key, default in (*PROTOCOL_DEFAULTS, ("code_of", ""), ("final_params", "search")):  # likewise
            if data[key] == default:
                del data[key]
        return data


def with_overrides(experiment: Experiment, **changes) -> Experiment:
    """``dataclasses.replace`` that skips ``None`` values (unset CLI flags); validates the result."""
    changes = {k: v for k, v in changes.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(Experiment)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise UserError(f"unknown experiment field(s) {', '.join(unknown)}; fields: {', '.join(sorted(fields))}")
    if isinstance(changes.get("beta_2"), dict):
        changes["beta_2"] = tuple(changes["beta_2"].items())
    for key in ("model_kwargs", "grid", "published"):
        if isinstance(changes.get(key), dict):
            changes[key] = tuple(changes[key].items())
    if "grid" in changes:
        changes["grid"] = tuple((k, tuple(v)) for k, v in changes["grid"])
    if isinstance(changes.get("optimizers"), list):
        changes["optimizers"] = tuple(changes["optimizers"])
    return dataclasses.replace(experiment, **changes)


# McGill §IV-B: they "proceeded with [their] experiments using the multiclass log-loss" (binary
# cross-entropy on one-hot targets) because it matched the paper's MNIST loss curves better.
MNIST_LOGREG = Experiment(
    name="mnist-logreg",
    dataset="mnist",
    model="logreg",
    loss="binary",
    epochs=50,
    gridsearch_epochs=30,
    beta_2=(("adam", 0.99), ("amsgrad", 0.99), ("adamax", 0.999)),
    description="Logistic regression on MNIST (paper Fig. 2 left/centre)",
    source=f"{_REDDI} §5; {_MCGILL} §III-C, Table I",
    claim=loss_claim("logistic regression (MNIST)", "no discernible difference in final train loss (§V)", paper=True),
)
MNIST_MLP = Experiment(
    name="mnist-mlp",
    dataset="mnist",
    model="mlp",
    loss="binary",
    epochs=50,
    gridsearch_epochs=30,
    beta_2=(("adam", 0.99), ("amsgrad", 0.999), ("adamax", 0.999)),
    model_kwargs=(("hidden", (100,)),),
    description="1-hidden-layer (100 ReLU) network on MNIST (paper Fig. 2 right)",
    source=f"{_REDDI} §5; {_MCGILL} §III-C, Table I",
    claim=loss_claim("1-hidden-layer MLP (MNIST)", _MCGILL_LOSS, paper=True),
)
# McGill §IV-A: 30 epochs for the final runs, an abridged 15-epoch search; Table I: β2 0.999.
_MCGILL_CIFAR_SETTINGS = dict(
    dataset="cifar10",
    loss="binary",
    epochs=30,
    gridsearch_epochs=15,
    beta_2=(("adam", 0.999), ("amsgrad", 0.999), ("adamax", 0.999)),
)
CIFAR10_CIFARNET = Experiment(
    name="cifar10-cifarnet",
    model="cifarnet",
    **_MCGILL_CIFAR_SETTINGS,
    description="CifarNet as McGill built it (batch norm) on CIFAR-10 (paper Fig. 3)",
    source=f"{_REDDI} §5; {_MCGILL} §III-D, Appendix 1, Table I",
    claim=loss_claim("CifarNet (CIFAR-10)", _MCGILL_LOSS, paper=True),
)
CIFAR10_CIFARNET_PAPER = Experiment(
    name="cifar10-cifarnet-paper",
    model="cifarnet-paper",
    **_MCGILL_CIFAR_SETTINGS,
    description="CifarNet as the paper describes it (6x6 conv, 2x2 pool, LRN) on CIFAR-10",
    source=f"{_REDDI} §5; hyperparameters from {_MCGILL} Table I",
    claim=loss_claim("CifarNet as the paper describes it (CIFAR-10)", "— (McGill ran the batch-norm variant)"),
)
# Our own search's choice for McGill's CifarNet (issue 11, §4.3): the same protocol as
# cifar10-cifarnet, at the α and β2 of `replicate gridsearch cifar10-cifarnet`; its own folder, so
# the runs at McGill's Table I values in results/cifar10-cifarnet/ stay as they are.
CIFAR10_CIFARNET_SEARCHED = Experiment(
    name="cifar10-cifarnet-searched",
    model="cifarnet",
    **_MCGILL_CIFAR_SETTINGS,
    params_from="cifar10-cifarnet",
    description="CifarNet as McGill built it on CIFAR-10, at our own grid search's α and β2 "
    "(results/cifar10-cifarnet/best_params.json)",
    source=f"{_REDDI} §5; {_MCGILL} §III-D, §IV-A (the search protocol), Appendix 1",
    claim=loss_claim("CifarNet at our own search's α and β2 (CIFAR-10)",
                     "— (McGill's final runs used their Table I values)"),
)
# McGill's protocol as their code ran it (issue 27; ../shared/mcgill/README.md lists each point with
# the file of tamirbennatan/Adam-Convergence that shows it): raw pixels, their random MNIST split and
# their CIFAR "test" set (training batch 5), Keras 2's multiclass log-loss on the softmax output and
# its running-mean training loss (our `loss` column), ε 1e-7 and bias correction as Keras 2.1's Adam.
# Final runs at `AWS/experiments/param_config.yml` of 3d93029 (the commit with their figures).
# The grid search as `AWS/gridsearch/tune_*.py`: Keras 2's decay 0.14, categorical cross-entropy,
# scored by validation accuracy, scikit-learn's default unshuffled 3-fold KFold, 30 epochs, no early
# stopping; their grid is ours (DEFAULT_LEARNING_RATES × DEFAULT_BETA_2S).
_MCGILL_CODE = "McGill's code (tamirbennatan/Adam-Convergence)"
_MCGILL_CODE_SEARCH = dict(
    final_params="spec",
    gridsearch_schedule="time-decay",
    decay=0.14,
    gridsearch_loss="categorical",
    gridsearch_score="accuracy",
    gridsearch_folds="kfold",
    early_stopping=False,
    input_scale="raw",
)
MNIST_LOGREG_MCGILL_CODE = Experiment(
    name="mnist-logreg-mcgill-code",
    dataset="mnist",
    model="logreg",
    loss="binary",
    epochs=50,
    gridsearch_epochs=30,
    split="mcgill-random",
    # logreg_experiments.py: LearningRateScheduler(lambda epoch: .001/np.sqrt(1 + epoch)); the
    # configured α is overwritten, so α = 0.001 whatever a search chooses.
    schedule="epoch-inverse-sqrt",
    learning_rate=0.001,
    beta_2=(("adam", 0.999), ("amsgrad", 0.999), ("adamax", 0.999)),
    code_of="mnist-logreg",
    **_MCGILL_CODE_SEARCH,
    description="mnist-logreg as McGill's code ran it: raw pixels, random 60k/10k split (seed 551), "
    "α 0.001/√(1+epoch) set per epoch, β2 0.999 (param_config.yml at 3d93029)",
    source=f"{_MCGILL_CODE}: AWS/experiments/logreg_experiments.py, models.py, param_config.yml (3d93029); "
    "data/MNIST/load_mnist.py; AWS/gridsearch/tune_logreg.py",
)
_MCGILL_CODE_MLP = dict(
    dataset="mnist",
    model="mlp",
    model_kwargs=(("hidden", (100,)),),
    loss="binary",
    epochs=35,  # their FFNN figures end at epoch 34
    gridsearch_epochs=30,
    split="mcgill-random",
    schedule="constant",  # "no learning rate discounting for NN experiments" (best_params/results.txt)
    code_of="mnist-mlp",
    **_MCGILL_CODE_SEARCH,
)
MNIST_MLP_MCGILL_CODE = Experiment(
    name="mnist-mlp-mcgill-code",
    learning_rate=0.001,
    beta_2=(("adam", 0.99), ("amsgrad", 0.999), ("adamax", 0.999)),
    **_MCGILL_CODE_MLP,
    description="mnist-mlp as McGill's code ran it: raw pixels, random split, constant α 0.001, "
    "β2 0.99 (Adam) / 0.999 (AMSGrad), 35 epochs (param_config.yml at 3d93029)",
    source=f"{_MCGILL_CODE}: AWS/experiments/ffnn_experiments.py, models.py, param_config.yml (3d93029)",
)
MNIST_MLP_MCGILL_CODE_3D52D12 = Experiment(
    name="mnist-mlp-mcgill-code-3d52d12",
    learning_rate=0.0001,
    beta_2=(("adam", 0.99), ("amsgrad", 0.999), ("adamax", 0.999)),
    **{**_MCGILL_CODE_MLP, "code_of": ""},
    description="mnist-mlp-mcgill-code at the earlier param_config.yml (3d52d12): constant α 0.0001",
    source=f"{_MCGILL_CODE}: AWS/experiments/param_config.yml (3d52d12)",
)
CIFAR10_CIFARNET_MCGILL_CODE = Experiment(
    name="cifar10-cifarnet-mcgill-code",
    dataset="cifar10",
    model="cifarnet-coded",
    loss="binary",
    epochs=30,
    gridsearch_epochs=15,
    split="train-batch-5",  # their "test" set is training batch 5 (data/CIFAR/load_cifar.py)
    schedule="constant",
    learning_rate=0.001,
    beta_2=(("adam", 0.99), ("amsgrad", 0.99), ("adamax", 0.999)),
    code_of="cifar10-cifarnet",
    **_MCGILL_CODE_SEARCH,
    description="CifarNet as McGill's code built and ran it (6x6 kernels, one pooling layer, no Dense 192), "
    "raw pixels, constant α 0.001, β2 0.99; 'test' = training images 40,000..49,999",
    source=f"{_MCGILL_CODE}: AWS/experiments/cifarnet_experiments.py, models.py, param_config.yml (3d93029); "
    "data/CIFAR/load_cifar.py",
)

# Offline demos: 1,347 training images, ~11 steps an epoch, a run takes seconds on a CPU. With
# 550 steps instead of MNIST's ~23,000, α = 0.001 under α/√t barely moves logistic regression
# (16% test accuracy after 50 epochs, measured); α = 0.01 reaches ~84% (logreg) / ~95% (mlp).
DIGITS_LOGREG = Experiment(
    learning_rate=0.01,
    name="digits-logreg",
    dataset="digits",
    model="logreg",
    loss="binary",
    epochs=50,
    gridsearch_epochs=30,
    beta_2=MNIST_LOGREG.beta_2,
    description="Demo: mnist-logreg on scikit-learn's 8x8 digits (offline, seconds)",
    source=f"scikit-learn digits; settings of mnist-logreg ({_MCGILL} Table I) but α = 0.01",
    claim=loss_claim("demo: logistic regression (8×8 digits)", _DEMO, demo=True),
)
DIGITS_MLP = Experiment(
    learning_rate=0.01,
    name="digits-mlp",
    dataset="digits",
    model="mlp",
    loss="binary",
    epochs=50,
    gridsearch_epochs=30,
    beta_2=MNIST_MLP.beta_2,
    model_kwargs=(("hidden", (100,)),),
    description="Demo: mnist-mlp on scikit-learn's 8x8 digits (offline, seconds)",
    source=f"scikit-learn digits; settings of mnist-mlp ({_MCGILL} Table I) but α = 0.01",
    claim=loss_claim("demo: MLP (8×8 digits)", _DEMO, demo=True),
)

# Korzeniowski trained every point of his grid in full (5 runs, 150 epochs) with Lasagne's
# categorical cross-entropy, α decayed linearly to 0 and left-right flips; no separate search, so
# gridsearch_epochs = epochs. α/β2 defaults: the middle of his grid and Keras's β2.
_KORZENIOWSKI_GRID = (
    ("learning_rate", (1e-2, 1e-3, 1e-4)),
    ("beta_2", (0.99, 0.999)),
    ("bias_correction", (True, False)),
)
_KORZENIOWSKI_RESULT = (
    "Korzeniowski: validation accuracy depends little on the optimizer (ADAM or AMSGrad ahead by a tiny "
    "margin depending on the setting; AMSGrad lower validation *loss*, ADAM overfits more); "
    "CifarNet ≈ 78 % validation accuracy for both optimizers; no meaningful gap"
)
_KORZENIOWSKI_SETTINGS = dict(
    dataset="cifar10",
    epochs=150,
    gridsearch_epochs=150,
    schedule="linear-decay",
    flip=True,
    beta_2=(("adam", 0.999), ("amsgrad", 0.999), ("adamax", 0.999)),
    grid=_KORZENIOWSKI_GRID,
)
CIFAR10_SMALLVGG = Experiment(
    name="cifar10-smallvgg",
    model="small-vgg",
    **_KORZENIOWSKI_SETTINGS,
    description=f"SmallVgg (32-64-128 filters, 2 convs a block, BN) on CIFAR-10. {_KORZENIOWSKI_RESULT}",
    source=f"{_KORZENIOWSKI}, setups 'SmallVgg'; architecture details chosen in models.build_small_vgg",
)
CIFAR10_VGG = Experiment(
    name="cifar10-vgg",
    model="vgg",
    **_KORZENIOWSKI_SETTINGS,
    description=f"Vgg (64-128-256 filters, 2-2-3 convs, BN) on CIFAR-10. {_KORZENIOWSKI_RESULT}",
    source=f"{_KORZENIOWSKI}, setup 'Vgg'; architecture details chosen in models.build_vgg",
)
# Pérez §4: 20 epochs, α/√t, batch 128, β1 0.9, β2 0.999, ε 1e-8, Adam and AdaMax, no search
# reported (gridsearch_epochs = epochs). α is not stated: 0.001, Kingma & Ba's default for Adam.
# Loss: softmax cross-entropy (his §2 objectives). `published`: Table 1, without dropout.
_PEREZ_SETTINGS = dict(
    dataset="mnist",
    loss="categorical",
    epochs=20,
    gridsearch_epochs=20,
    schedule="inverse-sqrt",
    epsilon=1e-8,
    optimizers=("adam", "adamax"),
    beta_2=(("adam", 0.999), ("amsgrad", 0.999), ("adamax", 0.999)),
    source=f"{_PEREZ}, §4 and Table 1",
)
MNIST_LOGREG_L2 = Experiment(
    name="mnist-logreg-l2",
    model="logreg",
    model_kwargs=(("l2", 0.0),),  # Pérez §4: λ = 0 in all experiments
    published=(("adam", 0.9269), ("adamax", 0.9238)),
    description="Pérez's L2-regularised logistic regression on MNIST (λ = 0 as he ran it). "
    "Pérez Table 1 test accuracy: LR 92.69 % (Adam) / 92.38 % (AdaMax)",
    **_PEREZ_SETTINGS,
)
MNIST_MLP_2X1000 = Experiment(
    name="mnist-mlp-2x1000",
    model="mlp",
    model_kwargs=(("hidden", (1000, 1000)), ("dropout", 0.0)),
    published=(("adam", 0.9817), ("adamax", 0.9833)),
    description="Two hidden layers of 1000 ReLU on MNIST. Pérez Table 1 test accuracy: NN 98.17–98.43 % "
    "(Adam 98.17 % / 98.43 % with dropout; AdaMax 98.33 % / 98.14 % with dropout)",
    **_PEREZ_SETTINGS,
)
MNIST_CNN = Experiment(
    name="mnist-cnn",
    model="cnn",
    model_kwargs=(("dropout", 0.0),),
    published=(("adam", 0.9921), ("adamax", 0.9909)),
    description="Pérez's CNN (2 × [5x5 conv, 3x3/2 max-pool, ReLU], dense 1000) on MNIST. "
    "Pérez Table 1 test accuracy: CNN 99.21 % (Adam) / 99.09 % (AdaMax), same with dropout",
    **_PEREZ_SETTINGS,
)
# The VAE of the reproduction that added one (its Table 1: α = 0.002/√t, β1 = 0.5, β2 = 0.999,
# batch 128, 100 epochs; a convolutional VAE on CelebA, which cannot be had here): Kingma &
# Welling's dense VAE on MNIST (models.build_vae), with the same optimizer settings. No grid search:
# the values are the reproduction's own. Loss = −ELBO per example in nats.
MNIST_VAE = Experiment(
    name="mnist-vae",
    dataset="mnist",
    model="vae",
    model_kwargs=(("hidden", 512), ("latent", 20)),
    loss="elbo",
    epochs=100,
    gridsearch_epochs=100,
    schedule="inverse-sqrt",
    learning_rate=0.002,
    beta_1=0.5,
    beta_2=(("adam", 0.999), ("amsgrad", 0.999), ("adamax", 0.999)),
    description="Dense VAE (784-512-20-512-784) on MNIST with the VAE settings of the reproduction that "
    "added one (α = 0.002/√t, β1 = 0.5, β2 = 0.999, batch 128, 100 epochs; theirs ran on CelebA). "
    "They report AMSGrad reaching a lower loss than Adam over 100 epochs, both approaching the same value",
    source=f"{_VAE_REPRODUCTION}, Table 1 and §2.2.4",
    claim=loss_claim("VAE (MNIST; the reproduction that added one ran it on CelebA)",
                     "— (not in McGill; that reproduction saw AMSGrad reach a lower loss over 100 epochs)"),
)

EXPERIMENTS = {
    e.name: e
    for e in (
        MNIST_LOGREG,
        MNIST_MLP,
        CIFAR10_CIFARNET,
        CIFAR10_CIFARNET_PAPER,
        CIFAR10_CIFARNET_SEARCHED,
        MNIST_LOGREG_MCGILL_CODE,
        MNIST_MLP_MCGILL_CODE,
        MNIST_MLP_MCGILL_CODE_3D52D12,
        CIFAR10_CIFARNET_MCGILL_CODE,
        DIGITS_LOGREG,
        DIGITS_MLP,
        CIFAR10_SMALLVGG,
        CIFAR10_VGG,
        MNIST_LOGREG_L2,
        MNIST_MLP_2X1000,
        MNIST_CNN,
        MNIST_VAE,
    )
}


for _spec in EXPERIMENTS.values():
    if _spec.params_from and _spec.params_from not in EXPERIMENTS:
        raise UserError(f"experiment {_spec.name}: params_from names no experiment ({_spec.params_from!r})")
    if _spec.code_of and _spec.code_of not in EXPERIMENTS:
        raise UserError(f"experiment {_spec.name}: code_of names no experiment ({_spec.code_of!r})")


def loss_claims() -> list[Experiment]:
    """The registered experiments with a verdict row (:attr:`Experiment.claim`), in the table's
    order: registration order, the demos' rows last."""
    return sorted((spec for spec in EXPERIMENTS.values() if spec.claim is not None), key=lambda spec: spec.claim.demo)


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``; :class:`UserError` listing the names otherwise."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UserError(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}") from None
