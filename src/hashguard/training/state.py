"""Resumable training state: model, method buffers and optimizer in safetensors, counters in JSON.

Each checkpoint is a directory ``checkpoints/epoch-NNNN`` written under a temporary name and renamed into
place, so a crash or a full disk never leaves a half-written checkpoint; resuming picks the newest complete
one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from hashguard.errors import CheckpointError, HashguardError
from hashguard.io_utils import ensure_directory
from hashguard.models.checkpoint import load_state_file, save_state_file

STATE_WEIGHTS = "state.safetensors"
STATE_META = "state.json"
OPTIM_PREFIX = "optimizer."
#: the directory of a run that holds its checkpoints
CHECKPOINT_DIR = "checkpoints"


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and plain JSON values."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIM_PREFIX}{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of :func:`optimizer_to_flat`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith(OPTIM_PREFIX):
            continue
        param_id, name = key[len(OPTIM_PREFIX):].split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(entries)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def write_checkpoint(
    root: Path, epoch: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any], keep: int = 2
) -> Path:
    """Write ``checkpoints/epoch-NNNN`` atomically and keep only the newest ``keep`` of them.

    The checkpoint is written into a staging directory and renamed into place; any failure (a full disk)
    removes the staging directory, keeps every earlier checkpoint (and an older copy of the same epoch) and
    raises an ``OSError`` naming the checkpoint directory."""
    parent = ensure_directory(root / CHECKPOINT_DIR)
    final = parent / f"epoch-{epoch:04d}"
    staging: Path | None = None
    replaced: Path | None = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
        save_state_file(staging / STATE_WEIGHTS, tensors)
        (staging / STATE_META).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        if final.exists():  # moved aside, not deleted, until the new one is in place
            replaced = Path(tempfile.mkdtemp(prefix=".replaced-", dir=parent))
            os.replace(final, replaced / final.name)
        os.replace(staging, final)
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if replaced is not None:
            if (replaced / final.name).exists() and not final.exists():
                os.replace(replaced / final.name, final)
            shutil.rmtree(replaced, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(final)) from exc
        raise
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    for old in sorted(parent.glob("epoch-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint directory under ``root/checkpoints``, if any."""
    parent = root / CHECKPOINT_DIR
    candidates = sorted(p for p in parent.glob("epoch-*") if (p / STATE_META).is_file()) if parent.is_dir() else []
    return candidates[-1] if candidates else None


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of one checkpoint directory."""
    try:
        meta = json.loads((path / STATE_META).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path / STATE_META}: unreadable training state ({exc})") from None
    return load_state_file(path / STATE_WEIGHTS), meta


def existing_run(out: Path, resume: bool, what: str) -> Path | None:
    """The newest checkpoint of the run in ``out``; an error when there is one and ``resume`` is not set."""
    existing = latest_checkpoint(out)
    if existing is not None and not resume:
        raise HashguardError(
            f"{out} already holds {what} (up to {existing.name}); pass --resume to continue it "
            "or choose another output directory"
        )
    return existing


def restore_modules(
    path: Path, identity: str, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load every module of ``modules`` (its tensors stored as ``<name>.<key>``) and the optimizer from
    checkpoint ``path`` after checking the run identity; returns the checkpoint's tensors and metadata for
    whatever else the caller keeps in it."""
    tensors, meta = read_checkpoint(path)
    if meta.get("identity") != identity:
        raise CheckpointError(
            f"{path}: this run was started with another configuration; resume it with the same "
            "configuration or choose another output directory"
        )
    for name, module in modules.items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    optimizer_from_flat(optimizer, tensors, meta["optimizer"])
    return tensors, meta


def restore_checkpoint(
    path: Path,
    identity: str,
    model: torch.nn.Module,
    method: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """:func:`restore_modules` for a hashing model (``model.``) and its method's buffers (``method.``)."""
    return restore_modules(path, identity, {"model": model, "method": method}, optimizer)
