"""Exact top-k search: the filtered scan and multi-index hashing against a brute-force (distance, index) sort."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashguard.errors import ConfigError
from hashguard.retrieval import index as index_mod
from hashguard.retrieval import mih, search_kernels
from hashguard.retrieval.codes import pack_codes
from hashguard.retrieval.index import HammingIndex


def rand_codes(rng, n, bits):
    return np.where(rng.random((n, bits)) < 0.5, -1, 1).astype(np.int8)


def clustered(rng, n, bits, n_centres=6, flip=0.03):
    """Few centres, few flips: many exact duplicates and large tie groups."""
    centres = rand_codes(rng, n_centres, bits)
    c = centres[rng.integers(0, n_centres, n)]
    return np.where(rng.random((n, bits)) < flip, -c, c).astype(np.int8)


def brute_topk(q, db, k):
    """Independent reference: direct bit comparison, stable lexsort by (distance, index), -1 padding."""
    D = (q[:, None, :] != db[None, :, :]).sum(axis=-1)
    n = db.shape[0]
    ids = np.full((q.shape[0], k), -1, np.int64)
    dist = np.full((q.shape[0], k), -1, np.int64)
    for r in range(q.shape[0]):
        order = np.lexsort((np.arange(n), D[r]))[:k]
        ids[r, : order.shape[0]] = order
        dist[r, : order.shape[0]] = D[r, order]
    return dist, ids


def database(kind, rng, n, bits):
    return rand_codes(rng, n, bits) if kind == "random" else clustered(rng, n, bits)


@pytest.mark.parametrize("bits", [8, 48, 64, 100, 200])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_scan_and_mih_equal_brute_force(bits, kind):
    rng = np.random.default_rng(bits + (kind == "random"))
    n = 2500
    db = database(kind, rng, n, bits)
    q = np.vstack([db[:6], database(kind, rng, 14, bits)])  # queries in the database: distance-0 ties
    for method in ("scan", "mih"):
        index = HammingIndex(bits, method=method)
        index.add(db)
        for k in (1, 7, 100, n - 1, n, n + 3):
            d, i = index.search(q, k)
            rd, ri = brute_topk(q, db, k)
            np.testing.assert_array_equal(d, rd, err_msg=f"{method} k={k}")
            np.testing.assert_array_equal(i, ri, err_msg=f"{method} k={k}")
        assert index.last_plan["method"] == "scan"  # k >= n always scans
        index.search(q, 5)
        assert index.last_plan["method"] == (method if search_kernels.HAVE_NUMBA else "scan")


@pytest.mark.parametrize("budget", [30_000, 60_000])
def test_mih_with_narrow_keys_and_fallback_is_exact(budget):
    """Keys narrower than their substrings (a small memory budget) and queries that give up and scan."""
    rng = np.random.default_rng(budget)
    bits, n, k = 64, 3000, 20
    db = clustered(rng, n, bits, n_centres=30, flip=0.06)
    q = np.vstack([db[::500], rand_codes(rng, 8, bits)])
    layout = mih.plan(bits, n, budget)
    assert layout is not None
    assert any(kb < sb for kb, sb in zip(layout.key_bits, layout.substring_bits, strict=True))
    tables = mih.MultiIndexTables(layout, pack_codes(db))
    assert tables.memory_bytes() <= budget + 64 * layout.m
    rd, ri = brute_topk(q, db, k)
    for max_work in (10**12, 50):
        d, i, fb, work = tables.search(pack_codes(q), pack_codes(db), bits, k, max_work)
        np.testing.assert_array_equal(d, rd)
        np.testing.assert_array_equal(i, ri)
        if max_work == 50 and search_kernels.HAVE_NUMBA:
            assert fb.any()  # some queries fell back to the scan, still exact


def test_memory_accounting_within_budget():
    # the 10 M x 64-bit layout is planned without building: int32 ids and offsets, within 100 MB
    layout = mih.plan(64, 10_000_000, 100_000_000)
    assert layout is not None and layout.m >= 2
    need = mih.mih_memory_bytes(10_000_000, layout.key_bits)
    assert need == sum(4 * (10_000_000 + 2**b + 1) for b in layout.key_bits) <= 100_000_000
    assert mih.plan(64, 10_000_000, 10_000_000) is None  # not even one table fits 10 MB
    # a built index reports its tables; the bound formula holds for them
    rng = np.random.default_rng(3)
    index = HammingIndex(32, method="mih", mih_memory=5_000_000)
    index.add(rand_codes(rng, 4000, 32))
    assert index.memory_bytes()["mih"] == 0  # built lazily
    index._tables()
    mem = index.memory_bytes()
    assert mem["codes"] == 4000 * 8
    layout = index._mih.plan
    assert mih.mih_memory_bytes(4000, layout.key_bits) <= mem["mih"] <= 5_000_000


def test_chunked_add_equals_one_add_and_grows_geometrically():
    rng = np.random.default_rng(4)
    bits = 40
    db = clustered(rng, 3000, bits)
    q = rand_codes(rng, 9, bits)
    one = HammingIndex(bits, method="scan")
    one.add(db)
    chunked = HammingIndex(bits, method="mih")
    buffers = set()
    start = 0
    for size in [1] * 300 + [7] * 100 + [1200] + [400]:
        chunked.add(db[start : start + size])
        buffers.add(id(chunked._buf))
        start += size
        if start == 1300:
            chunked.search(q, 3)  # tables built midway must be rebuilt after later adds
    assert start == 2600
    chunked.add(db[start:])
    assert chunked.ntotal == 3000
    # geometric capacity: few reallocations for 402 adds
    assert len(buffers) <= 12, len(buffers)
    assert chunked.memory_bytes()["buffer_spare"] > 0
    for k in (1, 50):
        for a, b in zip(one.search(q, k), chunked.search(q, k), strict=True):
            np.testing.assert_array_equal(a, b)
    # with tables built, nothing but the tables is held beyond the packed codes
    if search_kernels.HAVE_NUMBA:  # without numba MIH is not used and no tables are built
        assert chunked.memory_bytes()["buffer_spare"] == 0 and chunked.memory_bytes()["mih"] > 0
    np.testing.assert_array_equal(chunked.reconstruct(), db)


def test_auto_choice_is_visible_and_exact(monkeypatch):
    rng = np.random.default_rng(5)
    bits = 64
    db = clustered(rng, 4000, bits)
    q = db[:10]
    index = HammingIndex(bits)  # method="auto"
    index.add(db)
    rd, ri = brute_topk(q, db, 5)
    d, i = index.search(q, 5)
    assert index.last_plan["method"] == "scan" and "fewer than" in index.last_plan["reason"]
    assert "method='auto'" in repr(index) and "last='scan'" in repr(index)
    # make MIH look cheap: auto takes it, and the answer does not change
    monkeypatch.setattr(index_mod, "AUTO_MIN_ITEMS", 0)
    monkeypatch.setattr(index_mod, "MIH_UNIT_COST", 1e-6)
    d2, i2 = index.search(q, 5)
    if search_kernels.HAVE_NUMBA:
        assert index.last_plan["method"] == "mih" and index.last_plan["m"] >= 1
    for got in ((d, i), (d2, i2)):
        np.testing.assert_array_equal(got[0], rd)
        np.testing.assert_array_equal(got[1], ri)
    # make MIH look dear: auto scans, frees the tables and remembers the choice for this size and k
    monkeypatch.setattr(index_mod, "MIH_UNIT_COST", 10**9)
    d3, i3 = index.search(q, 5)
    if search_kernels.HAVE_NUMBA:
        assert index.last_plan["method"] == "scan" and "sampled" in index.last_plan["reason"]
        assert index.memory_bytes()["mih"] == 0
        index.search(q, 5)
        assert "earlier queries" in index.last_plan["reason"]
    np.testing.assert_array_equal(i3, ri)
    with pytest.raises(ConfigError, match="search method"):
        HammingIndex(bits, method="lsh")


def test_numpy_fallback_scan_is_exact():
    rng = np.random.default_rng(6)
    db = clustered(rng, 700, 72)
    q = rand_codes(rng, 5, 72)
    out_d = np.empty((5, 20), np.int32)
    out_i = np.empty((5, 20), np.int64)
    search_kernels._np_scan(pack_codes(q), pack_codes(db), 20, out_d, out_i)
    rd, ri = brute_topk(q, db, 20)
    np.testing.assert_array_equal(out_d, rd)
    np.testing.assert_array_equal(out_i, ri)


def test_save_load_keeps_method_and_reads_old_files(tmp_path):
    rng = np.random.default_rng(7)
    db = rand_codes(rng, 500, 24)
    q = rand_codes(rng, 4, 24)
    index = HammingIndex(24, method="mih", mih_memory=1_000_000)
    index.add(db)
    index.save(tmp_path / "new.hgidx")
    loaded = HammingIndex.load(tmp_path / "new.hgidx")
    assert loaded.params["method"] == "mih" and loaded.params["mih_memory"] == 1_000_000
    for a, b in zip(index.search(q, 6), loaded.search(q, 6), strict=True):
        np.testing.assert_array_equal(a, b)
    # a file written before the search methods existed: params without "method" / "mih_memory"
    meta = {"format": "hashguard-index/1", "backend": "exact", "bits": 24, "ntotal": 500, "info": {},
            "params": {"nlist": None, "nprobe": 16, "hnsw_m": 32, "ef_search": 128, "seed": 0}}  # fmt: skip
    with open(tmp_path / "old.hgidx", "wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), codes=pack_codes(db))
    old = HammingIndex.load(tmp_path / "old.hgidx")
    assert old.params["method"] == "auto" and old.ntotal == 500
    rd, ri = brute_topk(q, db, 6)
    d, i = old.search(q, 6)
    np.testing.assert_array_equal(d, rd)
    np.testing.assert_array_equal(i, ri)
    old.add(db[:3])  # a loaded index grows like a new one
    assert old.ntotal == 503
