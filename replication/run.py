"""One training run: compile, fit epoch by epoch, checkpoint every finished epoch, resume.

:func:`train_run` trains the run a :class:`replication.trainer.RunConfig` describes and returns its
history; :mod:`replication.trainer` is the experiment around it (hyperparameter precedence, run
order, files, CSV assembly).

Resumable. With ``checkpoint=PATH`` every finished epoch but the last is saved atomically to one
``.npz``: all model variables (weights, batch-norm statistics, the dropout and flip layers'
seed-generator states), the optimizer's variables (step counter, moments), the recorder's partial
history (epoch logs, iteration points, the Γ diagnostic's previous inverse step sizes) and the run
config it belongs to. A killed run started again with the same config restores it and continues
at the next epoch; its history equals an uninterrupted run's except the wall-time column
(``epoch_seconds``), because nothing else carries state from one epoch to the next:

* the mini-batch order of epoch ``e`` is a pure function of (seed, e) (:func:`epoch_order`), not
  of a shuffling RNG's position, so a resumed epoch sees the batches it would have seen;
* dropout masks and flips come from seed generators whose states are model variables.

A checkpoint of another config (changed flags, an older run id) is ignored and replaced. So is one
written by other code (another source fingerprint of ``replication/`` and ``gridsearch/``, see
:func:`replication.io.code_version`), with a line saying so: a run resumed across a code change would
mix two versions in one history, and its sidecar names only the last.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from . import io, stops
from .errors import write_failed
from .backend import auto_jit_compile
from .optimizers import make_optimizer
from .registry import CONV_MODELS, DEFAULT_EPSILON, XLA_MIN_STEPS  # noqa: F401 - re-exported
from .runfiles import ELBO_COLUMNS, EXACT_COLUMNS, HISTORY_COLUMNS, ITERATION_COLUMNS, history_columns

__all__ = [
    "FIT_SETTINGS",
    "JIT_MIN_STEPS",
    "EVAL_BATCH_SIZE",
    "DEFAULT_MAX_POINTS",
    "DEFAULT_EPSILON",
    "HISTORY_COLUMNS",
    "ELBO_COLUMNS",
    "EXACT_COLUMNS",
    "ITERATION_COLUMNS",
    "compile_model",
    "resolve_fit_settings",
    "epoch_order",
    "train_run",
]


# Small dense models on CPU are dominated by per-step Python/dispatch overhead: XLA-compile the
# step and run several steps per call (MNIST MLP, 2 cores: 1.71 s/epoch Keras defaults vs 0.68
# s/epoch). XLA compilation costs a few seconds per run, so "auto" compiles only runs of at least
# JIT_MIN_STEPS optimizer steps (all MNIST runs; not the 11-step-an-epoch digits demos), and never
# convolutional models: XLA's CPU convolutions are slower than TensorFlow's oneDNN kernels
# (CifarNet: see benchmarks/bench_cifarnet.py). On JAX always (backend.auto_jit_compile: without
# XLA, JAX runs the step op by op).
FIT_SETTINGS = {"jit_compile": "auto", "steps_per_execution": 32}
JIT_MIN_STEPS = XLA_MIN_STEPS  # the one XLA policy, shared with the grid search (replication.registry)
EVAL_BATCH_SIZE = 2048
DEFAULT_MAX_POINTS = 200  # iteration points kept per run
CHECKPOINT_FORMAT = 3  # 2: records the code that wrote it; 3: history in a journal beside it


def compile_model(model, optimizer, loss, *, jit_compile=True, steps_per_execution=32, metrics=None):
    """Compile for training in the fast settings; ``metrics`` default to categorical accuracy
    (one-hot targets); the VAE passes its ELBO terms (:func:`replication.losses.get_metrics`)."""
    import keras

    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics if metrics is not None else [keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def resolve_fit_settings(model_name, total_steps, steps_per_epoch, epochs, fit_settings=None,
                         max_points=DEFAULT_MAX_POINTS):
    """``(jit_compile, steps_per_execution)`` for a run: ``"auto"`` XLA-compiles dense models of
    at least :data:`JIT_MIN_STEPS` steps and runs conv models without XLA, both with several
    steps per call (benchmarks/bench_cifarnet.py measures CifarNet's options); blocks of steps are kept no coarser than one thinned iteration
    point, so short runs still get their points."""
    settings = {**FIT_SETTINGS, **(fit_settings or {})}
    per_epoch_points = max(1, max_points // max(1, epochs))
    spe = max(1, min(int(settings["steps_per_execution"]), math.ceil(steps_per_epoch / per_epoch_points)))
    jit = settings["jit_compile"]
    if jit == "auto":
        jit = auto_jit_compile(total_steps, JIT_MIN_STEPS, conv=model_name in CONV_MODELS)
    return bool(jit), spe


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch ``epoch`` (from 0) of a run with ``seed`` visits the ``n``
    training examples: a permutation drawn from ``(seed, epoch)`` alone, so a resumed run sees
    the same batches as an uninterrupted one (and every backend sees the same ones)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(n))


def _make_recorder(steps_per_epoch, exact=None):
    """The run's recorder callback; ``exact = (x, y)`` is also evaluated after every epoch (its
    loss and accuracy join the epoch logs as ``test_exact_loss``/``test_exact_accuracy``)."""
    import keras

    class _Recorder(keras.callbacks.Callback):
        """Per execution block: the running mean loss Keras reports (cheap: one float per call);
        per epoch: the epoch logs and wall time. Stops training on a non-finite loss."""

        def __init__(self):
            super().__init__()
            self.blocks = []  # (epoch, last batch index in epoch, running mean loss)
            self.epochs = []  # (epoch, logs, iterations, seconds)
            self.diverged = False
            self._epoch = 0
            self._t0 = 0.0
            self._d_prev = None
            self.journal_bytes, self.journal_hash = 0, hashlib.sha256()  # see _append_journal

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch
            self._t0 = time.perf_counter()

        def _gamma(self, iterations):
            """Γ summed over the epoch, per coordinate: d_T − d_T' with d the optimizer's
            inverse effective step size (Reddi et al. eq. 2 telescoped from the previous epoch
            end T' to this one, T). AMSGrad with a non-increasing α_t keeps every Γ_t ≥ 0, so these
            sums too; Adam does not. Returns the share of coordinates < 0 and the minimum (NaN at
            the first epoch, which has no previous end)."""
            optimizer = self.model.optimizer
            if not hasattr(optimizer, "inverse_step_size") or iterations == 0:
                return {}
            from keras import ops

            lr = optimizer.learning_rate_at(iterations - 1)  # the α used by step T
            parts = []
            for variable in self.model.trainable_variables:
                dtype = variable.dtype
                t = ops.cast(iterations, dtype)
                d = optimizer.inverse_step_size(optimizer.slots_for(variable), ops.cast(lr, dtype), t)
                parts.append(np.ravel(ops.convert_to_numpy(d)).astype(np.float64))
            d = np.concatenate(parts)
            previous, self._d_prev = self._d_prev, d
            if previous is None:
                return {"gamma_negative_fraction": float("nan"), "gamma_min": float("nan")}
            gamma = d - previous
            return {"gamma_negative_fraction": float(np.mean(gamma < 0)), "gamma_min": float(np.min(gamma))}

        def on_train_batch_end(self, batch, logs=None):
            loss = float((logs or {}).get("loss", float("nan")))
            self.blocks.append((self._epoch, min(int(batch), steps_per_epoch - 1), loss))
            if not math.isfinite(loss):
                self.diverged = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            if exact is not None:
                result = self.model.evaluate(exact[0], exact[1], batch_size=EVAL_BATCH_SIZE, verbose=0,
                                             return_dict=True)
                logs["test_exact_loss"] = float(result["loss"])
                logs["test_exact_accuracy"] = float(result.get("accuracy", float("nan")))
            iterations = int(np.asarray(self.model.optimizer.iterations))
            logs.update(self._gamma(iterations))
            self.epochs.append((epoch, logs, iterations, time.perf_counter() - self._t0))
            if not math.isfinite(logs.get("loss", float("nan"))):
                self.diverged = True
                self.model.stop_training = True

        # -- checkpoint state: restored epochs and Γ array, the journal's verified length --
        def restore(self, epochs, blocks, d_prev, journal):
            self.epochs, self.blocks, self._d_prev = list(epochs), list(blocks), d_prev
            self.journal_bytes, self.journal_hash = journal

    return _Recorder()


def _thin_blocks(blocks, n_train, batch_size, steps_per_epoch, max_points, epochs):
    """Turn the running means into the mean loss of groups of consecutive batches.

    Keras's loss tracker is a sample-weighted running mean M_j over the epoch's first j batches,
    so the mean over batches i+1..j is (M_j·n_j − M_i·n_i)/(n_j − n_i), n = samples seen. Groups
    never span epochs; each epoch gets at most ``max_points // epochs`` (≥ 1) groups."""
    per_epoch = max(1, max_points // max(1, epochs))
    group = max(1, math.ceil(steps_per_epoch / per_epoch))
    rows = []
    by_epoch = {}
    for epoch, last, mean in blocks:
        by_epoch.setdefault(epoch, []).append((last, mean))
    for epoch in sorted(by_epoch):
        prev_n, prev_sum, start_batch = 0, 0.0, 0
        acc_n, acc_sum, acc_batches = 0, 0.0, 0
        items = by_epoch[epoch]
        for index, (last, mean) in enumerate(items):
            n = min((last + 1) * batch_size, n_train)
            total = mean * n
            acc_sum += total - prev_sum if math.isfinite(total) else float("nan")
            acc_n += n - prev_n
            acc_batches += last + 1 - start_batch
            prev_n, prev_sum, start_batch = n, total, last + 1
            if acc_batches >= group or index == len(items) - 1:
                rows.append({
                    "epoch": epoch + 1,
                    "iteration": epoch * steps_per_epoch + last + 1,
                    "batches": acc_batches,
                    "loss": acc_sum / acc_n if acc_n else float("nan"),
                })
                acc_n, acc_sum, acc_batches = 0, 0.0, 0
    return rows


# -- checkpoints --------------------------------------------------------------------------------------
# A run's checkpoint is two files: ``<stem>.checkpoint.npz`` (model and optimizer variables, the Γ
# diagnostic's last inverse step sizes, and a JSON ``meta``: config, code, epochs done, and the length
# and sha256 of the journal it goes with) and ``<stem>.checkpoint.jsonl``, the journal: one line per
# finished epoch (its logs and iteration points), appended. Both stay the same size from epoch to
# epoch but for one journal line, so the bytes written grow linearly with the epochs, not squared.
# The journal is appended (and synced) before the ``.npz`` is replaced atomically: a kill in between
# leaves a line past the recorded length, which the next save cuts off.
def journal_path(checkpoint) -> Path:
    return Path(checkpoint).with_suffix(".jsonl")


def remove_checkpoint(checkpoint) -> None:
    """Delete a run's checkpoint and its journal (the run finished, or is retrained)."""
    for path in (Path(checkpoint), journal_path(checkpoint)):
        path.unlink(missing_ok=True)


class CheckpointDamaged(Exception):
    """A checkpoint of this run that does not verify; the message says what is wrong."""


def _config_key(config) -> str:
    return json.dumps(config.to_dict(), sort_keys=True, default=str)


def _append_journal(path, recorder, epoch) -> dict:
    """Append epoch ``epoch``'s line to the journal after its first ``recorder.journal_bytes``
    bytes; the journal's new length and sha256."""
    _logs_epoch, logs, iterations, seconds = recorder.epochs[epoch]
    line = {"epoch": epoch, "logs": logs, "iterations": iterations, "seconds": seconds,
            "blocks": [list(b[1:]) for b in recorder.blocks if b[0] == epoch]}
    data = (json.dumps(line) + "\n").encode("utf-8")
    target = journal_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            os.ftruncate(fd, recorder.journal_bytes)
            os.lseek(fd, recorder.journal_bytes, os.SEEK_SET)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise write_failed(target, exc) from None
    recorder.journal_bytes += len(data)
    recorder.journal_hash.update(data)
    return {"journal_bytes": recorder.journal_bytes, "journal_sha256": recorder.journal_hash.hexdigest()}


def _save_checkpoint(path, model, recorder, config, epochs_done):
    from keras import ops

    journal = _append_journal(path, recorder, epochs_done - 1)
    arrays = {f"model_{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer_{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)})
    if recorder._d_prev is not None:
        arrays["gamma_d_prev"] = recorder._d_prev
    meta = {"format": CHECKPOINT_FORMAT, "config": _config_key(config), "epochs_done": int(epochs_done),
            "code": io.code_version()["source_sha256"], **journal,
            "model_variables": len(model.variables), "optimizer_variables": len(model.optimizer.variables)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    io.write_npz_atomic(arrays, path)


def _read_meta(data) -> dict:
    meta = json.loads(bytes(data["meta"]).decode("utf-8"))
    if not isinstance(meta, dict):
        raise CheckpointDamaged("its meta entry is not a JSON object")
    return meta


def _read_arrays(data, meta, model, optimizer):
    """The checkpoint's model and optimizer arrays, checked against the model (count, shape) and
    for non-finite values (a diverged run is never checkpointed)."""
    names = ([f"model_{i}" for i in range(int(meta["model_variables"]))],
             [f"optimizer_{i}" for i in range(int(meta["optimizer_variables"]))])
    arrays = [[data[name] for name in group] for group in names]
    variables = (model.variables, optimizer.variables)
    for group, targets in zip(arrays, variables):
        if len(group) != len(targets):
            raise CheckpointDamaged(f"it holds {len(group)} arrays where the model has {len(targets)}")
        for variable, array in zip(targets, group):
            if tuple(variable.shape) != array.shape:
                raise CheckpointDamaged(f"an array of shape {array.shape} where {tuple(variable.shape)} belongs")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise CheckpointDamaged("its weights hold NaN or infinite values")
    return arrays


def _read_journal(path, meta, epochs):
    """The journal's first ``meta['journal_bytes']`` bytes, checked against the recorded sha256
    and against the epochs done: ``(epoch rows, blocks, hasher)`` for the recorder."""
    size = int(meta["journal_bytes"])
    with open(journal_path(path), "rb") as handle:
        data = handle.read(size)
    hasher = hashlib.sha256(data)
    if len(data) != size or hasher.hexdigest() != meta["journal_sha256"]:
        raise CheckpointDamaged("its history journal is missing, cut short or changed")
    lines = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    if [line["epoch"] for line in lines] != list(range(epochs)):
        raise CheckpointDamaged(f"its journal holds epochs {[line['epoch'] + 1 for line in lines]}, "
                                f"not 1..{epochs}")
    rows = [(line["epoch"], line["logs"], int(line["iterations"]), float(line["seconds"])) for line in lines]
    blocks = [(line["epoch"], int(last), float(loss)) for line in lines for last, loss in line["blocks"]]
    return rows, blocks, (size, hasher)


def _verified_state(path, model, config, on_note):
    """Read and check a checkpoint; None when it belongs to another config or other code (the
    latter said through ``on_note``); :class:`CheckpointDamaged` (or a read error) when damaged."""
    with np.load(path, allow_pickle=False) as data:
        meta = _read_meta(data)
        if meta.get("config") != _config_key(config):
            return None
        code = io.code_version()["source_sha256"]
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("code") != code:
            if on_note is not None:
                written = str(meta.get("code") or "code that did not record itself")[:12]
                on_note(f"its checkpoint (after epoch {meta.get('epochs_done')}) was written by other code "
                        f"(source {written}, now {code[:12]}); starting the run over, so that all its "
                        f"epochs come from one version")
            return None
        epochs = int(meta["epochs_done"])
        if not 1 <= epochs < config.epochs:
            raise CheckpointDamaged(f"it claims {epochs} epochs done of {config.epochs}")
        optimizer = model.optimizer
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        arrays = _read_arrays(data, meta, model, optimizer)
        d_prev = data["gamma_d_prev"] if "gamma_d_prev" in data else None
    return epochs, arrays, d_prev, _read_journal(path, meta, epochs)


def _set_aside(path, reason, on_note):
    """Rename a damaged checkpoint and its journal to ``*.damaged`` (kept for a look, never read)
    and say why in one line."""
    for source in (Path(path), journal_path(path)):
        if source.exists():
            try:
                os.replace(source, source.with_name(source.name + ".damaged"))
            except OSError:
                source.unlink(missing_ok=True)
    if on_note is not None:
        on_note(f"its checkpoint does not verify ({reason}); set aside as {Path(path).name}.damaged, "
                "starting the run over")


def _load_checkpoint(path, model, recorder, config, on_note=None):
    """Restore ``path`` into ``model`` (compiled, optimizer built here) and ``recorder``; return the
    number of finished epochs, or 0 if there is no usable checkpoint for this config and this code.
    A damaged one (unreadable, cut short, failing a CRC or the journal's sha256, arrays that do not
    fit the model or are not finite, epochs that do not add up) is set aside with a note."""
    path = Path(path)
    if not path.exists():
        return 0
    try:
        state = _verified_state(path, model, config, on_note)
    except CheckpointDamaged as exc:
        _set_aside(path, str(exc), on_note)
        return 0
    except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        # OSError includes a missing journal; ValueError a bad zip member, JSON or number;
        # KeyError/TypeError a missing or malformed entry; BadZipFile a truncated file or bad CRC.
        _set_aside(path, f"{type(exc).__name__}: {exc}".splitlines()[0][:160], on_note)
        return 0
    if state is None:
        return 0
    epochs, (model_arrays, optimizer_arrays), d_prev, (rows, blocks, journal) = state
    for variable, array in zip(model.variables + model.optimizer.variables, model_arrays + optimizer_arrays):
        variable.assign(array)
    recorder.restore(rows, blocks, d_prev, journal)
    return epochs


# -- one run ------------------------------------------------------------------------------------------
def train_run(config, data, *, fit_settings=None, max_points=DEFAULT_MAX_POINTS, callbacks=(),
              checkpoint=None, on_epoch=None, on_note=None):
    """Train one run described by ``config`` (a ``RunConfig``) on ``data`` (a ``datasets.Dataset``).

    Returns ``(history, iterations, info)``: two DataFrames in HISTORY_COLUMNS/ITERATION_COLUMNS
    order and a dict (diverged, epochs_completed, seconds, started_at, finished_at, resumed_from).
    Writes nothing but the checkpoint ``checkpoint`` (a path; None = no checkpoints), which it
    resumes from when it holds this config's state. ``on_epoch(epoch, epochs, seconds)`` is called
    after every finished epoch (progress); ``on_note(text)`` when a checkpoint is set aside for being
    written by other code. Extra Keras ``callbacks`` are appended (tests use them
    to interrupt a run).
    """
    import keras

    stops.check()
    started_at = io.now_iso()
    t0 = time.perf_counter()
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    model, steps_per_epoch, jit, spe = _build_run(config, data, fit_settings, max_points)
    y_train, y_test, exact = _targets(config, data)
    recorder = _make_recorder(steps_per_epoch, exact)
    resumed_from = _load_checkpoint(checkpoint, model, recorder, config, on_note) if checkpoint else 0
    _fit_epochs(config, data, model, recorder, (y_train, y_test), resumed_from, callbacks, checkpoint, on_epoch)

    base = {"experiment": config.experiment, "optimizer": config.optimizer,
            "bias_correction": config.bias_correction, "run": config.run, "seed": config.seed}
    history = _history_frame(config, recorder, base, exact is not None)
    points = _thin_blocks(recorder.blocks, int(data.x_train.shape[0]), config.batch_size, steps_per_epoch,
                          max_points, config.epochs)
    iterations = pd.DataFrame([{**base, **p} for p in points], columns=ITERATION_COLUMNS)
    info = {
        "diverged": recorder.diverged,
        "epochs_completed": len(history),
        "seconds": round(time.perf_counter() - t0, 3),
        "started_at": started_at,
        "finished_at": io.now_iso(),
        "resumed_from_epoch": resumed_from,
        "steps_per_execution": spe,
        "jit_compile": jit,
    }
    keras.backend.clear_session()
    return history, iterations, info


def _build_run(config, data, fit_settings, max_points):
    """(compiled model, steps per epoch, jit_compile, steps_per_execution) of the run ``config``:
    the model, the optimizer under its schedule, the loss and metrics."""
    from .losses import get_loss, get_metrics
    from .models import build_model

    model = build_model(config.model, input_shape=tuple(data.x_train.shape[1:]),
                        num_classes=int(data.num_classes), **dict(config.model_kwargs))
    steps_per_epoch = math.ceil(int(data.x_train.shape[0]) / config.batch_size)
    optimizer = make_optimizer(
        config.optimizer,
        config.learning_rate,
        schedule=config.schedule,
        # linear-decay reaches 0 right after the last step of the last epoch (Korzeniowski).
        total_steps=config.epochs * steps_per_epoch,
        steps_per_epoch=steps_per_epoch,  # epoch-inverse-sqrt: α/√(1 + epoch)
        decay=getattr(config, "decay", 0.0),  # time-decay: α/(1 + d·k)
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        epsilon=config.epsilon,
        bias_correction=config.bias_correction,
    )
    jit, spe = resolve_fit_settings(config.model, config.epochs * steps_per_epoch, steps_per_epoch,
                                    config.epochs, fit_settings, max_points)
    compile_model(model, optimizer, get_loss(config.loss_function),
                  jit_compile=jit, steps_per_execution=spe, metrics=get_metrics(config.loss_function))
    return model, steps_per_epoch, jit, spe


def _targets(config, data):
    """(training targets, test targets, (exact test inputs, targets) or None)."""
    from .models import make_targets

    y_train = make_targets(config.loss_function, data.x_train, data.y_train, data.num_classes)
    y_test = make_targets(config.loss_function, data.x_test, data.y_test, data.num_classes)
    mask = getattr(data, "test_exact", None)
    exact = None if mask is None or config.loss_function == "elbo" else (data.x_test[mask], y_test[mask])
    return y_train, y_test, exact


def _fit_epochs(config, data, model, recorder, targets, resumed_from, callbacks, checkpoint, on_epoch):
    """Epochs ``resumed_from + 1 ..`` of the run, one ``fit`` call each in :func:`epoch_order`'s
    order, a checkpoint after each; stops at a diverged loss or a stop request (after saving)."""
    y_train, y_test = targets
    n_train = int(data.x_train.shape[0])
    stop_check = stops.keras_callback()
    for epoch in range(resumed_from, config.epochs):
        if recorder.diverged:
            break
        order = epoch_order(config.seed, epoch, n_train)
        model.fit(
            data.x_train[order],
            y_train[order],
            batch_size=config.batch_size,
            initial_epoch=epoch,
            epochs=epoch + 1,
            shuffle=False,  # the order is epoch_order's
            validation_data=(data.x_test, y_test),
            validation_batch_size=EVAL_BATCH_SIZE,
            callbacks=[recorder, stop_check, *callbacks],
            verbose=0,
        )
        if len(recorder.epochs) < epoch + 1:  # stopped inside the epoch (a non-finite loss)
            break
        if on_epoch is not None:
            on_epoch(epoch + 1, config.epochs, recorder.epochs[-1][3])
        if checkpoint and epoch + 1 < config.epochs and not recorder.diverged:
            _save_checkpoint(checkpoint, model, recorder, config, epoch + 1)
        stops.check()  # a stop requested during the epoch: it is saved, stop here


def _history_frame(config, recorder, base, exact) -> pd.DataFrame:
    """The run's epochs as rows of :data:`HISTORY_COLUMNS` (+ the ELBO terms for the VAE, + the
    exact-test metrics where ``exact``), from the recorder's per-epoch logs."""
    elbo = config.loss_function == "elbo"
    nan = float("nan")
    rows = []
    for epoch, logs, iterations, seconds in recorder.epochs:
        test_loss = logs.get("val_loss", nan)
        rows.append({
            **base, "epoch": epoch + 1, "iteration": iterations, "learning_rate": config.learning_rate,
            "schedule": config.schedule, "beta_1": config.beta_1, "beta_2": config.beta_2,
            "epsilon": config.epsilon, "batch_size": config.batch_size, "loss_function": config.loss_function,
            "loss": logs.get("loss", nan), "accuracy": logs.get("accuracy", nan), "test_loss": test_loss,
            # argmax of NaN outputs is no accuracy
            "test_accuracy": logs.get("val_accuracy", nan) if math.isfinite(test_loss) else nan,
            "diverged": recorder.diverged, "epoch_seconds": round(seconds, 4),
            "gamma_negative_fraction": logs.get("gamma_negative_fraction", nan),
            "gamma_min": logs.get("gamma_min", nan),
        })
        if exact:
            exact_loss = logs.get("test_exact_loss", nan)
            exact_accuracy = logs.get("test_exact_accuracy", nan) if math.isfinite(exact_loss) else nan
            rows[-1].update({"test_exact_loss": exact_loss, "test_exact_accuracy": exact_accuracy})
        if elbo:
            rows[-1].update({"reconstruction": logs.get("reconstruction", nan), "kl": logs.get("kl", nan),
                             "test_reconstruction": logs.get("val_reconstruction", nan),
                             "test_kl": logs.get("val_kl", nan)})
    return pd.DataFrame(rows, columns=history_columns(elbo, exact))
