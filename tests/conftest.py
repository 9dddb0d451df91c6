"""Shared fixtures: small slices of the embedded demo data, so every test runs on CPU in seconds."""

from __future__ import annotations

import numpy as np
import pytest

from hashguard.data.base import ArrayDataset, DatasetSplits


def _slice(dataset, count: int) -> ArrayDataset:
    images = np.stack([(dataset.load_image(i).numpy() * 255).round().astype(np.uint8) for i in range(count)])
    return ArrayDataset(images, dataset.labels[:count])


@pytest.fixture(scope="session")
def demo_splits() -> DatasetSplits:
    from hashguard.data import open_dataset

    return open_dataset("demo-mnist", seed=0)


@pytest.fixture(scope="session")
def tiny_splits(demo_splits) -> DatasetSplits:
    """300 train, 100 query, 600 database demo digits (single-label, 1x28x28)."""
    return DatasetSplits(
        name="demo-mnist-tiny",
        train=_slice(demo_splits.train, 300),
        query=_slice(demo_splits.query, 100),
        database=_slice(demo_splits.database, 600),
        mean=demo_splits.mean,
        std=demo_splits.std,
    )
