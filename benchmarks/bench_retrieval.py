"""Retrieval engine benchmark: mAP@k and exact top-k search against a per-query loop and FAISS.

Usage::

    python benchmarks/bench_retrieval.py            # full sizes (a few minutes on 2 cores)
    python benchmarks/bench_retrieval.py --quick    # small sizes, seconds
    python benchmarks/bench_retrieval.py --full-loop  # time the per-query loop on every query (slow)

Data: seeded synthetic clustered codes (class centres + independent bit flips), single-label with a second
label on 20% of the items, so that relevance and ties look like real hashing output.

Columns: ``ours`` = :func:`hashguard.retrieval.mean_average_precision` (numba popcount + counting sort);
``loop`` = the research-code formulation (per query: float distances from a dot product, a stable
``argsort``, cumulative sums), timed on ``--loop-queries`` queries and scaled linearly to all queries unless
``--full-loop`` (marked ``*`` when scaled); per-query APs of both are compared on the queries the loop ran.
``tie-aware`` and ``evaluate`` time the other entry points. The search table compares
:class:`hashguard.retrieval.index.HammingIndex` (``exact``) with FAISS ``IndexBinaryFlat``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from hashguard.retrieval import average_precisions, evaluate_retrieval, tie_aware_mean_average_precision
from hashguard.retrieval.index import HammingIndex


def make_data(n: int, bits: int, n_classes: int, rng: np.random.Generator, flip: float = 0.2):
    centres = np.where(rng.random((n_classes, bits)) < 0.5, -1, 1).astype(np.int8)
    cls = rng.integers(0, n_classes, n)
    flips = rng.random((n, bits)) < flip
    codes = np.where(flips, -centres[cls], centres[cls]).astype(np.int8)
    labels = np.zeros((n, n_classes), np.float32)
    labels[np.arange(n), cls] = 1
    extra = rng.random(n) < 0.2
    labels[np.nonzero(extra)[0], rng.integers(0, n_classes, int(extra.sum()))] = 1
    return codes, labels


def loop_map(qB, rB, qL, rL, topk):
    """Per-query loop as research code writes it (with a *stable* argsort so the tie rule matches)."""
    bits = qB.shape[1]
    rBf = rB.astype(np.float32)
    rLf = rL.astype(np.float32)
    aps = np.zeros(qB.shape[0])
    for i in range(qB.shape[0]):
        gnd = (qL[i].astype(np.float32) @ rLf.T > 0).astype(np.float32)
        hamm = 0.5 * (bits - qB[i].astype(np.float32) @ rBf.T)
        ind = np.argsort(hamm, kind="stable")
        gnd = gnd[ind][:topk]
        tsum = int(gnd.sum())
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(gnd == 1)) + 1.0
        aps[i] = np.mean(count / tindex)
    return aps


def timed(fn, repeat: int = 1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--full-loop", action="store_true", help="run the per-query loop on every query")
    ap.add_argument(
        "--loop-queries", type=int, default=500, help="queries the loop runs when not --full-loop"
    )
    ap.add_argument("--topk", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    if args.quick:
        configs = [(500, 5000, 32, 10), (500, 5000, 64, 10), (210, 19373, 64, 21)]
        search_cfgs = [(200, 20000, 64)]
    else:
        configs = [(5000, 50000, 32, 10), (5000, 50000, 64, 10), (2100, 193734, 64, 21)]
        search_cfgs = [(1000, 193734, 64), (1000, 1000000, 64)]

    import numba

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"numba threads {numba.get_num_threads()}, numpy {np.__version__}")  # fmt: skip
    # warm-up: compile (or load from cache) every kernel once
    wq, wl = make_data(50, 64, 5, rng)
    evaluate_retrieval(wq, wq, wl, wl, topk=10)
    HammingIndex(64).add(wq)
    ix = HammingIndex(64)
    ix.add(wq)
    ix.search(wq, 5)
    ix.range_search(wq, 3)

    print(f"\nmAP@{args.topk} (seconds; speed-up = loop / ours)")
    header = (
        f"{'Q x N x bits':>22} {'ours':>7} {'loop':>9} {'speedup':>8} {'tie-aware':>9} {'evaluate':>9} "
        f"{'mAP':>8} {'tie-aware mAP':>13} {'max|dAP|':>9}"
    )
    print(header)
    print("-" * len(header))
    for nq, ndb, bits, ncls in configs:
        qB, qL = make_data(nq, bits, ncls, rng)
        rB, rL = make_data(ndb, bits, ncls, rng)
        t_ours, aps = timed(lambda: average_precisions(qB, rB, qL, rL, topk=args.topk), repeat=2)  # noqa: B023
        t_tie, tie_map = timed(lambda: tie_aware_mean_average_precision(qB, rB, qL, rL, topk=args.topk))  # noqa: B023
        t_eval, _ = timed(lambda: evaluate_retrieval(qB, rB, qL, rL, topk=args.topk))  # noqa: B023
        n_loop = nq if args.full_loop else min(nq, args.loop_queries)
        t_loop, loop_aps = timed(lambda: loop_map(qB[:n_loop], rB, qL[:n_loop], rL, args.topk))  # noqa: B023
        t_loop_all = t_loop * nq / n_loop
        diff = float(np.max(np.abs(loop_aps - aps[:n_loop])))
        mark = "" if n_loop == nq else "*"
        name = f"{nq} x {ndb} x {bits}"
        print(f"{name:>22} {t_ours:7.2f} {t_loop_all:8.1f}{mark:1} {t_loop_all / t_ours:7.0f}x {t_tie:9.2f} "
              f"{t_eval:9.2f} {aps.mean():8.4f} {tie_map:13.4f} {diff:9.1e}")  # fmt: skip
    if not args.full_loop:
        print(f"* loop timed on {args.loop_queries} queries and scaled linearly")

    import faiss

    for k in (100, args.topk):
        print(f"\nexact top-{k} search (seconds)")
        header = (
            f"{'Q x N x bits':>22} {'exact':>7} {'IndexBinaryFlat':>16} {'ratio':>6} {'same distances':>15}"
        )
        print(header)
        print("-" * len(header))
        for nq, ndb, bits in search_cfgs:
            qB, _ = make_data(nq, bits, 10, rng)
            rB, _ = make_data(ndb, bits, 10, rng)
            ex = HammingIndex(bits, "exact")
            ex.add(rB)
            flat = faiss.IndexBinaryFlat(bits)
            flat.add(np.packbits(rB > 0, axis=1))
            qp = np.packbits(qB > 0, axis=1)
            t_ex, (d_ex, _) = timed(lambda: ex.search(qB, k), repeat=2)  # noqa: B023
            t_fl, (d_fl, _) = timed(lambda: flat.search(qp, k), repeat=2)  # noqa: B023
            same = bool(np.array_equal(d_ex, d_fl))
            name = f"{nq} x {ndb} x {bits}"
            print(f"{name:>22} {t_ex:7.2f} {t_fl:16.2f} {t_ex / t_fl:6.2f} {str(same):>15}")


if __name__ == "__main__":
    main()
