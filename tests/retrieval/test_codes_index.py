"""Packing, chunked distances, the index backends, save/load and the ``hashguard search`` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hashguard.cli import main as cli_main
from hashguard.errors import ConfigError, DataError
from hashguard.retrieval import hamming_distance, iter_hamming_distance, pack_codes, save_codes, unpack_codes
from hashguard.retrieval.index import HammingIndex


@pytest.fixture(autouse=True, scope="module")
def _single_thread_faiss():
    """FAISS's OpenMP threads spin badly on a busy 2-core machine; the tests are small, one thread is enough."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def rand_codes(rng, n, bits):
    return np.where(rng.random((n, bits)) < 0.5, -1, 1).astype(np.int8)


def clustered(rng, n, bits, n_centres=20, flip=0.08):
    centres = rand_codes(rng, n_centres, bits)
    c = centres[rng.integers(0, n_centres, n)]
    return np.where(rng.random((n, bits)) < flip, -c, c).astype(np.int8)


def direct_distances(q, db):
    return (q[:, None, :] != db[None, :, :]).sum(axis=-1)


def ref_topk(q, db, k):
    D = direct_distances(q, db)
    ids = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, ids, axis=1), ids


# ------------------------------------------------------------------------------------------------------------
# codes
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 7, 8, 12, 64, 65, 130])
def test_pack_roundtrip(bits):
    rng = np.random.default_rng(bits)
    c = rand_codes(rng, 17, bits)
    for dtype in ("uint8", "uint64"):
        packed = pack_codes(c, dtype)
        assert packed.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(unpack_codes(packed, bits), c)
    assert pack_codes(c, "uint64").shape[1] == (bits + 63) // 64
    # +1 -> bit 1, big-endian inside the byte
    one = -np.ones((1, 8), np.int8)
    one[0, 0] = 1
    assert pack_codes(one, "uint8")[0, 0] == 0b10000000


@pytest.mark.parametrize("bits", [8, 48, 100])
def test_chunked_hamming_equals_direct(bits):
    rng = np.random.default_rng(bits + 1)
    q = rand_codes(rng, 37, bits)
    db = rand_codes(rng, 53, bits)
    expected = direct_distances(q, db)
    np.testing.assert_array_equal(hamming_distance(q, db, chunk_size=5), expected)
    np.testing.assert_array_equal(hamming_distance(q, db), (bits - q.astype(int) @ db.T.astype(int)) // 2)
    starts = [s for s, block in iter_hamming_distance(q, db, chunk_size=10)]
    assert starts == [0, 10, 20, 30]


def test_hamming_rejects_mismatch_and_non_pm1():
    rng = np.random.default_rng(2)
    with pytest.raises(DataError, match="code length mismatch"):
        hamming_distance(rand_codes(rng, 2, 8), rand_codes(rng, 2, 9))
    with pytest.raises(DataError, match=r"\+-1"):
        pack_codes(np.array([[1, 0, -1]]))
    with pytest.raises(DataError):
        pack_codes(np.array([[0.5, 1.0]]))


# ------------------------------------------------------------------------------------------------------------
# index
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 24, 64, 72])
def test_exact_search_matches_reference(bits):
    rng = np.random.default_rng(30 + bits)
    db = rand_codes(rng, 300, bits)
    q = rand_codes(rng, 21, bits)
    index = HammingIndex(bits, "exact")
    index.add(db[:100])
    index.add(db[100:])  # ids continue
    for k in (1, 10, 300):
        d, i = index.search(q, k)
        rd, ri = ref_topk(q, db, k)
        np.testing.assert_array_equal(d, rd)
        np.testing.assert_array_equal(i, ri)
    d, i = index.search(q, 310)  # k larger than the database
    assert np.all(i[:, 300:] == -1) and np.all(d[:, 300:] == -1)
    np.testing.assert_array_equal(i[:, :300], ref_topk(q, db, 300)[1])


def test_flat_matches_exact_distances():
    rng = np.random.default_rng(40)
    db = rand_codes(rng, 1000, 16)  # many ties
    q = rand_codes(rng, 30, 16)
    exact = HammingIndex(16, "exact")
    flat = HammingIndex(16, "flat")
    exact.add(db)
    flat.add(db)
    de, _ = exact.search(q, 50)
    df, fi = flat.search(q, 50)
    np.testing.assert_array_equal(de, df)
    D = direct_distances(q, db)
    np.testing.assert_array_equal(np.take_along_axis(D, fi, axis=1), df)  # ids agree with their distances


