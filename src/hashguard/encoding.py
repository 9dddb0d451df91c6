"""Encode a dataset split into +-1 codes with a trained model (eval mode, batched, device of the model)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hashguard.models.hash_model import HashModel, sign_codes


@torch.no_grad()
def encode_dataset(
    model: HashModel,
    dataset: Dataset,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = False,
    description: str = "encode",
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(codes int8 (N, K) in {-1, +1}, labels float32 (N, C))`` for every item, in index order."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    codes: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    iterator = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, desc=description, leave=False, unit="batch")
    try:
        for images, batch_labels, _ in iterator:
            codes.append(sign_codes(model.logits(images.to(model.device))).cpu())
            labels.append(batch_labels)
    finally:
        model.train(was_training)
    if not codes:
        return np.zeros((0, model.bits), np.int8), np.zeros((0, 0), np.float32)
    return torch.cat(codes).numpy(), torch.cat(labels).numpy().astype(np.float32)

