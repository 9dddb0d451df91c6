"""Contiguous shards: which items, or which whole batches, a rank owns.

Rank ``r`` of ``W`` owns the half-open range ``[r*n//W, (r+1)*n//W)`` of ``n`` items (sizes differ by at most
one, rank order is index order), so concatenating the ranks' results in rank order gives index order.
Encoding and attacks shard whole batches (:func:`batch_shard`): every batch holds the same items, in the
same order, as in a one-process run, so a model in eval mode computes bit-identical codes and an attack
seeded per batch draws the same randomness, whatever the world size.
"""

from __future__ import annotations


def shard_bounds(n: int, size: int, rank: int) -> tuple[int, int]:
    """The half-open item range ``[start, stop)`` of ``rank`` among ``size`` ranks over ``n`` items."""
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank {rank} of a world of {size}")
    return rank * n // size, (rank + 1) * n // size


def batch_shard(n: int, batch_size: int, size: int, rank: int) -> tuple[int, int]:
    """The item range of ``rank``'s whole batches: batches ``[b*B, (b+1)*B)`` of ``n`` items are split into
    ``size`` contiguous runs of batches (:func:`shard_bounds` over the batch count)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    batches = -(-n // batch_size)
    first, last = shard_bounds(batches, size, rank)
    return min(first * batch_size, n), min(last * batch_size, n)
