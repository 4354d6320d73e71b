"""Every name the suite keeps a list of, in one place, importable without Keras or TensorFlow.

Adding an optimizer, a schedule or a loss means adding its name here and its implementation where
the others live; the class tables (``replication.optimizers.OPTIMIZERS``,
``gridsearch.estimator.SEARCH_OPTIMIZERS``, ``gridsearch.stacked.STACKED_OPTIMIZERS``) are built
from :data:`OPTIMIZER_NAMES`, and ``tests/test_registry.py`` fails on any other hand-kept copy.

The history schema (the columns of ``history.csv``) lives in :mod:`replication.runfiles`, with the
reader and writer of those files; it is Keras-free too.

A researcher's own optimizer is not listed here: it is named ``module:Class`` or registered under
the entry-point group :data:`OPTIMIZER_ENTRY_POINTS` (:func:`user_optimizer_path`), and loaded by
``replication.optimizers.get_optimizer_class``.
"""
from __future__ import annotations

__all__ = [
    "OPTIMIZER_NAMES",
    "OPTIMIZER_LABELS",
    "OPTIMIZER_COLORS",
    "OPTIMIZER_LIGHT_COLORS",
    "COMPARED",
    "SCHEDULES",
    "DEFAULT_EPSILON",
    "LOSSES",
    "CLASSIFIER_LOSSES",
    "CLIP_EPSILON",
    "GENERATIVE_MODELS",
    "CONV_MODELS",
    "XLA_MIN_STEPS",
    "OPTIMIZER_ENTRY_POINTS",
    "is_builtin_optimizer",
    "optimizer_label",
    "user_optimizer_path",
    "entry_point_optimizers",
]

# The optimizers the suite implements (replication.optimizers): Reddi et al.'s two, and AdaMax
# (Kingma & Ba §7.1), which Pérez compares with Adam. Each with how figures and tables show it: its
# name as the papers write it, its colour (the paper's: Adam blue, AMSGrad red; AdaMax green) and the
# lighter shade of the same colour for runs without bias correction.
_OPTIMIZERS = (
    ("adam", "Adam", "#1f4e9c", "#8fb0e3"),
    ("amsgrad", "AMSGrad", "#c0262d", "#ef9a9e"),
    ("adamax", "AdaMax", "#2a8a3e", "#9ad3a6"),
)
OPTIMIZER_NAMES = tuple(name for name, *_display in _OPTIMIZERS)
OPTIMIZER_LABELS = {name: label for name, label, *_colors in _OPTIMIZERS}
OPTIMIZER_COLORS = {name: color for name, _label, color, _light in _OPTIMIZERS}
OPTIMIZER_LIGHT_COLORS = {name: light for name, _label, _color, light in _OPTIMIZERS}
# The pair the paper's claims compare (Reddi et al.: AMSGrad fixes Adam): what `train`, `gridsearch`
# and the Python API compare unless told otherwise, and what a user's optimizer is compared with.
COMPARED = ("adam", "amsgrad")

# Learning-rate schedules (replication.optimizers.make_schedule): α/√t (Reddi et al. §5), constant,
# linear decay to 0 (Korzeniowski), α/√(1 + epoch), Keras 2's time decay α/(1 + d·k) (McGill's code).
SCHEDULES = ("inverse-sqrt", "constant", "linear-decay", "epoch-inverse-sqrt", "time-decay")

# The optimizers' ε (added to √v) unless an experiment says otherwise: Keras's default, which
# McGill used; Kingma & Ba and Pérez use 1e-8 (their experiments set it).
DEFAULT_EPSILON = 1e-7

# Training losses (replication.losses.get_loss); the classifiers take the first two, the VAE "elbo".
LOSSES = ("categorical", "binary", "elbo")
CLASSIFIER_LOSSES = tuple(name for name in LOSSES if name != "elbo")
# Probabilities are clipped to [ε, 1 − ε] in every loss and in the grid search's scorer: Keras 2's
# backend.epsilon(), the clip of its cross-entropies.
CLIP_EPSILON = 1e-7

# Models trained with the "elbo" loss, and only with it (replication.models).
GENERATIVE_MODELS = ("vae",)

# -- the XLA policy (replication.backend.auto_jit_compile) --------------------------------------
# On TensorFlow, jit_compile="auto" XLA-compiles a dense model's fit of at least XLA_MIN_STEPS
# optimizer steps: compilation costs a few seconds per model (every run and every grid-search fit
# builds one), the compiled step saves ~1 ms a step on a CPU (benchmarks/bench_gridsearch.py), so it
# pays from a few thousand steps (every MNIST run and search fit), not for digits' few hundred.
# The trainer had 2000 and the grid search 3000 for this one trade-off, each set by hand in its own
# commit (03292e3, 6ed087f) with no measurement between the two; no committed unit has 2000–2999
# steps, so the one value changes none of them.
XLA_MIN_STEPS = 2000
# Convolutional models never get XLA on TensorFlow: its CPU convolutions made a CifarNet epoch 2.2x
# slower (benchmarks/bench_cifarnet.py, docs/performance.md). On JAX every model is compiled.
CONV_MODELS = ("cifarnet", "cifarnet-paper", "cifarnet-coded", "cnn", "vgg", "small-vgg")

# -- a researcher's own optimizer ------------------------------------------------------------------
# Packages register optimizers as entry points of this group: name = "module:Class".
OPTIMIZER_ENTRY_POINTS = "replication.optimizers"


def is_builtin_optimizer(name) -> bool:
    """Whether ``name`` is one of :data:`OPTIMIZER_NAMES`."""
    return name in OPTIMIZER_NAMES


def optimizer_label(name) -> str:
    """How figures and tables name optimizer ``name``: :data:`OPTIMIZER_LABELS`' label for a built-in
    one, else ``name`` as the user gave it (``mypkg.opt:MyAdam``, or an entry point's name): two
    classes of one name in two modules stay apart in the report, and the label is what `train` took."""
    return OPTIMIZER_LABELS.get(name, str(name))


def entry_point_optimizers() -> dict:
    """``{name: "module:Class"}`` of the optimizers installed packages register under
    :data:`OPTIMIZER_ENTRY_POINTS` (read from their metadata; nothing is imported)."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=OPTIMIZER_ENTRY_POINTS)}


def user_optimizer_path(name) -> str | None:
    """``"module:Class"`` of a user's optimizer named ``name``: ``name`` itself when it is written
    ``module:Class``, the value of the entry point of that name otherwise; None for a built-in
    name or a name that is neither (an unknown optimizer)."""
    if not isinstance(name, str) or is_builtin_optimizer(name):
        return None
    if ":" in name:
        module, _, attribute = name.partition(":")
        return name if module and attribute else None
    return entry_point_optimizers().get(name)
