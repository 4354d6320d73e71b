"""Adam, AMSGrad and AdaMax, each with and without bias correction, as Keras 3 optimizers.

One implementation of the maths, two drivers. Every class has a pure ``update_rule(x, state, g,
lr, t) -> (new_x, new_state)`` written with ``keras.ops`` only, its state a NamedTuple by name
(:class:`AdamState`, :class:`AMSGradState`, :class:`AdaMaxState`, as optax's ``ScaleByAdamState``):

* ``update_step`` (what ``model.fit`` calls) applies it to the Keras slot variables;
* :mod:`replication.synthetic` applies it to loop-carried tensors inside one compiled loop.

So the synthetic experiment and the networks run exactly the same arithmetic, and the classes run
unchanged under ``KERAS_BACKEND=jax`` or ``torch``.

Notation (t = optimizer step counted from 1, ``lr`` = the learning rate at step t, after any
schedule such as :class:`InverseSqrtDecay`):

=========  =================================================  ==================================
class      update                                             step size α_t
=========  =================================================  ==================================
Adam       m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;        lr·√(1−β2^t)/(1−β1^t) (corrected)
           θ ← θ − α_t·m/(√v + ε)                             lr (uncorrected)
AMSGrad    as Adam, v̂ ← max(v̂, v);  θ ← θ − α_t·m/(√v̂ + ε)    as Adam
AdaMax     m as Adam;  u ← max(β2·u, |g|);                   lr/(1−β1^t) (corrected)
           θ ← θ − α_t·m/(u + ε)                              lr (uncorrected)
=========  =================================================  ==================================

References: Kingma & Ba (2015), Algorithm 1 (Adam) and Algorithm 2 (AdaMax); Reddi, Kale & Kumar
(2018), Algorithm 2 (AMSGrad, written there without bias correction and without ε).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import keras
from keras import ops

from .backend import check_dtype, enable_float64
from .hyperparameters import DECAY_RATE_RANGE, is_decay_rate

# These classes run in float64 on the synthetic problem and in the float64 reference tests; on JAX
# that needs its 64-bit mode, on before any float64 variable is made (replication.backend).
enable_float64()

__all__ = [
    "Adam",
    "AMSGrad",
    "AdaMax",
    "AdamState",
    "AMSGradState",
    "AdaMaxState",
    "InverseSqrtDecay",
    "LinearDecay",
    "PerEpochInverseSqrt",
    "TimeDecay",
    "SCHEDULES",
    "ClipValue",
    "OPTIMIZERS",
    "get_optimizer_class",
    "make_optimizer",
    "make_schedule",
]

_PACKAGE = "replication"


class AdamState(NamedTuple):
    """Adam's state (Kingma & Ba Alg. 1), as optax's ``ScaleByAdamState(mu, nu)``; the field names
    are the Keras slot-variable names."""

    momentum: Any  # m: the first-moment estimate
    velocity: Any  # v: the second-moment estimate


class AMSGradState(NamedTuple):
    """AMSGrad's state (Reddi et al. Alg. 2), as optax's ``ScaleByAmsgradState(mu, nu, nu_max)``."""

    momentum: Any  # m
    velocity: Any  # v
    velocity_hat: Any  # v̂ = max over steps of v


class AdaMaxState(NamedTuple):
    """AdaMax's state (Kingma & Ba Alg. 2)."""

    momentum: Any  # m
    norm: Any  # u: the exponentially weighted infinity norm


