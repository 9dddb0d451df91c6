"""In-memory image arrays (demo digits, IDX files, CIFAR batches) and seeded, class-balanced splitting."""

from __future__ import annotations

import numpy as np
import torch

from hashguard.data.base import ArrayDataset
from hashguard.data.transforms import resize_tensor


class InMemoryDataset(ArrayDataset):
    """An :class:`ArrayDataset` that can scale its images to ``image_size`` and repeat grey to ``channels``.

    The uint8 array stays at its native size; resizing happens lazily in :meth:`load_image`, so a 224-px
    view of 60,000 CIFAR images costs no extra memory. ``source_rows`` records, for every item, the row(s)
    of the original source it was built from (``-1`` for an empty cell of a composite image).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        image_size: int | None = None,
        channels: int | None = None,
        source_rows: np.ndarray | None = None,
    ) -> None:
        super().__init__(images, labels)
        native_c, native_h, native_w = (int(s) for s in images.shape[1:])
        if channels is not None and channels != native_c and not (native_c == 1 and channels == 3):
            raise ValueError(f"cannot turn {native_c}-channel images into {channels} channels")
        if image_size is not None and image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        native = image_size is None or image_size == native_h == native_w
        self.out_size = None if native else int(image_size)
        self.out_channels = native_c if channels is None else int(channels)
        height, width = (native_h, native_w) if self.out_size is None else (self.out_size, self.out_size)
        self.image_shape = (self.out_channels, height, width)
        self.source_rows = (
            np.arange(len(images), dtype=np.int64) if source_rows is None else np.asarray(source_rows)
        )

    def load_image(self, index: int) -> torch.Tensor:
        image = super().load_image(index)
        if self.out_size is not None:
            image = resize_tensor(image, self.out_size)
        if self.out_channels != image.shape[0]:
            image = image.expand(self.out_channels, -1, -1).contiguous()
        return image

    def subset(self, indices: np.ndarray) -> InMemoryDataset:
        """The items at ``indices`` (in that order), with the same output size and channels."""
        indices = np.asarray(indices, dtype=np.int64)
        return InMemoryDataset(
            self.images[indices],
            self.labels[indices],
            image_size=self.out_size,
            channels=self.out_channels,
            source_rows=self.source_rows[indices],
        )

    def fingerprint_parts(self) -> list[bytes]:
        return [*super().fingerprint_parts(), repr(self.image_shape).encode()]


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the [0, 1] scale."""
    values = images.astype(np.float64) / 255.0
    mean = values.mean(axis=(0, 2, 3))
    std = values.std(axis=(0, 2, 3))
    std = np.where(std > 1e-8, std, 1.0)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def stratified_choice(classes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Pick ``count`` positions of ``classes`` as evenly across classes as possible, in random order.

    Each class gives ``count // K`` items (K = number of distinct classes); the remainder goes to classes
    chosen at random. Raises ``ValueError`` if a class has too few items.
    """
    classes = np.asarray(classes)
    if count < 0 or count > len(classes):
        raise ValueError(f"cannot pick {count} of {len(classes)} items")
    values = np.unique(classes)
    quota = np.full(len(values), count // len(values), dtype=np.int64)
    quota[rng.permutation(len(values))[: count % len(values)]] += 1
    picked = []
    for value, take in zip(values, quota, strict=True):
        members = np.flatnonzero(classes == value)
        if take > len(members):
            raise ValueError(f"class {value} has {len(members)} items, {take} requested")
        picked.append(rng.permutation(members)[:take])
    chosen = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    return rng.permutation(chosen).astype(np.int64)


def class_split(
    classes: np.ndarray, query_size: int, train_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-balanced (query, database, train) positions: query and database are disjoint, train ⊂ database.

    Query and train are picked with :func:`stratified_choice`; the database is everything not in the query,
    in a seeded random order.
    """
    query = stratified_choice(classes, query_size, rng)
    rest = np.setdiff1d(np.arange(len(classes)), query)
    database = rng.permutation(rest).astype(np.int64)
    train = database[stratified_choice(classes[database], train_size, rng)]
    return query, database, train


def one_hot(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, num_classes) float32 one-hot rows."""
    out = np.zeros((len(classes), num_classes), dtype=np.float32)
    out[np.arange(len(classes)), np.asarray(classes, dtype=np.int64)] = 1.0
    return out
