"""Exact top-100 Hamming search: :class:`hashguard.retrieval.index.HammingIndex` against FAISS IndexBinaryFlat.

Usage::

    python benchmarks/bench_search.py            # NUS-WIDE size, 1 M and 10 M codes (several minutes)
    python benchmarks/bench_search.py --quick    # without the 10 M rows

Rows: 2,100 queries x 193,734 codes (NUS-WIDE size) and 1,000 queries x 1 M / 10 M codes, 64 bits, on
random codes (the worst case for any index) and on clustered codes like a trained model's (100 random
centres, each bit of a code flipped with probability 0.05). Both sides run in the same process, alternating,
and the minimum of ``--reps`` runs is kept; the load average is printed, since load changes the ratio
(FAISS's OpenMP threads suffer more from contention than numba's). ``method`` is the index's automatic choice
(scan or multi-index hashing), ``mih`` the time when multi-index hashing is forced (timed on 100
queries and scaled to all), ``extra MB`` the memory
the index holds beyond the packed codes. Distances are checked equal to FAISS's (its order inside a tie
group may differ) and ids against a brute-force (distance, index) sort on 16 queries. The chunked-add line
adds 1 M codes in 100 chunks against one add.

``rows(quick)`` returns the rows as dicts (``work, hashguard_s, reference_name, reference_s, ratio``) for a
combined benchmark table.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from hashguard.retrieval.codes import pack_codes, unpack_codes
from hashguard.retrieval.index import HammingIndex

BITS = 64
K = 100
CHUNK = 1_000_000


def _packed(rng: np.random.Generator, n: int, centres: np.ndarray | None, flip: float = 0.05) -> np.ndarray:
    """n packed 64-bit codes: random, or a centre with each bit flipped with probability ``flip``."""
    if centres is None:
        return rng.integers(0, 2**64, n, dtype=np.uint64)
    codes = centres[rng.integers(0, centres.shape[0], n)]
    flips = np.zeros(n, np.uint64)
    for b in range(BITS):
        flips |= (rng.random(n) < flip).astype(np.uint64) << np.uint64(b)
    return codes ^ flips


def _build(rng: np.random.Generator, n: int, centres: np.ndarray | None):
    """Index and FAISS index over n codes, added in chunks of 1 M (the +-1 form of 10 M codes is 640 MB)."""
    import faiss

    index = HammingIndex(BITS)
    flat = faiss.IndexBinaryFlat(BITS)
    for s in range(0, n, CHUNK):
        words = _packed(rng, min(CHUNK, n - s), centres)
        pm1 = unpack_codes(words[:, None], BITS)
        index.add(pm1)
        flat.add(pack_codes(pm1, "uint8"))
    return index, flat


def _brute(q: np.ndarray, db_words: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.empty((q.shape[0], k), np.int64)
    dist = np.empty((q.shape[0], k), np.int64)
    for r in range(q.shape[0]):
        d = np.bitwise_count(db_words ^ q[r]).astype(np.int64)
        order = np.lexsort((np.arange(d.shape[0]), d))[:k]
        ids[r], dist[r] = order, d[order]
    return dist, ids


def _row(nq: int, n: int, kind: str, reps: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2**64, 100, dtype=np.uint64) if kind == "clustered" else None
    index, flat = _build(rng, n, centres)
    q_pm1 = unpack_codes(_packed(rng, nq, centres)[:, None], BITS)
    q_u8 = pack_codes(q_pm1, "uint8")
    index.search(q_pm1[:4], K)  # compile / load the kernels, build tables if auto wants them
    t_hg = t_ref = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        d_hg, i_hg = index.search(q_pm1, K)
        t_hg = min(t_hg, time.perf_counter() - t)
        t = time.perf_counter()
        d_ref, _ = flat.search(q_u8, K)
        t_ref = min(t_ref, time.perf_counter() - t)
    method = index.last_plan.get("method")
    same = bool(np.array_equal(d_hg, d_ref))
    bd, bi = _brute(pack_codes(q_pm1[:16])[:, 0], index._codes[:, 0], K)
    exact = bool(np.array_equal(bd, d_hg[:16]) and np.array_equal(bi, i_hg[:16]))
    forced = HammingIndex(BITS, method="mih")
    forced._codes = index._codes
    forced.search(q_pm1[:4], K)
    sub = q_pm1[:: max(1, nq // 100)][:100]  # forced MIH can be slow: timed on 100 queries, scaled
    t_mih = float("inf")
    for _ in range(max(1, reps // 2)):
        t = time.perf_counter()
        d_mih, _ = forced.search(sub, K)
        t_mih = min(t_mih, (time.perf_counter() - t) * nq / sub.shape[0])
    assert np.array_equal(d_mih, d_hg[:: max(1, nq // 100)][:100])
    mem = index.memory_bytes()
    return {
        "work": f"top-{K}, {nq:,} x {n:,} x {BITS} bits, {kind}",
        "hashguard_s": t_hg,
        "reference_name": "FAISS IndexBinaryFlat",
        "reference_s": t_ref,
        "ratio": t_ref / t_hg,
        "method": method,
        "mih_s": t_mih,
        "mih_m": forced.last_plan.get("m"),
        "extra_mb": (mem["mih"] + mem["buffer_spare"]) / 1e6,
        "mih_mb": forced.memory_bytes()["mih"] / 1e6,
        "same_distances": same,
        "exact_ids": exact,
    }


def chunked_add(n: int = 1_000_000, chunks: int = 100) -> tuple[float, float]:
    """Seconds to add n codes in ``chunks`` pieces and in one piece (the packing included in both)."""
    rng = np.random.default_rng(1)
    codes = unpack_codes(rng.integers(0, 2**64, n, dtype=np.uint64)[:, None], BITS)
    t = time.perf_counter()
    one = HammingIndex(BITS)
    one.add(codes)
    t_one = time.perf_counter() - t
    t = time.perf_counter()
    many = HammingIndex(BITS)
    for part in np.array_split(codes, chunks):
        many.add(part)
    t_many = time.perf_counter() - t
    assert np.array_equal(one._codes, many._codes)
    return t_many, t_one


def rows(quick: bool, reps: int = 5, only: set[int] | None = None) -> list[dict]:
    """Benchmark rows; ``quick`` leaves out the 10 M-code rows, ``only`` keeps the given database sizes."""
    sizes = [(2100, 193_734), (1000, 1_000_000)] + ([] if quick else [(1000, 10_000_000)])
    sizes = [s for s in sizes if only is None or s[1] in only]
    return [_row(nq, n, kind, reps) for nq, n in sizes for kind in ("random", "clustered")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="leave out the 10 M rows")
    ap.add_argument("--reps", type=int, default=5, help="runs per side (minimum kept)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for both sides (default: all); 1 compares the kernels on a busy machine")  # fmt: skip
    ap.add_argument("--sizes", default=None, help="comma-separated database sizes to run (default: all)")
    args = ap.parse_args()
    import faiss
    import numba

    if args.threads:
        numba.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)

    la = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cpus, numba threads {numba.get_num_threads()}, FAISS threads "
          f"{faiss.omp_get_max_threads()}, load average before {la}\n")  # fmt: skip
    print("| work | hashguard s | method | FAISS IndexBinaryFlat s | FAISS / hashguard | MIH forced s* (m) "
          "| extra MB (MIH tables MB) | same distances | exact ids |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    only = None if args.sizes is None else {int(x) for x in args.sizes.split(",")}
    for r in rows(args.quick, args.reps, only):
        print(f"| {r['work']} | {r['hashguard_s']:.3f} | {r['method']} | {r['reference_s']:.3f} | "
              f"{r['ratio']:.2f}x | {r['mih_s']:.3f} ({r['mih_m']}) | {r['extra_mb']:.1f} ({r['mih_mb']:.1f}) | "
              f"{r['same_distances']} | {r['exact_ids']} |")  # fmt: skip
    print("\n* timed on 100 of the queries and scaled to all")
    t_many, t_one = chunked_add()
    print(f"\nadding 1,000,000 codes: 100 chunks {t_many:.3f} s, one add {t_one:.3f} s")
    load1 = os.getloadavg()
    print(f"load average after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


if __name__ == "__main__":
    main()
