"""The training losses, each written once from its formula on probabilities with ``keras.ops``.

Why not Keras's own loss classes. The models end in ``softmax`` (the VAE's decoder in
``sigmoid``), and on the TensorFlow backend Keras's ``softmax``/``sigmoid`` activations store their
*inputs* on the output tensor (``_keras_logits``); ``keras.losses.BinaryCrossentropy`` and
``CategoricalCrossentropy`` then silently compute the loss from those logits instead of from the
probabilities they are given. For categorical cross-entropy that is the same function (minus the
clipping); for binary cross-entropy on a softmax output it is a *different* function: sigmoid
cross-entropy of the pre-softmax logits. JAX and torch compute the documented formula. Keras 2,
which McGill used, computed both on the (clipped) probabilities. Written here with ``ops.clip`` /
``ops.log`` on the probabilities, no backend shortcut can swap the function: the loss is the same
on every backend, in the trainer, in both grid-search engines and in the scorer.

Every loss clips probabilities to [ε, 1 − ε], ε = 1e-7, as Keras 2's ``binary_crossentropy`` and
``categorical_crossentropy`` did (so a probability of exactly 0 or 1 costs at most −log ε ≈ 16.1,
and its gradient is 0 beyond the clip). The per-example functions return one value per row (the
last axis is reduced); the :class:`keras.losses.Loss` classes average them over the batch.
"""
from __future__ import annotations

import keras
from keras import ops

from .errors import UserError

__all__ = [
    "CLIP_EPSILON",
    "LOSSES",
    "LOSS_DEFINITIONS",
    "categorical_log_loss",
    "multiclass_log_loss",
    "bernoulli_log_loss",
    "CategoricalLogLoss",
    "MulticlassLogLoss",
    "NegativeELBO",
    "reconstruction_term",
    "kl_term",
    "get_loss",
    "get_metrics",
    "loss_identity",
]

from .registry import CLIP_EPSILON, LOSSES  # noqa: E402 - the names and the clip live in the registry

# LOSS_DEFINITIONS / loss_identity live in replication.experiments (importable without Keras).
from .experiments import LOSS_DEFINITIONS, loss_identity  # noqa: E402


def _clipped(y_true, y_pred):
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    return y_true, ops.clip(y_pred, CLIP_EPSILON, 1.0 - CLIP_EPSILON)


def categorical_log_loss(y_true, y_pred):
    """Categorical cross-entropy per example: ``-Σ_k y_k log p_k`` over the last axis, p clipped
    to [1e-7, 1 − 1e-7] (Keras 2)."""
    y_true, p = _clipped(y_true, y_pred)
    return -ops.sum(y_true * ops.log(p), axis=-1)


def multiclass_log_loss(y_true, y_pred):
    """McGill's "multiclass log-loss" (§IV-B) per example: binary cross-entropy of each of the K
    outputs against its one-hot target, *averaged* over the K outputs (the last axis)::

        -(1/K) Σ_k [y_k log p_k + (1 − y_k) log(1 − p_k)],   p clipped to [1e-7, 1 − 1e-7].

    This is Keras 2's ``binary_crossentropy`` loss on the softmax probabilities, which McGill used
    (mean over the last axis, as Keras's loss does; McGill's sum over k is K times this: the same
    minimiser, gradients scaled by 1/K)."""
    y_true, p = _clipped(y_true, y_pred)
    return -ops.mean(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p), axis=-1)


def bernoulli_log_loss(x, p):
    """−log p(x | p) of Bernoulli means ``p`` per example, *summed* over the last axis (the
    pixels): ``-Σ_i [x_i log p_i + (1 − x_i) log(1 − p_i)]``, p clipped as above."""
    x, p = _clipped(x, p)
    return -ops.sum(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p), axis=-1)


@keras.saving.register_keras_serializable(package="replication")
class CategoricalLogLoss(keras.losses.Loss):
    """Batch mean of :func:`categorical_log_loss` (one-hot targets, probabilities)."""

    def __init__(self, name="categorical_log_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return categorical_log_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="replication")
class MulticlassLogLoss(keras.losses.Loss):
    """Batch mean of :func:`multiclass_log_loss`: McGill's multiclass log-loss (one-hot targets,
    softmax probabilities). Not ``keras.losses.BinaryCrossentropy``: on TensorFlow that class
    computes sigmoid cross-entropy of the pre-softmax logits (module docstring)."""

    def __init__(self, name="multiclass_log_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return multiclass_log_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="replication")
def reconstruction_term(y_true, y_pred):
    """The VAE's −log p(x | z) per example (nats): :func:`bernoulli_log_loss` of the pixels x
    (``y_true``, the flattened image) under the decoder's means (``y_pred[:, :-1]``)."""
    return bernoulli_log_loss(y_true, y_pred[:, :-1])


@keras.saving.register_keras_serializable(package="replication")
def kl_term(y_true, y_pred):
    """KL(q(z | x) ‖ p(z)) per example (nats), the VAE model's last output column."""
    return y_pred[:, -1]


@keras.saving.register_keras_serializable(package="replication")
class NegativeELBO(keras.losses.Loss):
    """−ELBO = reconstruction + KL per example (nats), averaged over the batch: the VAE's loss."""

    def __init__(self, name="negative_elbo", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return reconstruction_term(y_true, y_pred) + kl_term(y_true, y_pred)


def get_loss(name: str) -> keras.losses.Loss:
    """The training loss ``name`` (one of :data:`LOSSES`):

    - ``"categorical"``: :class:`CategoricalLogLoss`, ``-Σ_k y_k log p_k`` per example;
    - ``"binary"``: :class:`MulticlassLogLoss`, McGill's multiclass log-loss, the mean over the K
      outputs of their binary cross-entropies;
    - ``"elbo"``: :class:`NegativeELBO`, the VAE's loss (targets: the flattened inputs).

    The classifiers' take one-hot targets and softmax probabilities; every loss is averaged over
    the batch and clips probabilities to [1e-7, 1 − 1e-7].
    """
    if name == "categorical":
        return CategoricalLogLoss()
    if name == "binary":
        return MulticlassLogLoss()
    if name == "elbo":
        return NegativeELBO()
    raise UserError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")


def get_metrics(loss: str) -> list:
    """What the trainer logs beside the loss: categorical accuracy (argmax: no logits shortcut
    can change it) for the classifiers; for the ELBO its two terms, ``reconstruction`` and ``kl``
    (their sum is the loss)."""
    if loss == "elbo":
        return [keras.metrics.MeanMetricWrapper(reconstruction_term, name="reconstruction"),
                keras.metrics.MeanMetricWrapper(kl_term, name="kl")]
    return [keras.metrics.CategoricalAccuracy(name="accuracy")]
