"""Every Keras object the package defines or builds, through one serialization round trip.

The round trip is Keras's own ``TestCase.run_class_serialization_test``: ``config = get_config()``
must be JSON (tuples kept apart from lists, as Keras checks), ``type(obj).from_config(config)`` must
give back the same config and the same attribute names, and so must
``serialize_keras_object`` → JSON → ``deserialize_keras_object`` (which also needs the class to be
registered). Equal configs are not enough when a field is missing from both (a dropped
``total_steps`` is silently re-defaulted, or refused), so each object also has to *behave* the same
once rebuilt: optimizers take the same first updates (exactly, float32), schedules give the same
learning rates, layers, models, losses, metrics and constraints the same outputs.

Covered (the ids below): the optimizers of :mod:`replication.optimizers` (Adam, AMSGrad, AdaMax ×
bias correction × every schedule of ``make_schedule``), the schedules and the ``ClipValue``
constraint; the losses and metrics of :mod:`replication.losses`; the custom layers and every model
builder of :mod:`replication.models` (McGill's coded CifarNet included); the grid search's
``Scheduled*`` optimizers (:mod:`gridsearch.estimator`) and the stacked engine's layer, model,
``Stacked*`` optimizers, loss and metric (:mod:`gridsearch.stacked`). Callbacks are not Keras
serializable objects and are left out.
"""
from __future__ import annotations

import json
import types

import keras
import numpy as np
import pytest

from gridsearch.estimator import SEARCH_OPTIMIZERS
from gridsearch.stacked import (
    STACKED_OPTIMIZERS,
    MemberLoss,
    MemberSumLoss,
    StackedDense,
    build_stacked_model,
)
from replication.losses import (
    CategoricalLogLoss,
    MulticlassLogLoss,
    NegativeELBO,
    get_loss,
    get_metrics,
)
from replication.models import MODELS, GaussianSample, LocalResponseNormalization
from replication.optimizers import (
    SCHEDULES,
    ClipValue,
    InverseSqrtDecay,
    LinearDecay,
    PerEpochInverseSqrt,
    TimeDecay,
    make_optimizer,
)

# -- Keras's round trip ------------------------------------------------------------------------------


def _tuple_encode(value):
    # keras.src.testing.test_case.to_json_with_tuples: a tuple must come back a tuple, not a list.
    if isinstance(value, tuple):
        return {"__class__": "tuple", "__value__": [_tuple_encode(v) for v in value]}
    if isinstance(value, list):
        return [_tuple_encode(v) for v in value]
    if isinstance(value, dict):
        return {key: _tuple_encode(v) for key, v in value.items()}
    return value


