"""Fixtures for the attack tests: a small CSQ model trained in seconds on demo digits, and its codes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from hashguard.attacks import AttackContext
from hashguard.methods import build_method
from hashguard.models.hash_model import HashModel, ModelSpec

N_TRAIN, N_QUERY, N_DB = 800, 60, 1000


@dataclass
class AttackBench:
    model: HashModel
    context: AttackContext
    query_images: torch.Tensor
    query_labels: torch.Tensor
    target_labels: torch.Tensor


def _stack(dataset, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([dataset.load_image(i) for i in range(count)])
    return images, torch.as_tensor(np.asarray(dataset.labels[:count]), dtype=torch.float32)


def _model(bits: int, mean: float, std: float) -> HashModel:
    torch.manual_seed(0)
    spec = ModelSpec(backbone="small_cnn", bits=bits, in_channels=1, image_size=28, mean=[mean], std=[std])
    return HashModel(spec)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Small batches gain little from a second thread, and the CI machine is shared: 1 thread, restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def attack_bench(demo_splits) -> AttackBench:
    """CSQ (class centres, learns from scratch) on 800 demo digits, 3 epochs of Adam 1e-3: clean mAP ~0.9."""
    from hashguard.attacks import select_target_labels

    train_x, train_y = _stack(demo_splits.train, N_TRAIN)
    query_x, query_y = _stack(demo_splits.query, N_QUERY)
    db_x, db_y = _stack(demo_splits.database, N_DB)
    model = _model(32, mean=float(demo_splits.mean[0]), std=float(demo_splits.std[0]))
    method = build_method("csq", 32, train_y.shape[1], N_TRAIN, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    index = torch.arange(N_TRAIN)
    model.train()
    for _ in range(3):
        order = torch.randperm(N_TRAIN, generator=generator)
        for start in range(0, N_TRAIN, 64):
            batch = order[start : start + 64]
            loss = method(model(train_x[batch]), train_y[batch], index[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    for parameter in model.parameters():
        parameter.grad = None
    context = AttackContext(model.encode(train_x), train_y, model.encode(db_x), db_y)
    targets = torch.as_tensor(select_target_labels(query_y, db_y, seed=0))
    return AttackBench(model, context, query_x, query_y, targets)
