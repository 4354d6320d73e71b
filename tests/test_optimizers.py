"""Our optimizers against a float64 NumPy transcription of the papers' pseudo-code.

One table of optimizers (name × bias correction) that every test walks, as optax's alias tests do.
"""
import math
import zlib

import keras
import numpy as np
import pytest

from replication.optimizers import (
    OPTIMIZERS,
    AdaMax,
    Adam,
    AMSGrad,
    ClipValue,
    InverseSqrtDecay,
    LinearDecay,
    make_optimizer,
)

HP = dict(beta_1=0.9, beta_2=0.99, epsilon=1e-7)
TABLE = [(name, bc) for name in ("adam", "amsgrad", "adamax") for bc in (True, False)]
STEPS = 300


def reference(name, bias_correction, x0, grads, lr, beta_1, beta_2, epsilon):
    """Kingma & Ba Alg. 1 (Adam) and Alg. 2 (AdaMax), Reddi et al. Alg. 2 (AMSGrad), in float64,
    written from the papers (not from our code). ``lr`` is a function of t (from 1)."""
    x = np.array(x0, dtype=np.float64)
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    v_hat = np.zeros_like(x)
    u = np.zeros_like(x)
    trajectory = []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, dtype=np.float64)
        m = beta_1 * m + (1 - beta_1) * g
        if name == "adamax":
            u = np.maximum(beta_2 * u, np.abs(g))
            alpha = lr(t) / (1 - beta_1**t) if bias_correction else lr(t)
            x = x - alpha * m / (u + epsilon)
        else:
            v = beta_2 * v + (1 - beta_2) * g * g
            alpha = lr(t) * math.sqrt(1 - beta_2**t) / (1 - beta_1**t) if bias_correction else lr(t)
            if name == "amsgrad":
                v_hat = np.maximum(v_hat, v)
                x = x - alpha * m / (np.sqrt(v_hat) + epsilon)
            else:
                x = x - alpha * m / (np.sqrt(v) + epsilon)
        trajectory.append(x.copy())
    return np.array(trajectory)


