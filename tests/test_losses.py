"""Every loss against a float64 NumPy transcription of its formula, on the paths training uses.

Keras's TensorFlow backend once swapped our binary cross-entropy for sigmoid cross-entropy of the
pre-softmax logits (``replication.losses`` says how): a test against Keras's own loss could not see
it. So the golden values here come from the formulas, and go through ``model.evaluate`` and
``model.fit`` of models that end in ``softmax``/``sigmoid`` activations, the path that broke, on
whatever backend the suite runs under (CI runs it under TensorFlow and JAX).
"""
from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from gridsearch.estimator import cross_entropy
from gridsearch.stacked import MemberLoss, MemberSumLoss
from replication.losses import (
    CLIP_EPSILON,
    bernoulli_log_loss,
    categorical_log_loss,
    get_loss,
    get_metrics,
    multiclass_log_loss,
)
from replication.models import build_logreg, build_mlp


# -- NumPy transcriptions (float64) of the formulas --------------------------------------------------
def np_clip(p):
    return np.clip(np.asarray(p, dtype=np.float64), CLIP_EPSILON, 1.0 - CLIP_EPSILON)


def np_categorical(y, p):
    """-Σ_k y_k log p_k per row."""
    return -np.sum(y * np.log(np_clip(p)), axis=-1)


def np_multiclass(y, p):
    """McGill's multiclass log-loss per row: -(1/K) Σ_k [y_k log p_k + (1-y_k) log(1-p_k)]."""
    p = np_clip(p)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=-1)


def np_bernoulli(x, p):
    p = np_clip(p)
    return -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=-1)


def np_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def np_multiclass_grad_logits(y, z):
    """d/dz of the batch mean of the multiclass log-loss of softmax(z) (no clip active)."""
    p = np_softmax(z)
    k = y.shape[1]
    dl_dp = -(y / p - (1 - y) / (1 - p)) / k
    # softmax Jacobian: dp_i/dz_j = p_i (δ_ij − p_j)
    dl_dz = p * (dl_dp - np.sum(dl_dp * p, axis=1, keepdims=True))
    return dl_dz / len(y)


def np_categorical_grad_logits(y, z):
    return (np_softmax(z) - y) / len(y)


NP_LOSSES = {"categorical": np_categorical, "binary": np_multiclass}
NP_GRADS = {"categorical": np_categorical_grad_logits, "binary": np_multiclass_grad_logits}


def _data(n=64, d=20, k=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = np.eye(k, dtype="float32")[rng.integers(0, k, n)]
    return x, y


def _softmax_model(d=20, k=10, seed=0, scale=1.0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(k, activation="softmax")])
    kernel, bias = model.get_weights()
    model.set_weights([kernel * scale, bias])
    return model


def _logits(model, x):
    kernel, bias = [w.astype(np.float64) for w in model.get_weights()]
    return x.astype(np.float64) @ kernel + bias


# -- the functions -----------------------------------------------------------------------------------
def test_functions_match_formulas_including_the_clip():
    rng = np.random.default_rng(1)
    y = np.eye(7, dtype="float32")[rng.integers(0, 7, 40)]
    p = rng.dirichlet(np.ones(7), size=40).astype("float32")
    p[0] = 0.0
    p[0, 3] = 1.0  # exact 0 and 1: the clip keeps the loss finite (-log 1e-7 ≈ 16.1)
    for fn, ref in ((categorical_log_loss, np_categorical), (multiclass_log_loss, np_multiclass),
                    (bernoulli_log_loss, np_bernoulli)):
        got = keras.ops.convert_to_numpy(fn(y, p))
        assert got.shape == (40,)
        # atol: 1 − 1e-7 rounds to 1 − 1.19e-7 in float32, so −log of the upper clip is 1.19e-7
        np.testing.assert_allclose(got, ref(y, p), rtol=2e-6, atol=1e-6)
    assert np.isfinite(keras.ops.convert_to_numpy(multiclass_log_loss(y, p))).all()
    # hand value: K = 3, one row
    yy = np.array([[0.0, 1.0, 0.0]], dtype="float32")
    pp = np.array([[0.2, 0.7, 0.1]], dtype="float32")
    hand = -(math.log(0.8) + math.log(0.7) + math.log(0.9)) / 3
    assert float(multiclass_log_loss(yy, pp)[0]) == pytest.approx(hand, rel=1e-6)
    assert float(categorical_log_loss(yy, pp)[0]) == pytest.approx(-math.log(0.7), rel=1e-6)


def test_loss_classes_average_over_the_batch_and_name_themselves():
    y, p = np.eye(3, dtype="float32")[[0, 2]], np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], "float32")
    assert float(get_loss("binary")(y, p)) == pytest.approx(np_multiclass(y, p).mean(), rel=1e-6)
    assert float(get_loss("categorical")(y, p)) == pytest.approx(np_categorical(y, p).mean(), rel=1e-6)
    assert type(get_loss("binary")).__name__ == "MulticlassLogLoss"
    assert not isinstance(get_loss("binary"), keras.losses.BinaryCrossentropy)


