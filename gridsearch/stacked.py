"""The stacked engine: all grid points of one optimizer trained on a fold at once, as one Keras model.

Why. The GridSearchCV engine fits one small Keras model per (grid point, fold): on a CPU the MNIST
logistic regression spends its time on per-step overhead and the MLP on 128×784×100 matrix
products, which run far below the machine's speed, and every fit traces and compiles anew. But the
fits of one fold differ *only* in α and β2: GridSearchCV gives them the same training rows, the
same seed, hence the same initial weights and the same batch order. So K of them can be one model
whose layers hold K independent weight sets (:class:`StackedDense`, weights shaped
``(..., K, units)``): the first layer's K products with the shared input become one wide matrix
product, the whole fold is traced and compiled once, and each member still follows its own
trajectory exactly.

What each member gets, as its GridSearchCV fit would (``tests/test_stacked.py`` checks that both
engines' scores agree):

* the same fold (``StratifiedKFold(cv, shuffle=True, random_state=seed)``), initial weights (the
  experiment's own builder under ``keras.utils.set_random_seed(seed)``, copied into every member)
  and batch order (Keras's shuffling under the same seed);
* its own loss, the batch mean (the model's loss is the sum over members, so the gradient for
  member k is that of its own loss), and its own optimizer: the very ``update_rule`` of
  :mod:`replication.optimizers` with α and β2 given per member (:class:`StackedAdam` & co.);
* McGill's early stopping, by the same Keras callbacks the GridSearchCV engine uses (patience 3
  on the epoch's training loss; stop after a non-finite loss), run per member on the member's
  own epoch loss (:class:`MemberLoss`); a member that stops is scored on its weights at that
  epoch (later updates to it are discarded);
* the same scorer arithmetic (:func:`gridsearch.estimator.cross_entropy` on float64
  probabilities) on the validation fold and on the training fold.

What differs: the order of floating-point sums inside the fused products (scores agree to about
1e-6 relative after a few epochs, not bitwise), and ``fit_time`` / ``score_time`` are the fold's
wall time divided evenly among its members.

Supported: the dense models (``logreg`` without L2, ``mlp`` without dropout, no flip
augmentation); :func:`why_not_stackable` says why another spec is not, and the search then runs
GridSearchCV.
"""
from __future__ import annotations

import math
import time
import types

import keras
import numpy as np
from keras import layers, ops

from replication import stops
from replication.hyperparameters import DECAY_RATE_RANGE, is_decay_rate
from replication.optimizers import OPTIMIZERS, AdaMax, Adam, AMSGrad, make_schedule
from replication.registry import OPTIMIZER_NAMES

from .estimator import accuracy, cross_entropy, fit_callbacks, predict_proba_eager

__all__ = [
    "StackedDense",
    "StackedAdam",
    "StackedAMSGrad",
    "StackedAdaMax",
    "STACKED_OPTIMIZERS",
    "MemberLoss",
    "MemberSumLoss",
    "MemberEarlyStopping",
    "why_not_stackable",
    "build_stacked_model",
    "layer_sizes",
    "stack_weights",
    "fit_fold",
]

_DENSE_MODELS = ("logreg", "mlp")


def why_not_stackable(spec, optimizers=()):
    """``None`` if the stacked engine can train ``spec``'s model with ``optimizers``, else the reason
    (one phrase). It stacks the built-in optimizers only: their per-member α and β2 are written into
    each class (:class:`_PerMember`), which an arbitrary user's class cannot be."""
    own = [name for name in optimizers if name not in OPTIMIZER_NAMES]
    if own:
        return f"it stacks only the built-in optimizers ({', '.join(OPTIMIZER_NAMES)}), not {', '.join(own)}"
    kwargs = dict(spec.builder_kwargs)
    if spec.model not in _DENSE_MODELS:
        return f"model {spec.model!r} is not one of the dense models ({', '.join(_DENSE_MODELS)})"
    if kwargs.get("l2"):
        return "L2 regularisation is on"
    if kwargs.get("dropout"):
        return "dropout is on"
    if kwargs.get("augment_flip"):
        return "flip augmentation is on"
    return None


