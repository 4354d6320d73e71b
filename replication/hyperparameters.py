"""The one rule for the optimizers' decay rates β1 and β2, whatever door a value comes in by: the
optimizer classes, ``train --beta2``, ``synthetic --beta1/--beta2``, ``gridsearch --beta2s``,
``--params`` files, ``best_params.json`` and the experiment specs. Imports no Keras, so the CLI
checks a flag without loading TensorFlow.

β ∈ [0, 1), as Kingma & Ba state it for Adam and AdaMax (Algorithm 1: "β1, β2 ∈ [0, 1)") and
Reddi et al. for AMSGrad (their Theorem 1 itself uses β1 = 0 and a small β2 = 1/(1 + C²)).

* β2 = 0 is valid, if extreme: v_t = g_t², the bias correction 1 − β2^t is 1, Adam steps by
  m̂/(|g| + ε), AMSGrad's v̂ is the largest g² so far, AdaMax's u is |g|. Nothing divides by zero
  that ε does not already guard (as for any β2).
* β2 = 1 is not: v stays at its initial 0 (so Adam divides m by ε alone), and the bias correction
  √(1 − β2^t) is 0 at every step. A β outside [0, 1) is no moving average at all.

The same one-home rule holds for what a user may ask of α, ε, epochs and runs
(:data:`LEARNING_RATE_RANGE`, :data:`EPSILON_RANGE`, :data:`MAX_EPOCHS`, :data:`MAX_RUNS`) and for
the layout of a params file (:func:`params_problem`).
"""
from __future__ import annotations

import json
import math
import numbers

DECAY_RATE_RANGE = "[0, 1)"


def is_decay_rate(value) -> bool:
    """Whether ``value`` is a real number (not a bool) in [0, 1); NaN is not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value) and 0.0 <= value < 1.0


# Bounds on what a user may ask for (issue 26 §5): values outside cannot be meant, and some
# (α = 1e308) overflow in the optimizer's float32 arithmetic, so α stops at float32's largest
# value (the tests' grid uses α = 1e38 on purpose, to make a point diverge). ε = 1 is the largest in
# common use (Inception's RMSProp). ε = 0 leaves 0/0 wherever a gradient is still 0.
MAX_LEARNING_RATE = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max
LEARNING_RATE_RANGE = f"(0, {MAX_LEARNING_RATE:g}]"
MAX_EPSILON = 1.0
EPSILON_RANGE = f"(0, {MAX_EPSILON:g}]"
# Counts: a week of MNIST epochs is far below either; 10**12 epochs or 10**6 runs are typos.
MAX_EPOCHS = 100_000
MAX_RUNS = 10_000

# The keys of a params file (``train --params``, ``best_params.json``), per optimizer or flat.
PARAMS_KEYS = ("learning_rate", "beta_2", "bias_correction")
PARAMS_LAYOUTS = ('{"learning_rate": A, "beta_2": B} for every optimizer, or '
                  '{"adam": {"learning_rate": A, "beta_2": B}, "amsgrad": {...}} per optimizer')


def _finite_real(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def is_learning_rate(value) -> bool:
    """Whether ``value`` is a real number (not a bool) in :data:`LEARNING_RATE_RANGE`."""
    return _finite_real(value) and 0.0 < value <= MAX_LEARNING_RATE


def is_epsilon(value) -> bool:
    """Whether ``value`` is a real number (not a bool) in :data:`EPSILON_RANGE`."""
    return _finite_real(value) and 0.0 < value <= MAX_EPSILON


_RULES = {
    "learning_rate": (is_learning_rate, LEARNING_RATE_RANGE),
    "beta_2": (is_decay_rate, DECAY_RATE_RANGE),
    "epsilon": (is_epsilon, EPSILON_RANGE),
}


def _shown(value) -> str:
    """``value`` as its JSON text (``true``, ``"0.05"``, ``NaN``), as a user wrote it in a file."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def value_problem(key: str, value) -> str | None:
    """Why ``value`` cannot be hyperparameter ``key`` (``learning_rate``, ``beta_2``, ``epsilon``,
    ``bias_correction``), or None. Bools and strings are not numbers, whatever they spell."""
    if key == "bias_correction":
        return None if isinstance(value, bool) else f"bias_correction must be true or false, got {_shown(value)}"
    check, bounds = _RULES[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = "; write it without quotes" if isinstance(value, str) else ""
        return f"{key} must be a number in {bounds}, got {_shown(value)}{hint}"
    return None if check(value) else f"{key} must be in {bounds}, got {_shown(value)}"


def params_problem(data, optimizers) -> str | None:
    """Why ``data`` (a parsed params file) is not one of :data:`PARAMS_LAYOUTS` with valid values
    for the optimizer names ``optimizers``, or None. The message names the offending key."""
    if not isinstance(data, dict):
        return f"expected a JSON object: {PARAMS_LAYOUTS}"
    flat = [key for key in data if key in PARAMS_KEYS]
    if flat:  # the flat layout: every top-level key must be a hyperparameter
        for key, value in data.items():
            if key in optimizers:
                return (f"mixes the two layouts (hyperparameter {flat[0]!r} and optimizer {key!r} at the top "
                        f"level); use one: {PARAMS_LAYOUTS}")
            if key not in PARAMS_KEYS:
                return (f"unknown key {key!r} beside {flat[0]!r}; a flat params file holds only "
                        f"{', '.join(PARAMS_KEYS)} ({PARAMS_LAYOUTS})")
            problem = value_problem(key, value)
            if problem:
                return problem
        return None
    from .registry import user_optimizer_path

    for name, values in data.items():
        if name not in optimizers and user_optimizer_path(name) is None:  # a user's module:Class is a name too
            return (f"unknown optimizer {name!r}; top-level keys are optimizer names ({', '.join(optimizers)}) "
                    f"or {', '.join(PARAMS_KEYS)} ({PARAMS_LAYOUTS})")
        if not isinstance(values, dict):
            return f"{name} must map to an object of hyperparameters, got {_shown(values)} ({PARAMS_LAYOUTS})"
        for key, value in values.items():
            if key not in PARAMS_KEYS:
                return f"{name}: unknown hyperparameter {key!r}; use {', '.join(PARAMS_KEYS)}"
            problem = value_problem(key, value)
            if problem:
                return f"{name}: {problem}"
    return None
