"""MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST...) from a local directory; never downloads.

Expected files (each optionally ``.gz``): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``. ``root`` may be the folder holding them or a
torchvision root (``FashionMNIST/raw``, ``MNIST/raw``, ``raw``). Without ``root``, the documented default
locations are searched: Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``).

Protocol (seeded): query = the t10k set (or a class-balanced ``query_size`` subset of it), database = the
train set, train = a class-balanced ``train_size`` subset of the database (default 5,000). Labels are
one-hot; mean/std are computed over the train split.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from hashguard.data.base import DatasetSplits
from hashguard.data.memory import InMemoryDataset, channel_stats, one_hot, stratified_choice
from hashguard.data.sources import SOURCES
from hashguard.errors import DataError

#: searched in order when no root is given.
DEFAULT_ROOTS = ("/usr/share/datasets/fashion-mnist",)
_SUBDIRS = ("", "raw", "FashionMNIST/raw", "MNIST/raw", "KMNIST/raw")
_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzipped) with ``ndim`` dimensions; validate the header."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX file: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise DataError(f"{path}: IDX element type 0x{data[2]:02x} is not unsigned byte (0x08)")
    if data[3] != ndim:
        raise DataError(f"{path}: expected a {ndim}-dimensional IDX file, header says {data[3]}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(
            f"{path}: header shape {shape} needs {expected} bytes of data, found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find_idx_dir(root: str | Path | None) -> Path:
    """The directory holding the four IDX files, searching ``root``'s usual sub-folders."""
    bases = [Path(root)] if root is not None else [Path(p) for p in DEFAULT_ROOTS]
    for base in bases:
        for sub in _SUBDIRS:
            folder = base / sub if sub else base
            if _locate(folder, _STEMS["train_images"]) is not None:
                return folder
    if root is None:
        raise DataError(
            f"no IDX dataset found in the default locations ({', '.join(DEFAULT_ROOTS)}); pass a root "
            "directory holding train-images-idx3-ubyte[.gz] and friends"
        )
    if not Path(root).is_dir():
        raise DataError(f"{root}: dataset directory not found")
    raise DataError(f"{root}: no train-images-idx3-ubyte[.gz] here or in raw/, FashionMNIST/raw/, MNIST/raw/")


def _locate(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_arrays(root: str | Path | None) -> dict[str, np.ndarray]:
    """The four arrays (``train_images`` (N,1,28,28), ``train_labels``, ``test_images``, ``test_labels``)."""
    folder = find_idx_dir(root)
    arrays: dict[str, np.ndarray] = {}
    for key, stem in _STEMS.items():
        path = _locate(folder, stem)
        if path is None:
            raise DataError(f"{folder / stem}: IDX file not found (also tried .gz)")
        arrays[key] = read_idx(path, 3 if key.endswith("images") else 1)
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if len(images) != len(labels):
            raise DataError(f"{folder}: {part} has {len(images)} images but {len(labels)} labels")
        arrays[f"{part}_images"] = images[:, None, :, :]
    return arrays


@SOURCES.register(
    "idx",
    summary="MNIST-style IDX files (e.g. Fashion-MNIST): query t10k, database train, train 5,000 subset",
    needs_root=False,
    detect=find_idx_dir,
    check=lambda root: check_idx(root),
)
def open_idx(
    root: str | Path | None = None,
    image_size: int | None = None,
    seed: int = 0,
    query_size: int | None = None,
    train_size: int = 5000,
    channels: int | None = None,
) -> DatasetSplits:
    """Train / query / database splits of an IDX dataset (see the module docstring for the protocol)."""
    arrays = load_idx_arrays(root)
    train_labels, test_labels = arrays["train_labels"], arrays["test_labels"]
    num_classes = int(max(train_labels.max(initial=0), test_labels.max(initial=0))) + 1
    rng = np.random.default_rng(seed)
    try:
        if query_size is None:
            query_rows = np.arange(len(test_labels), dtype=np.int64)
        else:
            query_rows = np.sort(stratified_choice(test_labels, int(query_size), rng))
        train_rows = np.sort(stratified_choice(train_labels, int(train_size), rng))
    except ValueError as exc:
        raise DataError(f"IDX split: {exc}") from None
    database = InMemoryDataset(
        arrays["train_images"], one_hot(train_labels, num_classes), image_size, channels
    )
    query = InMemoryDataset(
        arrays["test_images"][query_rows],
        one_hot(test_labels[query_rows], num_classes),
        image_size,
        channels,
        source_rows=query_rows,
    )
    train = database.subset(train_rows)
    mean, std = channel_stats(train.images)
    if train.out_channels != train.images.shape[1]:
        mean, std = mean * train.out_channels, std * train.out_channels
    name = find_idx_dir(root).resolve().name
    return DatasetSplits(f"idx:{name}", train, query, database, mean=mean, std=std)


def check_idx(root: str | Path) -> Any:
    """``hashguard datasets check`` of an IDX folder: class counts of the train (database) and t10k (query)
    files."""
    from hashguard.data.check import summarise_classes

    arrays = load_idx_arrays(root)
    parts = {"train files (database)": arrays["train_labels"], "t10k files (query)": arrays["test_labels"]}
    shape = "x".join(map(str, arrays["train_images"].shape[1:]))
    return summarise_classes(str(root), f"idx, image {shape}", parts)
