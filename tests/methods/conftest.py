"""Shared helpers for the method tests: a short CPU training run on the demo data and a numpy mAP.

The training fixture uses the *demo recipe* that trains every method from scratch on CPU (measured, see
docs/methods.md): BatchNorm1d on the code logits (``ModelSpec(hash_norm="batchnorm")``), Adam at lr 5e-4,
batch 32, in-batch pairs for the pairwise losses (chosen by the test cases). Torch runs on one thread: the
test machines are shared and two threads per process oversubscribed the cores (a 10 s run took 140 s).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from hashguard.testing import small_cnn_model, torch_threads

QUERY_ITEMS = 200
DATABASE_ITEMS = 1000


def numpy_map(query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray) -> float:
    """mAP over the whole database; ties in Hamming distance broken by database index (stable order)."""
    q = query_codes.astype(np.float64)
    d = db_codes.astype(np.float64)
    distances = 0.5 * (q.shape[1] - q @ d.T)
    scores = []
    for i in range(len(q)):
        order = np.argsort(distances[i], kind="stable")
        relevant = (db_labels[order] @ query_labels[i] > 0).astype(np.float64)
        if relevant.sum() == 0:
            scores.append(0.0)
            continue
        precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
        scores.append(float((precision * relevant).sum() / relevant.sum()))
    return float(np.mean(scores))


@dataclass
class TrainingOutcome:
    map: float
    random_map: float


@pytest.fixture(scope="session")
def demo_splits() -> Callable[[str], Any]:
    """Open a demo source once per session (multi-label composites scaled to 28 px to keep runs short)."""
    from hashguard.data import SubsetDataset, open_dataset

    cache: dict[str, Any] = {}

    def get(source: str) -> Any:
        if source not in cache:
            image_size = 28 if source == "demo-mnist-multi" else None
            splits = open_dataset(source, seed=0, image_size=image_size)
            cache[source] = (
                splits,
                SubsetDataset(splits.query, np.arange(QUERY_ITEMS)),
                SubsetDataset(splits.database, np.arange(DATABASE_ITEMS)),
            )
        return cache[source]

    return get


@pytest.fixture
def train_demo(demo_splits: Callable[[str], Any]) -> Callable[..., TrainingOutcome]:
    """Train ``method`` briefly with the project trainer on a demo source; return its mAP and random codes'."""
    from hashguard.config import TrainConfig
    from hashguard.encoding import encode_dataset
    from hashguard.methods import build_method, method_class
    from hashguard.seeding import seed_everything
    from hashguard.training import train_model

    def run(
        name: str,
        source: str,
        bits: int = 16,
        epochs: int = 4,
        items: int = 1000,
        lr: float = 5e-4,
        hash_norm: str = "batchnorm",
        seed: int = 0,
        **params: Any,
    ) -> TrainingOutcome:
        from hashguard.data import SubsetDataset

        splits, query, database = demo_splits(source)
        train = SubsetDataset(splits.train, np.arange(items))
        seed_everything(seed)
        spec = {"hash_norm": hash_norm, **method_class(name).model_overrides()}
        model = small_cnn_model(splits, bits, seed=seed, **spec)
        method = build_method(name, bits, splits.num_classes, len(train), seed=seed, **params)
        config = TrainConfig(
            recipe="fast", epochs=epochs, batch_size=32, lr=lr, progress=False, val_fraction=0.0, select="last"
        )
        with tempfile.TemporaryDirectory() as out:
            train_model(model, method, train, config, out, seed=seed, log=None)
        query_codes, query_labels = encode_dataset(model, query)
        db_codes, db_labels = encode_dataset(model, database)
        rng = np.random.default_rng(seed + 1)
        random_query = np.where(rng.random(query_codes.shape) < 0.5, 1, -1)
        random_db = np.where(rng.random(db_codes.shape) < 0.5, 1, -1)
        return TrainingOutcome(
            map=numpy_map(query_codes, db_codes, query_labels, db_labels),
            random_map=numpy_map(random_query, random_db, query_labels, db_labels),
        )

    return run


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread per test (shared CI cores), restored afterwards."""
    with torch_threads(1):
        yield
