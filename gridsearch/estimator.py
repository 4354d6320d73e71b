"""The estimator the grid search tunes: scikeras's ``KerasClassifier`` around the trainer's builders.

* ``optimizer=`` is one of our optimizer classes (:mod:`replication.optimizers`), made
  schedule-aware (:class:`ScheduledAdam` & co.): the searched ``optimizer__learning_rate`` is the
  paper's α and, under ``optimizer__schedule="inverse-sqrt"``, the optimizer runs α_t = α/√t
  (Reddi et al. §5, McGill §IV) exactly as the trainer does.
* Hyperparameters are routed the scikeras way: ``optimizer__learning_rate``,
  ``optimizer__beta_2``, ``optimizer__bias_correction``; grids are plain dicts of those names.
* Targets are always one-hot (:class:`OneHotKerasClassifier`): both of the project's losses
  (categorical and binary cross-entropy) take one-hot targets, while scikeras one-hot encodes
  only for categorical cross-entropy.
* Early stopping as McGill (§IV-A): a fit stops when the training loss has not decreased for 3
  epochs; a NaN/inf training loss stops it after that epoch (:class:`StopOnNonFiniteLoss`) and the point is scored
  NaN, i.e. *diverged* (see :class:`ValidationLoss`).
"""
from __future__ import annotations

import logging
import math
import sys
import time

import keras
import numpy as np
from keras import ops
from scikeras.utils.transformers import ClassifierLabelEncoder
from scikeras.wrappers import KerasClassifier

from replication import stops
from replication.optimizers import OPTIMIZERS, AdaMax, Adam, AMSGrad, make_schedule
from replication.registry import CLIP_EPSILON, OPTIMIZER_NAMES
from replication.progress import format_seconds

# A fresh model per fit means fresh tf.functions; TensorFlow's "retracing" warning about that is
# expected here and not actionable by users.
logging.getLogger("tensorflow").setLevel(logging.ERROR)

__all__ = [
    "ScheduledAdam",
    "ScheduledAMSGrad",
    "ScheduledAdaMax",
    "SEARCH_OPTIMIZERS",
    "OneHotKerasClassifier",
    "ValidationLoss",
    "ValidationAccuracy",
    "accuracy",
    "make_estimator",
    "fit_callbacks",
    "EpochLines",
    "predict_proba_eager",
    "EARLY_STOPPING_PATIENCE",
]

# McGill §IV-A: "if the loss did not decrease for three consecutive epochs, the run was terminated".
EARLY_STOPPING_PATIENCE = 3
# Keras clips probabilities to [ε, 1−ε] inside its cross-entropies; the scorer does the same so the
# validation loss it reports is the loss the trainer would log.
_EPSILON = CLIP_EPSILON


class _Scheduled:
    """Mixin: ``learning_rate`` is the schedule's initial α; ``schedule`` picks the schedule.

    ``schedule="inverse-sqrt"`` wraps a number α in :class:`InverseSqrtDecay` (α_t = α/√t),
    ``"constant"`` keeps it. A ``LearningRateSchedule`` passed in (e.g. by ``from_config``) is
    used as is. Module-level subclasses (not a class factory) so they pickle into loky/Dask workers.
    """

    def __init__(self, learning_rate=0.001, schedule="constant", total_steps=None, decay=None, **kwargs):
        is_schedule = isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule)
        initial = getattr(learning_rate, "initial_learning_rate", None) if is_schedule else float(learning_rate)
        if not is_schedule:
            # linear-decay needs the fit's step count (epochs × steps per epoch): the search routes
            # it as optimizer__total_steps; without it make_schedule raises.
            # time-decay (McGill's code: Keras 2's decay=0.14) takes d as optimizer__decay.
            learning_rate = make_schedule(learning_rate, schedule, total_steps=total_steps, decay=decay)
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.schedule = schedule
        self.total_steps = total_steps
        self.decay = decay
        self.initial_learning_rate = initial  # α, whatever the schedule

    def get_config(self):
        config = super().get_config()
        config["schedule"] = self.schedule
        config["total_steps"] = self.total_steps
        config["decay"] = self.decay
        return config


@keras.saving.register_keras_serializable(package="gridsearch")
class ScheduledAdam(_Scheduled, Adam):
    """:class:`replication.optimizers.Adam` with ``schedule`` (see :class:`_Scheduled`)."""


