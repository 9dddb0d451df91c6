"""Fixtures for the defense tests: a small CSQ base checkpoint trained in seconds on 300 demo digits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from hashguard.data.base import DatasetSplits
from hashguard.methods import build_method
from hashguard.models import HashModel, ModelSpec
from hashguard.models.checkpoint import save_model

BITS = 16


@dataclass
class DefenseBench:
    checkpoint: Path
    splits: DatasetSplits


def _tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([dataset.load_image(i) for i in range(len(dataset))])
    return images, torch.as_tensor(np.asarray(dataset.labels), dtype=torch.float32)


@pytest.fixture(scope="session")
def defense_bench(tiny_splits, tmp_path_factory) -> DefenseBench:
    """CSQ, small CNN, 16 bits, 4 epochs of Adam 1e-3 on the 300 tiny training digits (clean mAP ~0.8)."""
    torch.manual_seed(0)
    spec = ModelSpec(
        backbone="small_cnn", bits=BITS, in_channels=1, image_size=28,
        mean=[float(tiny_splits.mean[0])], std=[float(tiny_splits.std[0])],
    )
    model = HashModel(spec)
    train_x, train_y = _tensors(tiny_splits.train)
    method = build_method("csq", BITS, 10, len(train_x), seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(4):
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(train_x), 32):
            batch = order[start : start + 32]
            loss = method(model(train_x[batch]), train_y[batch], batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    directory = tmp_path_factory.mktemp("defense-base")
    save_model(
        directory, model, method={"name": "csq", "params": method.params()}, num_classes=10,
        extra={
            "training": {"seed": 0, "config": {"val_fraction": 0.0}},
            # the tiny train split is the first 300 items of demo-mnist train: the CLI can re-open it
            "data": {"source": "demo-mnist", "seed": 0},
        },
    )
    return DefenseBench(directory, tiny_splits)
