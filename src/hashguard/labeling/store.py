"""The labels a scarce-label training run trained on, kept beside its checkpoint (``labels.safetensors``:
``labels`` (N, C) float32 and ``selected`` (B,) int64), so that later stages (attacks' mainstay codes, defenses)
read the same propagated labels instead of the training split's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hashguard.data.base import HashingDataset
from hashguard.errors import CheckpointError
from hashguard.labeling.relabeled import RelabeledDataset

#: file name of the propagated labels in a run directory
LABELS_FILE = "labels.safetensors"


def save_pool_labels(directory: str | Path, labels: np.ndarray, selected: np.ndarray) -> Path:
    """Write ``labels`` and ``selected`` into ``directory``/:data:`LABELS_FILE` (atomically)."""
    from hashguard.models.checkpoint import save_state_file

    path = Path(directory) / LABELS_FILE
    save_state_file(path, {"labels": torch.as_tensor(np.ascontiguousarray(labels, dtype=np.float32)),
                           "selected": torch.as_tensor(np.ascontiguousarray(selected, dtype=np.int64))})
    return path


def relabeled_split(directory: str | Path, train: HashingDataset) -> RelabeledDataset:
    """``train`` with the labels stored in ``directory``; a file that does not fit it is a CheckpointError."""
    from hashguard.models.checkpoint import load_state_file

    path = Path(directory) / LABELS_FILE
    state = load_state_file(path)
    labels = state.get("labels")
    if labels is None or tuple(labels.shape) != tuple(train.labels.shape):
        shape = None if labels is None else tuple(labels.shape)
        raise CheckpointError(f"{path}: labels of shape {shape} do not fit the training split {train.labels.shape}")
    return RelabeledDataset(train, labels.numpy())


def copy_labels(source: str | Path, target: str | Path) -> None:
    """Copy a scarce-label run's propagated labels (:data:`LABELS_FILE`) from checkpoint directory ``source`` to
    ``target`` (a hardened model, an activation code read from it), where its carried ``labels`` record expects
    them; nothing when ``source`` has none."""
    import shutil

    from hashguard.io_utils import atomic_write

    path = Path(source) / LABELS_FILE
    if path.is_file() and Path(source).resolve() != Path(target).resolve():
        atomic_write(Path(target) / LABELS_FILE, lambda temporary: shutil.copyfile(path, temporary))
