"""Binary codes: validation, bit packing and chunked Hamming distances.

Conventions
-----------
* A *code* is a row of ``K`` values in {-1, +1} (any integer or float dtype, NumPy array or torch tensor).
  Internally codes are ``int8``.
* *Packing* maps +1 to bit 1 and -1 to bit 0. ``pack_codes(codes, "uint8")`` uses :func:`numpy.packbits`
  (big-endian bit order inside a byte, the layout FAISS binary indexes accept); ``"uint64"`` zero-pads the
  byte layout to a multiple of 8 bytes and views it as ``uint64`` words. Padding bits are 0 in every code, so
  they never contribute to a Hamming distance.
* The Hamming distance between two +-1 codes is ``d(q, r) = (K - <q, r>) / 2``, the number of differing bits.
* Labels are multi-hot rows (any dtype); a class is present when its entry is ``> 0``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from hashguard.errors import DataError

__all__ = [
    "as_codes",
    "as_labels",
    "pack_codes",
    "unpack_codes",
    "pack_labels",
    "hamming_distance",
    "iter_hamming_distance",
]


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise DataError(f"{name}: cannot be read as an array ({exc})") from None
    return arr


def as_codes(x: Any, name: str = "codes") -> np.ndarray:
    """Validate +-1 codes (2-D, or 1-D for a single code) and return them as a C-contiguous ``int8`` array.

    Raises :class:`~hashguard.errors.DataError` for a wrong shape or any entry other than -1 or +1
    (including 0, which ``sign(0)`` can produce: resolve it before retrieval).
    """
    arr = _to_numpy(x, name)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise DataError(f"{name}: expected a 2-D array of +-1 codes, got shape {arr.shape}")
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise DataError(f"{name}: expected numeric +-1 codes, got dtype {arr.dtype}")
    if arr.shape[1] == 0:
        raise DataError(f"{name}: codes have zero bits")
    if arr.size:
        bad = (arr != 1) & (arr != -1)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise DataError(
                f"{name}: codes must be +-1 only; entry [{i}, {j}] is {arr[i, j]!r} "
                f"({int(bad.sum())} bad entries; resolve sign(0) before retrieval)"
            )
    return np.ascontiguousarray(arr, dtype=np.int8)


def as_labels(x: Any, n_rows: int, name: str = "labels") -> np.ndarray:
    """Validate multi-hot labels for ``n_rows`` items; returns a boolean array (class present = entry > 0).

    A 1-D integer array is read as single-label class indices (negative index = no label).
    """
    arr = _to_numpy(x, name)
    if arr.ndim == 1:
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{name}: 1-D labels must be integer class indices, got dtype {arr.dtype}")
        n_classes = int(arr.max()) + 1 if arr.size and arr.max() >= 0 else 1
        out = np.zeros((arr.shape[0], n_classes), dtype=bool)
        ok = arr >= 0
        out[np.nonzero(ok)[0], arr[ok]] = True
        arr = out
    if arr.ndim != 2:
        raise DataError(f"{name}: expected a 2-D multi-hot label array, got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise DataError(f"{name}: {arr.shape[0]} label rows for {n_rows} codes")
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise DataError(f"{name}: expected numeric labels, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise DataError(f"{name}: labels contain NaN or infinity")
        arr = arr > 0
    return np.ascontiguousarray(arr)


def pack_codes(codes: Any, dtype: str = "uint64") -> np.ndarray:
    """Pack +-1 codes (N x K) into bits: ``uint8`` (N x ceil(K/8)) or ``uint64`` (N x ceil(K/64)).

    +1 becomes bit 1, -1 bit 0; see the module docstring for the layout. Inverse: :func:`unpack_codes`.
    """
    c = as_codes(codes)
    packed = np.packbits(c > 0, axis=1)  # N x ceil(K/8), big-endian bits
    if dtype == "uint8":
        return packed
    if dtype != "uint64":
        raise ValueError(f"dtype must be 'uint8' or 'uint64', not {dtype!r}")
    n_bytes = packed.shape[1]
    n_words = (n_bytes + 7) // 8
    padded = np.zeros((packed.shape[0], n_words * 8), dtype=np.uint8)
    padded[:, :n_bytes] = packed
    return padded.view(np.uint64)


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: returns N x ``bits`` ``int8`` +-1 codes."""
    packed = np.ascontiguousarray(packed)
    if packed.ndim != 2:
        raise DataError(f"packed codes must be 2-D, got shape {packed.shape}")
    as_bytes = packed.view(np.uint8)
    if as_bytes.shape[1] * 8 < bits:
        raise DataError(f"packed codes hold {as_bytes.shape[1] * 8} bits, fewer than {bits}")
    bits01 = np.unpackbits(as_bytes, axis=1, count=bits)
    return (bits01.astype(np.int8) * 2 - 1).astype(np.int8)