class _MomentOptimizer(keras.optimizers.Optimizer):
    """Shared plumbing: hyperparameters, the descent step, slots, the Keras driver of ``update_rule``.

    A subclass declares its state as a NamedTuple ``STATE`` (its field names are the slot-variable
    names, created in field order) and writes three pieces of maths, each in one place:

    * ``next_state(state, g)``: the moment estimates after gradient ``g``;
    * ``_step_size(lr, t)``: α_t, as ``(scale, correction)`` with α_t = scale/correction
      (``correction`` None stands for 1);
    * ``_denominator(state)``: the ε-added root of the second moment (√v + ε, √v̂ + ε, u + ε).

    :meth:`update_rule` is θ ← θ − scale·m/(correction·denominator) and :meth:`inverse_step_size`
    correction·(denominator/scale). A ``correction`` is kept apart from ``scale`` only where
    Keras's built-in divides by it (AdaMax), so that both keep today's order of operations and
    the updates stay bitwise equal to Keras's.
    """

    STATE: type | None = None  # a NamedTuple class, set by each subclass

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        bias_correction=True,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name or type(self).__name__.lower(), **kwargs)
        for key, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not is_decay_rate(float(value)):
                raise ValueError(f"{key} must be in {DECAY_RATE_RANGE}, got {value}")
        if float(epsilon) < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.bias_correction = bool(bias_correction)

    # -- the maths (pure) ------------------------------------------------------------------
    def update_rule(self, x, state, g, lr, t):
        """Return ``(new_x, new_state)`` for parameter ``x``, state ``state`` (a :attr:`STATE`),
        gradient ``g``, learning rate ``lr`` and step ``t`` (from 1), all tensors of ``x``'s dtype.
        Pure: no variable is touched, so it can run inside any compiled loop."""
        state = self.next_state(state, g)
        scale, correction = self._step_size(lr, t)
        divisor = self._denominator(state)
        if correction is not None:
            divisor = correction * divisor
        return x - scale * state.momentum / divisor, state

    def inverse_step_size(self, state, lr, t):
        """d_t with θ_{t+1} = θ_t − m_t / d_t: the per-coordinate inverse effective step size.

        Reddi et al.'s Γ_{t+1} = √V_{t+1}/α_{t+1} − √V_t/α_t (their eq. 2) is d_{t+1} − d_t for
        these algorithms (d_t = (√v_t + ε)/α_t for Adam, with v̂_t for AMSGrad and u_t for AdaMax;
        α_t includes the bias-correction factors). AMSGrad guarantees Γ ≥ 0 under a
        non-increasing α_t; Adam does not, which is how it fails on the synthetic problem.
        """
        scale, correction = self._step_size(lr, t)
        d = self._denominator(state) / scale
        return d if correction is None else correction * d

    def next_state(self, state, g):
        """The state after gradient ``g`` (moment estimates only; the step is :meth:`update_rule`'s)."""
        raise NotImplementedError

    def _step_size(self, lr, t):
        """α_t = scale/correction at step ``t`` under learning rate ``lr``, as ``(scale, correction)``."""
        raise NotImplementedError

    def _denominator(self, state):
        """The ε-added root of the second moment that m/… divides by."""
        raise NotImplementedError

    def init_state(self, x):
        """Zero state for a parameter tensor ``x`` (the pure driver's equivalent of ``build``)."""
        return self.STATE(**{name: ops.zeros_like(x) for name in self.STATE._fields})

    def learning_rate_at(self, iterations):
        """Learning rate the optimizer uses when ``self.iterations == iterations`` (0-based, as
        Keras counts): the schedule evaluated there, or the constant."""
        lr = self._learning_rate
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            return lr(iterations)
        if callable(lr):
            return lr()
        return lr

    # -- the Keras driver -------------------------------------------------------------------
    def build(self, var_list):
        if self.built:
            return
        for variable in var_list:  # a float64 variable that JAX made float32 fails here, loudly
            check_dtype(variable, what=f"variable {variable.path}")
        super().build(var_list)
        # One list of slot variables per state field, made like Keras's own Adam does. The field
        # order is the creation order, hence the order of ``self.variables`` that checkpoints
        # (replication/run.py) and .keras files store by position: never reorder a STATE's fields.
        self._slots = {name: self.add_optimizer_variables(var_list, name) for name in self.STATE._fields}

    def slots_for(self, variable):
        """The slot variables of ``variable`` as a :attr:`STATE`."""
        index = self._get_variable_index(variable)
        return self.STATE(**{name: slots[index] for name, slots in self._slots.items()})

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        t = ops.cast(self.iterations + 1, dtype)
        slots = self.slots_for(variable)
        new_x, new_state = self.update_rule(variable, slots, g, lr, t)
        for name in self.STATE._fields:
            self.assign(getattr(slots, name), getattr(new_state, name))
        self.assign(variable, new_x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "bias_correction": self.bias_correction,
            }
        )
        return config

    # -- helpers for subclasses --------------------------------------------------------------
    @staticmethod
    def _const(value, like):
        # A Python float becomes a float32 tensor in keras.ops before any cast, which would round
        # β2 = 0.999 to float32 even for float64 parameters; convert straight to the right dtype.
        return ops.convert_to_tensor(value, dtype=like.dtype)

    def _beta(self, which, like, complement=False):
        """β1 or β2 (``which`` = 1 or 2), or 1 − β with ``complement``, as a tensor of ``like``'s
        dtype. The one place the decay rates become tensors: the grid search's stacked engine
        (:mod:`gridsearch.stacked`) overrides it to give each of K stacked models its own β2.
        1 − β is formed in float64 before the cast, as Keras's built-ins do."""
        value = self.beta_1 if which == 1 else self.beta_2
        return self._const(1.0 - value if complement else value, like)

    def _first_moment(self, m, g):
        # Keras's form of β1·m + (1−β1)·g, so the bias-corrected classes match the built-ins.
        return m + (g - m) * self._beta(1, g, complement=True)

    def _second_moment(self, v, g):
        return v + (ops.square(g) - v) * self._beta(2, g, complement=True)

    def _beta_powers(self, t):
        b1 = ops.power(self._beta(1, t), t)
        b2 = ops.power(self._beta(2, t), t)
        return b1, b2

    def _plus_epsilon(self, value):
        return value + self._const(self.epsilon, value)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Adam(_MomentOptimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1).

    Args:
        learning_rate: float or ``LearningRateSchedule`` (default 0.001).
        beta_1: first-moment decay β1 (default 0.9).
        beta_2: second-moment decay β2 (default 0.999).
        epsilon: ε added to √v (default 1e-7, Keras's default; Kingma & Ba use 1e-8).
        bias_correction: if True (default) α_t = lr·√(1−β2^t)/(1−β1^t), the step Keras's built-in
            ``keras.optimizers.Adam`` takes; if False α_t = lr, the form Reddi et al. analyse.

    State: :class:`AdamState` (slots ``momentum``, ``velocity``).
    """

    STATE = AdamState

    def next_state(self, state, g):
        return AdamState(self._first_moment(state.momentum, g), self._second_moment(state.velocity, g))

    def _step_size(self, lr, t):
        """α_t = lr·√(1−β2^t)/(1−β1^t) with bias correction (Kingma & Ba §2's efficient form, as
        Keras computes it), else lr; all in ``scale``."""
        if not self.bias_correction:
            return lr, None
        b1, b2 = self._beta_powers(t)
        one = self._const(1.0, t)
        return lr * ops.sqrt(one - b2) / (one - b1), None

    def _denominator(self, state):
        """√v + ε."""
        return self._plus_epsilon(ops.sqrt(state.velocity))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AMSGrad(Adam):
    """AMSGrad (Reddi, Kale & Kumar 2018, Algorithm 2): Adam with v̂ ← max(v̂, v).

    With ``bias_correction=False`` this is the paper's Algorithm 2 (plus ε for numerical safety);
    with ``bias_correction=True`` (default) it equals ``keras.optimizers.Adam(amsgrad=True)``,
    which corrects m and v and takes the maximum of the *uncorrected* v. Defaults as :class:`Adam`,
    α_t too. State: :class:`AMSGradState` (slots ``momentum``, ``velocity``, ``velocity_hat``).
    """

    STATE = AMSGradState

    def next_state(self, state, g):
        m = self._first_moment(state.momentum, g)
        v = self._second_moment(state.velocity, g)
        return AMSGradState(m, v, ops.maximum(state.velocity_hat, v))

    def _denominator(self, state):
        """√v̂ + ε."""
        return self._plus_epsilon(ops.sqrt(state.velocity_hat))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AdaMax(_MomentOptimizer):
    """AdaMax (Kingma & Ba 2015, Algorithm 2): the infinity-norm variant of Adam.

    u ← max(β2·u, |g|); θ ← θ − α_t·m/(u + ε) with α_t = lr/(1−β1^t) when ``bias_correction``
    (default; equals ``keras.optimizers.Adamax``) and α_t = lr otherwise. Defaults as :class:`Adam`.
    State: :class:`AdaMaxState` (slots ``momentum``, ``norm``).

    α_t = lr/(1−β1^t) is returned as ``(lr, 1−β1^t)``, not divided out: the update is computed as
    Keras's Adamax does, (lr·m)/((1−β1^t)(u + ε)), so results match it bitwise (α_t·m/(u + ε)
    would round differently), and d_t = (1−β1^t)·((u + ε)/lr) = (u + ε)/α_t.
    """

    STATE = AdaMaxState

    def next_state(self, state, g):
        m = self._first_moment(state.momentum, g)
        return AdaMaxState(m, ops.maximum(self._beta(2, g) * state.norm, ops.abs(g)))

    def _step_size(self, lr, t):
        """α_t = lr/(1−β1^t) with bias correction, else lr."""
        if not self.bias_correction:
            return lr, None
        b1, _ = self._beta_powers(t)
        return lr, self._const(1.0, t) - b1

    def _denominator(self, state):
        """u + ε."""
        return self._plus_epsilon(state.norm)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InverseSqrtDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Reddi et al.'s schedule α_t = α/√t, t = optimizer step counted from 1.

    Keras calls a schedule with ``optimizer.iterations`` *before* it is incremented (0 at the first
    step), so ``__call__(step)`` returns ``initial_learning_rate / sqrt(step + 1)``.
    """

    def __init__(self, initial_learning_rate, name="InverseSqrtDecay"):
        if float(initial_learning_rate) <= 0:
            raise ValueError(f"initial_learning_rate must be > 0, got {initial_learning_rate}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.name = name

    def __call__(self, step):
        t = ops.cast(step, "float32") + 1.0
        return self.initial_learning_rate / ops.sqrt(t)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "name": self.name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Korzeniowski's schedule: α decreased linearly so that it reaches 0 at the end of training.

    With t = optimizer step counted from 1 and T = ``total_steps`` (epochs × steps per epoch),
    step t uses α_t = α·(1 − (t − 1)/T), clipped at 0 for t > T: α_1 = α at the first step and
    α_T = α/T at the last, after which (t = T + 1) it would be exactly 0. Korzeniowski: "a linear
    decrease of the initial learning rate until it reaches 0 after epoch 150"; we decay per step,
    not per epoch, so the rate "reaches 0" exactly when the last step has been taken.

    Keras calls a schedule with ``optimizer.iterations`` before the increment (0 at the first step),
    so ``__call__(step)`` returns ``initial_learning_rate * max(0, 1 − step / total_steps)``.
    """

    def __init__(self, initial_learning_rate, total_steps, name="LinearDecay"):
        if float(initial_learning_rate) <= 0:
            raise ValueError(f"initial_learning_rate must be > 0, got {initial_learning_rate}")
        if isinstance(total_steps, bool) or int(total_steps) != total_steps or int(total_steps) <= 0:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = int(total_steps)
        self.name = name

    def __call__(self, step):
        fraction = ops.cast(step, "float32") / float(self.total_steps)
        return self.initial_learning_rate * ops.maximum(1.0 - fraction, 0.0)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "total_steps": self.total_steps,
                "name": self.name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PerEpochInverseSqrt(keras.optimizers.schedules.LearningRateSchedule):
    """McGill's coded schedule for logistic regression: α/√(1 + e) during epoch e (from 0), as a
    Keras ``LearningRateScheduler`` sets it at each epoch's start (their
    ``AWS/experiments/logreg_experiments.py``).

    Keras calls a schedule with ``optimizer.iterations`` before the increment, k = 0, 1, ...; with
    ``steps_per_epoch`` = S, update k belongs to epoch e = ⌊k / S⌋, so ``__call__(k)`` returns
    ``initial_learning_rate / sqrt(1 + floor(k / S))``.
    """

    def __init__(self, initial_learning_rate, steps_per_epoch, name="PerEpochInverseSqrt"):
        if float(initial_learning_rate) <= 0:
            raise ValueError(f"initial_learning_rate must be > 0, got {initial_learning_rate}")
        if isinstance(steps_per_epoch, bool) or int(steps_per_epoch) != steps_per_epoch or int(steps_per_epoch) <= 0:
            raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.name = name

    def __call__(self, step):
        epoch = ops.floor(ops.cast(step, "float32") / float(self.steps_per_epoch))
        return self.initial_learning_rate / ops.sqrt(1.0 + epoch)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "steps_per_epoch": self.steps_per_epoch,
                "name": self.name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TimeDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Keras 2's ``decay`` argument of its optimizers, which McGill's grid search set to 0.14
    (``AWS/gridsearch/tune_*.py``): update k (from 0, the updates made so far) uses
    α/(1 + d·k). Keras 2.1's Adam computed ``lr * (1 / (1 + decay * iterations))`` before
    incrementing ``iterations``, so ``__call__(k)`` returns ``initial_learning_rate / (1 + decay * k)``.
    """

    def __init__(self, initial_learning_rate, decay, name="TimeDecay"):
        if float(initial_learning_rate) <= 0:
            raise ValueError(f"initial_learning_rate must be > 0, got {initial_learning_rate}")
        if not float(decay) >= 0:
            raise ValueError(f"decay must be >= 0, got {decay}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay = float(decay)
        self.name = name

    def __call__(self, step):
        return self.initial_learning_rate / (1.0 + self.decay * ops.cast(step, "float32"))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay": self.decay, "name": self.name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClipValue(keras.constraints.Constraint):
    """Projection onto the box [min_value, max_value] (the synthetic problem's F = [−1, 1]).

    Keras applies a variable's constraint after every optimizer step, which is exactly the
    projected update x_{t+1} = Π_F(x_t − α_t·m_t/√v̂_t) of Reddi et al. (for a 1-D box the
    weighted projection of their Algorithm 2 is plain clipping).
    """

    def __init__(self, min_value=-1.0, max_value=1.0):
        if float(min_value) > float(max_value):
            raise ValueError(f"min_value {min_value} > max_value {max_value}")
        self.min_value = float(min_value)
        self.max_value = float(max_value)

    def __call__(self, w):
        return ops.clip(w, self.min_value, self.max_value)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value}


