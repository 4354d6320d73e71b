"""What the suite needs from the active Keras backend beyond ``keras.ops``: real float64 on JAX
(below) and when to XLA-compile a fit (:func:`auto_jit_compile`).

JAX computes in 32 bits unless its 64-bit mode is on (JAX "sharp bits": *Double (64bit)
precision*). With the mode off, ``keras.Variable(..., dtype="float64")`` and
``ops.convert_to_tensor(..., dtype="float64")`` hold float32, JAX only warns, and the Variable
still reports ``float64``: the synthetic experiment and the float64 optimizer tests would quietly lose
precision (the float64 references then miss by ~1e-6). :func:`enable_float64` turns the mode on;
:mod:`replication.optimizers` calls it at import, so every path that uses our optimizers (the
trainer, both grid-search engines, the synthetic loop) runs with it, whatever the order of
imports or tests. TensorFlow and torch have float64 natively: nothing to do.

Float32 training is unchanged by the mode: Keras creates layers, weights and optimizer slots in
``keras.config.floatx()`` (float32) and casts inputs to it, and our losses and optimizers cast
their constants to the tensor's dtype. Measured: digits-mlp (adam, 5 epochs, one seed) gives
bitwise-identical histories with the mode off and on; ``tests/test_optimizers.py`` checks the
dtypes of a float32 fit. :func:`check_dtype` makes a downgrade loud where it could still happen
(a float64 variable made before the mode was turned on).
"""
from __future__ import annotations

import keras

__all__ = ["enable_float64", "check_dtype", "auto_jit_compile"]


def enable_float64() -> None:
    """Give float64 tensors 64 bits on the active backend (JAX: ``jax_enable_x64``)."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            jax.config.update("jax_enable_x64", True)


def auto_jit_compile(steps: int, min_steps: int, conv: bool = False) -> bool:
    """``jit_compile="auto"`` for a fit of ``steps`` optimizer steps: XLA from ``min_steps`` on
    TensorFlow, always on JAX.

    Without XLA, TensorFlow still runs the step as one ``tf.function`` graph, and for short fits
    that beats paying XLA's compilation; JAX has no such middle ground: ``jit_compile=False`` runs
    every op of the step eagerly from Python. Measured on 2 shared CPU cores, digits-mlp (11 steps
    an epoch, 50 epochs): JAX 0.187 s/epoch eager vs 0.0066 s/epoch with XLA (18.8 s vs 2.6 s a
    run, compilation included); TensorFlow 0.126 s/epoch graph vs 0.081 s/epoch XLA.

    ``conv``: on TensorFlow a convolutional model never gets XLA, whose CPU convolutions are far
    slower than TensorFlow's oneDNN kernels (CifarNet: benchmarks/bench_cifarnet.py)."""
    if keras.backend.backend() == "jax":
        return True
    return steps >= min_steps and not conv


def check_dtype(value, dtype=None, what: str = "tensor") -> None:
    """Raise ``TypeError`` unless ``value`` holds ``dtype`` (default: the dtype a
    ``keras.Variable`` declares). JAX without 64-bit mode keeps a float64 variable in float32 and
    turns a float64 conversion into float32 with only a warning; this makes it an error."""
    declared = keras.backend.standardize_dtype(dtype or value.dtype)
    held = value.value if isinstance(value, keras.Variable) else value
    actual = keras.backend.standardize_dtype(held.dtype)
    if declared != actual:
        raise TypeError(
            f"{what} should be {declared} but holds {actual}: JAX's 64-bit mode was off when it "
            "was made; import replication.optimizers (or call replication.backend.enable_float64()) "
            "before creating float64 variables or tensors"
        )