def pack_labels(labels: np.ndarray) -> np.ndarray:
    """Pack boolean multi-hot labels (N x C) into ``uint64`` words (N x max(1, ceil(C/64))).

    Two items share a label exactly when the bitwise AND of their words is non-zero in some word.
    """
    lab = np.ascontiguousarray(labels, dtype=bool)
    packed = np.packbits(lab, axis=1)
    n_bytes = packed.shape[1]
    n_words = max(1, (n_bytes + 7) // 8)
    padded = np.zeros((lab.shape[0], n_words * 8), dtype=np.uint8)
    padded[:, :n_bytes] = packed
    return padded.view(np.uint64)


def _popcount_rows(xor: np.ndarray) -> np.ndarray:
    """Row sums of bit counts of a (..., W) uint64 array."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(xor).sum(axis=-1, dtype=np.int32)
    as_bytes = xor.view(np.uint8)  # pragma: no cover - NumPy < 2.0
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)
    return table[as_bytes].reshape(*xor.shape[:-1], -1).sum(axis=-1, dtype=np.int32)


def iter_hamming_distance(
    query_codes: Any, db_codes: Any, chunk_size: int = 1024
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, D)`` blocks of the Hamming distance matrix, ``chunk_size`` queries at a time.

    ``D`` is ``int32`` of shape (rows, N_db). Peak extra memory is about ``chunk_size * N_db * 12`` bytes
    (the XOR block plus the result), independent of the number of queries.
    """
    q = pack_codes(query_codes)
    db = pack_codes(db_codes)
    _check_bits(query_codes, db_codes)
    chunk_size = max(1, int(chunk_size))
    # bound the XOR temporary: rows x N_db x W words
    for start in range(0, q.shape[0], chunk_size):
        block = q[start : start + chunk_size]
        out = np.empty((block.shape[0], db.shape[0]), dtype=np.int32)
        sub = max(1, (1 << 22) // max(1, db.shape[0] * db.shape[1]))
        for s in range(0, block.shape[0], sub):
            out[s : s + sub] = _popcount_rows(block[s : s + sub, None, :] ^ db[None, :, :])
        yield start, out


def hamming_distance(query_codes: Any, db_codes: Any, chunk_size: int = 1024) -> np.ndarray:
    """Full Hamming distance matrix (Q x N, ``int32``), computed on packed bits in query chunks.

    ``D[i, j]`` = number of positions where query ``i`` and database item ``j`` differ
    = ``(K - <q_i, r_j>) / 2``.
    """
    q = as_codes(query_codes, "query_codes")
    db = as_codes(db_codes, "db_codes")
    _check_bits(q, db)
    out = np.empty((q.shape[0], db.shape[0]), dtype=np.int32)
    for start, block in iter_hamming_distance(q, db, chunk_size):
        out[start : start + block.shape[0]] = block
    return out


def _check_bits(query_codes: Any, db_codes: Any) -> None:
    qk = np.shape(query_codes)[-1]
    dk = np.shape(db_codes)[-1]
    if qk != dk:
        raise DataError(f"code length mismatch: queries have {qk} bits, database has {dk} bits")
