"""Encode a split of a dataset with a checkpoint and write a code file (``hashguard encode``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashguard.config import DataConfig
from hashguard.encoding import encode_dataset
from hashguard.errors import ConfigError
from hashguard.io_utils import check_output_file
from hashguard.pipeline.checkpoint import open_checkpoint
from hashguard.retrieval.codes_io import save_codes


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
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}")
    check_output_file(out)  # before the work: a directory or a file in the way fails now, not after encoding
    opened = open_checkpoint(checkpoint, device=device, data=data)
    model, splits = opened.model, opened.require_splits()
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
            "data": opened.data.model_dump() if opened.data is not None else None,
        },
    )
    return codes, labels