# Every name below comes from the registry; a researcher's own optimizer is loaded by name.
import functools  # noqa: E402
import json  # noqa: E402

from .errors import UserError  # noqa: E402
from .registry import OPTIMIZER_ENTRY_POINTS, OPTIMIZER_NAMES, SCHEDULES, user_optimizer_path  # noqa: E402

_CLASSES = {cls.__name__.lower(): cls for cls in (Adam, AMSGrad, AdaMax)}
OPTIMIZERS = {name: _CLASSES[name] for name in OPTIMIZER_NAMES}  # the registry's names, in its order


class OptimizerError(UserError, ValueError):
    """An optimizer name that names no optimizer (unknown, unimportable, not an ``Optimizer``):
    one line for the CLI (a :class:`UserError`), a ``ValueError`` for library callers."""


def get_optimizer_class(name):
    """The optimizer class named ``name``: a built-in (``adam``, ``amsgrad``, ``adamax``), or a
    researcher's own ``keras.optimizers.Optimizer`` subclass named ``module:Class`` (importable
    from ``PYTHONPATH`` or the current folder) or registered as an entry point of the group
    ``replication.optimizers`` (:func:`replication.registry.user_optimizer_path`)."""
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    path = user_optimizer_path(name)
    if path is None:
        raise OptimizerError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}, an optimizer "
                             f"registered under the entry point group {OPTIMIZER_ENTRY_POINTS!r}, or your own "
                             "as module:Class (a keras.optimizers.Optimizer subclass)")
    return _load_class(name, path)


