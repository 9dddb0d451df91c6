"""Cached study stages: each stage writes into its own directory with a ``stage.json`` marker that records
the digest of the configuration it ran with. A rerun with the same configuration skips the stage; a changed
configuration reruns it (and, for training, an interrupted stage resumes from its last checkpoint)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hashguard.io_utils import atomic_write_json

MARKER = "stage.json"


def digest(payload: Any) -> str:
    """A short stable digest of a JSON-able configuration."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def stage_done(directory: Path, key: str) -> dict[str, Any] | None:
    """The marker of a finished stage with this key, or None."""
    marker = directory / MARKER
    if not marker.is_file():
        return None
    try:
        payload = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return payload if payload.get("key") == key else None


def run_stage(
    name: str,
    directory: Path,
    config: Any,
    work: Callable[[Path], dict[str, Any] | None],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``work(directory)`` unless a finished stage with the same configuration is already there."""
    key = digest(config)
    finished = stage_done(directory, key)
    if finished is not None:
        log(f"[{name}] cached ({directory})")
        return finished.get("result") or {}
    directory.mkdir(parents=True, exist_ok=True)
    log(f"[{name}] running ...")
    started = time.perf_counter()
    result = work(directory) or {}
    elapsed = time.perf_counter() - started
    atomic_write_json(directory / MARKER, {"key": key, "config": config, "seconds": elapsed, "result": result})
    log(f"[{name}] done in {elapsed:.1f} s")
    return result
