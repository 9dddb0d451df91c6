"""Shared fixtures: small slices of the embedded demo data, so every test runs on CPU in seconds
(built by :mod:`hashguard.testing`, which the benchmarks use too)."""

from __future__ import annotations

import pytest

from hashguard.data.base import DatasetSplits
from hashguard.testing import tiny_splits as make_tiny_splits


@pytest.fixture(scope="session")
def demo_splits() -> DatasetSplits:
    from hashguard.data import open_dataset

    return open_dataset("demo-mnist", seed=0)


@pytest.fixture(scope="session")
def tiny_splits(demo_splits) -> DatasetSplits:
    """300 train, 100 query, 600 database demo digits (single-label, 1x28x28)."""
    return make_tiny_splits(demo_splits)
