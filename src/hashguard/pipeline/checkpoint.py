"""Open a trained checkpoint together with its data: the one place every command and stage does this.

:func:`open_checkpoint` loads the model (``model.safetensors`` + ``model.json``, on the chosen device), finds
the data it was trained on (the data description stored in ``model.json``, unless the caller names other
data), opens the splits and checks that their images fit the model. The returned :class:`OpenedCheckpoint`
also knows what the checkpoint's own training run used: the split it was fitted on (the training split minus
the validation items the clean trainer held out, same fraction and seed) and its hashing method (rebuilt from
``model.json`` with the training seed, so that CSQ / DPN centres are the trained model's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hashguard.config import DataConfig, build_config
from hashguard.data.base import DatasetSplits, HashingDataset, carve_validation
from hashguard.devices import resolve_device
from hashguard.errors import CheckpointError, ConfigError, DataError
from hashguard.methods.base import HashingMethod
from hashguard.models.checkpoint import load_model
from hashguard.models.hash_model import HashModel

__all__ = ["OpenedCheckpoint", "check_compatible", "data_config_of", "open_checkpoint"]


def data_config_of(checkpoint_meta: dict[str, Any], override: DataConfig | None = None) -> DataConfig:
    """The data a checkpoint was trained on, unless the user names other data."""
    if override is not None:
        return override
    stored = checkpoint_meta.get("data")
    if not stored:
        raise ConfigError("the checkpoint does not record its dataset; name one with --data")
    return build_config(DataConfig, stored, "checkpoint data description")


def check_compatible(model: HashModel, splits: DatasetSplits, checkpoint: str | Path) -> None:
    """Refuse data whose images do not fit the checkpoint's input (channels and size)."""
    channels, height, width = splits.image_shape
    spec = model.spec
    if channels != spec.in_channels or height != spec.image_size:
        raise DataError(
            f"{checkpoint}: model expects {spec.in_channels}x{spec.image_size}x{spec.image_size} images, "
            f"the dataset yields {channels}x{height}x{width}"
        )


@dataclass
class OpenedCheckpoint:
    """A loaded checkpoint (model in eval mode on its device, parsed ``model.json``) and, unless opened
    without data, the data it is used with (``data``, ``splits``)."""

    path: Path
    model: HashModel
    meta: dict[str, Any]
    data: DataConfig | None = None
    splits: DatasetSplits | None = None

    @property
    def training(self) -> dict[str, Any]:
        """The ``training`` record of ``model.json`` (seed and trainer configuration). A hardened checkpoint has
        none of its own: its base model's seed and validation fraction, as its ``defense.base`` records them,
        stand in (the hashing loss is rebuilt with the base's seed, and the fitted split is the base's). Empty
        when neither is recorded."""
        record = self.meta.get("training")
        if record:
            return dict(record)
        base = (self.meta.get("defense") or {}).get("base") or {}
        if base.get("training_seed") is None:
            return {}
        return {"seed": base["training_seed"], "config": {"val_fraction": base.get("val_fraction", 0.0)}}

    @property
    def training_seed(self) -> int:
        """The seed of the checkpoint's training run (0 when not recorded)."""
        return int(self.training.get("seed", 0))

    @property
    def val_fraction(self) -> float:
        """The fraction of the training split the clean trainer held out for validation (0 when not recorded)."""
        return float((self.training.get("config") or {}).get("val_fraction", 0.0))

    @property
    def num_classes(self) -> int | None:
        """The label width the model was trained with (None when ``model.json`` does not record it)."""
        value = self.meta.get("num_classes")
        return None if value is None else int(value)

    def require_splits(self) -> DatasetSplits:
        """The opened splits; a clear error when the checkpoint was opened without data."""
        if self.splits is None:
            raise ConfigError(f"{self.path}: opened without data; pass data to open_checkpoint")
        return self.splits

    def check_classes(self, num_classes: int) -> None:
        """Refuse data whose label width differs from the one the model was trained with."""
        if self.num_classes is not None and self.num_classes != num_classes:
            raise CheckpointError(
                f"{self.path}: model trained on {self.num_classes} classes, the data has {num_classes}"
            )

    def training_split(self) -> HashingDataset:
        """The split the model was fitted on: the training split minus the validation items its trainer carved
        (the recorded ``val_fraction`` and training seed; the whole split when none were held out), with the
        propagated labels it was trained on when it was trained under a label budget."""
        splits = self.require_splits()
        self.check_classes(splits.num_classes)
        train = splits.train
        if self.meta.get("labels"):
            from hashguard.labeling.store import relabeled_split

            train = relabeled_split(self.path, train)
        fit, _ = carve_validation(train, self.val_fraction, self.training_seed)
        return fit

    def hashing_method(self, num_train: int, num_classes: int | None = None) -> HashingMethod:
        """The checkpoint's hashing method (name and parameters of ``model.json``), rebuilt for ``num_train``
        training items with the training seed (CSQ / DPN centres are then the trained model's)."""
        from hashguard.activation_codes.checkpoint import KEY, is_activation_code_checkpoint
        from hashguard.methods import build_method

        method = self.meta.get("method") or {}
        if not method.get("name") and is_activation_code_checkpoint(self.meta):
            base = (self.meta[KEY].get("base") or {}).get("checkpoint") or "the source network"
            raise CheckpointError(
                f"{self.path}: an activation-code model has no hashing loss of its own; `hashguard defend` hardens "
                f"the network it reads ({base}) and reads its activation codes again"
            )
        if not method.get("name"):
            raise CheckpointError(f"{self.path}: model.json names no hashing method; cannot rebuild its loss")
        classes = num_classes if num_classes is not None else self.num_classes
        if classes is None:
            classes = self.require_splits().num_classes
        return build_method(
            method["name"],
            bits=self.model.bits,
            num_classes=classes,
            num_train=num_train,
            seed=self.training_seed,
            **(method.get("params") or {}),
        )


def open_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device = "auto",
    data: DataConfig | None = None,
    splits: DatasetSplits | None = None,
    with_data: bool = True,
) -> OpenedCheckpoint:
    """Load the checkpoint in ``path`` on ``device`` and open its data.

    ``data`` names other data than the checkpoint's own (``--data``); ``splits`` hands over splits the caller
    already opened (the study's); ``with_data=False`` loads the model only (a caller that brings its own
    training set). Data whose images do not fit the model raise :class:`DataError`; a checkpoint without a
    recorded dataset and no ``data`` raises :class:`ConfigError`.
    """
    path = Path(path)
    model, meta = load_model(path, device=device if isinstance(device, torch.device) else resolve_device(device))
    opened = OpenedCheckpoint(path, model, meta)
    if splits is not None:
        opened.data = data
        opened.splits = splits
    elif with_data:
        from hashguard.pipeline.train import open_splits  # lazily: the trainer is not needed to open data

        opened.data = data_config_of(meta, data)
        opened.splits = open_splits(opened.data)
    if opened.splits is not None:
        check_compatible(model, opened.splits, path)
    return opened
