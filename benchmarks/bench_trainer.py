"""Trainer throughput: our AMSGrad vs Keras's built-in, and our fit settings vs Keras's defaults.

Prints, measured in one process on the MNIST MLP (mnist-mlp's model, batch 128):

* median seconds per training epoch of ``replication.optimizers.AMSGrad`` vs
  ``keras.optimizers.Adam(amsgrad=True)`` under the trainer's fit settings, and the throughput
  ratio (target: ours ≥ 0.95× built-in);
* Keras's default compile settings (``jit_compile="auto"``, ``steps_per_execution=1``) vs the
  trainer's (:data:`replication.trainer.FIT_SETTINGS`), both with our AMSGrad.

Configurations alternate epoch by epoch (after a warm-up epoch each), so machine load affects all
alike; an epoch is timed from ``on_epoch_begin`` to ``on_epoch_end`` (no data-pipeline setup).

    python benchmarks/bench_trainer.py [--data-dir ../shared/data] [--epochs 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402

from replication.datasets import load_dataset  # noqa: E402
from replication.errors import UserError  # noqa: E402
from replication.experiments import get_experiment  # noqa: E402
from replication.models import build_model, get_loss  # noqa: E402
from replication.optimizers import make_optimizer  # noqa: E402
from replication.models import make_targets  # noqa: E402
from replication.trainer import FIT_SETTINGS, compile_model  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t0)


def make(spec, data, optimizer, settings):
    keras.utils.set_random_seed(0)
    model = build_model(spec.model, input_shape=data.x_train.shape[1:], num_classes=data.num_classes,
                        **dict(spec.model_kwargs))
    return compile_model(model, optimizer, get_loss(spec.loss), **settings)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per configuration")
    args = parser.parse_args(argv)

    spec = get_experiment("mnist-mlp")
    try:
        data = load_dataset("mnist", data_dir=args.data_dir)
    except UserError as exc:
        print(f"note: MNIST unavailable ({exc}); falling back to digits (timings not comparable)")
        data = load_dataset("digits")
    x, y = data.x_train, make_targets("categorical", None, data.y_train, data.num_classes)
    # The trainer's settings for a full MNIST run ("auto" compiles runs of >= 2000 steps).
    ours = {"jit_compile": True, "steps_per_execution": FIT_SETTINGS["steps_per_execution"]}
    default = {"jit_compile": "auto", "steps_per_execution": 1}
    beta_2 = spec.default_hyperparameters("amsgrad")["beta_2"]
    configs = {
        "ours AMSGrad, trainer settings": (make_optimizer("amsgrad", 1e-3, beta_2=beta_2), ours),
        "keras Adam(amsgrad=True), trainer settings": (
            keras.optimizers.Adam(1e-3, beta_2=beta_2, amsgrad=True), ours),
        "ours AMSGrad, Keras default settings": (make_optimizer("amsgrad", 1e-3, beta_2=beta_2), default),
    }
    models, timers = {}, {}
    for name, (optimizer, settings) in configs.items():
        models[name] = make(spec, data, optimizer, settings)
        timers[name] = EpochTimer()
        models[name].fit(x, y, batch_size=spec.batch_size, epochs=1, verbose=0)  # warm-up: compile
    for _ in range(args.epochs):
        for name, model in models.items():
            model.fit(x, y, batch_size=spec.batch_size, epochs=1, verbose=0, callbacks=[timers[name]])

    print(f"dataset {data.name}: {x.shape[0]} training images, batch {spec.batch_size}, "
          f"model {spec.model}, loss {spec.loss}, backend {keras.backend.backend()}, "
          f"{args.epochs} timed epochs each (alternating, after 1 warm-up)")
    medians = {name: statistics.median(t.seconds) for name, t in timers.items()}
    width = max(map(len, medians))
    for name, median in medians.items():
        print(f"  {name:<{width}}  median {median:7.3f} s/epoch  (min {min(timers[name].seconds):.3f})")
    names = list(medians)
    ratio = medians[names[1]] / medians[names[0]]
    print(f"throughput ours / built-in AMSGrad: {ratio:.3f}x (target >= 0.95x) "
          f"{'OK' if ratio >= 0.95 else 'BELOW TARGET'}")
    print(f"speed-up of trainer settings {ours} over Keras defaults: "
          f"{medians[names[2]] / medians[names[0]]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