def mixed_scale_gradients(seed, steps=STEPS, size=6):
    """Random gradients whose scale jumps over five orders of magnitude, with rare large spikes
    (the regime where Adam and AMSGrad differ) and exact zeros."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-3, 2, size=(steps, 1))
    grads = rng.normal(size=(steps, size)) * scale
    spikes = rng.random((steps, size)) < 0.02
    grads[spikes] *= 100.0
    grads[rng.random((steps, size)) < 0.05] = 0.0
    return grads


def run_keras(opt, x0, grads, dtype="float64"):
    var = keras.Variable(np.array(x0, dtype=dtype), dtype=dtype)
    out = []
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g.astype(dtype)), var)])
        out.append(np.array(var.numpy(), dtype=np.float64))
    return np.array(out)


@pytest.mark.parametrize("name,bias_correction", TABLE)
@pytest.mark.parametrize("schedule", ["constant", "inverse-sqrt"])
def test_matches_float64_reference(name, bias_correction, schedule):
    # a fixed seed per case (str hash() is randomised per process)
    grads = mixed_scale_gradients(seed=zlib.crc32(f"{name}-{bias_correction}-{schedule}".encode()))
    x0 = np.linspace(-1.0, 1.0, grads.shape[1])
    alpha = 0.01
    opt = make_optimizer(name, alpha, schedule=schedule, bias_correction=bias_correction, **HP)
    ours = run_keras(opt, x0, grads, dtype="float64")
    # Keras holds learning rates (and evaluates schedules) in float32; the reference does too,
    # and everything after that in float64.
    f32 = np.float32
    if schedule == "constant":
        lr = lambda t: float(f32(alpha))  # noqa: E731
    else:
        lr = lambda t: float(f32(alpha) / np.sqrt(f32(t)))  # noqa: E731
    ref = reference(name, bias_correction, x0, grads, lr, **HP)
    # float64 throughout: agreement to rounding error over hundreds of steps.
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    # and the run moved the parameters by far more than the tolerance.
    assert np.abs(ref[-1] - x0).max() > 1e-3


@pytest.mark.parametrize("name,bias_correction", TABLE)
def test_float32_tracks_reference(name, bias_correction):
    grads = mixed_scale_gradients(seed=7)
    x0 = np.zeros(grads.shape[1])
    opt = make_optimizer(name, 0.001, bias_correction=bias_correction, **HP)
    ours = run_keras(opt, x0, grads, dtype="float32")
    ref = reference(name, bias_correction, x0, grads, lambda t: 0.001, **HP)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_float64_is_64_bits_on_every_backend():
    """1 + 2^-40 is exact in float64 (53-bit significand) and rounds to 1 in float32 (24 bits):
    on JAX this holds only with its 64-bit mode, which importing replication.optimizers turns on."""
    var = keras.Variable(np.ones(1), dtype="float64")
    var.assign_add(np.full(1, 2.0**-40))
    assert keras.backend.standardize_dtype(var.value.dtype) == "float64"
    assert float(var.numpy()[0]) - 1.0 == 2.0**-40
    tensor = keras.ops.convert_to_tensor(np.ones(1) + 2.0**-40, dtype="float64")
    assert float(keras.ops.convert_to_numpy(tensor)[0]) - 1.0 == 2.0**-40


@pytest.mark.parametrize("name", ["adam", "amsgrad", "adamax"])
def test_float32_training_stays_float32(name):
    """JAX's 64-bit mode (on once replication.optimizers is imported) must not promote float32
    training: weights, optimizer slots and predictions stay float32, and one step of a
    linear least-squares model is the float32 formula w − α·sign(g) of a first bias-corrected step
    (Adam/AMSGrad: α·m̂/(√v̂+ε) = α·g/(|g|+ε); AdaMax: α·m̂/(u+ε) = α·g/(|g|+ε))."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=make_optimizer(name, 0.01, epsilon=0.0), loss="mean_squared_error")
    x = np.random.default_rng(0).normal(size=(8, 3))  # float64 on purpose: Keras casts to float32
    y = np.random.default_rng(1).normal(size=(8, 1))
    w0 = model.get_weights()[0].astype(np.float64)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    dtypes = {keras.backend.standardize_dtype(v.value.dtype) for v in model.weights + model.optimizer.variables
              if v is not model.optimizer.iterations}
    assert dtypes == {"float32"}
    assert keras.backend.standardize_dtype(model(x[:2]).dtype) == "float32"
    x32, y32, w32 = x.astype(np.float32), y.astype(np.float32), w0.astype(np.float32)
    grad = (2.0 / 8.0) * x32.T @ (x32 @ w32 - y32)  # d mean((xw − y)²) / dw
    # float32 rounding of √(1−β2)/(1−β1) ≈ 1 leaves ~1e-7: far below the step of 0.01
    np.testing.assert_allclose(model.get_weights()[0], w32 - np.float32(0.01) * np.sign(grad), rtol=0, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="only JAX can hold float64 as float32")
def test_float64_variable_made_without_jax_x64_is_refused():
    """A float64 variable made while JAX's 64-bit mode was off holds float32; building an
    optimizer on it is an error naming the fix, never a silent downgrade."""
    import jax

    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.warns(UserWarning, match="float64"):
            var = keras.Variable(np.zeros(2), dtype="float64")
    finally:
        jax.config.update("jax_enable_x64", True)
    with pytest.raises(TypeError, match="64-bit mode"):
        Adam(0.01).build([var])


@pytest.mark.parametrize(
    "ours,builtin",
    [
        (lambda: Adam(0.01, beta_2=0.99), lambda: keras.optimizers.Adam(0.01, beta_2=0.99)),
        (
            lambda: AMSGrad(0.01, beta_2=0.99),
            lambda: keras.optimizers.Adam(0.01, beta_2=0.99, amsgrad=True),
        ),
        (lambda: AdaMax(0.01, beta_2=0.99), lambda: keras.optimizers.Adamax(0.01, beta_2=0.99)),
    ],
    ids=["adam", "amsgrad", "adamax"],
)
def test_bias_corrected_equals_keras_builtin(ours, builtin):
    grads = mixed_scale_gradients(seed=3, steps=200)
    x0 = np.linspace(-0.5, 0.5, grads.shape[1])
    a = run_keras(ours(), x0, grads, dtype="float32")
    b = run_keras(builtin(), x0, grads, dtype="float32")
    # Same operations in the same order: bitwise equal in float32.
    np.testing.assert_array_equal(a, b)


