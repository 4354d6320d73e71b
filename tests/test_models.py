"""replication.models: architectures (parameter counts), softmax outputs, LRN maths, losses."""
import math

import keras
import numpy as np
import pytest

from replication.errors import UserError
from replication.models import (
    GENERATIVE_MODELS,
    LOSSES,
    MODELS,
    GaussianSample,
    LocalResponseNormalization,
    build_cifarnet,
    build_cifarnet_paper,
    build_cnn,
    build_logreg,
    build_mlp,
    build_model,
    build_small_vgg,
    build_vae,
    build_vgg,
    get_loss,
    get_metrics,
    make_targets,
)

# Hand-counted: conv 5*5*3*64+64, BN 4*64, conv 5*5*64*64+64, BN 4*64, fc 8*8*64*384+384,
# fc 384*192+192, out 192*10+10 (32 -> 16 -> 8 with 'same' pooling).
CIFARNET_PARAMS = 4864 + 256 + 102464 + 256 + 1573248 + 73920 + 1930
# conv 6*6*3*64+64, conv 6*6*64*64+64 (LRN has no weights), same dense head.
CIFARNET_PAPER_PARAMS = 6976 + 147520 + 1573248 + 73920 + 1930
# Pérez's NN: 784*1000+1000, 1000*1000+1000, 1000*10+10.
MLP_2X1000_PARAMS = 785000 + 1001000 + 10010  # 1,796,010
# Pérez's CNN, 'same' padding, 28 -> 14 -> 7: conv 5*5*1*32+32, conv 5*5*32*64+64,
# fc 7*7*64*1000+1000, out 1000*10+10.
CNN_PARAMS = 832 + 51264 + 3137000 + 10010  # 3,199,106
# Vgg (bias-free convs, BN 4 per channel: gamma, beta, moving mean, moving variance), 32 -> 4:
# convs 3*3*3*64, 3*3*64*64, 3*3*64*128, 3*3*128*128, 3*3*128*256, 2 x 3*3*256*256;
# BN 4*(64+64+128+128+256+256+256); fc 4*4*256*512+512; out 512*10+10.
VGG_PARAMS = (1728 + 36864 + 73728 + 147456 + 294912 + 2 * 589824) + 4 * 1152 + 2097664 + 5130  # 3,841,738
# SmallVgg: convs 3*3*3*32, 3*3*32*32, 3*3*32*64, 3*3*64*64, 3*3*64*128, 3*3*128*128;
# BN 4*(32+32+64+64+128+128); fc 4*4*128*256+256; out 256*10+10.
SMALL_VGG_PARAMS = (864 + 9216 + 18432 + 36864 + 73728 + 147456) + 4 * 448 + 524544 + 2570  # 815,466


def test_registry():
    assert list(MODELS) == ["logreg", "mlp", "cifarnet", "cifarnet-paper", "cifarnet-coded", "cnn", "vgg", "small-vgg",
                            "vae"]
    assert LOSSES == ("categorical", "binary", "elbo")


@pytest.mark.parametrize(
    "name, input_shape, params",
    [
        ("logreg", (28, 28), 784 * 10 + 10),  # 7850
        ("mlp", (28, 28), 784 * 100 + 100 + 100 * 10 + 10),  # 79510
        ("logreg", (8, 8), 64 * 10 + 10),
        ("cifarnet", (32, 32, 3), CIFARNET_PARAMS),
        ("cifarnet-paper", (32, 32, 3), CIFARNET_PAPER_PARAMS),
        ("cnn", (28, 28), CNN_PARAMS),
        ("vgg", (32, 32, 3), VGG_PARAMS),
        ("small-vgg", (32, 32, 3), SMALL_VGG_PARAMS),
    ],
)
def test_parameter_counts(name, input_shape, params):
    model = build_model(name, input_shape=input_shape, num_classes=10)
    assert model.count_params() == params
    assert model.output_shape == (None, 10)
    assert not model.compiled  # uncompiled: the trainer/scikeras compiles