def _load_class(name, path):
    import importlib
    import os
    import sys

    module_name, _, attribute = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # `replicate` is a console script: the current folder is not on its path
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - a user's module may fail in any way; one line says how
        raise OptimizerError(f"optimizer {name!r}: cannot import {module_name!r} ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}); put its folder on PYTHONPATH or run from it") from None
    cls = module
    for part in attribute.split("."):
        cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and issubclass(cls, keras.optimizers.Optimizer)):
        what = "not found" if cls is None else f"a {type(cls).__name__}, not a keras.optimizers.Optimizer subclass"
        raise OptimizerError(f"optimizer {name!r}: {path} is {what}; name a keras.optimizers.Optimizer subclass "
                             "as module:Class")
    return cls


def accepted_kwargs(cls, **kwargs) -> dict:
    """The ``kwargs`` that ``cls.__init__`` names as parameters (a user's class takes only its own
    hyperparameters: Keras's base class rejects unknown keywords)."""
    import inspect

    parameters = inspect.signature(cls.__init__).parameters
    return {key: value for key, value in kwargs.items() if key in parameters}


def optimizer_kwargs(name, **kwargs) -> dict:
    """What optimizer ``name``'s class is built with of ``kwargs`` (β1, β2, ε, bias correction):
    all of them for a built-in, those its ``__init__`` names for a user's class."""
    if name in OPTIMIZERS:
        return kwargs
    return accepted_kwargs(get_optimizer_class(name), **kwargs)


