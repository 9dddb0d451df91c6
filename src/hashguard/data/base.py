"""The dataset contract every source implements.

An item is ``(image, label, index)``: a float tensor in [0, 1] of shape (C, H, W), a float multi-hot label
vector of length C_labels, and the integer position of the item in its split (memory banks and per-query
target labels are addressed by it, so query and database loaders never shuffle).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.load_image(index), torch.from_numpy(self.labels[index]).float(), int(index)

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

    def subset(self, indices: np.ndarray) -> ArrayDataset:
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

    def __init__(self, parent: HashingDataset, indices: np.ndarray) -> None:
        self.parent = parent
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = parent.labels[self.indices]
        self.image_shape = parent.image_shape

    def load_image(self, index: int) -> torch.Tensor:
        return self.parent.load_image(int(self.indices[index]))

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
