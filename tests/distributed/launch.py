"""Run ``hashguard`` under ``torchrun`` (``python -m torch.distributed.run``) or as one process, for the
multi-process tests: one thread per process, a free rendezvous port, this folder and ``src`` on the path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hashguard(args: list[str], cwd: Path, nproc: int = 1, env: dict[str, str] | None = None,
              timeout: int = 300) -> subprocess.CompletedProcess:
    """``hashguard ARGS`` in ``nproc`` processes (``nproc`` 1: a plain process, no torchrun)."""
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(SRC)]), OMP_NUM_THREADS="1")
    for key in ("HASHGUARD_PLUGINS", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        full_env.pop(key, None)
    full_env.update(env or {})
    launcher: list[str] = []
    if nproc > 1:
        launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
                    "--master_port", str(free_port())]
    command = [sys.executable, *launcher, "-m", "hashguard", *args]
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def spawn_ranks(worker, folder: Path, size: int = 2, timeout_s: float = 120) -> None:  # noqa: ANN001 - a function
    """Run ``worker(rank, size, port, folder)`` in ``size`` spawned processes (a Gloo group on a free port);
    fail the test when they do not finish within ``timeout_s``."""
    import time

    import pytest
    import torch.multiprocessing as mp

    context = mp.spawn(worker, args=(size, free_port(), str(folder)), nprocs=size, join=False)
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=max(deadline - time.monotonic(), 0.1)):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
            pytest.fail(f"the {size} ranks did not finish within {timeout_s} s")
