"""Multi-index hashing tables for exact Hamming k-NN (Norouzi, Punjani and Fleet, CVPR 2012; TPAMI 2014).

The ``K`` code bits are split into ``m`` disjoint substrings of near-equal width (contiguous runs of the
packed bit positions). Table ``j`` is keyed by the first ``key_bits[j]`` bits of substring ``j`` (all of
them when the table fits the memory budget) and stores, per key value, the ascending ids of the items holding
it: CSR arrays ``offsets`` (2^key_bits + 1) and ``ids`` (N), ``int32`` while N < 2^31. Memory beyond the
packed codes: ``sum_j 4 (N + 2^key_bits[j] + 1)`` bytes (:func:`mih_memory_bytes`).

:func:`plan` picks ``m ~ K / log2 N`` (substrings about as wide as log2 N bits, the choice the paper
recommends), then shrinks key widths and ``m`` until the tables fit ``memory_budget`` bytes. The search
itself is :func:`hashguard.retrieval.search_kernels.mih_topk`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hashguard.retrieval import search_kernels
from hashguard.retrieval.codes import pack_codes

__all__ = ["MIHPlan", "MultiIndexTables", "mih_memory_bytes", "plan"]

MAX_KEY_BITS = 24


def mih_memory_bytes(n: int, key_bits: list[int] | tuple[int, ...]) -> int:
    """Bytes the tables of ``n`` items take beyond the packed codes: ids + offsets, 4 bytes each (8 from 2^31)."""
    width = 4 if n < 2**31 else 8
    return int(sum(width * (n + (1 << b) + 1) for b in key_bits))


@dataclass(frozen=True)
class MIHPlan:
    """Substring layout: ``m`` tables, their key widths, and each key's bit runs in the packed words."""

    m: int
    substring_bits: tuple[int, ...]
    key_bits: tuple[int, ...]
    # per table: (word, shift, length, destination) runs that assemble its key from the packed uint64 words
    runs: tuple[tuple[tuple[int, int, int, int], ...], ...] = field(repr=False)


def _valid_positions(bits: int) -> list[tuple[int, int]]:
    """(word, bit) of every code bit in the packed uint64 layout, in ascending order."""
    mask = pack_codes(np.ones((1, bits), np.int8), "uint64")[0]
    return [(w, b) for w in range(mask.shape[0]) for b in range(64) if (int(mask[w]) >> b) & 1]


def _layout(bits: int, m: int, key_bits: list[int]) -> MIHPlan:
    pos = _valid_positions(bits)
    widths = [bits // m + (1 if j < bits % m else 0) for j in range(m)]
    runs_all = []
    start = 0
    for j in range(m):
        group = pos[start : start + widths[j]][: key_bits[j]]
        start += widths[j]
        runs: list[list[int]] = []
        dest = 0
        for w, b in group:
            if runs and runs[-1][0] == w and runs[-1][1] + runs[-1][2] == b:
                runs[-1][2] += 1
            else:
                runs.append([w, b, 1, dest])
            dest += 1
        runs_all.append(tuple(tuple(r) for r in runs))
    return MIHPlan(m, tuple(widths), tuple(key_bits), tuple(runs_all))  # type: ignore[arg-type]


def plan(bits: int, n: int, memory_budget: int, m: int | None = None) -> MIHPlan | None:
    """Choose ``m`` (about ``K / log2 N`` unless given) and key widths fitting ``memory_budget`` bytes; None when
    even one table does not fit."""
    log_n = math.log2(max(n, 2))
    m_try = m if m is not None else max(1, round(bits / max(log_n, 1.0)))
    m_try = max(1, min(int(m_try), bits))
    while m_try >= 1:
        widths = [bits // m_try + (1 if j < bits % m_try else 0) for j in range(m_try)]
        kb = [min(w, MAX_KEY_BITS, max(1, math.ceil(log_n))) for w in widths]
        while mih_memory_bytes(n, kb) > memory_budget and max(kb) > 8:
            kb = [min(b, max(kb) - 1) for b in kb]
        if mih_memory_bytes(n, kb) <= memory_budget:
            return _layout(bits, m_try, kb)
        if m is not None:
            return None
        m_try -= 1
    return None


def extract_keys(packed: np.ndarray, runs: tuple[tuple[int, int, int, int], ...]) -> np.ndarray:
    """Keys of one table for packed ``uint64`` codes (N x W) as ``int64``."""
    key = np.zeros(packed.shape[0], np.uint64)
    for w, s, length, dest in runs:
        part = (packed[:, w] >> np.uint64(s)) & np.uint64((1 << length) - 1)
        key |= part << np.uint64(dest)
    return key.astype(np.int64)


class MultiIndexTables:
    """The ``m`` CSR tables of a :class:`MIHPlan` over the first ``n`` packed codes (built at construction)."""

    def __init__(self, layout: MIHPlan, packed: np.ndarray) -> None:
        self.plan = layout
        self.n = int(packed.shape[0])
        W = packed.shape[1]
        offs, ids = [], []
        base = [0]
        self.key_masks = np.zeros((layout.m, W), np.uint64)
        for j in range(layout.m):
            keys = extract_keys(packed, layout.runs[j])
            o, i = search_kernels.mih_build_table(keys, layout.key_bits[j])
            del keys
            offs.append(o)
            ids.append(i)
            base.append(base[-1] + o.shape[0])
            for w, s, length, _ in layout.runs[j]:
                self.key_masks[j, w] |= np.uint64(((1 << length) - 1) << s)
        self.offsets = np.concatenate(offs)
        self.ids = np.concatenate(ids)
        self.offset_base = np.asarray(base[:-1], np.int64)
        self.key_bits = np.asarray(layout.key_bits, np.int64)

    def memory_bytes(self) -> int:
        """Bytes held by the tables (ids + offsets + per-table bookkeeping)."""
        return int(self.offsets.nbytes + self.ids.nbytes + self.key_masks.nbytes + self.offset_base.nbytes)

    def query_keys(self, q: np.ndarray) -> np.ndarray:
        """Q x m ``int64`` keys of packed queries."""
        out = np.empty((q.shape[0], self.plan.m), np.int64)
        for j in range(self.plan.m):
            out[:, j] = extract_keys(q, self.plan.runs[j])
        return out

    def search(
        self, q: np.ndarray, db: np.ndarray, bits: int, k: int, max_work: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Exact top-k of packed queries over ``db`` (the packed codes the tables were built from)."""
        return search_kernels.mih_topk(
            q, db, bits, k, self.query_keys(q), self.key_bits, self.offsets, self.offset_base, self.ids,
            self.key_masks, max_work,
        )  # fmt: skip
