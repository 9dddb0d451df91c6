"""More than one process: ``torch.distributed`` runs launched by ``torchrun`` (docs/distributed.md).

* :mod:`~hashguard.distributed.world`: which process this is (rank, world size, backend), read from the
  environment ``torchrun`` sets, and the process group's start and end;
* :mod:`~hashguard.distributed.sharding`: contiguous shards of items and of whole batches;
* :mod:`~hashguard.distributed.collectives`: gathers in index order, sums, gradient reduction;
* :mod:`~hashguard.distributed.batch_norm`: batch norm whose statistics cover the global batch;
* :mod:`~hashguard.distributed.training`: the sampler, reducer and batch gather of a data-parallel
  :func:`hashguard.training.loop.fit`;
* :mod:`~hashguard.distributed.topk`: merging per-shard top-k lists under the (distance, index) rule.

One process (no ``WORLD_SIZE`` in the environment, or ``WORLD_SIZE=1``) is the default and takes none of
these paths.
"""

from hashguard.distributed.sharding import batch_shard, shard_bounds
from hashguard.distributed.world import World, current_world, single_process

__all__ = ["World", "batch_shard", "current_world", "shard_bounds", "single_process"]