def optimizer_identity(name, learning_rate, **kwargs) -> dict:
    """``{}`` for a built-in optimizer (its ids stay as they were); for a user's optimizer its
    class path and its ``get_config()`` at these hyperparameters (JSON, sorted keys), so a changed
    class default gives another run id / grid-point key. ``learning_rate`` is α (the schedule is
    part of the identity already)."""
    if name in OPTIMIZERS:
        return {}
    cls = get_optimizer_class(name)
    given = tuple(sorted(accepted_kwargs(cls, **kwargs).items()))
    try:
        config = _config_json(cls, float(learning_rate), given)
    except Exception as exc:  # noqa: BLE001 - a user's class may fail in any way; one line says how
        arguments = ", ".join(f"{k}={v!r}" for k, v in (("learning_rate", float(learning_rate)), *given))
        raise OptimizerError(f"optimizer {name!r}: {cls.__qualname__}({arguments}) failed ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}); it must build from these arguments and get_config() "
                             "must return them") from None
    return {"optimizer_class": f"{cls.__module__}:{cls.__qualname__}", "optimizer_config": config}


@functools.lru_cache(maxsize=256)
def _config_json(cls, learning_rate, kwargs):
    # Per class object: a reloaded module (a changed default) is another class, another config.
    optimizer = cls(learning_rate=learning_rate, **dict(kwargs))
    return json.dumps(optimizer.get_config(), sort_keys=True, default=str)


