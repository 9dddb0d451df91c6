"""The dataset contract every source implements.

An item is ``(image, label, index)``: a float tensor in [0, 1] of shape (C, H, W), a float multi-hot label
vector of length C_labels, and the integer position of the item in its split (memory banks and per-query
target labels are addressed by it, so query and database loaders never shuffle).

A slice of a split is a split too: ``splits.query[0:8]`` is a dataset of the first eight queries, re-indexed
from 0, and ``.tensors()`` stacks a (small) split into an image batch and a label matrix.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class HashingDataset(Dataset):
    """A split of a hashing benchmark. Subclasses provide ``labels`` and ``load_image``."""

    #: (N, C) float32 multi-hot labels of the split.
    labels: np.ndarray
    #: channels, height and width of every image the split yields.
    image_shape: tuple[int, int, int]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.labels.shape[1])

    def load_image(self, index: int) -> torch.Tensor:
        """The image at ``index`` as a float tensor in [0, 1], shape ``image_shape``."""
        raise NotImplementedError

    def __getitem__(self, index: Any) -> Any:
        """``dataset[i]`` is the item ``(image, label, i)`` (negative ``i`` counts from the end);
        ``dataset[a:b:c]`` is a :class:`HashingDataset` of those items, re-indexed from 0."""
        if isinstance(index, slice):
            return self.subset(np.arange(len(self), dtype=np.int64)[index])
        position = self._position(index)
        return self.load_image(position), torch.from_numpy(self.labels[position]).float(), position

    def _position(self, index: Any) -> int:
        """``index`` as a position in ``[0, len)``; other types raise TypeError, other values IndexError."""
        try:
            if isinstance(index, (bool, np.bool_)):
                raise TypeError
            position = operator.index(index)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__} indices must be integers or slices (e.g. split[0:8]), "
                f"not {type(index).__name__}"
            ) from None
        size = len(self)
        if not -size <= position < size:
            raise IndexError(f"index {position} is out of range for a split of {size} items")
        return position + size if position < 0 else position

    def subset(self, indices: Sequence[int] | np.ndarray) -> HashingDataset:
        """The items at ``indices`` (in that order) as a dataset re-indexed from 0."""
        return SubsetDataset(self, np.asarray(indices, dtype=np.int64))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every item as ``(images (N, C, H, W) in [0, 1], labels (N, C_labels) float)``: meant for a slice
        such as ``split[0:8]``, since the whole split is read into memory."""
        if len(self) == 0:
            images = torch.zeros((0, *self.image_shape))
        else:
            images = torch.stack([self.load_image(i) for i in range(len(self))]).float()
        return images, torch.from_numpy(np.array(self.labels, dtype=np.float32))

    def fingerprint_parts(self) -> list[bytes]:
        """Bytes that identify the content of the split (labels plus image identity)."""
        return [np.ascontiguousarray(self.labels, dtype=np.float32).tobytes()]

    def fingerprint(self) -> str:
        """A short, stable hash of the split's content."""
        digest = hashlib.sha256()
        for part in self.fingerprint_parts():
            digest.update(part)
        return digest.hexdigest()[:16]


class ArrayDataset(HashingDataset):
    """Images held in memory as a uint8 array (N, C, H, W) with (N, C_labels) labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be a uint8 array (N, C, H, W), got {images.dtype} {images.shape}")
        if labels.ndim != 2 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be (N, C) with N = {images.shape[0]}, got {labels.shape}")
        self.images = images
        self.labels = labels.astype(np.float32)
        self.image_shape = tuple(int(s) for s in images.shape[1:])  # type: ignore[assignment]

    def load_image(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.images[index]).float().div_(255.0)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.images[indices], self.labels[indices])

    def fingerprint_parts(self) -> list[bytes]:
        return [*super().fingerprint_parts(), np.ascontiguousarray(self.images).tobytes()]


@dataclass
class DatasetSplits:
    """The three splits of a retrieval benchmark: train, query (a.k.a. test) and database."""

    name: str
    train: HashingDataset
    query: HashingDataset
    database: HashingDataset
    #: per-channel mean / std to store in the model (None: use the ImageNet statistics).
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def split(self, name: str) -> HashingDataset:
        """The split called ``name`` (``test`` is an alias of ``query``)."""
        key = {"test": "query"}.get(name, name)
        if key not in ("train", "query", "database"):
            raise KeyError(f"unknown split {name!r}; choose train, query (test) or database")
        return getattr(self, key)

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for part in (self.train, self.query, self.database):
            digest.update(part.fingerprint().encode())
        return digest.hexdigest()[:16]


class SubsetDataset(HashingDataset):
    """A view of some items of another split, re-indexed from 0 (for validation carving)."""

    def __init__(self, parent: HashingDataset, indices: Sequence[int] | np.ndarray) -> None:
        self.parent = parent
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.indices.size and not (-len(parent) <= self.indices.min() and self.indices.max() < len(parent)):
            raise IndexError(f"subset indices out of range for a split of {len(parent)} items")
        self.indices = np.where(self.indices < 0, self.indices + len(parent), self.indices)
        self.labels = parent.labels[self.indices]
        self.image_shape = parent.image_shape

    def load_image(self, index: int) -> torch.Tensor:
        return self.parent.load_image(int(self.indices[index]))

    def subset(self, indices: Sequence[int] | np.ndarray) -> HashingDataset:
        """A subset of a subset is one view of the parent (no chain of views)."""
        return SubsetDataset(self.parent, self.indices[np.asarray(indices, dtype=np.int64)])

    def fingerprint_parts(self) -> list[bytes]:
        return [self.parent.fingerprint().encode(), self.indices.tobytes()]


def carve_validation(
    train: HashingDataset, fraction: float, seed: int
) -> tuple[HashingDataset, HashingDataset | None]:
    """Split ``train`` into (fit, validation) with a seeded permutation; never touches the query split."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    count = int(round(len(train) * fraction))
    if count == 0:
        return train, None
    order = np.random.default_rng(seed).permutation(len(train))
    return SubsetDataset(train, np.sort(order[count:])), SubsetDataset(train, np.sort(order[:count]))
