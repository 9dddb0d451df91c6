"""Encode a dataset split into +-1 codes with a trained model (eval mode, batched, device of the model).

In a multi-process run (``torchrun``, :mod:`hashguard.distributed`) every rank encodes a contiguous run of whole
batches (:func:`~hashguard.distributed.sharding.batch_shard`) and the codes are gathered in index order, so every
rank returns the codes of the whole split. Every batch holds the same items as in a one-process run, so the
codes of a model in eval mode are bit-identical to the one-process codes whatever the world size.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from hashguard.distributed.collectives import gather_array
from hashguard.distributed.sharding import batch_shard
from hashguard.distributed.world import World, current_world
from hashguard.models.hash_model import HashModel, sign_codes


def _label_shape(dataset: Dataset) -> tuple[int, ...]:
    """The shape of one item's label (for the empty share of a rank that encodes no batch)."""
    return tuple(torch.as_tensor(dataset[0][1]).shape)


@torch.no_grad()
def encode_dataset(
    model: HashModel,
    dataset: Dataset,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = False,
    description: str = "encode",
    world: World | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(codes int8 (N, K) in {-1, +1}, labels float32 (N, C))`` for every item, in index order.

    ``world`` (default: :func:`~hashguard.distributed.world.current_world`) shares the batches out over the
    ranks of a multi-process run; it is a collective call there (every rank must make it) and every rank gets
    the whole arrays. ``progress`` draws a bar on rank 0 only.
    """
    world = world or current_world()
    n = len(dataset)  # type: ignore[arg-type]
    start, stop = batch_shard(n, batch_size, world.size, world.rank) if n else (0, 0)
    part = dataset if not world.distributed else Subset(dataset, range(start, stop))
    loader = DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    codes: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    iterator = loader
    if progress and world.is_main:
        from tqdm import tqdm

        iterator = tqdm(loader, desc=description, leave=False, unit="batch")
    try:
        for images, batch_labels, _ in iterator:
            codes.append(sign_codes(model.logits(images.to(model.device))).cpu())
            labels.append(batch_labels.float())
    finally:
        model.train(was_training)
    if n == 0:  # the same on every rank
        return np.zeros((0, model.bits), np.int8), np.zeros((0, 0), np.float32)
    if codes:
        local_codes, local_labels = torch.cat(codes).numpy(), torch.cat(labels).numpy().astype(np.float32)
    else:  # a rank with no batch (fewer batches than ranks) still takes part in the gathers
        local_codes = np.zeros((0, model.bits), np.int8)
        local_labels = np.zeros((0, *_label_shape(dataset)), np.float32)
    return gather_array(local_codes, world), gather_array(local_labels, world)
