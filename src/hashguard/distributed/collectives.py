"""Collectives of a multi-process run, each a no-op for one process.

Gathers keep index order: rank ``r`` contributes the rows of its shard, and the result concatenates the
ranks' rows in rank order (with contiguous shards, :mod:`hashguard.distributed.sharding`, that is index
order). Shards may differ in length; the gather pads to the longest and cuts the padding off again.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from hashguard.distributed.world import World, communication_device


def _dist():  # noqa: ANN202 - the torch.distributed module
    import torch.distributed as dist

    return dist


def _comm_device(world: World, tensor: torch.Tensor) -> torch.device:
    """Where ``tensor`` travels for a collective (:func:`~hashguard.distributed.world.communication_device`)."""
    return communication_device(world)


def _gathered_pieces(tensor: torch.Tensor, world: World) -> list[torch.Tensor]:
    """Every rank's rows of ``tensor`` (detached), in rank order, on ``tensor``'s device."""
    dist = _dist()
    device = _comm_device(world, tensor)
    local = tensor.detach().to(device).contiguous()
    counts = torch.tensor([local.shape[0]], dtype=torch.int64, device=device)
    all_counts = [torch.zeros_like(counts) for _ in range(world.size)]
    dist.all_gather(all_counts, counts)
    sizes = [int(c.item()) for c in all_counts]
    padded = torch.zeros((max(sizes), *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local
    pieces = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(pieces, padded)
    return [piece[:size].to(tensor.device) for piece, size in zip(pieces, sizes, strict=True)]


def gather_rows(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` (same trailing shape and dtype, any number of rows) in rank order.

    The result is on ``tensor``'s device and carries no gradient.
    """
    if not world.distributed:
        return tensor.detach()
    return torch.cat(_gathered_pieces(tensor, world))


def gather_array(array: np.ndarray, world: World) -> np.ndarray:
    """:func:`gather_rows` for a NumPy array (dtype kept)."""
    if not world.distributed:
        return array
    return gather_rows(torch.from_numpy(np.ascontiguousarray(array)), world).numpy()


def gather_live(*tensors: torch.Tensor, world: World) -> tuple[torch.Tensor, ...]:
    """The global batch of a data-parallel step: for each of ``tensors`` (this rank's rows, any trailing shape,
    floats or integers up to 2**53), every rank's rows in rank order, where this rank's own rows are the tensor
    itself (gradients flow back into them) and the other ranks' rows are constants. One exchange of row counts
    and one all-gather carry every tensor (packed as float64 columns, which hold float32 and the indices
    exactly).

    A loss of the global batch computed from them on every rank gives each rank the gradient of that loss
    with respect to its own items; summing the parameter gradients over ranks (:func:`reduce_gradients`) then
    gives the gradient of the one-process run.
    """
    if not world.distributed:
        return tensors
    rows = tensors[0].shape[0]
    if any(t.shape[0] != rows for t in tensors):
        raise ValueError("gather_live: every tensor needs one row per item of this rank's share")
    flat = [t.detach().reshape(rows, -1).to(torch.float64) for t in tensors]
    widths = [f.shape[1] for f in flat]
    pieces = _gathered_pieces(torch.cat(flat, dim=1), world)
    out: list[torch.Tensor] = []
    column = 0
    for tensor, width in zip(tensors, widths, strict=True):
        parts = [piece[:, column : column + width].reshape(-1, *tensor.shape[1:]).to(tensor.dtype) for piece in pieces]
        parts[world.rank] = tensor
        out.append(torch.cat(parts))
        column += width
    return tuple(out)


def sum_floats(values: dict[str, float], world: World) -> dict[str, float]:
    """Sum a dict of floats over ranks (same keys on every rank, in any order)."""
    if not world.distributed:
        return dict(values)
    keys = sorted(values)
    total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=communication_device(world))
    _dist().all_reduce(total)
    return dict(zip(keys, total.cpu().tolist(), strict=True))


def reduce_gradients(summed: Iterable[nn.Parameter], averaged: Iterable[nn.Parameter], world: World) -> None:
    """All-reduce gradients in one flat buffer: ``summed`` parameters get the sum over ranks (each rank holds its
    own items' share), ``averaged`` ones the mean (each rank already holds the whole gradient, e.g. a loss's own
    parameters computed on the gathered batch, so the mean only keeps them identical). The buffer has the
    gradients' dtype (float32 for a float32 model)."""
    if not world.distributed:
        return
    groups = [([p for p in summed if p.grad is not None], 1.0),
              ([p for p in averaged if p.grad is not None], 1.0 / world.size)]
    grads = [(p.grad, scale) for group, scale in groups for p in group]
    if not grads:
        return
    device = _comm_device(world, grads[0][0])
    flat = torch.cat([(g.detach() * scale).reshape(-1).to(device) for g, scale in grads])
    _dist().all_reduce(flat)
    offset = 0
    for grad, _ in grads:
        n = grad.numel()
        grad.copy_(flat[offset : offset + n].view_as(grad))
        offset += n


def broadcast_module(module: nn.Module, world: World, source: int = 0) -> None:
    """Copy ``source``'s parameters and buffers to every rank (the same start everywhere)."""
    if not world.distributed:
        return
    dist = _dist()
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            device = _comm_device(world, tensor)
            moved = tensor.detach().to(device).contiguous()
            dist.broadcast(moved, source)
            tensor.copy_(moved.to(tensor.device))


def barrier(world: World) -> None:
    """Wait for every rank."""
    if world.distributed:
        _dist().barrier()


def rank0_says(flag: bool, world: World) -> bool:
    """Rank 0's ``flag`` on every rank (so that every rank takes the same branch around collectives)."""
    if not world.distributed:
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=communication_device(world))
    _dist().broadcast(value, 0)
    return bool(value.item())