# -- layers ----------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="gridsearch")
class StackedDense(layers.Layer):
    """``members`` independent ``Dense(units, activation)`` layers evaluated at once.

    Weights: kernel ``(in, members, units)``, bias ``(members, units)``: the member axis is always
    second to last, which is how :class:`StackedAdam` & co. broadcast per-member hyperparameters.
    Input ``(batch, in)`` is shared by every member (the first layer: one ``(batch, in) × (in,
    members·units)`` product); input ``(batch, members, in)`` is member k's own activations.
    Output ``(batch, members, units)``.
    """

    def __init__(self, members, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.members = int(members)
        self.units = int(units)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        # Zeros: the stacked engine copies the per-point model's initial weights in (stack_weights).
        self.kernel = self.add_weight(name="kernel", shape=(fan_in, self.members, self.units), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(self.members, self.units), initializer="zeros")

    def call(self, x):
        if len(x.shape) == 2:
            fan_in = self.kernel.shape[0]
            flat = ops.reshape(self.kernel, (fan_in, self.members * self.units))
            h = ops.reshape(ops.matmul(x, flat), (-1, self.members, self.units))
        else:
            h = ops.einsum("bki,iku->bku", x, self.kernel)
        return self.activation(h + self.bias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.members, self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"members": self.members, "units": self.units,
                       "activation": keras.activations.serialize(self.activation)})
        return config


def layer_sizes(spec, input_shape, num_classes):
    """``[inputs, hidden..., classes]`` of ``spec``'s dense model (as its builder makes it)."""
    hidden = dict(spec.model_kwargs or ()).get("hidden", (100,)) if spec.model == "mlp" else ()
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    return [int(np.prod(input_shape)), *map(int, hidden), int(num_classes)]