def test_named_counts():
    assert build_logreg(input_shape=(28, 28), num_classes=10).count_params() == 7850
    assert build_mlp(input_shape=(28, 28), num_classes=10).count_params() == 79510
    assert build_mlp(input_shape=(28, 28), num_classes=10, hidden=(1000, 1000)).count_params() == 1796010
    assert MLP_2X1000_PARAMS == 1796010 and CNN_PARAMS == 3199106
    assert VGG_PARAMS == 3841738 and SMALL_VGG_PARAMS == 815466
    # The flip and L2 options add no weights.
    assert build_logreg(input_shape=(28, 28), num_classes=10, l2=0.1, augment_flip=True).count_params() == 7850
    assert build_vgg(input_shape=(32, 32, 3), num_classes=10, augment_flip=True).count_params() == VGG_PARAMS


def test_cnn_architecture():
    model = build_cnn(input_shape=(28, 28), num_classes=10, dropout=0.5)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.padding) for c in convs] == [(32, (5, 5), "same"), (64, (5, 5), "same")]
    pools = [l for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert [(p.pool_size, p.strides) for p in pools] == [((3, 3), (2, 2))] * 2
    assert model.get_layer("flatten").output.shape[1:] == (7 * 7 * 64,)
    assert [l.units for l in model.layers if isinstance(l, keras.layers.Dense)] == [1000, 10]
    assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.5]
    assert not any(isinstance(l, keras.layers.Dropout) for l in build_cnn(input_shape=(28, 28), num_classes=10).layers)


def test_vgg_architectures():
    for builder, filters in ((build_vgg, [64, 64, 128, 128, 256, 256, 256]), (build_small_vgg, [32, 32, 64, 64, 128, 128])):
        model = builder(input_shape=(32, 32, 3), num_classes=10)
        convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
        assert [c.filters for c in convs] == filters
        assert all(c.kernel_size == (3, 3) and c.padding == "same" and not c.use_bias for c in convs)
        # Each convolution is followed by batch normalisation and a ReLU (Korzeniowski).
        for conv in convs:
            index = model.layers.index(conv)
            assert isinstance(model.layers[index + 1], keras.layers.BatchNormalization)
            assert isinstance(model.layers[index + 2], keras.layers.ReLU)
        assert sum(isinstance(l, keras.layers.MaxPooling2D) for l in model.layers) == 3
        assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.25, 0.25, 0.25, 0.5]


def test_logreg_l2_penalty():
    keras.utils.set_random_seed(0)
    model = build_logreg(input_shape=(8, 8), num_classes=3, l2=0.01)
    model(np.zeros((1, 8, 8), "float32"))
    kernel = model.get_layer("softmax").kernel
    penalty = float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))
    assert penalty == pytest.approx(0.01 * float(np.sum(np.square(keras.ops.convert_to_numpy(kernel)))), rel=1e-5)
    assert not build_logreg(input_shape=(8, 8), num_classes=3).losses
    with pytest.raises(ValueError, match="l2"):
        build_logreg(input_shape=(8, 8), num_classes=3, l2=-1.0)


