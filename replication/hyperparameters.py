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
"""
from __future__ import annotations

import math
import numbers

DECAY_RATE_RANGE = "[0, 1)"


def is_decay_rate(value) -> bool:
    """Whether ``value`` is a real number (not a bool) in [0, 1); NaN is not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value) and 0.0 <= value < 1.0
