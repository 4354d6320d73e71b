"""Where a CifarNet epoch's time goes, layer by layer, on the TensorFlow backend (float32, CPU).

Prints one table, measured in one process with the configurations alternating round by round
(medians over ``--rounds``):

* for every layer of ``build_model(--model)``: the forward + backward time of that layer alone on
  its real input (batch 128, training mode; gradients w.r.t. its weights and, except for the first
  layer, its input, as in training), scaled to the 391 batches of a 50,000-image epoch; its FLOPs
  and GFLOP/s for conv and dense layers;
* the loss (McGill's multiclass log-loss on the softmax output) with its gradient;
* the optimizer pass: our AMSGrad (α/√t) applying one set of gradients to every weight;
* the whole training step as ``fit`` runs it (the trainer's settings: no XLA, 32 steps per call;
  128 batches timed from epoch begin to end), so "whole step − sum of the parts" is what the
  layers alone do not explain (framework overhead, the fused graph's savings);
* fit's fixed cost per epoch: a whole ``fit`` call (set-up included) of 50,000 images on a
  near-free model (Flatten → Dense(10)): the input pipeline (slicing, batching, copying) and
  per-call overhead;
* the test pass: forward only, 10,000 images at the evaluation batch size.

    python benchmarks/bench_cifarnet_layers.py [--model cifarnet] [--rounds 5] [--threads N]

``--threads`` sets TensorFlow's intra- and inter-op thread pools (default: TensorFlow's choice,
one per core) so that the thread count's effect can be read by running the script twice.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"
import logging  # noqa: E402

logging.getLogger("tensorflow").setLevel(logging.ERROR)  # one tf.function per layer: retracing is expected
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN_IMAGES, TEST_IMAGES, BATCH = 50_000, 10_000, 128


def _flops(layer):
    """Forward FLOPs per image of a conv or dense layer (a multiply-add is 2), else 0."""
    import keras

    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, cout = layer.kernel.shape
        h, w = layer.output.shape[1:3]
        return 2 * h * w * cout * kh * kw * cin
    if isinstance(layer, keras.layers.Dense):
        cin, cout = layer.kernel.shape
        return 2 * cin * cout
    return 0


class _Timer:
    """A Keras callback timing one epoch from its beginning to its end."""

    def __new__(cls):
        import keras

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds = time.perf_counter() - self.t0

        return Timer()


def _median_seconds(fn, repeats):
    fn()  # warm-up (tracing)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifarnet", choices=["cifarnet", "cifarnet-paper"])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--repeats", type=int, default=20, help="batches timed per layer and round")
    parser.add_argument("--threads", type=int, default=0, help="TF intra/inter-op threads (0: TF's default)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras
    import numpy as np

    from replication.losses import get_loss, get_metrics
    from replication.models import build_model
    from replication.optimizers import make_optimizer
    from replication.run import EVAL_BATCH_SIZE, compile_model, resolve_fit_settings

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(args.model, input_shape=(32, 32, 3), num_classes=10)
    x = rng.uniform(size=(BATCH, 32, 32, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]
    steps = math.ceil(TRAIN_IMAGES / BATCH)

    # Per layer: forward + backward on its real input.
    parts = {}  # name -> (callable, forward FLOPs per image or 0)
    h = tf.convert_to_tensor(x)
    first = True
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        out = layer(h, training=True)
        cotangent = tf.random.normal(tf.shape(out))

        def step(h=h, layer=layer, cotangent=cotangent, wrt_input=not first):
            with tf.GradientTape() as tape:
                if wrt_input:
                    tape.watch(h)
                s = tf.reduce_sum(layer(h, training=True) * cotangent)
            sources = ([h] if wrt_input else []) + list(layer.trainable_variables)
            return tape.gradient(s, sources) if sources else s

        parts[f"{layer.name} ({type(layer).__name__})"] = (tf.function(step, jit_compile=False), _flops(layer))
        first = first and not layer.trainable_variables
        h = out

    loss = get_loss("binary")
    probs = tf.convert_to_tensor(h)
    targets = tf.convert_to_tensor(y)

    def loss_step():
        with tf.GradientTape() as tape:
            tape.watch(probs)
            value = loss(targets, probs)
        return tape.gradient(value, probs)

    parts["loss + its gradient"] = (tf.function(loss_step, jit_compile=False), 0)

    optimizer = make_optimizer("amsgrad", 1e-3, schedule="inverse-sqrt", beta_2=0.999)
    variables = model.trainable_variables
    optimizer.build(variables)
    grads = [tf.random.normal(v.shape) * 1e-3 for v in variables]
    parts["optimizer pass (AMSGrad, all weights)"] = (
        tf.function(lambda: optimizer.apply(grads, variables), jit_compile=False), 0)

    # Whole steps through fit, with the trainer's settings.
    jit, spe = resolve_fit_settings(args.model, 30 * steps, steps, 30)
    images = 4 * 32 * BATCH  # four execution blocks of 32 steps
    xs = rng.uniform(size=(images, 32, 32, 3)).astype(np.float32)
    ys = np.eye(10, dtype=np.float32)[rng.integers(0, 10, images)]
    x_test = rng.uniform(size=(TEST_IMAGES, 32, 32, 3)).astype(np.float32)
    y_test = np.eye(10, dtype=np.float32)[rng.integers(0, 10, TEST_IMAGES)]
    full = keras.models.clone_model(model)
    compile_model(full, make_optimizer("amsgrad", 1e-3, schedule="inverse-sqrt", beta_2=0.999),
                  get_loss("binary"), metrics=get_metrics("binary"), jit_compile=jit, steps_per_execution=spe)
    free = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    compile_model(free, make_optimizer("amsgrad", 1e-3, schedule="inverse-sqrt", beta_2=0.999),
                  get_loss("binary"), metrics=get_metrics("binary"), jit_compile=jit, steps_per_execution=spe)
    big_x = rng.uniform(size=(TRAIN_IMAGES, 32, 32, 3)).astype(np.float32)
    big_y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, TRAIN_IMAGES)]

    timer = _Timer()

    def fit_full():  # epoch begin → end: fit's set-up (data adapter, callbacks) is not a step's cost
        full.fit(xs, ys, batch_size=BATCH, epochs=1, verbose=0, shuffle=False, callbacks=[timer])

    def fit_free():
        free.fit(big_x, big_y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)

    def test_pass():
        full.evaluate(x_test, y_test, batch_size=EVAL_BATCH_SIZE, verbose=0)

    times = {name: [] for name in [*parts, "whole step (fit)", "fit fixed cost", "test pass"]}
    for name, (fn, _) in parts.items():
        fn()  # trace
    for fn in (fit_full, fit_free, test_pass):
        fn()
    for _ in range(args.rounds):
        for name, (fn, _) in parts.items():
            times[name].append(_median_seconds(fn, args.repeats) * steps)
        fit_full()
        times["whole step (fit)"].append(timer.seconds / (images // BATCH) * steps)
        t0 = time.perf_counter()
        fit_free()
        times["fit fixed cost"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        test_pass()
        times["test pass"].append(time.perf_counter() - t0)

    med = {name: statistics.median(v) for name, v in times.items()}
    parts_sum = sum(med[name] for name in parts)
    whole = med["whole step (fit)"]
    epoch = whole + med["test pass"]
    print(f"backend tensorflow {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"threads {'TF default' if not args.threads else args.threads}; model {args.model}, batch {BATCH}, "
          f"{steps} steps per 50,000-image epoch; trainer settings jit_compile={jit}, steps_per_execution={spe}; "
          f"{args.rounds} rounds (median), {args.repeats} batches per layer and round")
    print()
    print("| part | s per epoch | share of the training step | GFLOP/s |")
    print("|---|---|---|---|")
    first = True
    for name, (_, flops) in parts.items():
        rate = ""
        if flops:
            train_flops = flops * (2 if first else 3) * BATCH * steps
            rate = f"{train_flops / med[name] / 1e9:.0f}"
            first = False
        print(f"| {name} | {med[name]:.2f} | {med[name] / whole:.0%} | {rate} |")
    print(f"| **sum of the parts** | {parts_sum:.2f} | {parts_sum / whole:.0%} | |")
    print(f"| **whole training step** (fit, {spe} steps per call) | {whole:.2f} | 100% | |")
    print(f"| fit's fixed cost (input pipeline + calls; near-free model) | {med['fit fixed cost']:.2f} | "
          f"{med['fit fixed cost'] / whole:.0%} | |")
    print(f"| test pass (10,000 images, forward) | {med['test pass']:.2f} | | |")
    print(f"| **epoch** (training step + test pass) | {epoch:.2f} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