def make_schedule(learning_rate, schedule="constant", *, total_steps=None, steps_per_epoch=None, decay=None):
    """The learning rate an optimizer takes for α = ``learning_rate`` under ``schedule``:
    ``constant`` (the float), ``inverse-sqrt`` (:class:`InverseSqrtDecay`, α/√t),
    ``linear-decay`` (:class:`LinearDecay`, to 0 after ``total_steps`` steps, which it requires),
    ``epoch-inverse-sqrt`` (:class:`PerEpochInverseSqrt`, needs ``steps_per_epoch``) or
    ``time-decay`` (:class:`TimeDecay`, α/(1 + ``decay``·k))."""
    if schedule == "epoch-inverse-sqrt":
        if steps_per_epoch is None:
            raise ValueError("schedule 'epoch-inverse-sqrt' needs steps_per_epoch")
        return PerEpochInverseSqrt(learning_rate, steps_per_epoch)
    if schedule == "time-decay":
        if decay is None:
            raise ValueError("schedule 'time-decay' needs decay (Keras 2's decay argument)")
        return TimeDecay(learning_rate, decay)
    if schedule == "inverse-sqrt":
        return InverseSqrtDecay(learning_rate)
    if schedule == "constant":
        return float(learning_rate)
    if schedule == "linear-decay":
        if total_steps is None:
            raise ValueError("schedule 'linear-decay' needs total_steps (epochs x steps per epoch)")
        return LinearDecay(learning_rate, total_steps)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")


def make_optimizer(name, learning_rate, schedule="constant", *, total_steps=None, steps_per_epoch=None, decay=None,
                   **kwargs):
    """Instantiate optimizer ``name`` with α = ``learning_rate`` under ``schedule`` (see
    :func:`make_schedule`); other kwargs go to the class."""
    lr = make_schedule(learning_rate, schedule, total_steps=total_steps, steps_per_epoch=steps_per_epoch, decay=decay)
    return get_optimizer_class(name)(learning_rate=lr, **optimizer_kwargs(name, **kwargs))
