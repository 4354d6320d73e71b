"""The tests' one float64 oracle: the papers' pseudo-code in plain NumPy, for every test that needs
reference values of Adam, AMSGrad or AdaMax.

Transcribed from the papers, not from :mod:`replication.optimizers` (nothing here imports the
package):

* Adam: Kingma & Ba (2015), Algorithm 1, in the "more efficient" order of its §2 (last paragraph):
  α_t = α·√(1−β2^t)/(1−β1^t), θ_t = θ_{t−1} − α_t·m_t/(√v_t + ε̂). The form as printed (m̂_t, v̂_t,
  ε added to √v̂_t) is ``printed=True``; the two agree when ε = 0.
* AdaMax: Kingma & Ba (2015), Algorithm 2: u_t = max(β2·u_{t−1}, |g_t|),
  θ_t = θ_{t−1} − (α/(1−β1^t))·m_t/u_t; the paper has no ε, Keras adds it to u_t.
* AMSGrad: Reddi, Kale & Kumar (2018), Algorithm 2: v̂_t = max(v̂_{t−1}, v_t),
  x_{t+1} = Π_F(x_t − α_t·m_t/√v̂_t), written there without bias correction and without ε (β1
  constant, as in their experiments). ``bias_correction=True`` is the variant of Keras's
  ``Adam(amsgrad=True)``: Adam's α_t, the maximum taken over the uncorrected v_t.

Schedules: α_t = α (constant) or α/√t (Reddi et al. §5), t counted from 1. Projection onto a box
F = [lo, hi]: for a diagonal V̂_t the weighted projection Π_{F,√V̂_t} of Reddi et al. is plain
clipping. Alongside x the oracle returns d_t = (√V_t + ε)/α_t (V_t = v_t, v̂_t or u_t; α_t with its
bias-correction factors), so that Reddi et al.'s Γ_{t+1} = √V_{t+1}/α_{t+1} − √V_t/α_t (their
eq. 2) is ``np.diff(d)``.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

NAMES = ("adam", "amsgrad", "adamax")
SCHEDULES = ("constant", "inverse-sqrt")


def schedule(name: str, alpha: float, float32: bool = False) -> Callable[[int], float]:
    """α_t as a function of t (from 1): α for ``constant``, α/√t for ``inverse-sqrt``.

    ``float32``: the value rounded as Keras computes it, α held in float32 and, for α/√t, the
    division done in float32 (``InverseSqrtDecay`` and the learning-rate variable are float32);
    everything after that stays float64."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}")
    if float32:
        a = np.float32(alpha)
        if name == "constant":
            return lambda t: float(a)
        return lambda t: float(a / np.sqrt(np.float32(t)))
    if name == "constant":
        return lambda t: float(alpha)
    return lambda t: alpha / math.sqrt(t)


class Trajectory(NamedTuple):
    x: np.ndarray  # (T + 1, ...): x_0 (the start), x_1, …, x_T
    d: np.ndarray  # (T, ...): d_1, …, d_T, the inverse effective step size (√V_t + ε)/α_t


def run(name: str, grads, x0, lr: Callable[[int], object], *, beta_1: float, beta_2: float, epsilon: float,
        bias_correction: bool = True, bounds: tuple[float, float] | None = None,
        printed: bool = False) -> Trajectory:
    """Iterate optimizer ``name`` from ``x0`` over the gradients ``grads`` (shape (T, ...), g_t not
    depending on x, as for the synthetic problem's linear losses and for recorded gradients).

    ``lr(t)`` gives α_t before bias correction: a float, or an array broadcasting against x (one
    α per coordinate). ``bounds``: project onto [lo, hi] after every step. ``printed``: Adam and
    AMSGrad as Kingma & Ba's Algorithm 1 is printed (ε added to the bias-corrected √v̂_t); d_t is
    then not defined and returned as NaN.
    """
    if name not in NAMES:
        raise ValueError(f"unknown optimizer {name!r}")
    grads = np.asarray(grads, dtype=np.float64)
    x = np.broadcast_to(np.asarray(x0, dtype=np.float64), grads.shape[1:]).copy()
    m, v, v_max, u = (np.zeros_like(x) for _ in range(4))
    xs, ds = [x.copy()], []
    for t, g in enumerate(grads, start=1):
        alpha = np.asarray(lr(t), dtype=np.float64)
        m = beta_1 * m + (1.0 - beta_1) * g
        if name == "adamax":
            u = np.maximum(beta_2 * u, np.abs(g))
            alpha_t = alpha / (1.0 - beta_1**t) if bias_correction else alpha
            root = u
            x = x - alpha_t * m / (root + epsilon)
        else:
            v = beta_2 * v + (1.0 - beta_2) * g * g
            v_max = np.maximum(v_max, v)
            second = v_max if name == "amsgrad" else v
            alpha_t = alpha * math.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t) if bias_correction else alpha
            root = np.sqrt(second)
            if printed and bias_correction:  # m̂_t = m_t/(1−β1^t), v̂_t = v_t/(1−β2^t), ε added to √v̂_t
                m_hat, second_hat = m / (1.0 - beta_1**t), second / (1.0 - beta_2**t)
                x = x - alpha * m_hat / (np.sqrt(second_hat) + epsilon)
            else:
                x = x - alpha_t * m / (root + epsilon)
        if bounds is not None:
            x = np.clip(x, bounds[0], bounds[1])
        xs.append(x.copy())
        ds.append(np.full_like(x, np.nan) if printed else (root + epsilon) / alpha_t)
    return Trajectory(np.array(xs), np.array(ds))
