"""Top-k Hamming search over a database sharded across ranks, merged under the (distance, index) rule.

Every rank holds a contiguous shard of the database (items ``[offset, offset + n_r)``), searches it with the
exact :class:`~hashguard.retrieval.index.HammingIndex` (results ordered by ascending (distance, id)), turns its
local ids into database indices by adding ``offset``, and the per-rank lists are gathered and merged
(:func:`merge_topk`). The global top-k under the stable (distance, index) rule is contained in the union of the
shards' top-k lists under the same rule (an item outside its shard's top k has k items of its shard before it),
so the merge equals one exact search over the whole database, ties included. Columns past the database size
hold distance -1 and index -1, as in :meth:`HammingIndex.search`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hashguard.distributed.collectives import gather_array
from hashguard.distributed.world import World, current_world
from hashguard.errors import ConfigError, DataError
from hashguard.retrieval.index import HammingIndex

_MISSING = np.iinfo(np.int64).max


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, not {k!r}")
    return int(k)


def merge_topk(
    distances_list: Sequence[Any], indices_list: Sequence[Any], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top-k lists into one: ``(distances int32 Q x k, indices int64 Q x k)``.

    ``distances_list[s]`` and ``indices_list[s]`` are shard ``s``'s (Q, k_s) results with database (global)
    indices; entries with index -1 are missing (a shard smaller than its k_s). Each output row holds the k
    entries that come first under ascending (distance, index), in that order; the columns left over when the
    shards hold fewer than k entries in all are distance -1, index -1. A pure function.
    """
    k = _check_k(k)
    if len(distances_list) != len(indices_list) or not distances_list:
        raise DataError(
            f"merge_topk needs one distance and one index array per shard, got {len(distances_list)} and "
            f"{len(indices_list)}"
        )
    distances = [np.asarray(d) for d in distances_list]
    indices = [np.asarray(i) for i in indices_list]
    rows = distances[0].shape[0] if distances[0].ndim == 2 else -1
    for shard, (d, i) in enumerate(zip(distances, indices, strict=True)):
        if d.ndim != 2 or d.shape != i.shape or d.shape[0] != rows:
            raise DataError(
                f"shard {shard}: distances {d.shape} and indices {i.shape} must both be (Q, k) with the same "
                f"Q for every shard (Q = {rows})"
            )
    all_d = np.concatenate([d.astype(np.int64) for d in distances], axis=1)
    all_i = np.concatenate([i.astype(np.int64) for i in indices], axis=1)
    missing = all_i < 0
    key_d = np.where(missing, _MISSING, all_d)
    key_i = np.where(missing, _MISSING, all_i)
    out_d = np.full((rows, k), -1, np.int32)
    out_i = np.full((rows, k), -1, np.int64)
    if rows and all_d.shape[1]:
        order = np.lexsort((key_i, key_d), axis=1)[:, :k]
        kept = min(k, order.shape[1])
        taken_i = np.take_along_axis(all_i, order, axis=1)
        taken_d = np.take_along_axis(all_d, order, axis=1)
        gone = taken_i < 0
        out_i[:, :kept] = np.where(gone, -1, taken_i)
        out_d[:, :kept] = np.where(gone, -1, taken_d)
    return out_d, out_i


def sharded_search(
    index_or_codes_shard: HammingIndex | Any,
    offset: int | None,
    queries: Any,
    k: int,
    world: World | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k search of ``queries`` over a database sharded across the ranks of ``world`` (default: the current
    one); every rank gets ``(distances int32 Q x k, indices int64 Q x k)`` equal to one exact
    :meth:`HammingIndex.search` over the whole database, ties included (see the module docstring).

    ``index_or_codes_shard`` is this rank's shard: an exact :class:`HammingIndex` or +-1 codes (n_r x bits,
    possibly no rows). ``offset`` is the database index of its first item; None derives it from the shard sizes
    (ranks hold consecutive shards in rank order). Every rank passes the same ``queries`` and ``k``: a collective
    call. A FAISS index is searched too, but which members of a tie group straddling a shard's k-th place it
    returns is FAISS's choice, so only the exact backend guarantees equality.
    """
    world = world or current_world()
    k = _check_k(k)
    if isinstance(index_or_codes_shard, HammingIndex):
        index = index_or_codes_shard
    else:
        codes = np.asarray(index_or_codes_shard)
        if codes.ndim != 2 or codes.shape[1] < 1:
            raise DataError(f"database shard: expected (n, bits) +-1 codes, got shape {codes.shape}")
        index = HammingIndex(bits=int(codes.shape[1]))
        index.add(codes)
    if offset is None:
        sizes = gather_array(np.array([index.ntotal], np.int64), world)
        offset = int(sizes[: world.rank].sum())
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
        raise ConfigError(f"offset must be a non-negative integer, not {offset!r}")
    distances, ids = index.search(queries, k)
    ids = np.where(ids >= 0, ids + int(offset), -1)
    if not world.distributed:
        return distances, ids
    rows = distances.shape[0]
    all_d, all_i = gather_array(distances, world), gather_array(ids, world)
    if all_d.shape[0] != rows * world.size:
        raise DataError(f"sharded search: the ranks searched different numbers of queries ({all_d.shape[0]} rows)")
    return merge_topk(np.split(all_d, world.size), np.split(all_i, world.size), k)
