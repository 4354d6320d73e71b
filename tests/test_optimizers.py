"""Our optimizers against the tests' float64 NumPy transcription of the papers' pseudo-code
(tests/oracle.py).

One table of optimizers (name × bias correction) that every test walks, as optax's alias tests do.
"""
import math
import zlib

import keras
import numpy as np
import oracle
import pytest

from replication.optimizers import (
    OPTIMIZERS,
    AdaMax,
    AdaMaxState,
    Adam,
    AdamState,
    AMSGrad,
    AMSGradState,
    ClipValue,
    InverseSqrtDecay,
    LinearDecay,
    make_optimizer,
)

HP = dict(beta_1=0.9, beta_2=0.99, epsilon=1e-7)
TABLE = [(name, bc) for name in ("adam", "amsgrad", "adamax") for bc in (True, False)]
STEPS = 300


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
    lr = oracle.schedule(schedule, alpha, float32=True)
    ref = oracle.run(name, grads, x0, lr, bias_correction=bias_correction, **HP).x[1:]
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
    ref = oracle.run(name, grads, x0, oracle.schedule("constant", 0.001), bias_correction=bias_correction, **HP).x[1:]
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


# The slot names and their order, as written by every earlier run: replication/run.py checkpoints
# and .keras files store ``optimizer.variables`` by position, so neither may change.
STATES = {"adam": (AdamState, ("momentum", "velocity")),
          "amsgrad": (AMSGradState, ("momentum", "velocity", "velocity_hat")),
          "adamax": (AdaMaxState, ("momentum", "norm"))}


@pytest.mark.parametrize("name", sorted(STATES))
@pytest.mark.parametrize("schedule", ["constant", "inverse-sqrt"])
def test_state_is_named_and_slot_variables_keep_their_names_and_order(name, schedule):
    state_class, fields = STATES[name]
    opt = make_optimizer(name, 0.01, schedule=schedule)
    assert opt.STATE is state_class and state_class._fields == fields
    zero = opt.init_state(keras.ops.ones((3,), dtype="float64"))
    assert type(zero) is state_class
    assert all(np.array_equal(keras.ops.convert_to_numpy(getattr(zero, f)), np.zeros(3)) for f in fields)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")], name="net")
    model.compile(optimizer=opt, loss="mean_squared_error")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), epochs=1, batch_size=4, verbose=0)
    # As the code before named state made them: iteration, the learning rate (a variable only when
    # constant), then one slot per field for every weight, field-major.
    want = [f"{name}/iteration"] + ([f"{name}/learning_rate"] if schedule == "constant" else [])
    want += [f"{name}/net_dense_{weight}_{field}" for field in fields for weight in ("kernel", "bias")]
    assert [v.path for v in opt.variables] == want
    kernel = model.layers[0].kernel
    slots = opt.slots_for(kernel)
    assert type(slots) is state_class
    assert [getattr(slots, f).path for f in fields] == [f"{name}/net_dense_kernel_{f}" for f in fields]


@pytest.mark.parametrize("name,bias_correction", TABLE)
def test_pure_update_rule_and_keras_driver_take_the_same_steps(name, bias_correction):
    """update_rule on tensors (the synthetic loop's driver) and update_step on slot variables
    (model.fit's) give bitwise the same parameters and the same state, field by field."""
    grads = mixed_scale_gradients(seed=13, steps=40)
    x0 = np.linspace(-1.0, 1.0, grads.shape[1])
    keras_opt = make_optimizer(name, 0.01, schedule="inverse-sqrt", bias_correction=bias_correction, **HP)
    pure = make_optimizer(name, 0.01, schedule="inverse-sqrt", bias_correction=bias_correction, **HP)
    var = keras.Variable(x0, dtype="float64")
    x = keras.ops.convert_to_tensor(x0, dtype="float64")
    state = pure.init_state(x)
    for t, g in enumerate(grads, start=1):
        keras_opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        lr = keras.ops.cast(pure.learning_rate_at(t - 1), "float64")
        x, state = pure.update_rule(x, state, keras.ops.convert_to_tensor(g), lr, keras.ops.cast(t, "float64"))
        assert type(state) is pure.STATE
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(x), var.numpy())
    slots = keras_opt.slots_for(var)
    for field in pure.STATE._fields:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(getattr(state, field)), getattr(slots, field).numpy())


