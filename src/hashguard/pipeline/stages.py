"""Cached study stages: each stage writes into its own directory with a ``stage.json`` marker that records
the digest of the configuration it ran with. A rerun with the same configuration skips the stage; an
interrupted stage (a ``stage.started.json`` but no marker) runs again, and the work it calls resumes from its
own checkpoints (training, adversarial training). When the configuration of a stage changes, its old
directory is kept beside the new one as ``<name>.old-<digest>`` and the stage runs from scratch.

Under ``torchrun`` every rank walks the same stages: rank 0 decides whether a stage is cached (its decision is
broadcast), every rank runs the work of a stage that is not (training, adversarial training, encoding and
attacks are sharded across the ranks inside it), rank 0 alone writes the stage's files and markers, and the
ranks meet at the end of each stage, so a later stage (or a rerun) reads complete files."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hashguard.distributed.collectives import barrier, rank0_says
from hashguard.distributed.world import current_world
from hashguard.errors import HashguardError
from hashguard.io_utils import atomic_write_json
from hashguard.pipeline.progress import StagePlan

MARKER = "stage.json"
STARTED = "stage.started.json"


def digest(payload: Any) -> str:
    """A short stable digest of a JSON-able configuration."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _read_key(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def stage_done(directory: Path, key: str) -> dict[str, Any] | None:
    """The marker of a finished stage with this key, or None."""
    payload = _read_key(directory / MARKER)
    return payload if payload is not None and payload.get("key") == key else None


def forget_stage(directory: Path) -> None:
    """Remove a stage's markers so that it runs again in place (for stages that only overwrite outputs)."""
    for name in (MARKER, STARTED):
        (directory / name).unlink(missing_ok=True)


def _set_aside(directory: Path, key: str, log: Callable[[str], None]) -> None:
    """Move a directory left by another configuration of the stage out of the way (never delete it)."""
    previous = _read_key(directory / MARKER) or _read_key(directory / STARTED)
    if previous is None or previous.get("key") == key or not directory.exists():
        return
    old = directory.with_name(f"{directory.name}.old-{previous.get('key', 'unknown')}")
    suffix = 1
    while old.exists():
        old = directory.with_name(f"{directory.name}.old-{previous.get('key', 'unknown')}-{suffix}")
        suffix += 1
    directory.rename(old)
    log(f"  configuration changed: previous results kept in {old.name}")


def run_stage(
    name: str,
    directory: Path,
    config: Any,
    work: Callable[[Path], dict[str, Any] | None],
    log: Callable[[str], None] = print,
    plan: StagePlan | None = None,
) -> dict[str, Any]:
    """Run ``work(directory)`` unless a finished stage with the same configuration is already there."""
    key = digest(config)
    world = current_world()
    finished = stage_done(directory, key)
    if world.distributed:  # rank 0 decides, so that every rank runs the same collectives
        cached = rank0_says(finished is not None, world)
        if cached and finished is None:
            raise HashguardError(
                f"rank {world.rank} cannot read the finished stage {directory} that rank 0 sees: every rank must "
                "see the same run directory (a shared file system)"
            )
        finished = finished if cached else None
    if finished is not None:
        if plan is not None:
            plan.finish(name, 0.0, cached=True)
        else:
            log(f"[{name}] cached ({directory})")
        return finished.get("result") or {}
    if world.is_main:
        _set_aside(directory, key, log)
    barrier(world)  # an old directory is set aside before any rank works in its place
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / STARTED, {"key": key})
    if plan is not None:
        plan.start(name)
    else:
        log(f"[{name}] running ...")
    started = time.perf_counter()
    result = work(directory) or {}
    elapsed = time.perf_counter() - started
    atomic_write_json(directory / MARKER, {"key": key, "config": config, "seconds": elapsed, "result": result})
    barrier(world)  # rank 0's files of this stage are complete before any rank goes on
    if plan is not None:
        plan.finish(name, elapsed, cached=False)
    else:
        log(f"[{name}] done in {elapsed:.1f} s")
    return result
