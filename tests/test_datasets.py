"""replication.datasets: shapes, scaling, lookup order, and one-line errors for bad files."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from conftest import real_data

from replication import datasets
from replication.datasets import DATASETS, load_dataset
from replication.errors import UserError



@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real Keras cache, no env var, and a download that fails like an offline machine."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(home / ".keras"))
    monkeypatch.delenv("REPLICATION_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "_keras_cache_dirs", lambda: [str(home / ".keras" / "datasets")])

    def offline(name):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(datasets, "_download", offline)


def fake_images(n, shape, seed):
    rng = np.random.RandomState(seed)
    x = rng.randint(0, 256, size=(n, *shape)).astype(np.uint8)
    x[0].flat[0], x[0].flat[1] = 0, 255  # both ends of the pixel range present
    return x, (np.arange(n) % 10).astype(np.uint8)


def write_npz(path, shape, n_train=30, n_test=20):
    x_train, y_train = fake_images(n_train, shape, 0)
    x_test, y_test = fake_images(n_test, shape, 1)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return x_train, y_train, x_test, y_test


def cifar_batch(n, seed):
    x, y = fake_images(n, (32, 32, 3), seed)
    data = x.transpose(0, 3, 1, 2).reshape(n, 3072)  # official layout: 3 planes of 32x32 per row
    # Official batches are Python 2 pickles with bytes keys and labels as a list.
    return {b"batch_label": b"fake", b"data": data, b"labels": y.tolist()}, x, y


def cifar_batches():
    out = {}
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        out[name] = cifar_batch(4, seed=10 + i)
    return out


def check_cifar(ds, batches):
    x_train = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    y_train = np.concatenate([batches[f"data_batch_{i}"][2] for i in range(1, 6)])
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(ds.x_train, x_train / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_allclose(ds.x_test, batches["test_batch"][1] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, batches["test_batch"][2])


def test_names():
    assert DATASETS == ("mnist", "fashion-mnist", "cifar10", "digits")


def test_unknown_name_lists_names():
    with pytest.raises(UserError, match="unknown dataset 'svhn'.*mnist, fashion-mnist, cifar10, digits"):
        load_dataset("svhn")


def test_digits_shapes_ranges_and_stratified_split():
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.num_classes == 10
    assert ds.x_train.shape == (1347, 8, 8) and ds.x_test.shape == (450, 8, 8)
    assert ds.input_shape == (8, 8)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0  # 0..16 scaled by 1/16
    np.testing.assert_array_equal(np.unique(ds.x_train * 16), np.arange(17))
    # Stratified: class proportions of train and test agree to within one example per class.
    train_counts = np.bincount(ds.y_train, minlength=10)
    test_counts = np.bincount(ds.y_test, minlength=10)
    assert np.all(np.abs(train_counts / 3 - test_counts) <= 1.0)
    # Fixed split: the same every call.
    np.testing.assert_array_equal(load_dataset("digits").y_test, ds.y_test)


def test_mnist_from_data_dir(tmp_path):
    x_train, y_train, x_test, y_test = write_npz(tmp_path / "mnist.npz", (28, 28))
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.x_train.shape == (30, 28, 28) and ds.x_test.shape == (20, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    np.testing.assert_allclose(ds.x_test, x_test / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_train, y_train)
    assert ds.num_classes == 10


def test_env_var_is_honoured_and_data_dir_wins(tmp_path, monkeypatch):
    env_dir, arg_dir = tmp_path / "env", tmp_path / "arg"
    env_dir.mkdir()
    arg_dir.mkdir()
    write_npz(env_dir / "fashion-mnist.npz", (28, 28), n_train=12)
    write_npz(arg_dir / "fashion-mnist.npz", (28, 28), n_train=14)
    monkeypatch.setenv("REPLICATION_DATA_DIR", str(env_dir))
    assert len(load_dataset("fashion-mnist").x_train) == 12
    assert len(load_dataset("fashion-mnist", data_dir=arg_dir).x_train) == 14


def test_keras_cache_is_used(tmp_path):
    cache = tmp_path / "home" / ".keras" / "datasets"
    cache.mkdir(parents=True)
    x_train, y_train, _, _ = write_npz(cache / "mnist.npz", (28, 28), n_train=16)
    ds = load_dataset("mnist")  # no data_dir, no $REPLICATION_DATA_DIR: Keras's cache folder
    np.testing.assert_allclose(ds.x_train, x_train / 255.0, rtol=1e-6)  # the cached file's pixels, scaled
    np.testing.assert_array_equal(ds.y_train, y_train)


def test_keras_cache_dirs_follow_keras_home(tmp_path, monkeypatch):
    monkeypatch.undo()  # the real function, not the fixture's stub
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert datasets._keras_cache_dirs()[0] == str(tmp_path / "kh" / "datasets")


def test_truncated_npz_names_the_file(tmp_path):
    write_npz(tmp_path / "mnist.npz", (28, 28))
    data = (tmp_path / "mnist.npz").read_bytes()
    (tmp_path / "mnist.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "mnist.npz") in message and "truncated" in message and "\n" not in message


def test_npz_with_wrong_keys_or_shapes(tmp_path):
    np.savez(tmp_path / "mnist.npz", images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(UserError, match="mnist.npz.*missing keys"):
        load_dataset("mnist", data_dir=tmp_path)
    write_npz(tmp_path / "mnist.npz", (32, 32, 3))  # CIFAR arrays under the MNIST name
    with pytest.raises(UserError, match=r"x_train has shape \(30, 32, 32, 3\), expected \(N, 28, 28\)"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_file_says_where_to_put_it(tmp_path):
    with pytest.raises(UserError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("MNIST not found: put mnist.npz")
    assert "REPLICATION_DATA_DIR" in message and "no network" in message and "\n" not in message


def test_missing_via_keras_download_failure(tmp_path, monkeypatch):
    """The real download path with keras's loader failing: still one UserError line."""
    import keras

    monkeypatch.undo()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / ".keras"))
    monkeypatch.delenv("REPLICATION_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "_keras_cache_dirs", lambda: [str(tmp_path / ".keras" / "datasets")])

    def fail():
        raise Exception("URL fetch failure on https://storage.googleapis.com/x: None -- offline")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", fail)
    with pytest.raises(UserError, match=r"^CIFAR-10 not found: .*cifar-10-python\.tar\.gz.*offline$"):
        load_dataset("cifar10")


def test_missing_data_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "nope")


