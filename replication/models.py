"""The models of the experiments, as scikeras-ready builders of uncompiled Keras models.

Every builder has the scikeras model-function signature::

    build_<name>(meta=None, *, input_shape=None, num_classes=None, **hyperparams) -> keras.Model

and returns an *uncompiled* functional model whose output is softmax probabilities. With scikeras
(``KerasClassifier(model=build_mlp, ...)``) ``meta`` supplies the shapes (``meta["X_shape_"][1:]``
and ``meta["n_classes_"]``) and builder hyperparameters are routed as ``model__hidden=(100,)``.
Outside scikeras use :func:`build_model`.

Inputs keep their image shape (see :mod:`replication.datasets`): dense models flatten, and conv
models add a channel axis to 2-D inputs (MNIST 28×28, digits 8×8).

Seeding: builders take no seed. Call ``keras.utils.set_random_seed(seed)`` before building (the
trainer does), which fixes the initializers and the dropout masks.

Written with ``keras.layers`` / ``keras.ops`` only, so they run under any Keras backend.
"""
from __future__ import annotations

import keras
from keras import layers

from .errors import UserError

LOSSES = ("categorical", "binary")


def _shapes(meta, input_shape, num_classes):
    # Explicit arguments win; otherwise scikeras's meta (set from the data in fit()).
    if input_shape is None and meta is not None:
        input_shape = tuple(meta["X_shape_"][1:])
    if num_classes is None and meta is not None:
        num_classes = int(meta["n_classes_"])
    if input_shape is None or num_classes is None:
        raise TypeError("pass meta (scikeras) or both input_shape= and num_classes=")
    return tuple(int(d) for d in input_shape), int(num_classes)


def _image_input(input_shape):
    """Input layer plus, for a 2-D (H, W) input, a Reshape to (H, W, 1) for the conv layers."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if len(input_shape) == 2:
        x = layers.Reshape((*input_shape, 1), name="add_channel")(x)
    elif len(input_shape) != 3:
        raise ValueError(f"conv models need (H, W) or (H, W, C) inputs, got {input_shape}")
    return inputs, x


def build_logreg(meta=None, *, input_shape=None, num_classes=None) -> keras.Model:
    """Multinomial logistic regression: Flatten → Dense(num_classes, softmax).

    Reddi et al. §5 ("logistic regression" on MNIST); McGill Appendix 1, Fig. 4 (a feed-forward
    network with no hidden layer). On 28×28 inputs: 784·10 + 10 = 7,850 parameters.
    """
    input_shape, num_classes = _shapes(meta, input_shape, num_classes)
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    outputs = layers.Dense(num_classes, activation="softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name="logreg")


def build_mlp(meta=None, *, input_shape=None, num_classes=None, hidden=(100,), dropout=0.0) -> keras.Model:
    """Feed-forward network: Flatten → [Dense(h, relu) → Dropout(dropout)] per h in ``hidden`` →
    Dense(num_classes, softmax).

    Reddi et al. §5 and McGill §III-C / Fig. 5: one hidden layer of 100 ReLU units (the default),
    no dropout (the default 0.0 adds no Dropout layer). On 28×28 inputs: 79,510 parameters.
    """
    input_shape, num_classes = _shapes(meta, input_shape, num_classes)
    if isinstance(hidden, int):
        hidden = (hidden,)
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden, start=1):
        x = layers.Dense(int(units), activation="relu", name=f"hidden{i}")(x)
        if dropout:
            x = layers.Dropout(float(dropout), name=f"dropout{i}")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name="mlp")


def build_cifarnet(meta=None, *, input_shape=None, num_classes=None, dropout=0.5) -> keras.Model:
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
    inputs, x = _image_input(input_shape)
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
        ops = keras.ops
        r = self.depth_radius
        channels = inputs.shape[-1]
        squares = ops.square(inputs)
        padded = ops.pad(squares, [[0, 0]] * (len(inputs.shape) - 1) + [[r, r]])
        window = padded[..., 0:channels]
        for offset in range(1, 2 * r + 1):
            window = window + padded[..., offset : offset + channels]
        return inputs / ops.power(self.bias + self.alpha * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta)
        return config


def build_cifarnet_paper(meta=None, *, input_shape=None, num_classes=None, dropout=0.5) -> keras.Model:
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
    inputs, x = _image_input(input_shape)
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


MODELS = {
    "logreg": build_logreg,
    "mlp": build_mlp,
    "cifarnet": build_cifarnet,
    "cifarnet-paper": build_cifarnet_paper,
}


def build_model(name: str, *, input_shape, num_classes: int, **hyperparams) -> keras.Model:
    """Build model ``name`` (a key of :data:`MODELS`) for ``input_shape`` (one example, e.g.
    ``(28, 28)``) and ``num_classes``; ``hyperparams`` go to the builder (e.g. ``hidden=(200,)``).

    Uncompiled; seed with ``keras.utils.set_random_seed`` first for reproducible weights.
    """
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](input_shape=input_shape, num_classes=num_classes, **hyperparams)


def get_loss(name: str) -> keras.losses.Loss:
    """The training loss ``name`` (one of :data:`LOSSES`); both take one-hot targets and
    probabilities (the models end in softmax).

    - ``"categorical"``: categorical cross-entropy, ``-sum_k y_k log p_k`` per example.
    - ``"binary"``: McGill's "multiclass log-loss" (§IV-B), binary cross-entropy applied to each
      of the K outputs: ``-sum_k [y_k log p_k + (1 - y_k) log(1 - p_k)]``. Keras's
      ``BinaryCrossentropy`` *averages* over the K outputs, so its value is McGill's formula
      divided by K (a constant factor: same minimiser, gradients scaled by 1/K).

    Both are averaged over the batch; Keras clips probabilities to [1e-7, 1 - 1e-7].
    """
    if name == "categorical":
        return keras.losses.CategoricalCrossentropy()
    if name == "binary":
        return keras.losses.BinaryCrossentropy()
    raise UserError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
