"""The models of the experiments, as scikeras-ready builders of uncompiled Keras models.

Every builder has the scikeras model-function signature::

    build_<name>(meta=None, *, input_shape=None, num_classes=None, **hyperparams) -> keras.Model

and returns an *uncompiled* functional model whose output is softmax probabilities. With scikeras
(``KerasClassifier(model=build_mlp, ...)``) ``meta`` supplies the shapes (``meta["X_shape_"][1:]``
and ``meta["n_classes_"]``) and builder hyperparameters are routed as ``model__hidden=(100,)``.
Outside scikeras use :func:`build_model`.

Inputs keep their image shape (see :mod:`replication.datasets`): dense models flatten, and conv
models add a channel axis to 2-D inputs (MNIST 28×28, digits 8×8).

Augmentation: every builder takes ``augment_flip`` (default False). When True a
``RandomFlip("horizontal")`` (left–right flip of each image with probability 1/2) follows the input;
Keras runs it only when ``training=True`` (``fit``), so evaluation/prediction sees the images
unchanged and equals the model without the flag (Korzeniowski's "standard left-right flip data
augmentation" for CIFAR-10). 2-D (H, W) inputs get a channel axis first.

Seeding: builders take no seed. Call ``keras.utils.set_random_seed(seed)`` before building (the
trainer does), which fixes the initializers and the dropout masks.

Written with ``keras.layers`` / ``keras.ops`` only, so they run under any Keras backend.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

from .errors import UserError
# The losses live in replication.losses; re-exported here, where callers have always found them.
from .losses import LOSSES, NegativeELBO, get_loss, get_metrics  # noqa: F401
# The generative models: trained on their own inputs with the "elbo" loss (no classes, no accuracy).
from .registry import GENERATIVE_MODELS  # noqa: F401 - the registry's list, importable from here as before


def _shapes(meta, input_shape, num_classes):
    # Explicit arguments win; otherwise scikeras's meta (set from the data in fit()).
    if input_shape is None and meta is not None:
        input_shape = tuple(meta["X_shape_"][1:])
    if num_classes is None and meta is not None:
        num_classes = int(meta["n_classes_"])
    if input_shape is None or num_classes is None:
        raise TypeError("pass meta (scikeras) or both input_shape= and num_classes=")
    return tuple(int(d) for d in input_shape), int(num_classes)


def _image_input(input_shape, augment_flip=False):
    """Input layer plus, for a 2-D (H, W) input, a Reshape to (H, W, 1) for the conv layers, and
    the training-only left–right flip when ``augment_flip``."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if len(input_shape) == 2:
        x = layers.Reshape((*input_shape, 1), name="add_channel")(x)
    elif len(input_shape) != 3:
        raise ValueError(f"conv models need (H, W) or (H, W, C) inputs, got {input_shape}")
    if augment_flip:
        x = layers.RandomFlip("horizontal", name="flip")(x)
    return inputs, x


def _flat_input(input_shape, augment_flip=False):
    """Input layer → (training-only flip of the image) → Flatten, for the dense models."""
    if augment_flip:
        inputs, x = _image_input(input_shape, augment_flip=True)
    else:
        inputs = x = keras.Input(shape=input_shape, name="image")
    return inputs, layers.Flatten(name="flatten")(x)


def _check_rate(name, value):
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def build_logreg(meta=None, *, input_shape=None, num_classes=None, l2=0.0, augment_flip=False) -> keras.Model:
    """Multinomial logistic regression: Flatten → Dense(num_classes, softmax).

    Reddi et al. §5 ("logistic regression" on MNIST); McGill Appendix 1, Fig. 4 (a feed-forward
    network with no hidden layer). On 28×28 inputs: 784·10 + 10 = 7,850 parameters.

    ``l2`` = λ > 0 adds Pérez's quadratic regularisation (§2.1) as ``keras.regularizers.L2(λ)`` on
    the weights (not the bias): the loss gains λ·ΣW². Default 0 (no regulariser); Pérez §4 sets
    λ = 0 in all his runs ("it did not make a noticeable difference").
    """
    input_shape, num_classes = _shapes(meta, input_shape, num_classes)
    if not float(l2) >= 0.0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    inputs, x = _flat_input(input_shape, augment_flip)
    regularizer = keras.regularizers.L2(float(l2)) if l2 else None
    outputs = layers.Dense(num_classes, activation="softmax", kernel_regularizer=regularizer, name="softmax")(x)
    return keras.Model(inputs, outputs, name="logreg")