@keras.saving.register_keras_serializable(package="gridsearch")
class ScheduledAMSGrad(_Scheduled, AMSGrad):
    """:class:`replication.optimizers.AMSGrad` with ``schedule`` (see :class:`_Scheduled`)."""


@keras.saving.register_keras_serializable(package="gridsearch")
class ScheduledAdaMax(_Scheduled, AdaMax):
    """:class:`replication.optimizers.AdaMax` with ``schedule`` (see :class:`_Scheduled`)."""


# Built from the registry's names: each built-in optimizer's schedule-aware subclass.
_SCHEDULED = {cls.__bases__[-1]: cls for cls in (ScheduledAdam, ScheduledAMSGrad, ScheduledAdaMax)}
SEARCH_OPTIMIZERS = {name: _SCHEDULED[OPTIMIZERS[name]] for name in OPTIMIZER_NAMES}
_USER_SCHEDULED = {}  # a user's optimizer class -> its schedule-aware subclass


def search_optimizer_class(name):
    """The class the grid search fits with for optimizer ``name``: :data:`SEARCH_OPTIMIZERS`'
    for a built-in; for a user's class (``module:Class`` or an entry point, see
    :func:`replication.optimizers.get_optimizer_class`) its subclass with :class:`_Scheduled`,
    so α follows the experiment's schedule as for the built-ins. A :class:`UserError` when the
    class takes no ``learning_rate`` and ``beta_2``, the two hyperparameters the search varies."""
    if name in SEARCH_OPTIMIZERS:
        return SEARCH_OPTIMIZERS[name]
    from replication.errors import UserError
    from replication.optimizers import accepted_kwargs, get_optimizer_class

    cls = get_optimizer_class(name)
    missing = [key for key in ("learning_rate", "beta_2") if not accepted_kwargs(cls, **{key: None})]
    if missing:
        raise UserError(f"optimizer {name!r}: the grid search varies learning_rate and beta_2, and "
                        f"{cls.__qualname__}.__init__ takes no {' or '.join(missing)}; add the argument(s) "
                        "or train it at fixed values with `replicate train`")
    if cls not in _USER_SCHEDULED:
        _USER_SCHEDULED[cls] = type(f"Scheduled{cls.__name__}", (_Scheduled, cls),
                                    {"__module__": cls.__module__, "__doc__": cls.__doc__, "user_class": cls})
    return _USER_SCHEDULED[cls]


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop a fit at the end of an epoch whose training loss is NaN or inf: the point diverged.

    ``keras.callbacks.TerminateOnNaN`` does the same per batch but prints a line each time,
    whatever ``verbose`` says; with NaN weights nothing is gained by stopping mid-epoch.
    """

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


class EpochLines(keras.callbacks.Callback):
    """Progress inside a long fit: ``PREFIX α=0.001 β2=0.99 UNIT epoch 4/15 in 39.1s (fit ETA 7m10s,
    all ETA 3h02m)`` on stderr, at most one line per ``interval`` seconds (none for the last epoch:
    the fold's own line follows), so a 10-minute CifarNet fit is not 10 silent minutes.

    The fit ETA is this fit's mean epoch time × its epochs left (early stopping can only shorten
    it); the command's adds ``fits_after`` fits (those still to run after this one) at
    ``seconds_per_fit`` (the finished fits' mean, or this fit's projected length before any has
    finished). Plain data only, so GridSearchCV's clones and loky's workers carry it unchanged;
    it reads the model and prints, nothing else, so the fit's numbers do not depend on it.
    """

    def __init__(self, prefix="", unit="", fits_after=0, seconds_per_fit=None, interval=10.0, clock=time.monotonic):
        super().__init__()
        self.prefix, self.unit = prefix, unit
        self.fits_after, self.seconds_per_fit = int(fits_after), seconds_per_fit
        self.interval, self.clock = float(interval), clock

    def on_train_begin(self, logs=None):
        self.start = self.last = self.clock()
        self.epoch_start = self.start

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        epochs = int(self.params.get("epochs") or 0)
        done = epoch + 1
        if done >= epochs or now - self.last < self.interval:
            return
        self.last = now
        per_epoch = (now - self.start) / done
        fit_left = per_epoch * (epochs - done)
        per_fit = self.seconds_per_fit if self.seconds_per_fit else per_epoch * epochs
        optimizer = self.model.optimizer
        alpha = getattr(optimizer, "initial_learning_rate", None)
        point = (f" α={alpha:g}" if alpha is not None else "") + f" β2={float(optimizer.beta_2):g}"
        # sys.stderr looked up at each line (not stored): a clone or a worker must not carry a stream
        print(f"{self.prefix}{point}{' ' + self.unit if self.unit else ''} epoch {done}/{epochs} in "
              f"{format_seconds(now - self.epoch_start)} (fit ETA {format_seconds(fit_left)}, all ETA "
              f"{format_seconds(fit_left + self.fits_after * per_fit)})", file=sys.stderr, flush=True)


def fit_callbacks(early_stopping=True, epoch_lines=None):
    """The callbacks of every grid-search fit: stop after a non-finite epoch loss (diverged) and,
    with ``early_stopping``, McGill's rule as Keras's ``EarlyStopping`` on the training loss;
    ``epoch_lines`` (an :class:`EpochLines`) last, so it sees each epoch's final state. A Ctrl-C
    or SIGTERM stops the search after the current batch (:mod:`replication.stops`)."""
    callbacks = [StopOnNonFiniteLoss(), stops.keras_callback()]
    if early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="loss", patience=EARLY_STOPPING_PATIENCE, min_delta=0.0)
        )
    if epoch_lines is not None:
        callbacks.append(epoch_lines)
    return callbacks


class OneHotKerasClassifier(KerasClassifier):
    """``KerasClassifier`` whose targets are one-hot whatever the loss.

    scikeras one-hot encodes only for categorical cross-entropy; the project's binary
    cross-entropy (McGill's choice for the MNIST models) also takes one-hot targets.
    """

    @property
    def target_encoder(self):
        categories = "auto" if self.classes_ is None else [self.classes_]
        # The encoder one-hot encodes multiclass targets iff it is told the loss is categorical.
        return ClassifierLabelEncoder(loss="categorical_crossentropy", categories=categories)

    # scikeras seeds through a context that also switches on TensorFlow op determinism, and Keras
    # turns XLA off whenever op determinism is on (so ``jit_compile=True`` would be ignored).
    # Seed the backend-agnostic way instead: same initial weights and batch order for the same
    # ``random_state`` (CPU kernels are deterministic at a fixed thread count).
    def _build_keras_model(self):
        return self._with_keras_seed(super()._build_keras_model)

    def _fit_keras_model(self, *args, **kwargs):
        return self._with_keras_seed(super()._fit_keras_model, *args, **kwargs)

    def _with_keras_seed(self, method, *args, **kwargs):
        seed = self._random_state
        self._random_state = None
        try:
            if seed is not None:
                keras.utils.set_random_seed(int(seed))
            return method(*args, **kwargs)
        finally:
            self._random_state = seed


def predict_proba_eager(model, X, batch_size=8192):
    """Class probabilities of a Keras model, calling it eagerly in big batches.

    ``model.predict`` traces a fresh predict function for every new model (hundreds of ms per
    fit, twice per fit when train scores are kept); one eager call per batch of a small
    dense/conv model costs a few ms.
    """
    parts = []
    for start in range(0, len(X), batch_size):
        parts.append(ops.convert_to_numpy(model(X[start : start + batch_size], training=False)))
    return np.concatenate(parts, axis=0).astype(np.float64, copy=False)


def cross_entropy(onehot, proba, loss="categorical"):
    """Mean cross-entropy of probabilities ``proba`` against one-hot targets, as Keras computes it
    (probabilities clipped to [1e-7, 1−1e-7]); NaN if any probability is not finite."""
    proba = np.asarray(proba, dtype=np.float64)
    if not np.all(np.isfinite(proba)):
        return math.nan
    p = np.clip(proba, _EPSILON, 1.0 - _EPSILON)
    if loss == "categorical":
        return float(-np.mean(np.sum(onehot * np.log(p), axis=1)))
    if loss == "binary":
        return float(-np.mean(onehot * np.log(p) + (1.0 - onehot) * np.log1p(-p)))
    raise ValueError(f"unknown loss {loss!r}; choose categorical or binary")


def accuracy(onehot, proba):
    """Share of examples whose largest probability is at their class (categorical accuracy, Keras's
    argmax: the first of tied maxima); NaN if any probability is not finite (a diverged fit)."""
    proba = np.asarray(proba, dtype=np.float64)
    if not np.all(np.isfinite(proba)):
        return math.nan
    return float(np.mean(np.argmax(proba, axis=1) == np.argmax(onehot, axis=1)))


class ValidationAccuracy:
    """Scorer ``(estimator, X, y) -> validation accuracy`` (higher is better): what McGill's code's
    ``GridSearchCV`` maximised (their Keras 2 wrapper's ``score`` is the model's accuracy). NaN for a
    diverged fit."""

    def __call__(self, estimator, X, y):
        return accuracy(estimator.target_encoder_.transform(y), predict_proba_eager(estimator.model_, X))

    def __repr__(self):
        return "ValidationAccuracy()"


class ValidationLoss:
    """Scorer ``(estimator, X, y) -> −loss`` (higher is better, as scikit-learn wants).

    The loss is the experiment's own loss (categorical or binary cross-entropy on one-hot targets),
    so "best" = smallest validation loss, McGill's criterion. A diverged fit (non-finite
    probabilities) scores NaN: recorded, flagged ``diverged`` and never selected.
    """

    def __init__(self, loss="categorical"):
        self.loss = loss

    def __call__(self, estimator, X, y):
        proba = predict_proba_eager(estimator.model_, X)
        onehot = estimator.target_encoder_.transform(y)
        value = cross_entropy(onehot, proba, self.loss)
        return -value if math.isfinite(value) else math.nan

    def __repr__(self):
        return f"ValidationLoss(loss={self.loss!r})"


def make_estimator(
    spec,
    optimizer="adam",
    *,
    epochs=None,
    seed=None,
    jit_compile=True,
    steps_per_execution=32,
    early_stopping=True,
    epoch_lines=None,
    **params,
):
    """The ``KerasClassifier`` grid-searched for experiment ``spec`` with ``optimizer``.

    Fixed from the spec: model builder and its kwargs (``model__*``), loss, batch size, β1, ε,
    schedule, epochs (``spec.gridsearch_epochs`` unless ``epochs`` is given). Searched (route
    them in a grid or ``**params``): ``optimizer__learning_rate`` (α),
    ``optimizer__beta_2``, ``optimizer__bias_correction``.

    ``jit_compile``/``steps_per_execution`` go to ``Model.compile`` (routed as ``compile__*``):
    XLA-fused steps and several steps per ``tf.function`` call cut the per-step Python/launch
    overhead that dominates small models on a CPU. ``epoch_lines``: an :class:`EpochLines` for
    progress lines within each fit (None: silent).
    """
    from replication.models import MODELS, get_loss

    optimizer_class = search_optimizer_class(optimizer) if isinstance(optimizer, str) else optimizer
    routed = {f"model__{k}": v for k, v in spec.builder_kwargs}
    routed.update(
        {
            "optimizer__beta_1": float(spec.beta_1),
            "optimizer__epsilon": float(spec.epsilon),
            "optimizer__schedule": spec.schedule,
            "compile__jit_compile": bool(jit_compile),
            "compile__steps_per_execution": int(steps_per_execution),
        }
    )
    routed.update(params)
    if optimizer_class not in SEARCH_OPTIMIZERS.values():  # a user's class takes only its own keywords
        from replication.optimizers import accepted_kwargs

        own = {"schedule", "total_steps", "decay"}  # taken by _Scheduled
        routed = {key: value for key, value in routed.items() if not key.startswith("optimizer__")
                  or key[len("optimizer__"):] in own
                  or accepted_kwargs(getattr(optimizer_class, "user_class", optimizer_class), **{key[len("optimizer__"):]: 0})}
    return OneHotKerasClassifier(
        model=MODELS[spec.model],
        optimizer=optimizer_class,
        loss=get_loss(spec.loss),
        batch_size=int(spec.batch_size),
        epochs=int(epochs if epochs is not None else spec.gridsearch_epochs),
        callbacks=fit_callbacks(early_stopping, epoch_lines),
        random_state=seed if seed is not None else getattr(spec, "seed", 0),
        verbose=0,
        **routed,
    )