@pytest.mark.parametrize("backend", ["ivf", "hnsw"])
def test_approximate_backends_recall(backend):
    rng = np.random.default_rng(50)
    db = clustered(rng, 2000, 64)
    q = clustered(rng, 50, 64)
    exact = HammingIndex(64, "exact")
    exact.add(db)
    approx = HammingIndex(64, backend, nlist=32, nprobe=8)
    approx.add(db)
    k = 10
    de, _ = exact.search(q, k)
    da, ia = approx.search(q, k)
    D = direct_distances(q, db)
    ok = ia >= 0
    np.testing.assert_array_equal(np.take_along_axis(D, np.where(ok, ia, 0), axis=1)[ok], da[ok])
    # recall of the exact k-th distance ball
    kth = de[:, -1:]
    recall = np.mean([(da[r][ok[r]] <= kth[r]).sum() / k for r in range(q.shape[0])])
    assert recall >= 0.8, recall


@pytest.mark.parametrize("backend", ["exact", "flat", "ivf", "hnsw"])
def test_range_search_and_save_load(backend, tmp_path):
    rng = np.random.default_rng(60)
    db = clustered(rng, 800, 32)
    q = clustered(rng, 12, 32)
    index = HammingIndex(32, backend, nlist=8, nprobe=8)
    index.add(db)
    lims, d, ids = index.range_search(q, 6)
    D = direct_distances(q, db)
    for r in range(q.shape[0]):
        seg_ids = ids[lims[r] : lims[r + 1]]
        seg_d = d[lims[r] : lims[r + 1]]
        np.testing.assert_array_equal(D[r, seg_ids], seg_d)
        assert np.all(seg_d <= 6)
        assert np.all(np.diff(seg_d) >= 0)
        if backend in ("exact", "flat", "hnsw"):  # exact answers
            np.testing.assert_array_equal(np.sort(seg_ids), np.nonzero(D[r] <= 6)[0])
    path = tmp_path / "db.hgidx"
    index.save(path)
    loaded = HammingIndex.load(path)
    assert (loaded.backend, loaded.bits, loaded.ntotal) == (backend, 32, 800)
    for a, b in zip(index.search(q, 7), loaded.search(q, 7), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.reconstruct(), db)


def test_index_errors(tmp_path):
    with pytest.raises(ConfigError):
        HammingIndex(12, "flat")  # not a multiple of 8
    with pytest.raises(ConfigError):
        HammingIndex(16, "annoy")
    index = HammingIndex(16)
    with pytest.raises(DataError, match="code length mismatch"):
        index.add(np.ones((2, 8)))
    bad = tmp_path / "bad.hgidx"
    bad.write_bytes(b"not an index")
    with pytest.raises(DataError):
        HammingIndex.load(bad)
    with pytest.raises(DataError):
        HammingIndex.load(tmp_path / "missing.hgidx")


# ------------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------------


def test_cli_build_and_query(tmp_path, capsys):
    rng = np.random.default_rng(70)
    db = rand_codes(rng, 200, 32)
    q = rand_codes(rng, 4, 32)
    labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 200)]
    save_codes(tmp_path / "db.npz", db, labels)
    save_codes(tmp_path / "q.npz", q, labels[:4])
    idx = tmp_path / "db.hgidx"
    assert cli_main(["search", "build", "--codes", str(tmp_path / "db.npz"), "--out", str(idx)]) == 0
    out = tmp_path / "res.json"
    assert cli_main(["search", "query", "--index", str(idx), "--codes", str(tmp_path / "q.npz"), "-k", "5",
                     "--out", str(out)]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    rd, ri = ref_topk(q, db, 5)
    assert [r["ids"] for r in res["results"]] == ri.tolist()
    assert [r["distances"] for r in res["results"]] == rd.tolist()
    capsys.readouterr()
    assert cli_main(["search", "query", "--index", str(idx), "--codes", str(tmp_path / "q.npz"),
                     "--radius", "9"]) == 0  # fmt: skip
    res = json.loads(capsys.readouterr().out)
    D = direct_distances(q, db)
    assert [sorted(r["ids"]) for r in res["results"]] == [np.nonzero(row <= 9)[0].tolist() for row in D]
    # user errors: one line, exit status 2
    save_codes(tmp_path / "q8.npz", rand_codes(rng, 2, 8), labels[:2])
    assert cli_main(["search", "query", "--index", str(idx), "--codes", str(tmp_path / "q8.npz")]) == 2
    assert "code length mismatch" in capsys.readouterr().err
