"""A training split with substituted labels (the propagated ones): same images, same order, other labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hashguard.data.base import HashingDataset, SubsetDataset


class RelabeledDataset(HashingDataset):
    """``parent``'s items with ``labels`` (N, C) in place of its own; item i is ``(parent image i, labels[i],
    i)``, so any trainer or method reads the substituted labels."""

    def __init__(self, parent: HashingDataset, labels: np.ndarray | torch.Tensor) -> None:
        values = np.asarray(labels.cpu().numpy() if isinstance(labels, torch.Tensor) else labels, dtype=np.float32)
        if values.shape != parent.labels.shape:
            raise ValueError(f"expected labels of shape {parent.labels.shape}, got {values.shape}")
        self.parent = parent
        self.labels = values
        self.image_shape = parent.image_shape

    def load_image(self, index: int) -> torch.Tensor:
        return self.parent.load_image(index)

    def subset(self, indices: Sequence[int] | np.ndarray) -> HashingDataset:
        return SubsetDataset(self, np.asarray(indices, dtype=np.int64))

    def fingerprint_parts(self) -> list[bytes]:
        return [self.parent.fingerprint().encode(), np.ascontiguousarray(self.labels).tobytes()]
