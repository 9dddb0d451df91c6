"""Small, seeded building blocks on the embedded demo digits, shared by the test suite and the benchmarks.

Everything here runs on a CPU in seconds and needs no download and no pytest (the benchmarks import it as a
plain module; the pytest fixtures under ``tests/`` wrap it):

* :func:`tiny_splits` - 300 train / 100 query / 600 database demo digits held in memory;
* :func:`stack_split` - the first images and labels of a split as tensors;
* :func:`small_cnn_model` - an untrained small-CNN hash model sized for a dataset;
* :func:`train_csq` / :func:`train_tiny_csq` - a short, seeded CSQ fit (Yuan et al., CVPR 2020, central
  similarity quantization) with Adam, learning from scratch in seconds;
* :func:`save_demo_checkpoint` - a checkpoint directory that records its demo data, so that ``attack``,
  ``defend`` and ``evaluate`` can re-open that data from ``model.json``;
* :data:`TINY_PROSGAN` / :data:`MINI_PROSGAN` - ProS-GAN settings (Wang et al., CVPR 2021) that learn within
  a test budget / train in seconds;
* :func:`torch_threads` - run a block with a fixed number of torch threads (shared CI cores).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashguard.data.base import ArrayDataset, DatasetSplits, HashingDataset
from hashguard.methods.base import HashingMethod
from hashguard.models.hash_model import HashModel, ModelSpec

__all__ = [
    "DEMO_SOURCE",
    "MINI_PROSGAN",
    "TINY_PROSGAN",
    "TINY_SIZES",
    "save_demo_checkpoint",
    "slice_dataset",
    "small_cnn_model",
    "stack_split",
    "tiny_splits",
    "torch_threads",
    "train_csq",
    "train_tiny_csq",
]

#: the embedded single-label demo source (1x28x28 digits, 10 classes)
DEMO_SOURCE = "demo-mnist"
#: (train, query, database) items of :func:`tiny_splits`
TINY_SIZES = (300, 100, 600)

#: ProS-GAN settings that learn within about 100 GAN steps on 800 demo digits (learning rate 3e-3 instead of
#: 1e-4, reconstruction weight 10 instead of 50-100; see docs/attacks.md)
TINY_PROSGAN: dict[str, Any] = dict(
    proto_epochs=1,
    proto_steps=60,
    hidden=256,
    proto_lr=1e-3,
    epochs=4,
    gan_steps=25,
    batch_size=32,
    lr=3e-3,
    rec_weight=10.0,
    width=8,
    label_width=16,
    disc_width=8,
    res_blocks=1,
)
#: ProS-GAN settings that train in seconds (for seeding, guard and end-to-end tests, not for learning)
MINI_PROSGAN: dict[str, Any] = dict(
    TINY_PROSGAN, proto_steps=3, hidden=32, epochs=1, gan_steps=2, width=4, label_width=4, disc_width=4
)


def slice_dataset(dataset: HashingDataset, count: int) -> ArrayDataset:
    """The first ``count`` items of ``dataset`` held in memory (uint8 images, the same labels)."""
    images = np.stack([(dataset.load_image(i).numpy() * 255).round().astype(np.uint8) for i in range(count)])
    return ArrayDataset(images, np.asarray(dataset.labels[:count]))


def tiny_splits(
    splits: DatasetSplits | None = None, sizes: tuple[int, int, int] = TINY_SIZES
) -> DatasetSplits:
    """The first (train, query, database) items of ``splits`` (default: demo-mnist, seed 0) in memory:
    300 / 100 / 600 single-label 1x28x28 digits unless ``sizes`` says otherwise."""
    if splits is None:
        from hashguard.data import open_dataset

        splits = open_dataset(DEMO_SOURCE, seed=0)
    train, query, database = sizes
    return DatasetSplits(
        name=f"{splits.name}-tiny",
        train=slice_dataset(splits.train, train),
        query=slice_dataset(splits.query, query),
        database=slice_dataset(splits.database, database),
        mean=splits.mean,
        std=splits.std,
    )


def stack_split(dataset: HashingDataset, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` (default: all) images (float, [0, 1]) and labels (float multi-hot) as tensors."""
    count = len(dataset) if count is None else count
    images = torch.stack([dataset.load_image(i) for i in range(count)])
    return images, torch.as_tensor(np.asarray(dataset.labels[:count]), dtype=torch.float32)


def small_cnn_model(splits: DatasetSplits, bits: int, seed: int = 0, **spec: Any) -> HashModel:
    """An untrained small-CNN hash model for the images of ``splits`` (channels, size, normalisation),
    initialised after ``torch.manual_seed(seed)``; ``spec`` adds :class:`ModelSpec` fields (e.g. hash_norm)."""
    channels, size, _ = splits.image_shape
    torch.manual_seed(seed)
    fields: dict[str, Any] = dict(
        backbone="small_cnn", bits=bits, in_channels=channels, image_size=size, mean=list(splits.mean),
        std=list(splits.std),
    )
    fields.update(spec)
    return HashModel(ModelSpec(**fields))


def train_csq(
    model: HashModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> HashingMethod:
    """Fit ``model`` with CSQ (Yuan et al., CVPR 2020) on the given tensors: Adam, seeded shuffles; returns the
    method (its centres are what the model learnt towards). The model is left in eval mode without gradients."""
    from hashguard.methods import build_method

    count = images.shape[0]
    method = build_method("csq", model.bits, labels.shape[1], count, seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(count, generator=generator)
        for start in range(0, count, batch_size):
            batch = order[start : start + batch_size]
            loss = method(model(images[batch]), labels[batch], batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    for parameter in model.parameters():
        parameter.grad = None
    return method


def train_tiny_csq(
    splits: DatasetSplits,
    *,
    bits: int,
    epochs: int,
    train_items: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[HashModel, HashingMethod]:
    """A small CNN fitted with CSQ on the first ``train_items`` (default: all) training items of ``splits``:
    :func:`small_cnn_model` then :func:`train_csq`, all seeded with ``seed``."""
    model = small_cnn_model(splits, bits, seed=seed)
    images, labels = stack_split(splits.train, train_items)
    method = train_csq(model, images, labels, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    return model, method


def save_demo_checkpoint(
    directory: str | Path,
    model: HashModel,
    method: HashingMethod,
    *,
    source: str = DEMO_SOURCE,
    num_classes: int = 10,
    seed: int = 0,
) -> Path:
    """Save a model fitted on the first training items of demo ``source`` (seed 0) as a checkpoint that
    records that data and a training run without validation items, so it can be re-opened from ``model.json``.

    ``method`` is saved as CSQ with its parameters (the method of :func:`train_csq`)."""
    from hashguard.models.checkpoint import save_model

    return save_model(
        directory,
        model,
        method={"name": "csq", "params": method.params()},
        num_classes=num_classes,
        extra={"training": {"seed": seed, "config": {"val_fraction": 0.0}}, "data": {"source": source, "seed": 0}},
    )


@contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """Run the block with ``count`` torch threads, restoring the previous number afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
