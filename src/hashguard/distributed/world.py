"""Which process this is: rank and world size from the environment ``torchrun`` sets.

``torchrun`` (PyTorch's ``torch.distributed.run``) starts one process per rank and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`current_world` reads them: with no
``WORLD_SIZE`` (or 1) the run is a single process and no process group is created. With more, the default
process group is started once (:func:`start`), with NCCL where the process owns a CUDA device and Gloo
otherwise (``HASHGUARD_DIST_BACKEND`` overrides).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from hashguard.errors import ConfigError


@dataclass(frozen=True)
class World:
    """A process's place in a run: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = "none"

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """The process that writes files and logs (rank 0)."""
        return self.rank == 0

    def describe(self) -> str:
        return "1 process" if not self.distributed else f"{self.size} processes ({self.backend}), rank {self.rank}"


_SINGLE = World()
_current: World | None = None


def single_process() -> World:
    """The world of a plain, one-process run."""
    return _SINGLE


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None


def from_environment() -> World:
    """The world ``torchrun`` describes in the environment (one process when it describes none)."""
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return _SINGLE
    rank = _env_int("RANK", 0)
    if not 0 <= rank < size:
        raise ConfigError(f"RANK {rank} is outside the world of {size} processes")
    local_rank = _env_int("LOCAL_RANK", rank)
    backend = os.environ.get("HASHGUARD_DIST_BACKEND") or (
        "nccl" if torch.cuda.is_available() and torch.cuda.device_count() > local_rank else "gloo"
    )
    return World(rank, size, local_rank, backend)


def current_world() -> World:
    """This process's world: the one :func:`start` began, else one process."""
    return _current or _SINGLE


def start() -> World:
    """Start the default process group if ``torchrun`` asked for more than one process; return the world.

    Idempotent. With NCCL the process's CUDA device is ``cuda:LOCAL_RANK``.
    """
    global _current
    if _current is not None:
        return _current
    world = from_environment()
    if world.distributed:
        import torch.distributed as dist

        if not dist.is_available():
            raise ConfigError("this torch build has no torch.distributed; run with one process")
        if not dist.is_initialized():
            if world.backend == "nccl":
                torch.cuda.set_device(world.local_rank)
            dist.init_process_group(backend=world.backend)
    _current = world
    return world


def use(world: World) -> None:
    """Make ``world`` the current one (a process group must already exist when it is distributed)."""
    global _current
    _current = world


def abandon() -> None:
    """Forget the process group without a goodbye, after an error on this rank: the other ranks may be waiting
    in a collective this rank will never join, so it must not wait for them; ``torchrun`` stops them when this
    process exits."""
    global _current
    _current = None


def stop() -> None:
    """End the process group this module started, once every rank got here (a no-op for one process)."""
    global _current
    if _current is not None and _current.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            # every rank reaches the end before any tears its connections down: a Gloo rank whose peer closed
            # the connections while it was still finishing could abort ("terminate called without an active
            # exception")
            dist.barrier()
            dist.destroy_process_group()
    _current = None


def communication_device(world: World) -> torch.device:
    """Where tensors must be for a collective: the rank's own GPU under NCCL (which moves CUDA tensors only),
    the CPU under Gloo."""
    if world.backend == "nccl":
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


def default_device(world: World) -> str | None:
    """The device a rank should use under ``device: auto``: its own GPU under NCCL, else None (no opinion)."""
    if world.distributed and world.backend == "nccl":
        return f"cuda:{world.local_rank}"
    return None
