"""The fingerprint of a checkpoint: its model's (functional or strict, :mod:`hashguard.models.fingerprint`) with
what else belongs to the model's function; ``hashguard fingerprint`` and the study's cache identity use it.

An ADSH checkpoint (Jiang & Li, "Asymmetric Deep Supervised Hashing", AAAI 2018) retrieves against the
database codes V it learned, stored beside the network (``database_codes.safetensors``): V and the pool's
labels are hashed in, so two ADSH checkpoints with the same network but another V differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from hashguard.models.checkpoint import load_model
from hashguard.models.fingerprint import Fingerprint, fingerprint

__all__ = ["checkpoint_fingerprint", "function_extras", "model_fingerprint"]


def function_extras(meta: dict[str, Any], directory: str | Path) -> dict[str, torch.Tensor]:
    """Tensors besides the network that are part of a checkpoint's function: an ADSH checkpoint's database
    codes V and their labels (``{}`` for every other checkpoint)."""
    if not meta.get("adsh"):
        return {}
    from hashguard.methods.adsh import load_database_codes

    codes, labels = load_database_codes(directory)
    return {"database_codes": codes, "database_labels": labels}


def model_fingerprint(model: nn.Module, meta: dict[str, Any], directory: str | Path, mode: str = "functional"
                      ) -> Fingerprint:
    """The fingerprint of an opened checkpoint (``model`` and ``model.json`` ``meta`` read from ``directory``)."""
    return fingerprint(model, mode, function_extras(meta, directory))


def checkpoint_fingerprint(directory: str | Path, strict: bool = False) -> Fingerprint:
    """Load the checkpoint in ``directory`` on the CPU and return its functional fingerprint (``strict``: the
    exact-weights one). A missing or corrupt checkpoint raises :class:`~hashguard.errors.CheckpointError`."""
    model, meta = load_model(directory, device="cpu")
    return model_fingerprint(model, meta, directory, "weights" if strict else "functional")


def study_identity(
    model: nn.Module, meta: dict[str, Any], directory: str | Path, mode: str, fit_fingerprint: str,
    data_fingerprint: str,
) -> tuple[dict[str, Any], Fingerprint]:
    """The identity a study keys a model's downstream stages by (clean evaluation, attacks, defenses): the
    model's fingerprint (``mode``: ``functional`` or ``weights``), the content of the split it was fitted on
    (the mainstay attacks and the defenses read it) and of the study's data. Returns it with the fingerprint."""
    found = model_fingerprint(model, meta, directory, mode)
    identity = {"fingerprint": found.digest, "mode": found.mode, "fit": fit_fingerprint, "data": data_fingerprint}
    return identity, found
