"""One data-parallel step of a small CNN with batch norm in the network and on the code logits, computed in one
process and on the ranks of a Gloo group (:mod:`test_synced_batch_norm`): the loss of the global batch, every
parameter gradient after the reduction and every running statistic, written to ``<folder>/<name>.npz``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from hashguard.distributed.batch_norm import synchronise_batch_norm
from hashguard.distributed.collectives import gather_live, reduce_gradients
from hashguard.distributed.sharding import shard_bounds
from hashguard.distributed.world import World, single_process
from hashguard.methods import build_method
from hashguard.models.backbones import SmallCNN

ITEMS = 33  # odd: the ranks' shares differ (16 and 17 items)
BITS = 16


def step(world: World) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(SmallCNN(BITS, 1, 28), torch.nn.BatchNorm1d(BITS))
    images = torch.rand(ITEMS, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.nn.functional.one_hot(torch.arange(ITEMS) % 10, 10).float()
    index = torch.arange(ITEMS)
    method = build_method("csq", bits=BITS, num_classes=10, num_train=ITEMS, seed=0)
    synchronise_batch_norm(model, world)
    lo, hi = shard_bounds(ITEMS, world.size, world.rank)
    u, batch_labels, batch_index = gather_live(
        torch.tanh(model(images[lo:hi])), labels[lo:hi], index[lo:hi], world=world
    )
    loss = method(u, batch_labels, batch_index)
    loss.backward()
    reduce_gradients(list(model.parameters()), [], world)
    out = {"loss": loss.detach().numpy()[None]}
    out.update({f"grad.{k}": p.grad.numpy() for k, p in model.named_parameters()})
    out.update({f"buffer.{k}": b.numpy() for k, b in model.named_buffers() if b.is_floating_point()})
    return out


def write(folder: Path, name: str, world: World) -> None:
    np.savez(folder / f"{name}.npz", **step(world))


def worker(rank: int, size: int, port: int, folder: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=size)
    try:
        write(Path(folder), f"rank{rank}", World(rank, size, rank, "gloo"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def single(folder: Path) -> None:
    write(folder, "single", single_process())