@pytest.mark.parametrize("name, input_shape", [("cnn", (8, 8)), ("vgg", (16, 16, 3)), ("mlp", (8, 8))])
def test_flip_only_in_training(name, input_shape):
    """augment_flip adds a RandomFlip that acts only with training=True: inference equals the
    model without it (same weights), training outputs are those of x or of x flipped left-right."""
    rng = np.random.RandomState(0)
    x = rng.rand(32, *input_shape).astype("float32")
    kwargs = {"dropout": 0.0, "block_dropout": 0.0} if name == "vgg" else {"dropout": 0.0}
    keras.utils.set_random_seed(0)
    flipped = build_model(name, input_shape=input_shape, num_classes=4, augment_flip=True, **kwargs)
    plain = build_model(name, input_shape=input_shape, num_classes=4, **kwargs)
    assert sum(isinstance(l, keras.layers.RandomFlip) for l in flipped.layers) == 1
    assert not any(isinstance(l, keras.layers.RandomFlip) for l in plain.layers)
    plain.set_weights(flipped.get_weights())
    infer = np.asarray(flipped(x, training=False))
    np.testing.assert_array_equal(infer, np.asarray(flipped(x, training=False)))  # deterministic
    np.testing.assert_allclose(infer, np.asarray(plain(x, training=False)), rtol=1e-6, atol=1e-7)
    if name == "vgg":
        return  # BN in training mode uses batch statistics: outputs are not per-example comparable
    train = np.asarray(flipped(x, training=True))
    mirror = np.asarray(plain(x[:, :, ::-1], training=False))
    same = np.isclose(train, infer, rtol=1e-5, atol=1e-6).all(axis=1)
    mirrored = np.isclose(train, mirror, rtol=1e-5, atol=1e-6).all(axis=1)
    assert (same | mirrored).all()
    assert same.any() and mirrored.any() and not (same & mirrored).all()


def test_mlp_options():
    model = build_mlp(input_shape=(8, 8), num_classes=3, hidden=(20, 7), dropout=0.25)
    assert model.count_params() == (64 * 20 + 20) + (20 * 7 + 7) + (7 * 3 + 3)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.25, 0.25]
    assert not any(isinstance(l, keras.layers.Dropout) for l in build_mlp(input_shape=(8, 8), num_classes=3).layers)


def test_cifarnet_architecture():
    model = build_cifarnet(input_shape=(32, 32, 3), num_classes=10)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.strides, c.padding) for c in convs] == [(64, (5, 5), (1, 1), "same")] * 2
    pools = [l for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert [(p.pool_size, p.strides) for p in pools] == [((3, 3), (2, 2))] * 2
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in model.layers) == 2
    assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.5, 0.5]
    assert [l.units for l in model.layers if isinstance(l, keras.layers.Dense)] == [384, 192, 10]


def test_cifarnet_paper_architecture():
    model = build_cifarnet_paper(input_shape=(32, 32, 3), num_classes=10)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.strides) for c in convs] == [(64, (6, 6), (1, 1))] * 2
    pools = [l for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert [(p.pool_size, p.strides) for p in pools] == [((2, 2), (2, 2))] * 2
    assert sum(isinstance(l, LocalResponseNormalization) for l in model.layers) == 2
    assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.5]
    assert [l.units for l in model.layers if isinstance(l, keras.layers.Dense)] == [384, 192, 10]


@pytest.mark.parametrize(
    "name, input_shape, kwargs",
    [
        ("cifarnet", (32, 32, 3), {}),
        ("cifarnet-paper", (32, 32, 3), {}),
        ("vgg", (32, 32, 3), {"augment_flip": True}),
        ("small-vgg", (32, 32, 3), {"augment_flip": True}),
        ("cnn", (28, 28), {"dropout": 0.5}),
        ("mlp", (28, 28), {"hidden": (1000, 1000), "dropout": 0.5}),
        ("logreg", (28, 28), {"l2": 1e-3}),
    ],
)
def test_models_train_one_step(name, input_shape, kwargs):
    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(0)
    x = rng.rand(16, *input_shape).astype("float32")
    y = keras.utils.to_categorical(rng.randint(0, 10, 16), 10)
    model = build_model(name, input_shape=input_shape, num_classes=10, **kwargs)
    probs = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs >= 0).all()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss("binary"))
    before = [np.array(w) for w in model.trainable_weights]
    loss = float(model.train_on_batch(x, y))
    if name == "logreg":  # no dropout, batch norm or flip: training's forward pass is predict's
        # The step's loss from its definition, in float64: McGill's multiclass log-loss (mean over the K
        # outputs and the batch of the binary cross-entropy, p clipped to [1e-7, 1 - 1e-7]) of the
        # probabilities before the step, plus the L2 penalty λ·Σ W² on the kernel.
        p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
        expected = float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
        expected += kwargs.get("l2", 0.0) * float(np.sum(before[0].astype(np.float64) ** 2))
        assert loss == pytest.approx(expected, rel=1e-5)
    else:
        assert math.isfinite(loss) and loss > 0.0
    # Adam's first step from zero moments is α·g/(|g| + ε/√(1 − β2)) per weight: α·sign(g) where
    # |g| ≫ 3e-6, less where g is tiny, 0 where g = 0. So no weight moves by more than α, and the
    # ones with a real gradient move by α: the step went through every layer's trainable weights.
    moved = [np.abs(np.array(w) - b) for w, b in zip(model.trainable_weights, before)]
    assert max(float(m.max()) for m in moved) == pytest.approx(1e-3, rel=1e-3)
    assert all(float(m.max()) <= 1e-3 * (1 + 1e-3) for m in moved)
    assert all(float(m.max()) > 0.0 for m in moved), "a layer's weights got no update"