def test_uncorrected_differs_from_corrected():
    grads = mixed_scale_gradients(seed=11, steps=20)
    x0 = np.zeros(grads.shape[1])
    a = run_keras(Adam(0.01, bias_correction=True), x0, grads)
    b = run_keras(Adam(0.01, bias_correction=False), x0, grads)
    # At t=1 the corrected step is exactly lr·sign(g); the uncorrected one is
    # lr·(1−β1)/√(1−β2) ≈ 3.16·lr (β2 = 0.999): bias correction shrinks the first step.
    np.testing.assert_allclose(np.abs(a[0]), 0.01, rtol=1e-2)  # ε shifts it slightly
    np.testing.assert_allclose(np.abs(b[0]), 0.01 * 0.1 / np.sqrt(0.001), rtol=1e-2)


def test_amsgrad_v_hat_never_decreases_and_dominates_v():
    opt = AMSGrad(0.01, beta_2=0.9)
    grads = mixed_scale_gradients(seed=5, steps=150)
    var = keras.Variable(np.zeros(grads.shape[1]), dtype="float64")
    previous = None
    v_decreased = False
    for g in grads:
        v_before = np.array(opt.slots_for(var)[1].numpy()) if opt.built else None
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        m, v, v_hat = (np.array(s.numpy()) for s in opt.slots_for(var))
        assert np.all(v_hat >= v)
        if previous is not None:
            assert np.all(v_hat >= previous)
            v_decreased |= bool(np.any(v < v_before))
        previous = v_hat
    # v itself does decrease somewhere, so the property is not vacuous.
    assert v_decreased


def test_v_decreases_for_adam_but_v_hat_does_not():
    g_big, g_small = np.array([10.0]), np.array([0.1])
    adam, ams = Adam(0.01), AMSGrad(0.01)
    xa = keras.Variable(np.zeros(1), dtype="float64")
    xb = keras.Variable(np.zeros(1), dtype="float64")
    vs, vhats = [], []
    for g in [g_big, g_small, g_small, g_small]:
        adam.apply_gradients([(keras.ops.convert_to_tensor(g), xa)])
        ams.apply_gradients([(keras.ops.convert_to_tensor(g), xb)])
        vs.append(float(adam.slots_for(xa)[1].numpy()[0]))
        vhats.append(float(ams.slots_for(xb)[2].numpy()[0]))
    assert vs[-1] < vs[0]
    assert vhats == [vhats[0]] * 4


def test_inverse_sqrt_schedule_counts_from_one():
    schedule = InverseSqrtDecay(0.5)
    np.testing.assert_allclose(
        [float(schedule(s)) for s in range(4)], [0.5 / math.sqrt(t) for t in (1, 2, 3, 4)], rtol=1e-6
    )
    opt = Adam(learning_rate=schedule)
    assert float(opt.learning_rate_at(0)) == pytest.approx(0.5)
    assert float(opt.learning_rate_at(99)) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        InverseSqrtDecay(0.0)


def test_linear_decay_values_and_serialization():
    """Korzeniowski's linear decay: α_t = α·(1 − (t−1)/T), t from 1; Keras passes step = t − 1."""
    alpha, total = 0.5, 8
    schedule = LinearDecay(alpha, total)
    got = [float(schedule(step)) for step in range(total + 3)]
    want = [alpha * max(0.0, 1 - step / total) for step in range(total + 3)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert got[0] == alpha and got[total - 1] == pytest.approx(alpha / total) and got[total:] == [0.0] * 3
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, LinearDecay) and restored.get_config() == schedule.get_config()
    opt = make_optimizer("adam", alpha, schedule="linear-decay", total_steps=total)
    clone = Adam.from_config(opt.get_config())
    assert float(clone.learning_rate_at(total - 1)) == pytest.approx(alpha / total)
    with pytest.raises(ValueError, match="total_steps"):
        make_optimizer("adam", alpha, schedule="linear-decay")
    with pytest.raises(ValueError, match="total_steps"):
        LinearDecay(alpha, 0)
    with pytest.raises(ValueError, match="linear-decay"):
        make_optimizer("adam", alpha, schedule="cosine")