# -- through model.evaluate and model.fit of softmax models: the path that broke ------------------------
@pytest.mark.parametrize("loss", ["binary", "categorical"])
def test_evaluate_on_a_softmax_model_is_the_formula_on_its_probabilities(loss):
    x, y = _data()
    model = _softmax_model(scale=3.0)
    model.compile(loss=get_loss(loss), metrics=get_metrics(loss), jit_compile=False)
    result = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    p = np_softmax(_logits(model, x))
    assert result["loss"] == pytest.approx(NP_LOSSES[loss](y, p).mean(), rel=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y.argmax(1)))
    if loss == "binary":
        # ... and not sigmoid cross-entropy of the logits (what Keras's class computes on TF)
        z = _logits(model, x)
        sigmoid_ce = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
        assert abs(result["loss"] - sigmoid_ce) > 0.1


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("loss", ["binary", "categorical"])
def test_fit_reports_the_formula_and_steps_along_its_gradient(loss, jit_compile):
    """One full-batch SGD step: the loss fit reports (computed before the update) equals the formula
    at the initial weights, and the update equals −lr × the formula's analytic gradient."""
    x, y = _data()
    model = _softmax_model(scale=2.0)
    kernel0, bias0 = [w.astype(np.float64) for w in model.get_weights()]
    lr = 0.5
    model.compile(optimizer=keras.optimizers.SGD(lr), loss=get_loss(loss), jit_compile=jit_compile)
    logs = model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0).history
    z = x.astype(np.float64) @ kernel0 + bias0
    assert logs["loss"][0] == pytest.approx(NP_LOSSES[loss](y, np_softmax(z)).mean(), rel=1e-5)
    dz = NP_GRADS[loss](y, z)
    kernel1, bias1 = model.get_weights()
    np.testing.assert_allclose(kernel1, kernel0 - lr * x.T.astype(np.float64) @ dz, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bias1, bias0 - lr * dz.sum(axis=0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss", ["binary", "categorical"])
def test_project_models_evaluate_to_the_formula(loss):
    """The experiments' own builders (softmax heads behind hidden layers) on image-shaped inputs."""
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(50, 8, 8)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 50)]
    for build in (build_logreg, build_mlp):
        keras.utils.set_random_seed(0)
        model = build(input_shape=(8, 8), num_classes=10)
        model.compile(loss=get_loss(loss), jit_compile=False)
        value = model.evaluate(x, y, batch_size=25, verbose=0)
        p = keras.ops.convert_to_numpy(model(x, training=False)).astype(np.float64)
        assert value == pytest.approx(NP_LOSSES[loss](y, p).mean(), rel=1e-5)


def test_bernoulli_term_on_a_sigmoid_model_and_the_elbo():
    """The same trap for sigmoid outputs: the reconstruction term of a model ending in a sigmoid
    activation, and −ELBO = reconstruction + KL on a concatenated output, against the formulas."""
    rng = np.random.default_rng(4)
    x = (rng.uniform(size=(32, 6)) > 0.5).astype("float32")
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,))
    probs = keras.layers.Dense(6, activation="sigmoid")(inputs)
    direct = keras.Model(inputs, probs)
    direct.compile(loss=lambda t, p: bernoulli_log_loss(t, p), jit_compile=False)
    p = keras.ops.convert_to_numpy(direct(x)).astype(np.float64)
    assert direct.evaluate(x, x, batch_size=32, verbose=0) == pytest.approx(np_bernoulli(x, p).mean(), rel=1e-5)

    kl = keras.layers.Dense(1, activation="softplus")(inputs)
    vae_like = keras.Model(inputs, keras.layers.Concatenate()([probs, kl]))
    vae_like.compile(loss=get_loss("elbo"), metrics=get_metrics("elbo"), jit_compile=False)
    out = keras.ops.convert_to_numpy(vae_like(x)).astype(np.float64)
    result = vae_like.evaluate(x, x, batch_size=32, verbose=0, return_dict=True)
    recon = np_bernoulli(x, out[:, :-1])
    assert result["reconstruction"] == pytest.approx(recon.mean(), rel=1e-5)
    assert result["kl"] == pytest.approx(out[:, -1].mean(), rel=1e-5)
    assert result["loss"] == pytest.approx((recon + out[:, -1]).mean(), rel=1e-5)


# -- the grid search: stacked members and the scorer ------------------------------------------------------
@pytest.mark.parametrize("loss", ["binary", "categorical"])
def test_stacked_member_losses_are_the_formula_per_member(loss):
    rng = np.random.default_rng(5)
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 30)]
    logits = rng.normal(scale=3.0, size=(30, 4, 10))
    # a softmax activation output, as the stacked model's last layer produces
    p = keras.activations.softmax(keras.ops.convert_to_tensor(logits.astype("float32")))
    p64 = np_softmax(logits)
    per_member = np.stack([NP_LOSSES[loss](y, p64[:, j]) for j in range(4)], axis=1)  # (30, 4)
    total = MemberSumLoss(loss)(y, p)
    assert float(total) == pytest.approx(per_member.mean(axis=0).sum(), rel=1e-5)
    metric = MemberLoss(4, loss)
    metric.update_state(y, p)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(metric.result()), per_member.mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize("loss", ["binary", "categorical"])
def test_scorer_is_the_formula(loss):
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(10), size=50)
    proba[0, :] = 0.0
    proba[0, 1] = 1.0
    onehot = np.eye(10)[rng.integers(0, 10, 50)]
    assert cross_entropy(onehot, proba, loss) == pytest.approx(NP_LOSSES[loss](onehot, proba).mean(), rel=1e-12)
    assert math.isnan(cross_entropy(onehot, np.full_like(proba, np.nan), loss))