def _tuple_decode(value):
    if isinstance(value, dict):
        if value.get("__class__") == "tuple" and set(value) == {"__class__", "__value__"}:
            return tuple(_tuple_decode(v) for v in value["__value__"])
        return {key: _tuple_decode(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_tuple_decode(v) for v in value]
    return value


def to_json(value):
    """Canonical JSON text (sorted keys, tuples marked); raises if ``value`` is not JSON-able."""
    return json.dumps(_tuple_encode(value), sort_keys=True, indent=1, allow_nan=False)


def from_json(text):
    return _tuple_decode(json.loads(text))


def _names(obj):
    return set(dir(obj)) - {"__annotations__"}


def round_trip(obj):
    """Keras's ``run_class_serialization_test``; returns the two rebuilt objects (``from_config``,
    ``deserialize_keras_object``), each made right after the same global seed as ``obj``."""
    cls = type(obj)
    config = obj.get_config()
    config_json = to_json(config)
    names = _names(obj)

    keras.utils.set_random_seed(0)
    rebuilt = cls.from_config(from_json(config_json))
    assert type(rebuilt) is cls
    assert to_json(rebuilt.get_config()) == config_json
    assert _names(rebuilt) == names

    serialized_json = to_json(keras.saving.serialize_keras_object(obj))
    keras.utils.set_random_seed(0)
    revived = keras.saving.deserialize_keras_object(from_json(serialized_json))
    assert type(revived) is cls
    assert to_json(revived.get_config()) == config_json
    assert _names(revived) == names
    return rebuilt, revived


# -- same behaviour once rebuilt -----------------------------------------------------------------------

X0 = np.array([[0.5, -1.0, 2.0], [-0.25, 0.75, -1.5]], dtype="float32")  # (members K = 2, units 3)
GRADS = [np.array(g, dtype="float32") for g in (
    [[0.3, -0.2, 1.0], [-0.7, 0.1, 0.4]],
    [[-0.1, 0.5, 0.8], [0.2, -0.9, 0.05]],
    [[1.2, 0.05, -0.3], [0.6, 0.3, -1.1]],
)]


def first_updates(opt):
    """The variable after each of the first three ``apply_gradients`` (float32, fixed gradients)."""
    var = keras.Variable(X0.copy(), dtype="float32")
    values = []
    for g in GRADS:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        values.append(np.array(keras.ops.convert_to_numpy(var.value)))
    return values


def same_updates(a, b):
    want = first_updates(a)
    assert not np.array_equal(want[-1], X0), "the updates must move the variable"
    for step, (x, y) in enumerate(zip(want, first_updates(b)), start=1):
        np.testing.assert_array_equal(y, x, err_msg=f"update {step} differs")


SCHEDULE_STEPS = 20  # total_steps of the schedule-only cases: compared at 0, 1, 10 and 19


def same_rates(a, b):
    for step in (0, 1, 10, SCHEDULE_STEPS - 1):
        assert float(b(step)) == float(a(step)), f"learning rate at step {step}"


def _numpy(value):
    return [_numpy(v) for v in value] if isinstance(value, (list, tuple)) else keras.ops.convert_to_numpy(value)


def _assert_equal_outputs(x, y):
    if isinstance(x, list):
        assert len(x) == len(y)
        for u, v in zip(x, y):
            _assert_equal_outputs(u, v)
    else:
        np.testing.assert_array_equal(y, x)


def same_outputs(*inputs):
    """Layers and models: same weights in, same outputs out (inference mode)."""
    def check(a, b):
        for layer in (a, b):  # build both (a sampling layer draws once in each)
            layer(*inputs, training=False)
        b.set_weights(a.get_weights())
        _assert_equal_outputs(_numpy(a(*inputs, training=False)), _numpy(b(*inputs, training=False)))
    return check


def same_values(*inputs):
    """Losses and constraints: called on the same tensors."""
    def check(a, b):
        np.testing.assert_array_equal(_numpy(b(*inputs)), _numpy(a(*inputs)))
    return check


def same_results(*inputs):
    """Metrics: the same result after the same ``update_state`` calls."""
    def check(a, b):
        for metric in (a, b):
            for batch in inputs:
                metric.update_state(*batch)
        np.testing.assert_array_equal(_numpy(b.result()), _numpy(a.result()))
    return check


# -- data for the checks -----------------------------------------------------------------------------
_rng = np.random.default_rng(0)
ONEHOT = np.eye(4, dtype="float32")[[0, 3, 1, 2, 3]]  # 5 examples, 4 classes
PROBA = _rng.dirichlet(np.ones(4), size=5).astype("float32")
PROBA_K = _rng.dirichlet(np.ones(4), size=(5, 2)).astype("float32")  # (batch, members, classes)
PIXELS = _rng.uniform(size=(5, 6)).astype("float32")
VAE_OUT = np.concatenate([_rng.uniform(0.01, 0.99, size=(5, 6)), _rng.uniform(0, 3, size=(5, 1))], 1).astype("float32")
FEATURES = _rng.normal(size=(5, 8)).astype("float32")
FEATURES_K = _rng.normal(size=(5, 2, 8)).astype("float32")
IMAGES = _rng.uniform(size=(2, 8, 8, 6)).astype("float32")
GAUSS = [_rng.normal(size=(5, 3)).astype("float32"), _rng.normal(size=(5, 3)).astype("float32")]

# -- the objects ---------------------------------------------------------------------------------
HYPER = dict(beta_1=0.8, beta_2=0.95, epsilon=1e-5)  # not the defaults, so a dropped field shows
TOTAL_STEPS = 4  # linear decay over the three updates: factors 1, 3/4, 1/2
STEPS_PER_EPOCH = 2
DECAY = 0.14
OPTIMIZER_NAMES = ("adam", "amsgrad", "adamax")
BIAS = (True, False)
# The grid search's optimizers take no steps_per_epoch, so not epoch-inverse-sqrt.
SEARCH_SCHEDULES = tuple(s for s in SCHEDULES if s != "epoch-inverse-sqrt")


def _bc(bias_correction):
    return "corrected" if bias_correction else "uncorrected"


CASES = []


def case(case_id, make, check):
    CASES.append(pytest.param(make, check, id=case_id))


for _name in OPTIMIZER_NAMES:
    for _bias in BIAS:
        for _schedule in SCHEDULES:
            case(f"optimizers.{_name}-{_bc(_bias)}-{_schedule}",
                 lambda n=_name, b=_bias, s=_schedule: make_optimizer(
                     n, 0.02, s, total_steps=TOTAL_STEPS, steps_per_epoch=STEPS_PER_EPOCH, decay=DECAY,
                     bias_correction=b, **HYPER),
                 same_updates)
        for _schedule in SEARCH_SCHEDULES:
            case(f"estimator.Scheduled-{_name}-{_bc(_bias)}-{_schedule}",
                 lambda n=_name, b=_bias, s=_schedule: SEARCH_OPTIMIZERS[n](
                     learning_rate=0.02, schedule=s, total_steps=TOTAL_STEPS, decay=DECAY, bias_correction=b,
                     **HYPER),
                 same_updates)
            case(f"stacked.Stacked-{_name}-{_bc(_bias)}-{_schedule}",
                 lambda n=_name, b=_bias, s=_schedule: STACKED_OPTIMIZERS[n](
                     [0.02, 0.005], [0.95, 0.99], schedule=s, total_steps=TOTAL_STEPS, decay=DECAY,
                     bias_correction=b, beta_1=0.8, epsilon=1e-5),
                 same_updates)

case("optimizers.InverseSqrtDecay", lambda: InverseSqrtDecay(0.3), same_rates)
case("optimizers.LinearDecay", lambda: LinearDecay(0.3, SCHEDULE_STEPS), same_rates)
case("optimizers.PerEpochInverseSqrt", lambda: PerEpochInverseSqrt(0.3, 3), same_rates)
case("optimizers.TimeDecay", lambda: TimeDecay(0.3, DECAY), same_rates)
case("optimizers.ClipValue", lambda: ClipValue(-0.5, 0.25), same_values(FEATURES))

case("losses.CategoricalLogLoss", CategoricalLogLoss, same_values(ONEHOT, PROBA))
case("losses.MulticlassLogLoss", MulticlassLogLoss, same_values(ONEHOT, PROBA))
case("losses.NegativeELBO", NegativeELBO, same_values(PIXELS, VAE_OUT))
for _loss in ("categorical", "binary"):
    case(f"losses.get_metrics-{_loss}", lambda l=_loss: get_metrics(l)[0], same_results((ONEHOT, PROBA)))
for _i, _term in enumerate(("reconstruction", "kl")):
    case(f"losses.get_metrics-elbo-{_term}", lambda i=_i: get_metrics("elbo")[i], same_results((PIXELS, VAE_OUT)))

case("models.LocalResponseNormalization", LocalResponseNormalization, same_outputs(IMAGES))
case("models.LocalResponseNormalization-custom",
     lambda: LocalResponseNormalization(depth_radius=2, bias=2.0, alpha=1e-3, beta=0.5, name="lrn"),
     same_outputs(IMAGES))
case("models.GaussianSample", lambda: GaussianSample(seed=3, name="sample"), same_outputs(GAUSS))

# Every builder at a small input (the configurations the experiments use: flips, L2, dropout).
MODEL_CASES = {
    "logreg": dict(input_shape=(8, 8), num_classes=4),
    "logreg-l2-flip": dict(input_shape=(8, 8), num_classes=4, l2=1e-3, augment_flip=True),
    "mlp": dict(input_shape=(8, 8), num_classes=4, hidden=(5, 3), dropout=0.5),
    "cifarnet": dict(input_shape=(8, 8, 6), num_classes=4),
    "cifarnet-paper": dict(input_shape=(8, 8, 6), num_classes=4, augment_flip=True),
    "cifarnet-coded": dict(input_shape=(8, 8, 6), num_classes=4),
    "cnn": dict(input_shape=(8, 8), num_classes=4, filters=(2, 3), dense=5, dropout=0.5),
    "vgg": dict(input_shape=(8, 8, 6), num_classes=4, filters=(2, 3, 4), dense=5),
    "small-vgg": dict(input_shape=(8, 8, 6), num_classes=4, augment_flip=True),
    "vae": dict(input_shape=(8, 8), num_classes=4, hidden=5, latent=2),
}
assert {key.split("-l2")[0] for key in MODEL_CASES} >= set(MODELS), "a builder is missing here"
for _key, _kwargs in MODEL_CASES.items():
    _model = _key if _key in MODELS else _key.split("-l2")[0]
    _image = IMAGES if len(_kwargs["input_shape"]) == 3 else IMAGES[..., 0]
    case(f"models.build-{_key}", lambda m=_model, k=_kwargs: MODELS[m](**k), same_outputs(_image))

case("stacked.StackedDense", lambda: StackedDense(2, 3, "relu", name="dense"), same_outputs(FEATURES))
case("stacked.StackedDense-member-inputs", lambda: StackedDense(2, 3, "softmax", name="dense"),
     same_outputs(FEATURES_K))
_SPEC = types.SimpleNamespace(name="mlp", model="mlp", builder_kwargs=(), model_kwargs=(("hidden", (5,)),))
case("stacked.build_stacked_model", lambda: build_stacked_model(_SPEC, (8,), 4, 2), same_outputs(FEATURES))
for _loss in ("categorical", "binary"):
    case(f"stacked.MemberSumLoss-{_loss}", lambda l=_loss: MemberSumLoss(l), same_values(ONEHOT, PROBA_K))
    case(f"stacked.MemberLoss-{_loss}", lambda l=_loss: MemberLoss(2, l),
         same_results((ONEHOT, PROBA_K), (ONEHOT[:3], PROBA_K[1:4])))


# -- the test ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,check", CASES)
def test_round_trip(make, check):
    keras.utils.set_random_seed(0)
    obj = make()
    rebuilt, revived = round_trip(obj)
    for other in (rebuilt, revived):
        keras.utils.set_random_seed(0)
        check(make(), other)  # a fresh original each time: optimizers and metrics keep state


def test_every_schedule_and_loss_is_covered():
    ids = [p.id for p in CASES]
    for name in OPTIMIZER_NAMES:
        for schedule in SCHEDULES:
            assert f"optimizers.{name}-corrected-{schedule}" in ids
    for loss in ("categorical", "binary", "elbo"):
        assert type(get_loss(loss)).__name__ in {i.split(".", 1)[1] for i in ids}
