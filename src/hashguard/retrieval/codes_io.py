"""Code files: ``.npz`` archives holding ``codes`` (N x K int8, +-1), ``labels`` (N x C float32) and a
JSON ``meta`` string (split, checkpoint, dataset fingerprint, ...)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hashguard.errors import DataError
from hashguard.io_utils import atomic_write


@dataclass
class CodeSet:
    """Binary codes with their labels and provenance."""

    codes: np.ndarray
    labels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def bits(self) -> int:
        return int(self.codes.shape[1])


def save_codes(
    path: str | os.PathLike[str], codes: np.ndarray, labels: np.ndarray, meta: dict | None = None
) -> None:
    """Write a code file atomically."""
    codes = np.asarray(codes)
    labels = np.asarray(labels, dtype=np.float32)
    if codes.ndim != 2 or labels.ndim != 2 or codes.shape[0] != labels.shape[0]:
        raise DataError(f"{path}: codes {codes.shape} and labels {labels.shape} do not align")
    meta_text = json.dumps(meta or {}, sort_keys=True)

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, codes=codes.astype(np.int8), labels=labels, meta=np.array(meta_text))

    atomic_write(path, _write)


def load_codes(path: str | os.PathLike[str]) -> CodeSet:
    """Read a code file; a missing, corrupt or non-+-1 file raises :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: code file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            codes = archive["codes"]
            labels = archive["labels"]
            meta = json.loads(str(archive["meta"])) if "meta" in archive.files else {}
    except Exception as exc:
        raise DataError(f"{path}: not a hashguard code file ({type(exc).__name__}: {exc})") from None
    if codes.ndim != 2 or labels.ndim != 2 or codes.shape[0] != labels.shape[0]:
        raise DataError(f"{path}: codes {codes.shape} and labels {labels.shape} do not align")
    if codes.size and not np.all(np.abs(codes) == 1):
        raise DataError(f"{path}: codes must be +-1")
    return CodeSet(codes=codes.astype(np.int8), labels=labels.astype(np.float32), meta=meta)