def build_mlp(meta=None, *, input_shape=None, num_classes=None, hidden=(100,), dropout=0.0,
              augment_flip=False) -> keras.Model:
    """Feed-forward network: Flatten → [Dense(h, relu) → Dropout(dropout)] per h in ``hidden`` →
    Dense(num_classes, softmax).

    Reddi et al. §5 and McGill §III-C / Fig. 5: one hidden layer of 100 ReLU units (the default),
    no dropout (the default 0.0 adds no Dropout layer). On 28×28 inputs: 79,510 parameters.
    Pérez §2.2: ``hidden=(1000, 1000)``, with and without dropout.
    """
    input_shape, num_classes = _shapes(meta, input_shape, num_classes)
    if isinstance(hidden, int):
        hidden = (hidden,)
    _check_rate("dropout", dropout)
    inputs, x = _flat_input(input_shape, augment_flip)
    for i, units in enumerate(hidden, start=1):
        x = layers.Dense(int(units), activation="relu", name=f"hidden{i}")(x)
        if dropout:
            x = layers.Dropout(float(dropout), name=f"dropout{i}")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name="mlp")


def build_cifarnet(meta=None, *, input_shape=None, num_classes=None, dropout=0.5,
                   augment_flip=False) -> keras.Model:
    """CifarNet as McGill (Appendix 1, Fig. 3) describe it: two conv layers, each with
    max-pooling and batch normalization, then two fully connected layers.

    Layers: [Conv2D(64, 5×5, stride 1, 'same', relu) → MaxPool(3×3, stride 2, 'same') →
    BatchNormalization] × 2 → Flatten → Dense(384, relu) → Dropout(0.5) → Dense(192, relu) →
    Dropout(0.5) → Dense(num_classes, softmax).

    What McGill leave open and what we chose:

    - stride: McGill §IV-C say it cannot be deduced and use 1; so do we.
    - kernel size: not stated by McGill; 5×5, as TensorFlow's CifarNet (tf-slim ``cifarnet.py``).
    - pooling: window and stride not stated; 3×3 with stride 2, as TF's CifarNet, with 'same'
      padding (as TF's CIFAR-10 tutorial model) so 32×32 → 16 → 8.
    - conv padding: not stated; 'same' (tf-slim's default for conv2d).
    - dropout: McGill §VI mention "two dropout layers" without a rate; 0.5 after each of the two
      hidden dense layers (TF CifarNet's keep probability), configurable via ``dropout``.
    - normalization: batch normalization (McGill) in place of Reddi et al.'s local response
      normalization; :func:`build_cifarnet_paper` has the latter.
    """
    input_shape, num_classes = _shapes(meta, input_shape, num_classes)
    inputs, x = _image_input(input_shape, augment_flip)
    for i in (1, 2):
        # McGill: stride 1 (the paper leaves it open).
        x = layers.Conv2D(64, 5, strides=1, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(pool_size=3, strides=2, padding="same", name=f"pool{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(384, activation="relu", name="fc3")(x)
    x = layers.Dropout(float(dropout), name="dropout3")(x)
    x = layers.Dense(192, activation="relu", name="fc4")(x)
    x = layers.Dropout(float(dropout), name="dropout4")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name="cifarnet")


def build_cifarnet_mcgill_code(meta=None, *, input_shape=None, num_classes=None, dropout=0.5,
                               augment_flip=False) -> keras.Model:
    """CifarNet as McGill's code built it (``AWS/experiments/models.py`` at commit 3d93029, the one
    that added their run scripts and result figures), not as their Appendix 1 describes it.

    Layers: Conv2D(64, 6×6, 'same', relu) → MaxPool(2×2) → BatchNormalization → Conv2D(64, 6×6,
    'same', relu) → Flatten → Dense(384, relu) → Dropout(0.5) → Dense(num_classes, softmax).

    Keras 2's defaults, which Keras 3 keeps: Glorot-uniform kernels, zero biases, stride 1, pooling
    stride = window with 'valid' padding (32×32 → 16×16), batch norm momentum 0.99 and ε 1e-3. One
    pooling layer only, so the dense layer sees 16·16·64 = 16,384 inputs (6.3 M weights). The
    Dense(192) block of Appendix 1 came later (e7d1bb6, 2018-04-18), after their figures.
    """
    input_shape, num_classes = _shapes(meta, input_shape, num_classes)
    inputs, x = _image_input(input_shape, augment_flip)
    x = layers.Conv2D(64, 6, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(pool_size=2, name="pool1")(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Conv2D(64, 6, padding="same", activation="relu", name="conv2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(384, activation="relu", name="fc3")(x)
    x = layers.Dropout(float(dropout), name="dropout3")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name="cifarnet_mcgill_code")


def _negative_power(d, beta):
    """``d ** -beta`` for ``d > 0``: reciprocal square roots for β = 0.5 and 0.75 (fast, with
    cheap gradients), ``exp(-β log d)`` otherwise."""
    ops = keras.ops
    if beta == 0.5:
        return ops.rsqrt(d)
    if beta == 0.75:
        return ops.rsqrt(d) * ops.rsqrt(ops.sqrt(d))
    return ops.exp(-beta * ops.log(d))


@keras.saving.register_keras_serializable(package="replication")
class LocalResponseNormalization(layers.Layer):
    """Local response normalization across channels (Krizhevsky et al. 2012), as ``tf.nn.lrn``::

        out[..., c] = x[..., c] / (bias + alpha * sum_{c' = c-r..c+r} x[..., c']**2) ** beta

    The defaults are TensorFlow's CifarNet constants: r (``depth_radius``) = 4, bias = 1.0,
    alpha = 0.001 / 9, beta = 0.75. Channels-last inputs; no trainable weights.
    """

    def __init__(self, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, inputs):
        # The window sum is one matrix product with a banded 0/1 matrix (channels × channels), and
        # the power is two reciprocal square roots for the usual β = 0.75: as exact as the sum of
        # padded slices and ``ops.power`` it replaced (float32 rounding, tested against a float64
        # transcription of the formula, value and gradient) and ~10× faster forward + backward on
        # this CPU (benchmarks/bench_cifarnet_layers.py).
        ops = keras.ops
        channels = inputs.shape[-1]
        index = np.arange(channels)
        band = (np.abs(index[:, None] - index[None, :]) <= self.depth_radius).astype("float32")
        window = ops.matmul(ops.square(inputs), ops.convert_to_tensor(band, dtype=inputs.dtype))
        return inputs * _negative_power(self.bias + self.alpha * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta)
        return config


def build_cifarnet_paper(meta=None, *, input_shape=None, num_classes=None, dropout=0.5,
                         augment_flip=False) -> keras.Model:
    """CifarNet as Reddi et al. (ICLR 2018, §5) describe it: "two convolutional layers with 64
    channels and kernel size 6×6 followed by 2 fully connected layers of size 384 and 192. The
    network uses 2×2 max pooling and layer response normalization between the convolutional
    layers. A dropout layer with keep probability of 0.5 is applied in between the fully connected
    layers."

    Layers: [Conv2D(64, 6×6, stride 1, 'same', relu) → MaxPool(2×2, stride 2) → LRN] × 2 →
    Flatten → Dense(384, relu) → Dropout(0.5) → Dense(192, relu) → Dense(num_classes, softmax).

    What the paper leaves open and what we chose:

    - stride and padding: stride 1 (as McGill) and 'same' padding, so 32×32 → 16 → 8.
    - pooling stride: 2, non-overlapping 2×2 windows.
    - "layer response normalization": read as local response normalization (as in TF's CifarNet)
      with TF CifarNet's constants (:class:`LocalResponseNormalization`), after each pooling.
    - order conv → pool → LRN for both blocks (TF's CifarNet swaps it in block 2).
    - softmax output layer on top of the 192-unit layer (the paper counts only hidden layers).
    """
    input_shape, num_classes = _shapes(meta, input_shape, num_classes)
    inputs, x = _image_input(input_shape, augment_flip)
    for i in (1, 2):
        x = layers.Conv2D(64, 6, strides=1, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(pool_size=2, strides=2, padding="same", name=f"pool{i}")(x)
        x = LocalResponseNormalization(name=f"lrn{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(384, activation="relu", name="fc3")(x)
    x = layers.Dropout(float(dropout), name="dropout3")(x)
    x = layers.Dense(192, activation="relu", name="fc4")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name="cifarnet_paper")


def build_cnn(meta=None, *, input_shape=None, num_classes=None, filters=(32, 64), dense=1000,
              dropout=0.0, augment_flip=False) -> keras.Model:
    """Pérez's MNIST CNN (§4.1.3): "two alternating stages of a 5×5 convolutional layer, a 3×3 max
    pooling layer with a stride of 2, and a ReLU layer. Following those two stages there are two
    fully-connected layers."

    Layers: [Conv2D(f, 5×5, 'same') → MaxPool(3×3, stride 2, 'same') → ReLU] for f in ``filters``
    → Flatten → Dense(``dense``, relu) → [Dropout(``dropout``)] → Dense(num_classes, softmax).
    On 28×28 inputs (28 → 14 → 7): 832 + 51,264 + 3,137,000 + 10,010 = 3,199,106 parameters.

    What Pérez leaves open and what we chose:

    - filters: not stated; 32 then 64, as TensorFlow's "Deep MNIST" CNN of the same shape.
    - hidden width: not stated; 1000, the width of his fully connected network (§2.2).
    - padding: not stated; 'same' for convolutions and pooling, so 28 → 14 → 7.
    - layer order conv → pool → ReLU as he lists it (max-pooling and ReLU commute, so this equals
      conv → ReLU → pool).
    - dropout: he trains with and without, rate not stated; ``dropout`` > 0 adds one Dropout after
      the hidden dense layer (0 = none, the default).
    """
    input_shape, num_classes = _shapes(meta, input_shape, num_classes)
    _check_rate("dropout", dropout)
    inputs, x = _image_input(input_shape, augment_flip)
    for i, f in enumerate(filters, start=1):
        x = layers.Conv2D(int(f), 5, padding="same", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(pool_size=3, strides=2, padding="same", name=f"pool{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(int(dense), activation="relu", name="fc")(x)
    if dropout:
        x = layers.Dropout(float(dropout), name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn")


def build_vgg(meta=None, *, input_shape=None, num_classes=None, filters=(64, 128, 256),
              convs=(2, 2, 3), dense=512, block_dropout=0.25, dropout=0.5, augment_flip=False,
              name="vgg") -> keras.Model:
    """Korzeniowski's "Vgg" for CIFAR-10: a VGG-style network where "each convolution is followed
    by batch normalisation and a rectifier"; dropout between blocks and before the classifier.

    Layers: per block b, ``convs[b]`` × [Conv2D(``filters[b]``, 3×3, 'same', no bias) →
    BatchNormalization → ReLU] → MaxPool(2×2) → Dropout(``block_dropout``); then Flatten →
    Dense(``dense``, relu) → Dropout(``dropout``) → Dense(num_classes, softmax).

    Korzeniowski's figure (layer diagram) is not in the text we have, only "Vgg" and that SmallVgg
    "uses half the filters in each layer, and it uses only two conv layers in each block". Chosen:

    - blocks of 64-128-256 filters with 2-2-3 convolutions (VGG's first three stages, trimmed; the
      third block is where SmallVgg's "only two" differs), 3×3 kernels, 'same' padding, so
      32 → 16 → 8 → 4 after the three 2×2 poolings.
    - no convolution bias: Lasagne's ``batch_norm`` (his framework) removes the wrapped layer's
      bias, which BN's β makes redundant.
    - dropout 0.25 after every block, 0.5 before the classifier (the Keras CIFAR-10 example's
      rates; his figure gives rates we cannot read).
    - head: one Dense(512, relu) hidden layer then softmax (as VGG-style CIFAR nets commonly do).

    Parameters on 32×32×3 (BN: 4 per channel, 2 of them non-trainable moving statistics):
    convs 1,728 + 36,864 + 73,728 + 147,456 + 294,912 + 2 × 589,824 = 1,734,336;
    BN 4 × (64·2 + 128·2 + 256·3) = 4,608; dense 4·4·256·512 + 512 = 2,097,664; softmax 5,130;
    total 3,841,738.
    """
    input_shape, num_classes = _shapes(meta, input_shape, num_classes)
    if len(filters) != len(convs):
        raise ValueError(f"filters {filters} and convs {convs} must have the same length")
    _check_rate("block_dropout", block_dropout)
    _check_rate("dropout", dropout)
    inputs, x = _image_input(input_shape, augment_flip)
    for b, (f, n) in enumerate(zip(filters, convs), start=1):
        for c in range(1, int(n) + 1):
            # Lasagne's batch_norm drops the conv bias: BN's beta plays its part.
            x = layers.Conv2D(int(f), 3, padding="same", use_bias=False, name=f"conv{b}_{c}")(x)
            x = layers.BatchNormalization(name=f"bn{b}_{c}")(x)
            x = layers.ReLU(name=f"relu{b}_{c}")(x)
        x = layers.MaxPooling2D(pool_size=2, strides=2, name=f"pool{b}")(x)
        if block_dropout:
            x = layers.Dropout(float(block_dropout), name=f"dropout{b}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(int(dense), activation="relu", name="fc")(x)
    if dropout:
        x = layers.Dropout(float(dropout), name="dropout_fc")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def build_small_vgg(meta=None, *, input_shape=None, num_classes=None, filters=(32, 64, 128),
                    convs=(2, 2, 2), dense=256, block_dropout=0.25, dropout=0.5,
                    augment_flip=False) -> keras.Model:
    """Korzeniowski's "SmallVgg": :func:`build_vgg` with "half the filters in each layer" (32-64-128,
    and a 256-unit hidden dense layer, half of Vgg's 512) and "only two conv layers in each block".

    Parameters on 32×32×3: convs 864 + 9,216 + 18,432 + 36,864 + 73,728 + 147,456 = 286,560;
    BN 4 × (32 + 32 + 64 + 64 + 128 + 128) = 1,792; dense 4·4·128·256 + 256 = 524,544;
    softmax 2,570; total 815,466.
    """
    return build_vgg(meta, input_shape=input_shape, num_classes=num_classes, filters=filters, convs=convs,
                     dense=dense, block_dropout=block_dropout, dropout=dropout,
                     augment_flip=augment_flip, name="small_vgg")


@keras.saving.register_keras_serializable(package="replication")
class GaussianSample(layers.Layer):
    """The VAE's stochastic layer: from (μ, log σ²) draw z = μ + σ·ε, ε ~ N(0, I) (the
    reparameterisation trick, Kingma & Welling 2014), and return it with the per-example
    KL(N(μ, σ²) ‖ N(0, I)) = −½ Σ (1 + log σ² − μ² − σ²), shape (batch, 1).

    It samples in evaluation too: the test loss is the same single-sample ELBO estimate as the
    training loss. The draws come from a seeded ``SeedGenerator`` (``set_random_seed`` fixes them).
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mean, log_var = inputs
        noise = keras.random.normal(keras.ops.shape(mean), seed=self.seed_generator, dtype=mean.dtype)
        z = mean + keras.ops.exp(0.5 * log_var) * noise
        kl = -0.5 * keras.ops.sum(1.0 + log_var - keras.ops.square(mean) - keras.ops.exp(log_var), axis=-1,
                                  keepdims=True)
        return z, kl

    def compute_output_shape(self, input_shape):
        return input_shape[0], (input_shape[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def build_vae(meta=None, *, input_shape=None, num_classes=None, hidden=512, latent=20,
              augment_flip=False) -> keras.Model:
    """A dense variational autoencoder (Kingma & Welling 2014) for images in [0, 1].

    Encoder: Flatten → Dense(``hidden``, relu) → μ = Dense(``latent``), log σ² = Dense(``latent``);
    z ~ N(μ, σ²) by :class:`GaussianSample`; decoder: Dense(``hidden``, relu) → Dense(pixels,
    sigmoid), Bernoulli means x̂. Output: ``concatenate([x̂, KL])``, shape (batch, pixels + 1), which
    :func:`get_loss` ``("elbo")`` turns into −ELBO. ``num_classes`` is accepted and ignored (the
    builders' common signature). On 28×28: 401,920 (encoder) + 2 × 10,260 (μ, log σ²) + 10,752
    (decoder) + 402,192 (reconstruction) = 835,384 parameters.

    Why this one: the published reproduction that added a VAE (shared/papers, Table 1: α = 0.002/√t,
    β1 = 0.5, β2 = 0.999, batch 128, 100 epochs) ran a convolutional VAE on CelebA, which cannot be
    had here; its figure shows only "an abstract view". On MNIST the standard model is Kingma &
    Welling's MLP VAE (their §5: one hidden layer, latent 20 among their sizes); we use ReLU and 512
    hidden units (their 500 tanh units).
    """
    if input_shape is None and meta is not None:
        input_shape = tuple(meta["X_shape_"][1:])
    if input_shape is None:
        raise TypeError("pass meta (scikeras) or input_shape=")
    input_shape = tuple(int(d) for d in input_shape)
    pixels = 1
    for d in input_shape:
        pixels *= d
    inputs, x = _flat_input(input_shape, augment_flip)
    h = layers.Dense(int(hidden), activation="relu", name="encoder")(x)
    mean = layers.Dense(int(latent), name="z_mean")(h)
    log_var = layers.Dense(int(latent), name="z_log_var")(h)
    z, kl = GaussianSample(name="sample")([mean, log_var])
    h = layers.Dense(int(hidden), activation="relu", name="decoder")(z)
    reconstruction = layers.Dense(pixels, activation="sigmoid", name="reconstruction")(h)
    outputs = layers.Concatenate(name="reconstruction_and_kl")([reconstruction, kl])
    return keras.Model(inputs, outputs, name="vae")


MODELS = {
    "logreg": build_logreg,
    "mlp": build_mlp,
    "cifarnet": build_cifarnet,
    "cifarnet-paper": build_cifarnet_paper,
    "cifarnet-coded": build_cifarnet_mcgill_code,
    "cnn": build_cnn,
    "vgg": build_vgg,
    "small-vgg": build_small_vgg,
    "vae": build_vae,
}


def build_model(name: str, *, input_shape, num_classes: int, **hyperparams) -> keras.Model:
    """Build model ``name`` (a key of :data:`MODELS`) for ``input_shape`` (one example, e.g.
    ``(28, 28)``) and ``num_classes``; ``hyperparams`` go to the builder (e.g. ``hidden=(200,)``).

    Uncompiled; seed with ``keras.utils.set_random_seed`` first for reproducible weights.
    """
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](input_shape=input_shape, num_classes=num_classes, **hyperparams)


def make_targets(loss: str, x, y, num_classes: int):
    """Training targets for ``loss``: the flattened images (float32) for ``"elbo"``, one-hot
    float32 labels otherwise."""
    import numpy as np

    if loss == "elbo":
        return np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    out = np.zeros((y.shape[0], num_classes), dtype=np.float32)
    out[np.arange(y.shape[0]), y] = 1.0
    return out
