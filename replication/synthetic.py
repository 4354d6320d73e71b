"""The synthetic convex problem on which Adam provably fails (Reddi et al. §3 and §5; McGill §III-A).

Linear losses f_t(x) = c_t·x on the feasible set F = [−1, 1], whose minimiser is x* = −1:

* ``online``: c_t = 1010 if t mod 101 = 1, else −10;
* ``stochastic``: c_t = 1010 with probability 0.01, else −10 (i.i.d., seeded);
* ``cyclic``: Reddi et al.'s §3 family, c_t = C if t mod 3 = 1, else −1, for C > 2.

The gradient of f_t is c_t, so every step is: regret += c_t·(x_t − x*), update with the optimizer's
own :meth:`update_rule` (the *same* code Keras runs in ``update_step``), project onto F with the
same :class:`~replication.optimizers.ClipValue` constraint Keras applies after each step. Many
configurations (learning rates × seeds) run side by side as one vector, in one compiled loop; x_t
and the average regret R_t/t = (1/t)·Σ_i (f_i(x_i) − f_i(−1)) are recorded every ``record_every``
steps, together with the range of x over the steps since the previous record.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import keras
import numpy as np
import pandas as pd
from keras import ops

from . import stops
from .backend import check_dtype
from .errors import UserError
from .optimizers import ClipValue, make_optimizer

SETTINGS = ("online", "stochastic", "cyclic")
# Points per run: enough to plot (x's range between records is kept too), small enough to commit
# a grid of ~250 runs (~100 bytes a row).
DEFAULT_RECORDS = 100
X_STAR = -1.0
COLUMNS = [
    "setting", "optimizer", "learning_rate", "schedule", "bias_correction", "beta_1", "beta_2",
    "epsilon", "big_gradient", "seed", "step", "x", "x_min", "x_max", "avg_regret",
    "gamma_negative_fraction", "gamma_min",
]
KEY = ["setting", "optimizer", "learning_rate", "schedule", "bias_correction", "beta_1", "beta_2",
       "epsilon", "big_gradient", "seed"]
# The stochastic draws of one block call are held in memory as one byte per step and column.
MAX_BLOCK_BYTES = 1 << 25


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """One vectorised batch of runs: one setting and optimizer, many learning rates × seeds."""

    setting: str
    optimizer: str
    learning_rates: tuple
    seeds: tuple = (0,)
    steps: int = 1_000_000
    schedule: str = "inverse-sqrt"  # Reddi et al. §5: α_t = α/√t
    beta_1: float = 0.9
    beta_2: float = 0.99
    epsilon: float = 1e-8
    bias_correction: bool = True
    big: float = 1010.0       # the rare large gradient (online/stochastic) or C (cyclic)
    small: float = -10.0      # the frequent small gradient (−1 for cyclic)
    period: int = 101         # online: the big gradient comes when t mod period = 1
    probability: float = 0.01  # stochastic: chance of the big gradient
    record_every: int = 1000
    # The papers do not say where x starts; from the centre of F, Adam has to move *away* from
    # the optimum to reach +1, which makes the failure unambiguous.
    x0: float = 0.0

    def __post_init__(self):
        if self.setting not in SETTINGS:
            raise UserError(f"unknown setting {self.setting!r}; choose from {', '.join(SETTINGS)}")
        if self.steps <= 0:
            raise UserError(f"--steps must be positive, got {self.steps}")
        if self.record_every <= 0:
            raise UserError(f"record_every must be positive, got {self.record_every}")
        if any(lr <= 0 for lr in self.learning_rates):
            raise UserError("learning rates must be positive")
        if not -1.0 <= self.x0 <= 1.0:
            raise UserError(f"x0 must lie in F = [-1, 1], got {self.x0}")

    @property
    def columns(self):
        """(learning_rate, seed) of each vector entry, learning rate major."""
        return [(lr, s) for lr in self.learning_rates for s in self.seeds]


def cyclic_config(C: float = 3.0, **kwargs) -> SyntheticConfig:
    """Reddi et al. §3: f_t = C·x for t mod 3 = 1, else −x (C > 2 makes x* = −1)."""
    if C <= 2:
        raise UserError(f"the §3 example needs C > 2, got {C}")
    return SyntheticConfig(setting="cyclic", big=float(C), small=-1.0, period=3, **kwargs)


def default_betas(setting: str, C: float = 3.0) -> tuple[float, float]:
    """(β1, β2) each setting is run with unless the user says otherwise.

    Online and stochastic: 0.9 and 0.99 (Reddi et al. §5; McGill §III-A). The §3 family: β1 = 0
    and β2 = 1/(1 + C²), the values of Reddi et al. Theorem 1 under which Adam provably converges
    to +1 — with a long memory (β2 = 0.99) the C·x / −x sequence is benign and Adam finds −1 too.
    """
    if setting == "cyclic":
        return 0.0, 1.0 / (1.0 + C * C)
    return 0.9, 0.99


def gradient_coefficients(config: SyntheticConfig, t0: int, count: int, rngs=None) -> np.ndarray:
    """c_t for t = t0 .. t0+count−1 (t from 1), shape (count, n_columns), float64.

    ``rngs`` (one ``numpy.random.Generator`` per column, seeded by the column's seed) must be
    advanced sequentially for the stochastic setting; the draws then do not depend on chunking.
    """
    n = len(config.columns)
    t = np.arange(t0, t0 + count)
    if config.setting in ("online", "cyclic"):
        c = np.where(t % config.period == 1 % config.period, config.big, config.small)
        return np.repeat(c[:, None], n, axis=1).astype(np.float64)
    draws = np.stack([rng.random(count) for rng in rngs], axis=1)
    return np.where(draws < config.probability, config.big, config.small).astype(np.float64)


def make_rngs(config: SyntheticConfig):
    # The seed fixes the sequence of f_t; learning rates sharing a seed see the same draws.
    return [np.random.default_rng(seed) for _lr, seed in config.columns]


def draw_hits(config: SyntheticConfig, count: int, rngs: dict) -> np.ndarray:
    """Whether f_t is the large one, for the next ``count`` steps of every column, as uint8 of
    shape (count, n_columns): the same draws as :func:`gradient_coefficients` (one generator per
    *seed*, advanced sequentially, so columns sharing a seed share the draws) at one byte per
    entry instead of eight. ``rngs``: ``{seed: numpy.random.Generator}``, advanced in place."""
    seeds = list(rngs)
    per_seed = np.stack([rngs[seed].random(count) < config.probability for seed in seeds], axis=1)
    index = [seeds.index(seed) for _lr, seed in config.columns]
    return per_seed.view(np.uint8)[:, index]


def compile_function(fn: Callable, static_argnames: Sequence[str] = ()) -> Callable:
    """Compile ``fn`` with the active Keras backend's compiler (XLA for TensorFlow and JAX).

    ``static_argnames`` name the arguments that fix shapes or loop bounds (Python ints): JAX
    traces every other argument into an abstract array, and ``ops.zeros((records, n))`` cannot
    take a traced shape, so these must be static (one compilation per distinct value, as
    ``tf.function`` retraces per Python int anyway)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(fn, static_argnames=tuple(static_argnames))
    return fn  # torch / numpy: eager, still the same maths


_RUNNERS: dict = {}


def get_block_runner(config: SyntheticConfig):
    """:func:`make_block_runner`, cached on everything but the columns and lengths, so repeated
    runs (seeds, resumed grids, the benchmark) reuse the compiled loop."""
    key = dataclasses.replace(config, learning_rates=(1.0,), seeds=(0,), steps=1, record_every=1)
    if key not in _RUNNERS:
        _RUNNERS[key] = make_block_runner(config)
    return _RUNNERS[key]


def make_block_runner(config: SyntheticConfig):
    """A compiled ``run(carry, coeffs, t0, lr, records, every) -> (carry, recorded)``.

    It advances every column ``records × every`` steps from step ``t0`` in one call, keeping
    (x, min x, max x, regret) at the end of each ``every`` steps in ``recorded`` — so a million
    steps cost a handful of host round trips. ``hits`` holds the stochastic draws for the block
    (:func:`draw_hits`, uint8 of shape (records·every, n)); the online and cyclic gradients are
    computed in the loop.
    ``carry = (x, state, regret_sum, d_prev)``, ``state`` the optimizer's named state (its
    ``init_state``). Exposed for the benchmark.
    """
    # Schedule evaluated by the optimizer's own schedule object with α = 1, scaled per column:
    # α/√t is linear in α, so one optimizer instance serves every learning rate in the vector.
    optimizer = make_optimizer(
        config.optimizer, 1.0, schedule=config.schedule, beta_1=config.beta_1,
        beta_2=config.beta_2, epsilon=config.epsilon, bias_correction=config.bias_correction,
    )
    project = ClipValue(-1.0, 1.0)
    dtype = "float64"
    schedule = optimizer._learning_rate
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        schedule = None  # constant: the factor is the optimizer's α = 1
    periodic = config.setting != "stochastic"
    big, small = config.big, config.small
    period, phase = config.period, 1 % config.period

    def step_fn(step, c, lr, carry):
        """One projected step at t = ``step`` with gradient ``c``; also Γ_t = d_t − d_{t−1}
        (:meth:`inverse_step_size`, Reddi et al. eq. 2), defined from t = 2."""
        x, state, regret, d_prev, x_min, x_max, negatives, gamma_min = carry
        t = ops.cast(step, dtype)
        regret = regret + c * (x - X_STAR)
        # Keras evaluates the schedule at optimizer.iterations = t − 1.
        lr_t = lr if schedule is None else lr * ops.cast(schedule(step - 1), dtype)
        x, state = optimizer.update_rule(x, state, c, lr_t, t)
        x = project(x)
        d = optimizer.inverse_step_size(state, lr_t, t)
        gamma = ops.where(ops.greater(step, 1), d - d_prev, ops.cast(float("inf"), dtype))
        negatives = negatives + ops.cast(ops.less(gamma, 0.0), dtype)
        return (x, state, regret, d, ops.minimum(x_min, x), ops.maximum(x_max, x), negatives,
                ops.minimum(gamma_min, gamma))

    def run(carry, hits, t0, lr, records, every):
        x = carry[0]
        n = ops.shape(x)[0]
        buffers = tuple(ops.zeros((records, n), dtype=dtype) for _ in range(6))

        def outer(r, outer_carry):
            (x, state, regret, d_prev), buffers = outer_carry

            def inner(i, inner_carry):
                k = r * every + i  # index inside the block
                step = t0 + ops.cast(k, "int64")
                if periodic:
                    hit = ops.broadcast_to(ops.equal(ops.mod(step, period), phase), ops.shape(x))
                else:
                    hit = ops.greater(hits[k], 0)
                c = ops.where(hit, ops.cast(big, dtype), ops.cast(small, dtype))
                return step_fn(step, c, lr, inner_carry)

            zeros = ops.zeros_like(x)
            inf = zeros + ops.cast(float("inf"), dtype)
            x, state, regret, d_prev, x_min, x_max, negatives, gamma_min = ops.fori_loop(
                0, every, inner, (x, state, regret, d_prev, x, x, zeros, inf))
            buffers = tuple(
                ops.slice_update(buf, (r, 0), ops.expand_dims(value, 0))
                for buf, value in zip(buffers, (x, x_min, x_max, regret, negatives, gamma_min))
            )
            return (x, state, regret, d_prev), buffers

        return ops.fori_loop(0, records, outer, (carry, buffers))

    return optimizer, compile_function(run, static_argnames=("records", "every"))


def run_synthetic(config: SyntheticConfig, progress: Callable[[int], None] | None = None,
                  block_records: int = 100) -> pd.DataFrame:
    """Run every (learning rate, seed) column of ``config`` for ``config.steps`` steps.

    Returns a tidy frame with :data:`COLUMNS`: one row per column and record step (every
    ``record_every`` steps, plus the last step). ``progress(steps_done)`` is called after each
    block of ``block_records`` records.
    """
    columns = config.columns
    n = len(columns)
    optimizer, run = get_block_runner(config)
    x = ops.convert_to_tensor(np.full(n, config.x0), dtype="float64")
    check_dtype(x, "float64", what="the synthetic problem's x")  # float64 by design, never less
    carry = (x, optimizer.init_state(x), ops.zeros_like(x), ops.zeros_like(x))
    lr = ops.convert_to_tensor(np.array([c[0] for c in columns], dtype=np.float64))
    stochastic = config.setting == "stochastic"
    rngs = {seed: np.random.default_rng(seed) for seed in dict.fromkeys(config.seeds)} if stochastic else None
    dummy = ops.zeros((1, n), dtype="uint8")

    steps_out, recorded = [], [[] for _ in range(6)]
    t = 1
    while t <= config.steps:
        remaining = config.steps - t + 1
        every = min(config.record_every, remaining)
        records = max(1, min(block_records, remaining // every))
        if stochastic:  # bound the draws held at once (10⁸ steps × 65 columns would be 6.5 GB)
            records = max(1, min(records, MAX_BLOCK_BYTES // (every * n)))
        count = records * every
        hits = ops.convert_to_tensor(draw_hits(config, count, rngs)) if stochastic else dummy
        carry, buffers = run(carry, hits, ops.convert_to_tensor(t, "int64"), lr, records, every)
        for store, buf in zip(recorded, buffers):
            store.append(ops.convert_to_numpy(buf))
        steps_out.extend(t - 1 + every * np.arange(1, records + 1))
        t += count
        stops.check()  # Ctrl-C or SIGTERM: stop between blocks (nothing of this unit is kept)
        if progress is not None:
            progress(t - 1)

    steps = np.asarray(steps_out, dtype=np.int64)
    xs, mins, maxs, regrets, negatives, gamma_min = (np.concatenate(store, axis=0) for store in recorded)
    avg_regret = regrets / steps[:, None]
    # Γ is defined from t = 2: the first window has one value fewer.
    window = np.diff(np.concatenate([[0], steps])).astype(np.float64)
    window[0] -= 1
    negative_fraction = negatives / np.maximum(window, 1)[:, None]
    frames = []
    for j, (lr_value, seed) in enumerate(columns):
        frames.append(pd.DataFrame({
            "setting": config.setting,
            "optimizer": config.optimizer,
            "learning_rate": float(lr_value),
            "schedule": config.schedule,
            "bias_correction": bool(config.bias_correction),
            "beta_1": config.beta_1,
            "beta_2": config.beta_2,
            "epsilon": config.epsilon,
            "big_gradient": config.big,
            "seed": int(seed),
            "step": steps,
            "x": xs[:, j],
            "x_min": mins[:, j],
            "x_max": maxs[:, j],
            "avg_regret": avg_regret[:, j],
            "gamma_negative_fraction": negative_fraction[:, j],
            "gamma_min": gamma_min[:, j],
        }))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def reference_trajectory(config: SyntheticConfig, lr: float, seed: int, steps: int) -> tuple:
    """The projected algorithm for one column in plain Python floats: the benchmark's slow
    baseline (``benchmarks/bench_synthetic.py``, the same arithmetic without Keras). Not the tests'
    reference: they check both this and :func:`run_synthetic` against their own float64 oracle
    (``tests/oracle.py``). Returns ``(x_T, R_T/T)``."""
    one_column = dataclasses.replace(config, learning_rates=(lr,), seeds=(seed,), steps=steps)
    rngs = make_rngs(one_column) if config.setting == "stochastic" else None
    coeffs = gradient_coefficients(one_column, 1, steps, rngs)[:, 0]
    b1, b2, eps = config.beta_1, config.beta_2, config.epsilon
    x, m, v, v_hat, u, regret = config.x0, 0.0, 0.0, 0.0, 0.0, 0.0
    for t in range(1, steps + 1):
        g = float(coeffs[t - 1])
        regret += g * (x - X_STAR)
        lr_t = lr / math.sqrt(t) if config.schedule == "inverse-sqrt" else lr
        m = b1 * m + (1 - b1) * g
        if config.optimizer == "adamax":
            u = max(b2 * u, abs(g))
            alpha = lr_t / (1 - b1**t) if config.bias_correction else lr_t
            x = x - alpha * m / (u + eps)
        else:
            v = b2 * v + (1 - b2) * g * g
            v_hat = max(v_hat, v)
            denom = math.sqrt(v_hat if config.optimizer == "amsgrad" else v) + eps
            alpha = lr_t * math.sqrt(1 - b2**t) / (1 - b1**t) if config.bias_correction else lr_t
            x = x - alpha * m / denom
        x = min(1.0, max(-1.0, x))
    return x, regret / steps


def synthetic_configs(
    settings: Sequence[str],
    optimizers: Sequence[str],
    learning_rates: Sequence[float],
    seeds: Sequence[int],
    steps: int,
    schedule: str = "inverse-sqrt",
    beta_1: float | None = None,
    beta_2: float | None = None,
    bias_correction: bool = True,
    record_every: int | None = None,
    C: float | Sequence[float] = 3.0,
) -> list[SyntheticConfig]:
    """One :class:`SyntheticConfig` per (setting, optimizer) — per C too for the §3 family. The
    online and cyclic settings are deterministic, so they run with the first seed only. β1/β2
    left as None take :func:`default_betas` of each setting."""
    if record_every is None:
        record_every = max(1, steps // DEFAULT_RECORDS)
    Cs = [float(C)] if np.isscalar(C) else [float(c) for c in C]
    configs = []
    for setting in settings:
        for c_value in (Cs if setting == "cyclic" else [None]):
            b1, b2 = default_betas(setting, c_value or 0.0)
            for name in optimizers:
                kwargs = dict(
                    optimizer=name, learning_rates=tuple(float(a) for a in learning_rates),
                    seeds=tuple(seeds) if setting == "stochastic" else tuple(seeds[:1]), steps=steps,
                    schedule=schedule, beta_1=b1 if beta_1 is None else beta_1,
                    beta_2=b2 if beta_2 is None else beta_2, bias_correction=bias_correction,
                    record_every=record_every,
                )
                configs.append(cyclic_config(c_value, **kwargs) if setting == "cyclic"
                               else SyntheticConfig(setting=setting, **kwargs))
    return configs



def check_claim(frame: pd.DataFrame, adam_above: float = 0.9, amsgrad_below: float = 0.0) -> pd.DataFrame:
    """The paper's claim, per setting and learning rate: Adam settles near +1 (median final x
    over seeds > ``adam_above``) while AMSGrad moves toward the optimum −1 (median final x <
    ``amsgrad_below``: it crossed from x0 = 0 to the optimum's side). Lives in
    :mod:`replication.results` so the report can judge it without importing Keras."""
    from .results import check_synthetic_claim

    return check_synthetic_claim(frame, adam_above=adam_above, amsgrad_below=amsgrad_below)
