"""CifarNet epoch time on this machine against its FLOP floor, in float32.

Prints, measured in one process:

* this CPU's float32 matrix-multiply peak (median GFLOP/s of a 4096² × 4096² product);
* the FLOPs of one CifarNet epoch (50,000 training images: forward + both backward products,
  conv1 has no input gradient; plus the 10,000-image test pass), counted from the layer shapes;
* the floor = FLOPs ÷ peak;
* seconds per CifarNet epoch (50,000 training images + the 10,000-image test evaluation) for
  several compile settings, the trainer's first (:func:`replication.run.resolve_fit_settings`) and
  Keras's default ``fit``, each as a ratio to the floor.

Each setting trains ``--images`` images per epoch (scaled to 50,000) and evaluates 10,000 test
images; configurations alternate round by round (after a warm-up round that compiles), so load on
this shared machine hits all alike, and medians over ``--rounds`` are reported. The model is the
project's ``build_model("cifarnet")`` with our AMSGrad (α/√t) and McGill's multiclass log-loss,
batch 128, as a real run.

    python benchmarks/bench_cifarnet.py [--data-dir ../shared/data] [--images 6400] [--rounds 3]
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
import logging  # noqa: E402

logging.getLogger("tensorflow").setLevel(logging.ERROR)  # one model per setting: retracing is expected
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from replication.losses import get_loss, get_metrics  # noqa: E402
from replication.models import build_model, make_targets  # noqa: E402
from replication.optimizers import make_optimizer  # noqa: E402
from replication.run import EVAL_BATCH_SIZE, compile_model, resolve_fit_settings  # noqa: E402

TRAIN_IMAGES, TEST_IMAGES, BATCH = 50_000, 10_000, 128


def matmul_peak(n=4096, repeats=7):
    """Median GFLOP/s of an n×n float32 matrix product on the active backend."""
    rng = np.random.default_rng(0)
    a = ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32))
    b = ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32))
    ops.convert_to_numpy(ops.matmul(a, b))  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ops.convert_to_numpy(ops.sum(ops.matmul(a, b)))
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def cifarnet_flops(model):
    """(forward FLOPs per image, training FLOPs per image) from the model's conv and dense layers:
    a multiply-add is 2 FLOPs; training = forward + gradient w.r.t. weights (1×) + gradient w.r.t.
    inputs (1×, not for the first layer)."""
    forward, train = 0, 0
    first = True
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            h, w = layer.output.shape[1:3]
            f = 2 * h * w * cout * kh * kw * cin
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            f = 2 * cin * cout
        else:
            continue
        forward += f
        train += f * (2 if first else 3)
        first = False
    return forward, train


class _Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--images", type=int, default=6400, help="training images timed per epoch")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--model", default="cifarnet", choices=["cifarnet", "cifarnet-paper", "cifarnet-coded"],
                        help="which CifarNet (cifarnet-coded: McGill's code's, fed raw pixels as they did)")
    parser.add_argument("--only-trainer", action="store_true", help="time the trainer's setting alone")
    args = parser.parse_args(argv)
    scale = 1.0 if args.model == "cifarnet-coded" else 255.0  # McGill's code: raw pixels

    path = Path(args.data_dir) / "cifar10.npz"
    if path.exists():
        with np.load(path) as f:
            x = f["x_train"][: args.images].astype(np.float32) / scale
            y = f["y_train"][: args.images].reshape(-1)
            x_test = f["x_test"].astype(np.float32) / scale
            source = str(path)
    else:  # CIFAR-shaped noise: the same FLOPs and kernels
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(args.images, 32, 32, 3)).astype(np.float32)
        y = rng.integers(0, 10, args.images)
        x_test = rng.uniform(size=(TEST_IMAGES, 32, 32, 3)).astype(np.float32)
        source = "random CIFAR-shaped arrays (no cifar10.npz found)"
    y = make_targets("binary", None, y, 10)
    y_test = make_targets("binary", None, np.zeros(len(x_test), int), 10)

    steps = math.ceil(TRAIN_IMAGES / BATCH)
    jit, spe = resolve_fit_settings(args.model, 30 * steps, steps, 30)
    configs = {
        f"trainer (jit_compile={jit}, steps_per_execution={spe})": {"jit_compile": jit, "steps_per_execution": spe},
        "Keras default fit (jit_compile='auto', steps_per_execution=1)": {"jit_compile": "auto", "steps_per_execution": 1},
        "previous trainer (jit_compile=True, steps_per_execution=32)": {"jit_compile": True, "steps_per_execution": 32},
        "jit_compile=False, steps_per_execution=1": {"jit_compile": False, "steps_per_execution": 1},
        "jit_compile=False, steps_per_execution=8": {"jit_compile": False, "steps_per_execution": 8},
    }
    if args.only_trainer:
        configs = dict(list(configs.items())[:1])
    if keras.backend.backend() == "torch":  # Keras's torch trainer runs one step per call, no XLA
        configs = {name: c for name, c in configs.items() if c["steps_per_execution"] == 1 and c["jit_compile"] is not True}
    models = {}
    for name, settings in configs.items():
        keras.utils.set_random_seed(0)
        model = build_model(args.model, input_shape=(32, 32, 3), num_classes=10)
        optimizer = make_optimizer("amsgrad", 1e-3, schedule="inverse-sqrt", beta_2=0.999)
        models[name] = compile_model(model, optimizer, get_loss("binary"), metrics=get_metrics("binary"), **settings)
        models[name].fit(x, y, batch_size=BATCH, epochs=1, verbose=0)  # warm-up: trace/compile
        models[name].evaluate(x_test, y_test, batch_size=EVAL_BATCH_SIZE, verbose=0)

    peak = matmul_peak()
    forward, train = cifarnet_flops(next(iter(models.values())))
    epoch_flops = train * TRAIN_IMAGES + forward * TEST_IMAGES
    floor = epoch_flops / (peak * 1e9)

    times = {name: {"train": [], "test": []} for name in configs}
    for _ in range(args.rounds):
        for name, model in models.items():
            timer = _Timer()
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
            times[name]["train"].append(timer.seconds * TRAIN_IMAGES / len(x))
            t0 = time.perf_counter()
            model.evaluate(x_test, y_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
            times[name]["test"].append(time.perf_counter() - t0)

    print(f"backend {keras.backend.backend()}, {os.cpu_count()} CPUs, data: {source}; "
          f"{len(x)} training images timed per round (scaled to {TRAIN_IMAGES}), {TEST_IMAGES} test images, "
          f"batch {BATCH}, {args.rounds} rounds (median)")
    print(f"float32 matmul peak (4096²): {peak:.0f} GFLOP/s")
    print(f"{args.model} FLOPs: forward {forward / 1e6:.1f} MFLOP/image, training {train / 1e6:.1f} MFLOP/image; "
          f"epoch = {train * TRAIN_IMAGES / 1e12:.2f} TFLOP training + {forward * TEST_IMAGES / 1e12:.2f} TFLOP test "
          f"= {epoch_flops / 1e12:.2f} TFLOP")
    print(f"floor (FLOPs / peak): {floor:.1f} s/epoch; target 1.5x = {1.5 * floor:.1f} s, stretch 1.2x = {1.2 * floor:.1f} s")
    print()
    print(f"| setting | train s (50k) | test s (10k) | s/epoch | × floor |")
    print("|---|---|---|---|---|")
    for name in configs:
        tr = statistics.median(times[name]["train"])
        te = statistics.median(times[name]["test"])
        print(f"| {name} | {tr:.1f} | {te:.1f} | {tr + te:.1f} | {(tr + te) / floor:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
