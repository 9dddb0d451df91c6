"""Fixtures for the attack tests: a small CSQ model trained in seconds on demo digits, and its codes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from hashguard.attacks import AttackContext
from hashguard.models.hash_model import HashModel
from hashguard.testing import stack_split, torch_threads, train_tiny_csq

N_TRAIN, N_QUERY, N_DB = 800, 60, 1000


@dataclass
class AttackBench:
    model: HashModel
    context: AttackContext
    query_images: torch.Tensor
    query_labels: torch.Tensor
    target_labels: torch.Tensor


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Small batches gain little from a second thread, and the CI machine is shared: 1 thread, restored after."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def attack_bench(demo_splits) -> AttackBench:
    """CSQ (class centres, learns from scratch) on 800 demo digits, 3 epochs of Adam 1e-3: clean mAP ~0.9."""
    from hashguard.attacks import select_target_labels

    model, _ = train_tiny_csq(demo_splits, bits=32, epochs=3, train_items=N_TRAIN, batch_size=64)
    train_x, train_y = stack_split(demo_splits.train, N_TRAIN)
    query_x, query_y = stack_split(demo_splits.query, N_QUERY)
    db_x, db_y = stack_split(demo_splits.database, N_DB)
    context = AttackContext(model.encode(train_x), train_y, model.encode(db_x), db_y)
    targets = torch.as_tensor(select_target_labels(query_y, db_y, seed=0))
    return AttackBench(model, context, query_x, query_y, targets)
