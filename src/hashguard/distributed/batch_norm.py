"""Batch norm whose training statistics cover the global batch of a data-parallel step, on any backend.

A data-parallel step splits each batch across ranks. Plain batch norm would normalise each rank's share by
that share's own statistics, so the model would see different numbers than in a one-process run with the same
global batch. :class:`SyncedBatchNorm` all-reduces the per-channel sum, sum of squares and count in the
forward pass and the two per-channel gradient sums of the backward pass, so both equal the one-process
batch norm of the whole batch (Ioffe & Szegedy, ICML 2015) up to the order of float additions. It is what
``torch.nn.SyncBatchNorm`` computes, written with plain collectives so that it also runs on CPU with Gloo
(``torch.nn.SyncBatchNorm`` accepts accelerator tensors only). In eval mode, and in a one-process run, it is
plain batch norm. :func:`synchronise_batch_norm` swaps it in for every batch-norm layer of a model, sharing
the parameters and buffers, so the ``state_dict`` (and every checkpoint) keeps its keys.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hashguard.distributed.world import World, communication_device


def _all_reduce(tensor: torch.Tensor, world: World) -> torch.Tensor:
    import torch.distributed as dist

    moved = tensor.to(communication_device(world))
    dist.all_reduce(moved)
    return moved.to(tensor.device)


class _GlobalBatchNorm(torch.autograd.Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias with mean and biased var over every rank's rows."""

    @staticmethod
    def forward(  # noqa: D102
        ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
        running_mean: torch.Tensor | None, running_var: torch.Tensor | None, eps: float, momentum: float,
        world: World,
    ) -> torch.Tensor:
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        wide = x.double()
        stats = torch.cat([wide.sum(dims), (wide * wide).sum(dims), wide.new_tensor([x.numel() / x.shape[1]])])
        stats = _all_reduce(stats, world)
        channels = x.shape[1]
        count = stats[-1]
        mean = stats[:channels] / count
        var = (stats[channels : 2 * channels] / count - mean * mean).clamp_min(0)
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp_min(1)
                running_mean.mul_(1 - momentum).add_(momentum * mean.to(running_mean.dtype))
                running_var.mul_(1 - momentum).add_(momentum * unbiased.to(running_var.dtype))
        invstd = torch.rsqrt(var + eps)
        xhat = ((wide - mean.view(shape)) * invstd.view(shape)).to(x.dtype)
        y = xhat
        if weight is not None:
            y = y * weight.view(shape)
        if bias is not None:
            y = y + bias.view(shape)
        ctx.save_for_backward(xhat, weight, invstd.to(x.dtype))
        ctx.count, ctx.world, ctx.dims, ctx.shape = float(count), world, dims, shape
        ctx.affine = (weight is not None, bias is not None)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        xhat, weight, invstd = ctx.saved_tensors
        dims, shape, count = ctx.dims, ctx.shape, ctx.count
        local_sum = grad.sum(dims)
        local_dot = (grad * xhat).sum(dims)
        channels = grad.shape[1]
        totals = _all_reduce(torch.cat([local_sum, local_dot]).double(), ctx.world).to(grad.dtype)
        mean_grad, mean_dot = totals[:channels] / count, totals[channels:] / count
        scale = invstd if weight is None else invstd * weight
        grad_x = scale.view(shape) * (grad - mean_grad.view(shape) - xhat * mean_dot.view(shape))
        grad_weight = local_dot if ctx.affine[0] else None
        grad_bias = local_sum if ctx.affine[1] else None
        return grad_x, grad_weight, grad_bias, None, None, None, None, None


class SyncedBatchNorm(_BatchNorm):
    """Batch norm over the global batch of a data-parallel step (see the module docstring)."""

    world: World

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 - torch's name
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch's name
        world = getattr(self, "world", None)
        if not self.training or world is None or not world.distributed:
            return super().forward(input)
        self._check_input_dim(input)
        momentum = self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        running = self.track_running_stats
        return _GlobalBatchNorm.apply(
            input, self.weight, self.bias, self.running_mean if running else None,
            self.running_var if running else None, self.eps, float(momentum or 0.0), world,
        )


def synchronise_batch_norm(model: nn.Module, world: World) -> int:
    """Replace every batch-norm layer of ``model`` by a :class:`SyncedBatchNorm` that shares its parameters
    and buffers (same ``state_dict`` keys); return how many were replaced. A no-op for one process."""
    if not world.distributed:
        return 0
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm) and not isinstance(child, SyncedBatchNorm):
                synced = SyncedBatchNorm(
                    child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats,
                    device=None,
                )
                synced.weight, synced.bias = child.weight, child.bias
                synced.running_mean, synced.running_var = child.running_mean, child.running_var
                synced.num_batches_tracked = child.num_batches_tracked
                synced.train(child.training)
                synced.world = world
                setattr(parent, name, synced)
                replaced += 1
            elif isinstance(child, SyncedBatchNorm):
                child.world = world
    return replaced
