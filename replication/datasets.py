"""The image data sets of the experiments, as float32 arrays in [0, 1] with integer labels.

Reddi et al. (ICLR 2018) §5 and McGill §III-C/D use MNIST (logistic regression, 1-hidden-layer MLP)
and CIFAR-10 (CifarNet). Fashion-MNIST is a drop-in MNIST replacement, and scikit-learn's embedded
8×8 ``digits`` set is the offline default for demos and fast tests.

Images keep their Keras layout — (N, 28, 28), (N, 32, 32, 3), (N, 8, 8) — because flattening or
adding a channel axis is the model's job (:mod:`replication.models`).

Where the files come from, first hit wins:

1. ``data_dir`` (the CLI's ``--data-dir``), else ``$REPLICATION_DATA_DIR``:
   ``mnist.npz`` / ``fashion-mnist.npz`` / ``cifar10.npz`` (keys ``x_train, y_train, x_test,
   y_test``, uint8 pixels; labels (N,) or (N, 1); an optional bool ``test_exact`` mask marks the
   test images that are the official pixels, other extra keys are ignored), or for CIFAR-10 the official ``cifar-10-batches-py/`` folder or the
   unextracted ``cifar-10-python.tar.gz``; the Keras-cache layouts below are accepted there too;
2. the Keras cache (``$KERAS_HOME`` or ``~/.keras``, then ``/tmp/.keras``) under ``datasets/``:
   ``mnist.npz``, ``fashion-mnist/*.gz``, ``cifar-10-batches-py-target/cifar-10-batches-py/``
   (Keras 3) or ``cifar-10-batches-py/`` (older Keras);
3. ``keras.datasets.<name>.load_data()``, which downloads into that cache.

Anything missing or malformed ends in a :class:`~replication.errors.UserError` naming the file
and what to do — never a NumPy traceback.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError

DATASETS = ("mnist", "fashion-mnist", "cifar10", "digits")
# How pixels reach the model (``Experiment.input_scale``): "unit" = [0, 1] (pixel / its maximum, our
# default); "raw" = the stored pixel values themselves, 0..255 (0..16 for digits), never scaled, as
# McGill's code fed them (their README point 1).
INPUT_SCALES = ("unit", "raw")
# Which images are trained and tested on (``Experiment.split``): "official" = the files' own
# train/test split; "mcgill-random" (MNIST) = McGill's random 60,000/10,000 split of all 70,000
# images (:func:`mcgill_mnist_split`); "train-batch-5" (CIFAR-10) = the official training set, tested
# on training images 40,000..49,999, which McGill's loader read as its "test" set.
SPLITS = ("official", "mcgill-random", "train-batch-5")
SPLIT_DATASETS = {"mcgill-random": ("mnist",), "train-batch-5": ("cifar10",)}
# McGill's seed for train_test_split (data/MNIST/load_mnist.py).
MCGILL_MNIST_SEED = 551

DATA_DIR_ENV = "REPLICATION_DATA_DIR"

_KERAS_LAYOUT_KEYS = ("x_train", "y_train", "x_test", "y_test")

# Per-image shape and the human name used in messages.
_SPECS = {
    "mnist": ((28, 28), "MNIST"),
    "fashion-mnist": ((28, 28), "Fashion-MNIST"),
    "cifar10": ((32, 32, 3), "CIFAR-10"),
}
_NPZ_NAMES = {"mnist": "mnist.npz", "fashion-mnist": "fashion-mnist.npz", "cifar10": "cifar10.npz"}
_FASHION_FILES = (  # Keras's cache layout: datasets/fashion-mnist/<these>
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"


@dataclass(frozen=True, eq=False)
class Dataset:
    """One data set: ``x`` float32 in [0, 1] with the image shape kept, ``y`` int64 labels (N,)."""

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    num_classes: int
    # True where a test image is the official pixels (cifar10.npz's ``test_exact`` key, e.g. the
    # 1,000 exact images among 9,000 decoded from JPEG copies); None when the file has no such key.
    test_exact: np.ndarray | None = field(default=None, repr=False)
    # The largest pixel value the stored images can hold (255; digits: 16): x in [0, 1] is pixel / it.
    pixel_max: float = 255.0
    input_scale: str = "unit"  # one of INPUT_SCALES (see prepare_dataset)
    split: str = "official"  # one of SPLITS (see prepare_dataset)

    @property
    def input_shape(self) -> tuple:
        """Shape of one example, e.g. ``(28, 28)``: what :func:`replication.models.build_model` takes."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        return (
            f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, x_test={self.x_test.shape}, "
            f"num_classes={self.num_classes})"
        )


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load data set ``name`` (one of :data:`DATASETS`); see the module docstring for the lookup order.

    ``data_dir`` overrides ``$REPLICATION_DATA_DIR``. Raises :class:`UserError` for an unknown
    name, a missing file (with the download failing) or a malformed one.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if name == "digits":
        return _load_digits()

    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    roots = []
    if data_dir is not None:
        data_dir = os.path.expanduser(os.fspath(data_dir))
        if not os.path.isdir(data_dir):
            raise UserError(
                f"data folder {data_dir} does not exist; fix --data-dir / ${DATA_DIR_ENV} "
                "or leave it unset to use the Keras cache"
            )
        roots.append(data_dir)
    roots.extend(_keras_cache_dirs())

    for root in roots:
        arrays = _find_in(name, root)
        if arrays is not None:
            source = arrays[4]
            exact = _read_test_exact(source, len(arrays[2])) if str(source).endswith(".npz") else None
            return _to_dataset(name, arrays, source=source, test_exact=exact)

    try:
        arrays = _download(name)
    except Exception as exc:  # offline, proxy, corrupt download: say what to do instead
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(_missing_message(name, reason)) from None
    return _to_dataset(name, arrays, source=f"keras.datasets ({name} download)")


