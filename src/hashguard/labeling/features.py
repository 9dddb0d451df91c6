"""Feature vectors of an unlabelled pool, for its kNN graph.

* ``pixels`` (no model needed): each image average-pooled to at most 32 x 32 per channel, flattened and, when
  that leaves more than 1,024 values (colour images), multiplied by a fixed Gaussian random projection to 1,024
  dimensions (seeded; random projections keep distances up to a small factor, Johnson and Lindenstrauss, 1984).
* a checkpoint directory: the hash layer's pre-activations z(x) of that model, e.g. one trained without labels
  or from pretrained weights; a model trained on the pool's labels would defeat the purpose.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from hashguard.data.base import HashingDataset

#: side of the pooled images of the ``pixels`` features
POOLED_SIDE = 32
#: dimension of the ``pixels`` features above which they are randomly projected
PROJECTED_DIM = 1024


def _batches(dataset: HashingDataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


@torch.no_grad()
def pixel_features(dataset: HashingDataset, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """(N, D) float32 ``pixels`` features of every item, in index order (module text)."""
    parts = []
    for images, _, _ in _batches(dataset, batch_size):
        side = min(POOLED_SIDE, images.shape[-2], images.shape[-1])
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.float(), side)
        parts.append(pooled.flatten(1))
    flat = torch.cat(parts) if parts else torch.zeros(0, 1)
    if flat.shape[1] <= PROJECTED_DIM:
        return flat
    generator = torch.Generator().manual_seed(seed)
    projection = torch.randn(flat.shape[1], PROJECTED_DIM, generator=generator) / PROJECTED_DIM**0.5
    return flat @ projection


@torch.no_grad()
def checkpoint_features(directory: str | Path, dataset: HashingDataset, device: str = "cpu",
                        batch_size: int = 256) -> torch.Tensor:
    """(N, bits) float32 pre-activations of the checkpoint in ``directory`` for every item of ``dataset``."""
    from hashguard.models.checkpoint import load_model

    model, _ = load_model(directory, device=device)
    model.eval()
    return torch.cat([model.logits(images.to(model.device)).float().cpu()
                      for images, _, _ in _batches(dataset, batch_size)])
