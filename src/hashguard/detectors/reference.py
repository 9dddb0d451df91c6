"""Reference codes of the Hamming detector (and of the attack that knows it): the codes a normal query lies near.

* ``centers``: one code per class, the sign of the mean training code of the items carrying that class
  (sign(0) = +1; a class without training items has no centre);
* ``targets``: the fixed per-class target codes of a model trained with the HashVFL consistency loss
  (:class:`hashguard.methods.hashvfl.HashVFL`, Qiu et al., IEEE TIFS 2024);
* ``train``: every distinct training code (the nearest-neighbour distance to the training set);
* ``auto``: ``targets`` when the model has them, otherwise ``centers``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashguard.errors import ConfigError, DataError

REFERENCE_KINDS = ("auto", "centers", "targets", "train")


def class_centre_codes(codes: Any, labels: Any) -> np.ndarray:
    """(C', K) int8 codes: sign(mean of the codes of the items with class c) for each class c present, sign(0) = +1."""
    b = np.asarray(codes, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim == 1:
        y = np.eye(int(y.max()) + 1)[y.astype(np.int64)]
    if b.ndim != 2 or y.shape[0] != b.shape[0]:
        raise DataError(f"need (N, K) codes and (N, C) labels, got {b.shape} and {y.shape}")
    member = (y > 0).astype(np.float64)
    counts = member.sum(axis=0)
    present = counts > 0
    if not present.any():
        raise DataError("no labelled training item: class centre codes need labels")
    sums = member.T @ b
    return np.where(sums[present] >= 0, 1, -1).astype(np.int8)


def reference_codes(kind: str, train_codes: Any, train_labels: Any, class_codes: Any | None = None) -> np.ndarray:
    """The (R, K) +-1 reference codes of ``kind`` (one of :data:`REFERENCE_KINDS`)."""
    if kind not in REFERENCE_KINDS:
        raise ConfigError(f"reference must be one of {', '.join(REFERENCE_KINDS)}, got {kind!r}")
    if kind == "auto":
        kind = "targets" if class_codes is not None else "centers"
    if kind == "targets":
        if class_codes is None:
            raise ConfigError("reference=targets needs a model trained with per-class target codes (method hashvfl)")
        return np.where(np.asarray(class_codes) >= 0, 1, -1).astype(np.int8)
    if kind == "train":
        return np.unique(np.asarray(train_codes, dtype=np.int8), axis=0)
    return class_centre_codes(train_codes, train_labels)
