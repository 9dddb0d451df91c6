"""Encode a split of a dataset with a checkpoint and write a code file (``hashguard encode``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hashguard.config import DataConfig, build_config
from hashguard.data.base import DatasetSplits
from hashguard.devices import resolve_device
from hashguard.encoding import encode_dataset
from hashguard.errors import ConfigError, DataError
from hashguard.models.checkpoint import load_model
from hashguard.models.hash_model import HashModel
from hashguard.pipeline.train import open_splits
from hashguard.retrieval.codes_io import save_codes


def data_config_of(checkpoint_meta: dict[str, Any], override: DataConfig | None = None) -> DataConfig:
    """The data a checkpoint was trained on, unless the user names other data."""
    if override is not None:
        return override
    stored = checkpoint_meta.get("data")
    if not stored:
        raise ConfigError("the checkpoint does not record its dataset; name one with --data")
    return build_config(DataConfig, stored, "checkpoint data description")


def check_compatible(model: HashModel, splits: DatasetSplits, checkpoint: str | Path) -> None:
    """Refuse data whose images or label width do not fit the checkpoint."""
    channels, height, width = splits.image_shape
    spec = model.spec
    if channels != spec.in_channels or height != spec.image_size:
        raise DataError(
            f"{checkpoint}: model expects {spec.in_channels}x{spec.image_size}x{spec.image_size} images, "
            f"the dataset yields {channels}x{height}x{width}"
        )


def encode_split(
    checkpoint: str | Path,
    split: str,
    out: str | Path,
    data: DataConfig | None = None,
    device: str = "auto",
    batch_size: int = 256,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode ``split`` with the checkpoint and write ``out`` (npz: codes, labels, meta)."""
    model, meta = load_model(checkpoint, device=resolve_device(device))
    data_config = data_config_of(meta, data)
    splits = open_splits(data_config)
    check_compatible(model, splits, checkpoint)
    try:
        dataset = splits.split(split)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    codes, labels = encode_dataset(model, dataset, batch_size=batch_size, progress=progress, description=split)
    save_codes(
        out,
        codes,
        labels,
        meta={
            "split": split,
            "checkpoint": str(checkpoint),
            "bits": model.bits,
            "dataset_fingerprint": splits.fingerprint(),
            "data": data_config.model_dump(),
        },
    )
    return codes, labels