# --------------------------------------------------------------------------------------------
# digits: embedded in scikit-learn


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)  # pixel values are counts 0..16
    y = bunch.target.astype(np.int64)
    # Fixed, stratified split so every run and every engineer sees the same test set.
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return Dataset("digits", x_train, y_train, x_test, y_test, num_classes=10, pixel_max=16.0)


# --------------------------------------------------------------------------------------------
# lookup


def _keras_cache_dirs():
    # Same rule as keras.utils.get_file: $KERAS_HOME or ~/.keras, /tmp/.keras when not writable.
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    dirs = [os.path.join(home, "datasets"), os.path.join("/tmp", ".keras", "datasets")]
    return [d for i, d in enumerate(dirs) if d not in dirs[:i]]


def _find_in(name, root):
    """The arrays ``(x_train, y_train, x_test, y_test, source)`` from the first layout in ``root``."""
    npz = os.path.join(root, _NPZ_NAMES[name])
    if os.path.isfile(npz):
        return (*_read_npz(npz), npz)
    if name == "fashion-mnist":
        folder = os.path.join(root, "fashion-mnist")
        if all(os.path.isfile(os.path.join(folder, f)) for f in _FASHION_FILES):
            return (*_read_fashion_gz(folder), folder)
    if name == "cifar10":
        for folder in (
            os.path.join(root, "cifar-10-batches-py"),
            os.path.join(root, "cifar-10-batches-py-target", "cifar-10-batches-py"),
        ):
            if os.path.isdir(folder):
                return (*_read_cifar_folder(folder), folder)
        tgz = os.path.join(root, "cifar-10-python.tar.gz")
        if os.path.isfile(tgz):
            return (*_read_cifar_tar(tgz), tgz)
    return None


def _download(name):
    import keras  # heavy: only when nothing local was found

    module = {
        "mnist": keras.datasets.mnist,
        "fashion-mnist": keras.datasets.fashion_mnist,
        "cifar10": keras.datasets.cifar10,
    }[name]
    (x_train, y_train), (x_test, y_test) = module.load_data()
    return x_train, y_train, x_test, y_test


def _missing_message(name, reason):
    label = _SPECS[name][1]
    if name == "cifar10":
        what = "cifar10.npz (Keras layout), cifar-10-batches-py/ or cifar-10-python.tar.gz"
    else:
        what = f"{_NPZ_NAMES[name]} (Keras layout)"
    return (
        f"{label} not found: put {what} in --data-dir / ${DATA_DIR_ENV} or "
        f"{_keras_cache_dirs()[0]}/; download failed: {reason}"
    )


# --------------------------------------------------------------------------------------------
# readers: each raises UserError naming the file


def _bad_file(path, what, exc):
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return UserError(f"{path} is truncated or not {what}: {detail}; re-download it")


def _read_npz(path):
    what = "a Keras-layout npz (x_train, y_train, x_test, y_test)"
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _KERAS_LAYOUT_KEYS if k not in f.files]
            if missing:
                raise KeyError(f"missing keys {missing}, found {sorted(f.files)}")
            return tuple(np.asarray(f[k]) for k in _KERAS_LAYOUT_KEYS)
    except UserError:
        raise
    except Exception as exc:  # BadZipFile, EOFError, ValueError, OSError, KeyError, ...
        raise _bad_file(path, what, exc) from None