def test_cifar10_from_batches_folder(tmp_path):
    batches = cifar_batches()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, (batch, _, _) in batches.items():
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    check_cifar(load_dataset("cifar10", data_dir=tmp_path), batches)


def test_cifar10_folder_missing_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with pytest.raises(UserError, match="data_batch_1 is missing"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_from_tar_gz(tmp_path):
    batches = cifar_batches()
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, (batch, _, _) in batches.items():
            payload = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    check_cifar(load_dataset("cifar10", data_dir=tmp_path), batches)
    # A truncated archive names the file.
    data = (tmp_path / "cifar-10-python.tar.gz").read_bytes()
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError, match="cifar-10-python.tar.gz is truncated"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_from_npz_with_keras_label_shape(tmp_path):
    x_train, y_train = fake_images(10, (32, 32, 3), 0)
    x_test, y_test = fake_images(5, (32, 32, 3), 1)
    # keras.datasets.cifar10 gives labels of shape (N, 1)
    np.savez(tmp_path / "cifar10.npz", x_train=x_train, y_train=y_train[:, None], x_test=x_test, y_test=y_test[:, None])
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.x_train.shape == (10, 32, 32, 3) and ds.y_train.shape == (10,) and ds.y_test.shape == (5,)
    assert ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0
    np.testing.assert_array_equal(ds.y_test, y_test)


def test_pickle_with_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": os.getcwd, b"labels": []}, f)
    with pytest.raises(UserError, match="data_batch_1 is truncated or not a CIFAR-10 python batch"):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.slow
def test_real_mnist():
    ds = load_dataset("mnist", data_dir=real_data("mnist.npz").parent)
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.y_test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_slow_tests_look_for_real_data_where_replication_data_dir_says(tmp_path):
    import conftest

    environ = {"REPLICATION_DATA_DIR": str(tmp_path)}
    assert conftest.real_data_dir(environ) == tmp_path
    header = conftest.describe_real_data(environ)
    assert str(tmp_path) in header and "$REPLICATION_DATA_DIR" in header and "will skip" in header
    with pytest.raises(pytest.skip.Exception, match=f"mnist.npz not found in {tmp_path}.*REPLICATION_DATA_DIR"):
        conftest.real_data("mnist.npz", environ)
    (tmp_path / "mnist.npz").write_bytes(b"")
    assert conftest.real_data("mnist.npz", environ) == tmp_path / "mnist.npz"
    assert conftest.real_data_dir({}) == conftest.DEFAULT_DATA_DIR
