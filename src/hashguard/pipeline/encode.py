"""Encode a split of a dataset with a checkpoint and write a code file (``hashguard encode``).

For an ADSH checkpoint under its own protocol (Jiang and Li, AAAI 2018: the training pool is the retrieval
database) the ``database`` split is not encoded: its codes are the learned database codes V stored beside the
model, written with the pool's labels; every other split (the queries) is encoded by the network. The code file's
``meta["codes"]`` says which (:data:`NETWORK` or :data:`LEARNED`).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from hashguard.config import DataConfig
from hashguard.encoding import encode_dataset
from hashguard.errors import ConfigError
from hashguard.io_utils import check_output_file
from hashguard.pipeline.checkpoint import open_checkpoint
from hashguard.pipeline.evaluate import database_of
from hashguard.retrieval.codes_io import save_codes

#: ``meta["codes"]`` of a code file: the network's sign codes, or an ADSH checkpoint's learned codes V
NETWORK = "network"
LEARNED = "learned database codes V (ADSH protocol: the training pool is the database)"


class EncodedSplit(NamedTuple):
    """The codes and labels written, and where the codes come from (:data:`NETWORK` or :data:`LEARNED`)."""

    codes: np.ndarray
    labels: np.ndarray
    source: str


def encode_split(
    checkpoint: str | Path,
    split: str,
    out: str | Path,
    data: DataConfig | None = None,
    device: str = "auto",
    batch_size: int = 256,
    progress: bool = True,
) -> EncodedSplit:
    """Encode ``split`` with the checkpoint and write ``out`` (npz: codes, labels, meta); the ``database`` split of
    an ADSH-protocol checkpoint is its learned codes V with the pool's labels instead (see the module docstring)."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}")
    check_output_file(out)  # before the work: a directory or a file in the way fails now, not after encoding
    opened = open_checkpoint(checkpoint, device=device, data=data)
    model, splits = opened.model, opened.require_splits()
    try:
        dataset = splits.split(split)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    stored = database_of(opened.meta, checkpoint) if split == "database" else None
    if stored is not None:
        codes, labels = stored
        source = LEARNED
    else:
        codes, labels = encode_dataset(model, dataset, batch_size=batch_size, progress=progress, description=split)
        source = NETWORK
    save_codes(
        out,
        codes,
        labels,
        meta={
            "split": split,
            "codes": source,
            "checkpoint": str(checkpoint),
            "bits": model.bits,
            "dataset_fingerprint": splits.fingerprint(),
            "data": opened.data.model_dump() if opened.data is not None else None,
        },
    )
    return EncodedSplit(codes, labels, source)
