"""Steps per second on the synthetic problem, measured side by side in one process.

    python benchmarks/bench_synthetic.py [--steps 1000000] [--repeats 3]

Rows (median of --repeats):
  compiled loop, 1 run      run_synthetic: our AMSGrad.update_rule in one XLA loop, one column
  compiled loop, 20 runs    the same loop advancing 20 α columns at once (steps = columns × t)
  Python loop               the same arithmetic in plain Python floats (reference_trajectory)
  Keras loop, ours          the same per-step work, but through the stateful optimizer.apply_gradients
                            of our AMSGrad class on a keras.Variable (XLA tf.function loop)
  Keras loop, built-in      that loop driving keras.optimizers.Adam(amsgrad=True)

The two Keras-loop rows are TensorFlow-only (a tf.function around stateful apply_gradients; JAX
has no stateful compiled equivalent): under KERAS_BACKEND=jax the benchmark prints the others.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from replication.optimizers import AMSGrad, ClipValue  # noqa: E402
from replication.synthetic import SyntheticConfig, gradient_coefficients, reference_trajectory, run_synthetic  # noqa: E402


def keras_loop(optimizer, steps, n=1, block=100_000):
    """The online problem driven through the optimizer's stateful ``apply_gradients`` (slots as
    variables, projection by the variable's constraint), with the same per-step work as
    run_synthetic (in-loop gradient, regret, range of x), one XLA call per ``block`` steps."""
    import tensorflow as tf  # the benchmark may use TF directly; the library does not

    x = keras.Variable(np.zeros(n), dtype="float64")
    x.constraint = ClipValue(-1.0, 1.0)
    optimizer.build([x])

    @tf.function(jit_compile=True)
    def run(t0, regret):
        x_min = x_max = tf.identity(x.value)
        for i in tf.range(block):
            step = t0 + tf.cast(i, tf.int64)
            c = tf.where(step % 101 == 1, tf.constant(1010.0, tf.float64), -10.0) * tf.ones([n], tf.float64)
            regret = regret + c * (x.value + 1.0)
            optimizer.apply_gradients([(c, x)])
            x_min = tf.minimum(x_min, x.value)
            x_max = tf.maximum(x_max, x.value)
        return regret, x_min, x_max

    regret = tf.zeros([n], tf.float64)
    run(tf.constant(1, tf.int64), regret)  # compile
    start = time.perf_counter()
    for b in range(steps // block):
        regret, _, _ = run(tf.constant(1 + b * block, tf.int64), regret)
    return steps * n / (time.perf_counter() - start)


def compiled(config):
    run_synthetic(dataclasses.replace(config, steps=config.record_every * 100))  # compile one block shape
    start = time.perf_counter()
    run_synthetic(config)
    return config.steps * len(config.columns) / (time.perf_counter() - start)


def python_loop(steps):
    config = SyntheticConfig(setting="online", optimizer="amsgrad", learning_rates=(0.001,), steps=steps,
                             schedule="constant")
    start = time.perf_counter()
    reference_trajectory(config, 0.001, 0, steps)
    return steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    steps = args.steps
    # Constant α, as the Keras loops below use: the same per-step work in every row.
    one = SyntheticConfig(setting="online", optimizer="amsgrad", learning_rates=(0.001,), steps=steps,
                          record_every=max(1, steps // 1000), schedule="constant")
    # 20 columns of the online problem: the vectorised loop without the host-side stochastic draws.
    twenty = dataclasses.replace(one, learning_rates=(0.001, 0.01, 0.1, 0.5, 0.05) * 4)
    cases = {
        "compiled loop, 1 run": lambda: compiled(one),
        "compiled loop, 20 runs": lambda: compiled(twenty),
        "Python loop": lambda: python_loop(min(steps, 300_000)),
    }
    if keras.backend.backend() == "tensorflow":
        cases["Keras loop, ours"] = lambda: keras_loop(AMSGrad(0.001, beta_2=0.99, epsilon=1e-8), steps)
        cases["Keras loop, built-in"] = lambda: keras_loop(
            keras.optimizers.Adam(0.001, beta_2=0.99, epsilon=1e-8, amsgrad=True), steps)
    results = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved, so machine noise hits every case alike
        for name, case in cases.items():
            results[name].append(case())
    med = {name: statistics.median(v) for name, v in results.items()}
    builtin = med.get("Keras loop, built-in")
    print(f"backend {keras.backend.backend()}")
    print(f"{'loop':<24} {'M steps/s':>10}  {'vs Python':>9}" + (f"  {'vs Keras built-in':>17}" if builtin else ""))
    for name, value in med.items():
        print(f"{name:<24} {value / 1e6:>10.2f}  {value / med['Python loop']:>8.1f}x"
              + (f"  {value / builtin:>16.2f}x" if builtin else ""))


if __name__ == "__main__":
    main()