@pytest.mark.parametrize("name,bias_correction", TABLE)
def test_inverse_step_size_matches_float64_reference(name, bias_correction):
    """d_t = (√V_t + ε)/α_t read from the slots after each step (what the trainer's Γ columns use)
    equals the oracle's, and so does Γ = d_{t+1} − d_t, which goes negative for Adam only."""
    grads = mixed_scale_gradients(seed=17, steps=120)
    x0 = np.zeros(grads.shape[1])
    opt = make_optimizer(name, 0.01, schedule="inverse-sqrt", bias_correction=bias_correction, **HP)
    var = keras.Variable(x0, dtype="float64")
    ours = []
    for t, g in enumerate(grads, start=1):
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        lr = keras.ops.cast(opt.learning_rate_at(t - 1), "float64")
        d = opt.inverse_step_size(opt.slots_for(var), lr, keras.ops.cast(t, "float64"))
        ours.append(keras.ops.convert_to_numpy(d))
    lr = oracle.schedule("inverse-sqrt", 0.01, float32=True)
    ref = oracle.run(name, grads, x0, lr, bias_correction=bias_correction, **HP).d
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    gamma = np.diff(ref, axis=0)
    if name == "amsgrad" and not bias_correction:  # Reddi et al.: Γ ≥ 0 under a non-increasing α_t
        assert (gamma >= 0).all()
    if name == "adam":
        assert (gamma < 0).any()


def test_oracle_against_the_papers_by_hand():
    """The oracle itself: Kingma & Ba's Algorithm 1 as printed and its efficient form agree when
    ε = 0; the first bias-corrected Adam/AMSGrad/AdaMax step is α·sign(g) (m̂_1 = g, √v̂_1 = u_1 = |g|);
    uncorrected Adam's first step is α(1−β1)g/(√(1−β2)|g|); projection clips onto F."""
    grads = mixed_scale_gradients(seed=19, steps=60)
    x0 = np.linspace(-0.3, 0.3, grads.shape[1])
    lr = oracle.schedule("inverse-sqrt", 0.05)
    hp = dict(beta_1=0.9, beta_2=0.99, epsilon=0.0)
    for name in ("adam", "amsgrad"):
        efficient = oracle.run(name, grads, x0, lr, **hp).x
        printed = oracle.run(name, grads, x0, lr, printed=True, **hp).x
        np.testing.assert_allclose(printed, efficient, rtol=1e-12, atol=1e-15)
    g = np.array([[3.0, -0.5]])
    for name in oracle.NAMES:
        step = oracle.run(name, g, 0.0, oracle.schedule("constant", 0.1), **hp).x[1]
        np.testing.assert_allclose(step, -0.1 * np.sign(g[0]), rtol=1e-15)
    step = oracle.run("adam", g, 0.0, oracle.schedule("constant", 0.1), bias_correction=False, **hp).x[1]
    np.testing.assert_allclose(step, -0.1 * 0.1 * np.sign(g[0]) / np.sqrt(0.01), rtol=1e-14)
    clipped = oracle.run("adam", np.full((5, 1), -10.0), 0.9, oracle.schedule("constant", 0.5), bounds=(-1, 1), **hp)
    assert clipped.x.max() == 1.0 and clipped.x[-1, 0] == 1.0


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
        v_before = np.array(opt.slots_for(var).velocity.numpy()) if opt.built else None
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        state = opt.slots_for(var)
        v, v_hat = np.array(state.velocity.numpy()), np.array(state.velocity_hat.numpy())
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
        vs.append(float(adam.slots_for(xa).velocity.numpy()[0]))
        vhats.append(float(ams.slots_for(xb).velocity_hat.numpy()[0]))
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
