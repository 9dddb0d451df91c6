"""Per-bit statistics of a code matrix: balance, pairwise correlation and leave-one-bit-out mAP.

A diagnostic for any hashing model. The redundancy view follows Fu et al., "Neurons Merging Layer: Towards
Progressive Redundancy Reduction for Deep Supervised Hashing" (IJCAI 2019): bits are unequally important, and a
bit whose removal costs no mAP, or that copies another bit, is redundant.

* balance of bit k: the mean of its +-1 values (0 = half +1, half -1; +-1 = a constant bit);
* correlation: the Pearson correlation between two bits over the items (a constant bit has correlation 0 with
  every other bit and 1 with itself);
* leave-one-bit-out drop of bit k: mAP(all bits) - mAP(all bits but k), with :func:`mean_average_precision`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hashguard.errors import DataError
from hashguard.retrieval.metrics import mean_average_precision


def _as_float_codes(codes: Any) -> np.ndarray:
    array = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"codes must be a non-empty (items, bits) matrix, got shape {array.shape}")
    return array


def bit_balance(codes: Any) -> np.ndarray:
    """Mean of each bit over the items (length K); works on +-1 codes and on relaxed codes alike."""
    return _as_float_codes(codes).mean(axis=0)


def bit_correlation(codes: Any) -> np.ndarray:
    """K x K Pearson correlation between bits over the items; a constant bit correlates 0 with the others."""
    array = _as_float_codes(codes)
    centred = array - array.mean(axis=0, keepdims=True)
    norms = np.sqrt((centred**2).sum(axis=0))
    constant = norms <= 1e-12
    safe = np.where(constant, 1.0, norms)
    corr = (centred.T @ centred) / np.outer(safe, safe)
    corr[constant, :] = 0.0
    corr[:, constant] = 0.0
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def correlation_summary(corr: np.ndarray) -> dict[str, Any]:
    """Mean and maximum |correlation| over distinct pairs, and the pair (i < j) that attains the maximum."""
    k = corr.shape[0]
    if k < 2:
        return {"mean_abs": 0.0, "max_abs": 0.0, "max_pair": None}
    rows, cols = np.triu_indices(k, 1)
    values = np.abs(corr[rows, cols])
    best = int(np.argmax(values))
    return {
        "mean_abs": float(values.mean()),
        "max_abs": float(values[best]),
        "max_pair": (int(rows[best]), int(cols[best])),
    }


def leave_one_bit_out_map(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, topk: int | None = None
) -> tuple[float, np.ndarray]:
    """(mAP with all K bits, length-K array of mAP drops when bit k alone is removed from queries and database)."""
    queries, database = _as_float_codes(query_codes), _as_float_codes(db_codes)
    bits = queries.shape[1]
    if database.shape[1] != bits:
        raise DataError(f"query codes have {bits} bits, database codes {database.shape[1]}")
    if bits < 2:
        raise DataError("leave-one-bit-out needs at least 2 bits")
    full = mean_average_precision(queries, database, query_labels, db_labels, topk)
    drops = np.empty(bits)
    for k in range(bits):
        keep = np.arange(bits) != k
        drops[k] = full - mean_average_precision(queries[:, keep], database[:, keep], query_labels, db_labels, topk)
    return full, drops


@dataclass
class BitStats:
    """The diagnostic of one code matrix (balance and correlation on the database codes)."""

    bits: int
    balance: list[float]
    mean_abs_balance: float
    correlation: dict[str, Any]
    map_all_bits: float | None = None
    map_drop: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bit_statistics(
    db_codes: Any,
    query_codes: Any | None = None,
    query_labels: Any | None = None,
    db_labels: Any | None = None,
    topk: int | None = None,
) -> BitStats:
    """Balance and correlation of ``db_codes``; with queries and labels also the leave-one-bit-out mAP drops."""
    balance = bit_balance(db_codes)
    summary = correlation_summary(bit_correlation(db_codes))
    stats = BitStats(
        bits=int(balance.shape[0]), balance=[float(b) for b in balance],
        mean_abs_balance=float(np.abs(balance).mean()), correlation=summary,
    )
    if query_codes is not None:
        if query_labels is None or db_labels is None:
            raise DataError("leave-one-bit-out mAP needs query and database labels")
        full, drops = leave_one_bit_out_map(query_codes, db_codes, query_labels, db_labels, topk)
        stats.map_all_bits, stats.map_drop = full, [float(d) for d in drops]
    return stats