@pytest.mark.parametrize("name", [name for name in MODELS if name not in GENERATIVE_MODELS])
@pytest.mark.parametrize("input_shape", [(8, 8), (28, 28)])
def test_two_dimensional_inputs(name, input_shape):
    """An (H, W) image is the one-channel image (H, W, 1): same weights, same probabilities."""
    model = build_model(name, input_shape=input_shape, num_classes=10)
    x = np.random.RandomState(1).rand(3, *input_shape).astype("float32")
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (3, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    channel = build_model(name, input_shape=(*input_shape, 1), num_classes=10)
    channel.set_weights(model.get_weights())
    np.testing.assert_array_equal(np.asarray(channel(x[..., None], training=False)), probs)


def test_build_from_scikeras_meta():
    meta = {"X_shape_": (5, 8, 8), "n_classes_": 4, "n_features_in_": 8}
    assert build_logreg(meta).count_params() == 64 * 4 + 4
    assert build_mlp(meta, hidden=(10,)).count_params() == 64 * 10 + 10 + 10 * 4 + 4
    assert build_cifarnet(meta).output_shape == (None, 4)
    assert build_cifarnet_paper(meta).input_shape == (None, 8, 8)


def test_works_inside_scikeras():
    from scikeras.wrappers import KerasClassifier

    from replication.datasets import load_dataset

    keras.utils.set_random_seed(0)
    ds = load_dataset("digits")
    clf = KerasClassifier(
        model=build_mlp,
        model__hidden=(32,),
        loss="categorical_crossentropy",
        optimizer=keras.optimizers.Adam,
        optimizer__learning_rate=0.01,
        batch_size=128,
        epochs=3,
        verbose=0,
    )
    clf.fit(ds.x_train, ds.y_train)
    assert clf.model_.count_params() == 64 * 32 + 32 + 32 * 10 + 10
    # scikeras's probabilities and score are the wrapped model's: softmax outputs, and accuracy =
    # the share of argmax predictions equal to the labels.
    direct = np.asarray(clf.model_.predict(ds.x_test, verbose=0))
    np.testing.assert_allclose(clf.predict_proba(ds.x_test), direct, rtol=1e-5, atol=1e-6)  # batches differ
    accuracy = float(np.mean(direct.argmax(axis=1) == ds.y_test))
    assert clf.score(ds.x_test, ds.y_test) == pytest.approx(accuracy)
    assert accuracy > 0.5  # 10 classes: chance is 0.1; 3 epochs of Adam learn the digits


def test_missing_shapes_and_unknown_model():
    with pytest.raises(TypeError, match="meta"):
        build_logreg()
    with pytest.raises(UserError, match="unknown model 'resnet'.*logreg, mlp, cifarnet, cifarnet-paper"):
        build_model("resnet", input_shape=(28, 28), num_classes=10)


def lrn_reference(x, r=4, bias=1.0, alpha=0.001 / 9, beta=0.75):
    x = x.astype(np.float64)
    out = np.empty_like(x)
    channels = x.shape[-1]
    for c in range(channels):
        lo, hi = max(0, c - r), min(channels, c + r + 1)
        out[..., c] = x[..., c] / (bias + alpha * (x[..., lo:hi] ** 2).sum(-1)) ** beta
    return out


def lrn_reference_vjp(x, g, r=4, bias=1.0, alpha=0.001 / 9, beta=0.75):
    """∂/∂x of Σ g·LRN(x), from the formula: with D_c = bias + α Σ_{|k−c|≤r} x_k²,
    ∂out_c/∂x_j = [c = j] D_c^−β − 2αβ x_c x_j D_c^(−β−1) [|c − j| ≤ r]."""
    x, g = x.astype(np.float64), g.astype(np.float64)
    channels = x.shape[-1]
    near = np.abs(np.arange(channels)[:, None] - np.arange(channels)[None, :]) <= r
    d = bias + alpha * (x**2) @ near.astype(np.float64)
    return g * d**-beta - 2 * alpha * beta * x * ((g * x * d ** (-beta - 1)) @ near.astype(np.float64))


LRN_CONSTANTS = [(4, 1.0, 0.001 / 9, 0.75), (2, 2.0, 0.1, 0.5), (3, 1.0, 0.05, 0.6)]


@pytest.mark.parametrize("r, bias, alpha, beta", LRN_CONSTANTS)
def test_local_response_normalization_matches_formula(r, bias, alpha, beta):
    x = (np.random.RandomState(0).randn(2, 3, 3, 12) * 5).astype("float32")
    layer = LocalResponseNormalization(depth_radius=r, bias=bias, alpha=alpha, beta=beta)
    np.testing.assert_allclose(np.asarray(layer(x)), lrn_reference(x, r, bias, alpha, beta), rtol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("r, bias, alpha, beta", LRN_CONSTANTS)
def test_local_response_normalization_gradient_through_fit(r, bias, alpha, beta, jit_compile):
    """One SGD step of fit through identity-initialised 1×1 channel mixing → LRN, loss Σ g·out
    (batch mean): the kernel moves by −lr × Σ x ⊗ (the formula's gradient) / batch."""
    rng = np.random.RandomState(1)
    x = (rng.randn(4, 3, 3, 12) * 4).astype("float32")
    g = rng.randn(*x.shape).astype("float32")
    model = keras.Sequential([
        keras.Input(x.shape[1:]),
        keras.layers.Dense(12, use_bias=False, kernel_initializer="identity"),
        LocalResponseNormalization(depth_radius=r, bias=bias, alpha=alpha, beta=beta),
    ])
    lr = 0.5

    def loss(y_true, y_pred):
        return keras.ops.sum(y_true * y_pred, axis=(1, 2, 3))

    model.compile(optimizer=keras.optimizers.SGD(lr), loss=loss, jit_compile=jit_compile)
    model.fit(x, g, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    dz = lrn_reference_vjp(x, g, r, bias, alpha, beta) / len(x)
    expected = np.eye(12) - lr * np.einsum("bhwi,bhwj->ij", x.astype(np.float64), dz)
    np.testing.assert_allclose(model.get_weights()[0], expected, rtol=1e-4, atol=1e-5)


def test_cifarnet_paper_serializes(tmp_path):
    model = build_cifarnet_paper(input_shape=(8, 8), num_classes=10)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    lrn = loaded.get_layer("lrn1")
    assert isinstance(lrn, LocalResponseNormalization) and lrn.alpha == pytest.approx(0.001 / 9)
    x = np.random.RandomState(2).rand(2, 8, 8).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)


def test_losses_match_formulas():
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype="float32")
    p = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]], dtype="float32")
    categorical = (-math.log(0.7) - math.log(0.5)) / 2
    # McGill's multiclass log-loss per example: -sum_k [y log p + (1-y) log(1-p)]
    mcgill = (
        -(math.log(0.8) + math.log(0.7) + math.log(0.9)) - (math.log(0.5) + math.log(0.75) + math.log(0.75))
    ) / 2
    assert float(get_loss("categorical")(y, p)) == pytest.approx(categorical, rel=1e-5)
    assert float(get_loss("binary")(y, p)) == pytest.approx(mcgill / 3, rel=1e-5)  # mean over the K outputs
    with pytest.raises(UserError, match="unknown loss 'hinge'.*categorical, binary"):
        get_loss("hinge")