def build_stacked_model(spec, input_shape, num_classes, members):
    """``members`` copies of ``spec``'s dense model (flattened input) as one Keras model whose
    output is ``(batch, members, num_classes)`` softmax probabilities."""
    reason = why_not_stackable(spec)
    if reason:
        raise ValueError(f"{spec.name} cannot be stacked: {reason}")
    sizes = layer_sizes(spec, input_shape, num_classes)
    inputs = keras.Input(shape=(sizes[0],), name="image")
    x = inputs
    for i, units in enumerate(sizes[1:-1], start=1):
        x = StackedDense(members, units, "relu", name=f"hidden{i}")(x)
    outputs = StackedDense(members, sizes[-1], "softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name=f"stacked_{spec.model}")


def stack_weights(weights, members):
    """One model's Dense weights (kernels ``(in, units)``, biases ``(units,)``) repeated into the
    ``(..., members, units)`` layout of :class:`StackedDense`."""
    stacked = []
    for w in weights:
        w = np.asarray(w)
        stacked.append(np.broadcast_to(np.expand_dims(w, -2), w.shape[:-1] + (members,) + w.shape[-1:]).copy())
    return stacked


# -- optimizers with per-member α and β2 ----------------------------------------------------------
class _PerMember:
    """Mixin: α and β2 given per member (sequences of length K) for variables laid out
    ``(..., K, units)``; β1, ε, bias correction and the schedule are shared.

    The maths is the parent class's ``update_rule``; only the hyperparameter tensors change:
    ``_beta(2, ...)`` returns a ``(K, 1)`` column (1 − β2 formed in float64 first, as for a single
    model), and the learning rate is the schedule's factor (``α = 1``: 1/√t under inverse-sqrt)
    times each member's α.
    """

    def __init__(self, learning_rates, beta_2s, schedule="constant", total_steps=None, decay=None, **kwargs):
        rates = np.asarray(learning_rates, dtype=np.float64).reshape(-1)
        betas = np.asarray(beta_2s, dtype=np.float64).reshape(-1)
        if rates.shape != betas.shape or rates.size == 0:
            raise ValueError("give one learning rate and one beta_2 per member")
        if not (np.all(np.isfinite(rates)) and np.all(rates > 0)):
            raise ValueError(f"learning rates must be positive and finite, got {rates.tolist()}")
        if not all(is_decay_rate(float(b)) for b in betas):
            raise ValueError(f"beta_2 values must be in {DECAY_RATE_RANGE}, got {betas.tolist()}")
        super().__init__(learning_rate=make_schedule(1.0, schedule, total_steps=total_steps, decay=decay), beta_2=float(betas[0]),
                         **kwargs)
        self.member_learning_rates = rates
        self.member_beta_2s = betas
        self.schedule = schedule
        self.total_steps = total_steps  # the schedule's arguments, so that from_config rebuilds it
        self.decay = decay

    @staticmethod
    def _column(values, like):
        return ops.convert_to_tensor(np.reshape(values, (-1, 1)), dtype=like.dtype)

    def _beta(self, which, like, complement=False):
        if which != 2:
            return super()._beta(which, like, complement)
        return self._column(1.0 - self.member_beta_2s if complement else self.member_beta_2s, like)

    def update_step(self, gradient, variable, learning_rate):
        rate = ops.cast(learning_rate, variable.dtype) * self._column(self.member_learning_rates, variable)
        super().update_step(gradient, variable, rate)

    def get_config(self):
        config = super().get_config()
        config.update({"learning_rates": self.member_learning_rates.tolist(),
                       "beta_2s": self.member_beta_2s.tolist(), "schedule": self.schedule,
                       "total_steps": self.total_steps, "decay": self.decay})
        for key in ("learning_rate", "beta_2"):
            config.pop(key, None)
        return config


@keras.saving.register_keras_serializable(package="gridsearch")
class StackedAdam(_PerMember, Adam):
    """:class:`replication.optimizers.Adam` with per-member α and β2 (see :class:`_PerMember`)."""


@keras.saving.register_keras_serializable(package="gridsearch")
class StackedAMSGrad(_PerMember, AMSGrad):
    """:class:`replication.optimizers.AMSGrad` with per-member α and β2 (see :class:`_PerMember`)."""


@keras.saving.register_keras_serializable(package="gridsearch")
class StackedAdaMax(_PerMember, AdaMax):
    """:class:`replication.optimizers.AdaMax` with per-member α and β2 (see :class:`_PerMember`)."""


# Built from the registry's names: each built-in optimizer's stacked subclass.
_STACKED = {cls.__bases__[-1]: cls for cls in (StackedAdam, StackedAMSGrad, StackedAdaMax)}
STACKED_OPTIMIZERS = {name: _STACKED[OPTIMIZERS[name]] for name in OPTIMIZER_NAMES}


# -- per-member loss, metric and early stopping -------------------------------------------------
def _member_losses(loss, y_true, y_pred):
    """``(batch, K)``: the experiment's loss of every member, from one-hot ``y_true (batch, C)``
    and probabilities ``y_pred (batch, K, C)`` (Keras's cross-entropies, clipping included)."""
    from replication.models import get_loss

    target = ops.broadcast_to(ops.expand_dims(ops.cast(y_true, y_pred.dtype), 1), ops.shape(y_pred))
    return get_loss(loss).call(target, y_pred)  # the trainer's own loss, unreduced


@keras.saving.register_keras_serializable(package="gridsearch")
class MemberSumLoss(keras.losses.Loss):
    """Sum over members of each member's batch-mean loss: the gradient with respect to member
    k's weights is exactly the gradient of member k's own loss."""

    def __init__(self, loss="categorical", name=None, **kwargs):
        super().__init__(name=name or f"member_sum_{loss}", **kwargs)
        self.loss = loss

    def call(self, y_true, y_pred):
        return ops.sum(_member_losses(self.loss, y_true, y_pred), axis=-1)

    def get_config(self):
        return {**super().get_config(), "loss": self.loss}


@keras.saving.register_keras_serializable(package="gridsearch")
class MemberLoss(keras.metrics.Metric):
    """Each member's training loss over the epoch, computed as Keras's loss tracker does for one
    model (Σ batch mean × batch size / Σ batch size); ``result()`` is a ``(K,)`` vector, which
    reaches callbacks as ``logs["member_loss"]``."""

    def __init__(self, members, loss="categorical", name="member_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.members = int(members)
        self.loss = loss
        self.total = self.add_variable(shape=(self.members,), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        losses = _member_losses(self.loss, y_true, y_pred)
        batch = ops.cast(ops.shape(losses)[0], self.dtype)
        self.total.assign(self.total + ops.cast(ops.mean(losses, axis=0), self.dtype) * batch)
        self.count.assign(self.count + batch)

    def result(self):
        return self.total / self.count

    def reset_state(self):
        self.total.assign(ops.zeros((self.members,), dtype=self.dtype))
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "members": self.members, "loss": self.loss}


class MemberEarlyStopping(keras.callbacks.Callback):
    """The GridSearchCV engine's fit callbacks (:func:`gridsearch.estimator.fit_callbacks`: stop on
    a non-finite loss, Keras's ``EarlyStopping`` on the training loss) run once per member, each on
    a stand-in model that sees only that member's epoch loss. When a member stops its weights are
    copied out (``snapshots``) and its ``epochs_run`` frozen; training ends when all have stopped."""

    def __init__(self, members, early_stopping=True):
        super().__init__()
        self.members = int(members)
        self.early_stopping = early_stopping

    def on_train_begin(self, logs=None):
        self.views = [types.SimpleNamespace(stop_training=False) for _ in range(self.members)]
        self.rules = []
        for view in self.views:
            callbacks = fit_callbacks(self.early_stopping)
            for callback in callbacks:
                callback.set_model(view)
                callback.on_train_begin()
            self.rules.append(callbacks)
        self.epochs_run = np.zeros(self.members, dtype=int)
        self.snapshots = {}

    def on_epoch_end(self, epoch, logs=None):
        losses = np.asarray((logs or {})["member_loss"], dtype=np.float64).reshape(-1)
        stopping = []
        for k, (view, callbacks) in enumerate(zip(self.views, self.rules)):
            if k in self.snapshots:
                continue
            self.epochs_run[k] = epoch + 1
            for callback in callbacks:
                callback.on_epoch_end(epoch, {"loss": float(losses[k])})
            if view.stop_training:
                stopping.append(k)
        if stopping:
            weights = self.model.get_weights()
            for k in stopping:
                self.snapshots[k] = [w[..., k, :].copy() for w in weights]
        if len(self.snapshots) == self.members:
            self.model.stop_training = True

    def restore_stopped(self):
        """Put every stopped member's weights back as they were when it stopped."""
        if not self.snapshots:
            return
        weights = self.model.get_weights()
        for k, snapshot in self.snapshots.items():
            for w, s in zip(weights, snapshot):
                w[..., k, :] = s
        self.model.set_weights(weights)


# -- one fold ---------------------------------------------------------------------------------------
def fit_fold(spec, optimizer, members, x_train, y_train, x_val, y_val, *, epochs, seed, bias_correction=None,
             early_stopping=True, jit_compile=False, steps_per_execution=1, callbacks=()):
    """Train ``members`` (``[(α, β2), ...]``) of ``optimizer`` on one fold at once and score them.

    ``x_*`` are float32 with any example shape (flattened here), ``y_*`` one-hot float32. Returns
    one dict per member: ``val_loss``, ``train_loss`` (NaN if diverged), ``epochs_run``,
    ``fit_time`` and ``score_time`` (the fold's wall times divided by the number of members).
    Extra Keras ``callbacks`` go to ``fit`` (the benchmark times epochs with one).
    """
    from replication.models import MODELS

    k = len(members)
    input_shape = tuple(x_train.shape[1:])
    num_classes = int(y_train.shape[1])
    x_train = x_train.reshape(len(x_train), -1)
    x_val = x_val.reshape(len(x_val), -1)
    started = time.perf_counter()

    # The per-point model's initial weights: KerasClassifier seeds, then calls the builder.
    keras.utils.set_random_seed(int(seed))
    single = MODELS[spec.model](input_shape=input_shape, num_classes=num_classes, **dict(spec.builder_kwargs))
    initial = single.get_weights()
    del single
    model = build_stacked_model(spec, input_shape, num_classes, k)
    model.set_weights(stack_weights(initial, k))

    extra = {} if bias_correction is None else {"bias_correction": bool(bias_correction)}
    # linear-decay reaches 0 right after this fit's last step, as in the trainer.
    total_steps = int(epochs) * math.ceil(len(x_train) / int(spec.batch_size))
    opt = STACKED_OPTIMIZERS[optimizer](
        [m[0] for m in members], [m[1] for m in members], schedule=spec.schedule, total_steps=total_steps,
        decay=float(getattr(spec, "decay", 0.0)),
        beta_1=float(spec.beta_1), epsilon=float(spec.epsilon), **extra,
    )
    model.compile(optimizer=opt, loss=MemberSumLoss(spec.loss), metrics=[MemberLoss(k, spec.loss)],
                  jit_compile=bool(jit_compile), steps_per_execution=int(steps_per_execution))
    stopper = MemberEarlyStopping(k, early_stopping=early_stopping)
    # As OneHotKerasClassifier: seed again right before fit, so the batch order is the same.
    keras.utils.set_random_seed(int(seed))
    model.fit(x_train, y_train, batch_size=int(spec.batch_size), epochs=int(epochs), shuffle=True,
              verbose=0, callbacks=[stopper, stops.keras_callback(), *callbacks])
    stopper.restore_stopped()
    fitted = time.perf_counter()

    val_proba = predict_proba_eager(model, x_val)
    train_proba = predict_proba_eager(model, x_train)
    results = []
    for j in range(k):
        results.append({
            "val_loss": cross_entropy(y_val, val_proba[:, j, :], spec.loss),
            "train_loss": cross_entropy(y_train, train_proba[:, j, :], spec.loss),
            "epochs_run": int(stopper.epochs_run[j]),
            "val_accuracy": accuracy(y_val, val_proba[:, j, :]),
            "train_accuracy": accuracy(y_train, train_proba[:, j, :]),
        })
    scored = time.perf_counter()
    for result in results:
        result["fit_time"] = (fitted - started) / k
        result["score_time"] = (scored - fitted) / k
    keras.backend.clear_session()
    return results