def test_linear_decay_steps_taken():
    """The step sizes the optimizer really takes: AdaMax without bias correction on f(x) = x
    (g = 1, so u = 1 and m_t = 1 − β1^t) moves x by α_t·m_t/(1 + ε) at step t; the last step
    (t = T) uses α/T and the step after it (t = T + 1) does not move x at all."""
    alpha, total, beta_1 = 0.1, 5, 0.9
    opt = make_optimizer("adamax", alpha, schedule="linear-decay", total_steps=total, beta_1=beta_1,
                         epsilon=0.0, bias_correction=False)
    x = keras.Variable(np.zeros(1), dtype="float64")
    moves = []
    for _ in range(total + 1):
        before = float(x.numpy()[0])
        # ones_like of the value: keras.ops.ones_like(<Variable>) raises on JAX (jnp cannot read a
        # Keras Variable's string dtype)
        opt.apply_gradients([(keras.ops.ones_like(x.value), x)])
        moves.append(before - float(x.numpy()[0]))
    want = [alpha * (1 - (t - 1) / total) * (1 - beta_1**t) for t in range(1, total + 2)]
    np.testing.assert_allclose(moves, want, rtol=1e-6)
    assert moves[total - 1] == pytest.approx(alpha / total * (1 - beta_1**total), rel=1e-6)
    assert moves[total] == 0.0


@pytest.mark.parametrize("name,bias_correction", TABLE)
def test_projection_through_constraint(name, bias_correction):
    opt = make_optimizer(name, 0.5, bias_correction=bias_correction)
    var = keras.Variable(np.array([0.9, -0.9]), dtype="float64")
    var.constraint = ClipValue(-1.0, 1.0)  # what Dense(kernel_constraint=...) sets
    for _ in range(20):
        opt.apply_gradients([(keras.ops.convert_to_tensor(np.array([-5.0, 5.0])), var)])
    np.testing.assert_array_equal(var.numpy(), [1.0, -1.0])


@pytest.mark.parametrize("name,bias_correction", TABLE)
def test_get_config_round_trip(name, bias_correction):
    opt = make_optimizer(
        name, 0.02, schedule="inverse-sqrt", beta_1=0.8, beta_2=0.95, epsilon=1e-5,
        bias_correction=bias_correction,
    )
    config = keras.optimizers.serialize(opt)
    clone = keras.optimizers.deserialize(config)
    assert type(clone) is OPTIMIZERS[name]
    assert (clone.beta_1, clone.beta_2, clone.epsilon, clone.bias_correction) == (
        0.8, 0.95, 1e-5, bias_correction,
    )
    assert isinstance(clone._learning_rate, InverseSqrtDecay)
    assert clone._learning_rate.initial_learning_rate == 0.02


@pytest.mark.parametrize("name", ["adam", "amsgrad", "adamax"])
def test_keras_file_round_trip(tmp_path, name):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="softmax", kernel_constraint=ClipValue(-2, 2))]
    )
    model.compile(
        optimizer=make_optimizer(name, 0.01, schedule="inverse-sqrt", bias_correction=False, beta_2=0.99),
        loss="categorical_crossentropy",
    )
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = keras.utils.to_categorical(np.arange(32) % 3, 3)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is OPTIMIZERS[name]
    assert loaded.optimizer.bias_correction is False and loaded.optimizer.beta_2 == 0.99
    assert int(loaded.optimizer.iterations.numpy()) == 8
    # Slots restored: one more identical step from both gives identical weights.
    model.fit(x[:8], y[:8], epochs=1, batch_size=8, verbose=0, shuffle=False)
    loaded.fit(x[:8], y[:8], epochs=1, batch_size=8, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_bad_hyperparameters_rejected():
    with pytest.raises(ValueError):
        Adam(beta_2=1.0)
    with pytest.raises(ValueError):
        AdaMax(beta_1=-0.1)
    with pytest.raises(ValueError):
        make_optimizer("sgd", 0.1)