# -- the VAE ---------------------------------------------------------------------------------------
def test_vae_shape_parameters_and_kl_by_hand():
    model = build_vae(input_shape=(28, 28))
    # encoder 784*512+512, mu and log-var 2*(512*20+20), decoder 20*512+512, output 512*784+784
    assert model.count_params() == 401920 + 2 * 10260 + 10752 + 402192 == 835384
    x = np.random.RandomState(0).rand(4, 28, 28).astype("float32")
    out = np.asarray(model(x, training=False))
    assert out.shape == (4, 785) and ((out[:, :-1] > 0) & (out[:, :-1] < 1)).all() and (out[:, -1] >= 0).all()
    # the KL column against the closed form, from the sampling layer's own inputs
    mean = np.array([[0.5, -1.0], [0.0, 0.0]], dtype="float32")
    log_var = np.array([[0.2, -0.3], [0.0, 0.0]], dtype="float32")
    _, kl = GaussianSample(seed=1)([mean, log_var])
    expected = -0.5 * np.sum(1 + log_var - mean**2 - np.exp(log_var), axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(kl), expected, rtol=1e-6)
    assert float(np.asarray(kl)[1, 0]) == 0.0  # q = p: no divergence


def test_negative_elbo_is_reconstruction_plus_kl():
    rng = np.random.RandomState(2)
    x = (rng.rand(5, 6) > 0.5).astype("float32")
    probs = rng.uniform(0.05, 0.95, size=(5, 6)).astype("float32")
    kl = rng.uniform(0, 3, size=(5, 1)).astype("float32")
    y_pred = np.concatenate([probs, kl], axis=1)
    recon = -np.sum(x * np.log(probs) + (1 - x) * np.log(1 - probs), axis=1)
    loss = float(get_loss("elbo")(x, y_pred))
    assert loss == pytest.approx(float(np.mean(recon + kl[:, 0])), rel=1e-5)
    metrics = get_metrics("elbo")
    for metric in metrics:
        metric.update_state(x, y_pred)
    values = {m.name: float(m.result()) for m in metrics}
    assert values["reconstruction"] == pytest.approx(float(recon.mean()), rel=1e-5)
    assert values["kl"] == pytest.approx(float(kl.mean()), rel=1e-5)
    assert make_targets("elbo", np.ones((2, 3, 3)), None, 10).shape == (2, 9)
    assert [m.name for m in get_metrics("binary")] == ["accuracy"]


def test_vae_learns_digits():
    """A few hundred steps on the 8×8 digits lower −ELBO well below its starting value."""
    from replication.datasets import load_dataset

    keras.utils.set_random_seed(0)
    data = load_dataset("digits")
    model = build_vae(input_shape=data.input_shape, hidden=64, latent=4)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=get_loss("elbo"), metrics=get_metrics("elbo"))
    x = make_targets("elbo", data.x_train, None, 10)
    first = model.evaluate(data.x_train, x, verbose=0, return_dict=True)
    model.fit(data.x_train, x, epochs=15, batch_size=64, verbose=0)
    last = model.evaluate(data.x_train, x, verbose=0, return_dict=True)
    assert last["loss"] < 0.75 * first["loss"]
    assert last["loss"] == pytest.approx(last["reconstruction"] + last["kl"], rel=1e-4)