def _read_test_exact(path, n_test):
    """The optional ``test_exact`` mask of an npz (bool, one per test image), else None. Other
    extra keys are ignored. An entry that cannot be read (an object array, which would need
    pickle; a zip member failing its CRC) is a UserError naming the file, as a bad mask is."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "test_exact" not in f.files:
                return None
            mask = np.asarray(f["test_exact"])
    except Exception as exc:  # ValueError (object array), BadZipFile (CRC), EOFError, OSError, ...
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(f"{path}: its test_exact entry cannot be read ({detail}); it must be a bool array "
                        f"of shape ({n_test},): re-download the file, or fix or remove the key") from None
    if mask.shape != (n_test,) or mask.dtype != np.bool_:
        raise UserError(f"{path}: test_exact must be a bool array of shape ({n_test},), got {mask.dtype} "
                        f"{mask.shape}; fix or remove the key")
    return mask


def _read_fashion_gz(folder):
    arrays = []
    for fname, offset in zip(_FASHION_FILES, (16, 8, 16, 8)):
        path = os.path.join(folder, fname)
        try:
            with gzip.open(path, "rb") as f:
                arrays.append(np.frombuffer(f.read(), np.uint8, offset=offset))
        except Exception as exc:
            raise _bad_file(path, "a gzipped IDX file", exc) from None
    x_train, y_train, x_test, y_test = arrays
    try:
        x_train = x_train.reshape(len(y_train), 28, 28)
        x_test = x_test.reshape(len(y_test), 28, 28)
    except ValueError as exc:
        raise _bad_file(folder, "a Fashion-MNIST folder (images and labels disagree)", exc) from None
    return x_train, y_train, x_test, y_test


class _NumpyOnlyUnpickler(pickle.Unpickler):
    # The CIFAR batches are pickles; refuse anything that is not plain NumPy data (a tampered
    # file could otherwise run code). _codecs.encode: how protocol-2 pickles store bytes.
    _ALLOWED = frozenset({
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),
    })

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(fileobj, path):
    what = "a CIFAR-10 python batch (dict with data and labels)"
    try:
        batch = _NumpyOnlyUnpickler(fileobj, encoding="bytes").load()
        batch = {(k.decode("utf8") if isinstance(k, bytes) else k): v for k, v in batch.items()}
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"])
        # Official layout: rows of 3072 = 3 colour planes of 32×32, to channels-last.
        data = data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)
    except Exception as exc:
        raise _bad_file(path, what, exc) from None
    return data, labels


def _join_cifar(batches):
    x_train = np.concatenate([b[0] for b in batches[:-1]])
    y_train = np.concatenate([b[1] for b in batches[:-1]])
    x_test, y_test = batches[-1]
    return x_train, y_train, x_test, y_test


def _read_cifar_folder(folder):
    batches = []
    for fname in (*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH):
        path = os.path.join(folder, fname)
        if not os.path.isfile(path):
            raise UserError(
                f"{path} is missing: {folder} must hold data_batch_1..5 and test_batch; "
                "re-extract cifar-10-python.tar.gz"
            )
        with open(path, "rb") as f:
            batches.append(_read_cifar_batch(f, path))
    return _join_cifar(batches)


def _read_cifar_tar(path):
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
            batches = []
            for fname in (*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH):
                if fname not in members:
                    raise KeyError(f"no member {fname}")
                data = tar.extractfile(members[fname]).read()
                batches.append(_read_cifar_batch(io.BytesIO(data), f"{path}:{fname}"))
    except UserError:
        raise
    except Exception as exc:  # ReadError, EOFError, KeyError, ...
        raise _bad_file(path, "the CIFAR-10 python archive (cifar-10-python.tar.gz)", exc) from None
    return _join_cifar(batches)


# --------------------------------------------------------------------------------------------
# checks and scaling


def _to_dataset(name, arrays, source, test_exact=None):
    image_shape, label = _SPECS[name]
    x_train, y_train, x_test, y_test = (np.asarray(a) for a in arrays[:4])
    problems = []
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1:] == (1,) else y  # CIFAR's (N, 1)
        if x.shape[1:] != image_shape:
            problems.append(f"x_{split} has shape {x.shape}, expected (N, {', '.join(map(str, image_shape))})")
        elif y.ndim != 1 or len(y) != len(x):
            problems.append(f"y_{split} has shape {y.shape}, expected ({len(x)},)")
        elif len(x) == 0:
            problems.append(f"x_{split} is empty")
        elif not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() > 255:
            problems.append(f"x_{split} must hold uint8 pixels 0..255 (got {x.dtype})")
        elif not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= 10:
            problems.append(f"y_{split} must hold integer labels 0..9")
    if problems:
        raise UserError(f"{source} is not a {label} data set in Keras layout: {'; '.join(problems)}; re-download it")

    def scale(x):
        return (x.astype(np.float32) / np.float32(255.0))

    def labels(y):
        return y.reshape(-1).astype(np.int64)

    return Dataset(
        name,
        scale(x_train),
        labels(y_train),
        scale(x_test),
        labels(y_test),
        num_classes=10,
        test_exact=test_exact,
    )


# --------------------------------------------------------------------------------------------
# protocol: input scale and split (Experiment.input_scale, Experiment.split)


def check_protocol(dataset: str, input_scale: str, split: str) -> str | None:
    """Why ``input_scale``/``split`` cannot apply to ``dataset``, or None."""
    if input_scale not in INPUT_SCALES:
        return f"unknown input_scale {input_scale!r}; choose one of: {', '.join(INPUT_SCALES)}"
    if split not in SPLITS:
        return f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}"
    if split in SPLIT_DATASETS and dataset not in SPLIT_DATASETS[split]:
        return f"split {split!r} is defined for {', '.join(SPLIT_DATASETS[split])} only, not {dataset}"
    return None


def mcgill_mnist_order(x_train, y_train, x_test, y_test):
    """All 70,000 MNIST images in the order of scikit-learn's ``fetch_mldata('MNIST original')``,
    which McGill loaded (data/MNIST/load_mnist.py): the 60,000 official training images, then the
    10,000 official test images, each part sorted by label. Within a label the official order is
    kept (a stable sort): mldata.org's file is not to be had any more, and this is the usual
    reconstruction of it."""
    parts = []
    for x, y in ((x_train, y_train), (x_test, y_test)):
        order = np.argsort(y, kind="stable")
        parts.append((x[order], y[order]))
    return np.concatenate([parts[0][0], parts[1][0]]), np.concatenate([parts[0][1], parts[1][1]])


def mcgill_split_indices(n: int, n_test: int = 10000, seed: int = MCGILL_MNIST_SEED):
    """``(train, test)`` indices of ``train_test_split(X, y, test_size=n_test, random_state=seed)``
    (scikit-learn's ShuffleSplit: one ``RandomState(seed).permutation(n)``, the first ``n_test``
    indices are the test set, the rest the training set, each in permutation order). Written out
    rather than called so that the split cannot change with a scikit-learn release."""
    permutation = np.random.RandomState(seed).permutation(n)
    return permutation[n_test:], permutation[:n_test]


def mcgill_mnist_split(x_train, y_train, x_test, y_test):
    """McGill's MNIST: all 70,000 images (:func:`mcgill_mnist_order`) split at random into 60,000
    training and 10,000 test images with their seed 551 (:func:`mcgill_split_indices`)."""
    x, y = mcgill_mnist_order(x_train, y_train, x_test, y_test)
    train, test = mcgill_split_indices(len(x), n_test=len(x_test))
    return x[train], y[train], x[test], y[test]


def prepare_dataset(data: Dataset, input_scale: str = "unit", split: str = "official") -> Dataset:
    """``data`` (as :func:`load_dataset` returns it: unit scale, official split) under an
    experiment's protocol: raw pixels (``x * pixel_max``, rounded back to the stored integers) and
    McGill's splits (see :data:`SPLITS`). The defaults return ``data`` itself."""
    why = check_protocol(data.name, input_scale, split)
    if why:
        raise UserError(why)
    if (input_scale, split) == (data.input_scale, data.split):
        return data
    if (data.input_scale, data.split) != ("unit", "official"):
        raise UserError(f"{data.name} is already prepared ({data.input_scale}, {data.split}); "
                        "pass the data set as load_dataset returns it")
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    exact = data.test_exact
    if split == "mcgill-random":
        x_train, y_train, x_test, y_test = mcgill_mnist_split(x_train, y_train, x_test, y_test)
        exact = None
    elif split == "train-batch-5":
        # McGill's CIFAR loader read data_batch_5 again as its test set (their README point 3):
        # training images 40,000..49,999, all of them official pixels.
        if len(x_train) != 50000:
            raise UserError(f"split 'train-batch-5' needs CIFAR-10's 50,000 training images, got {len(x_train)}")
        x_test, y_test = x_train[40000:50000], y_train[40000:50000]
        exact = None
    if input_scale == "raw":
        def unscale(x):
            return np.rint(x * np.float32(data.pixel_max)).astype(np.float32)

        x_train, x_test = unscale(x_train), unscale(x_test)
    return Dataset(data.name, x_train, y_train, x_test, y_test, num_classes=data.num_classes, test_exact=exact,
                   pixel_max=data.pixel_max, input_scale=input_scale, split=split)
