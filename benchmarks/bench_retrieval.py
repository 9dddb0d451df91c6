"""Retrieval engine benchmark: mAP@k and exact top-k search against a per-query loop and FAISS.

Usage::

    python benchmarks/bench_retrieval.py            # full sizes (a few minutes on 2 cores)
    python benchmarks/bench_retrieval.py --quick    # small sizes, seconds
    python benchmarks/bench_retrieval.py --full-loop  # time the per-query loop on every query (slow)

Data: seeded synthetic clustered codes (class centres + independent bit flips), single-label with a second
label on 20% of the items, so that relevance and ties look like real hashing output.

Metrics table (:func:`rows`, printed as Markdown with the load average): mAP@5000, mAP@all, every metric of
``evaluate_retrieval`` in one pass and repeated calls on a :class:`hashguard.retrieval.RetrievalEvaluator`,
each beside the research-code formulation (per query: float distances from a dot product, a stable
``argsort``, cumulative sums; timed on ``--loop-queries`` queries, default 5%, and scaled linearly unless
``--full-loop``) and beside the raw limit (XOR + popcount of every pair and nothing else). All timings of
the table come from one run, minimum over 5 rounds in which the candidates alternate; the per-query APs
of hashguard and of the loop are compared on the loop's queries. The search table compares
:class:`hashguard.retrieval.index.HammingIndex` (``exact``) with FAISS ``IndexBinaryFlat``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from hashguard.retrieval import _kernels, evaluate_retrieval
from hashguard.retrieval.index import HammingIndex

HAVE_NUMBA = _kernels.HAVE_NUMBA
if HAVE_NUMBA:
    import numba

    _popcnt = _kernels._popcnt


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


def loop_all_metrics(qB, rB, qL, rL, topk, ns, levels):
    """Every metric of ``evaluate_retrieval`` but the tie-aware ones, per query from one stable ``argsort``."""
    bits = qB.shape[1]
    rBf = rB.astype(np.float32)
    rLf = rL.astype(np.float32)
    n_db = rB.shape[0]
    out = []
    for i in range(qB.shape[0]):
        gnd = qL[i].astype(np.float32) @ rLf.T > 0
        hamm = 0.5 * (bits - qB[i].astype(np.float32) @ rBf.T)
        ind = np.argsort(hamm, kind="stable")
        g = gnd[ind]
        pos = np.nonzero(g)[0] + 1.0
        cum = np.arange(1, pos.shape[0] + 1)
        ap_all = float(np.mean(cum / pos)) if pos.size else 0.0
        in_k = pos <= topk
        ap_k = float(np.mean(cum[in_k] / pos[in_k])) if in_k.any() else 0.0
        c = np.cumsum(g)
        p_at_n = [c[min(n, n_db) - 1] / min(n, n_db) for n in ns]
        t = pos.shape[0]
        need = (t * np.arange(1, levels + 1) + levels - 1) // levels
        pr = need / pos[need - 1] if t else None
        out.append((ap_k, ap_all, p_at_n, pr))
    return out


if HAVE_NUMBA:

    @numba.njit(parallel=True, cache=True)
    def _raw_limit(q, db, out):
        """The floor under any exact metric: XOR + popcount of every (query, item) pair, nothing else."""
        for qi in numba.prange(q.shape[0]):
            s = 0
            for i in range(db.shape[0]):
                for w in range(db.shape[1]):
                    s += _popcnt(q[qi, w] ^ db[i, w])
            out[qi] = s


def raw_limit(qp: np.ndarray, dbp: np.ndarray) -> np.ndarray:
    """Sum of the Hamming distances of each query to every database code (packed ``uint64`` codes)."""
    out = np.zeros(qp.shape[0], np.int64)
    if HAVE_NUMBA:
        _raw_limit(qp, dbp, out)
    else:  # NumPy: a much higher floor
        for i in range(qp.shape[0]):
            out[i] = _kernels._np_dist(qp[i : i + 1], dbp).sum()
    return out


def best_of(fns: dict, repeat: int) -> tuple[dict, dict]:
    """min over ``repeat`` rounds of each timing, the functions run alternately within each round."""
    best = dict.fromkeys(fns, float("inf"))
    last = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            last[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best, last


def rows(quick: bool, loop_queries: int | None = None, repeat: int = 5, seed: int = 0) -> list[dict]:
    """The metric rows of the benchmark: each hashguard timing beside a reference timed in the same run.

    Size: 2,100 queries x 193,734 database codes x 64 bits, 21 classes (NUS-WIDE), or a tenth of both with
    ``quick``. References: the stable per-query ``argsort`` loop (timed on ``loop_queries`` queries, default
    5% of them, and scaled linearly: ``reference_name`` says so) and the raw limit (XOR + popcount of every
    pair, numba, parallel). Every timing is the minimum over ``repeat`` rounds in which the candidates run
    alternately. Returns a list of ``{"work", "hashguard_s", "reference_name", "reference_s", "ratio"}`` with
    ratio = reference_s / hashguard_s (above 1: hashguard is faster).
    """
    from hashguard.retrieval import (
        RetrievalEvaluator,
        evaluate_retrieval,
        mean_average_precision,
        precision_at_n,
        precision_recall_within_radius,
        tie_aware_mean_average_precision,
    )
    from hashguard.retrieval.codes import pack_codes

    rng = np.random.default_rng(seed)
    nq, ndb, bits, ncls = (210, 19373, 64, 21) if quick else (2100, 193734, 64, 21)
    qB, qL = make_data(nq, bits, ncls, rng)
    rB, rL = make_data(ndb, bits, ncls, rng)
    n_loop = min(nq, loop_queries or max(1, nq // 20))
    scale = nq / n_loop
    qp, dbp = pack_codes(qB), pack_codes(rB)
    k = 5000
    ns = list(range(100, 1001, 10))

    # warm-up: compile or load every kernel once
    evaluate_retrieval(qB[:4], rB[:50], qL[:4], rL[:50], topk=10)
    raw_limit(qp[:2], dbp)
    warm = RetrievalEvaluator(qB[:4], rB[:50], qL[:4], rL[:50])
    warm.evaluate(topk=10)

    kept = RetrievalEvaluator(qB, rB, qL, rL)
    kept.evaluate(topk=k)  # the one pass; the timed calls below reuse it

    def again():
        return (
            kept.mean_average_precision(k),
            kept.mean_average_precision(1000),
            kept.mean_average_precision(k, tie_aware=True),
            kept.precision_at_n(ns),
            kept.precision_recall_within_radius(2),
        )

    def separate():
        return (
            mean_average_precision(qB, rB, qL, rL, k),
            mean_average_precision(qB, rB, qL, rL, 1000),
            tie_aware_mean_average_precision(qB, rB, qL, rL, k),
            precision_at_n(qB, rB, qL, rL, ns),
            precision_recall_within_radius(qB, rB, qL, rL, 2),
        )

    sub = (qB[:n_loop], rB, qL[:n_loop], rL)
    fns = {
        "raw": lambda: raw_limit(qp, dbp),
        "map_k": lambda: mean_average_precision(qB, rB, qL, rL, topk=k),
        "map_all": lambda: mean_average_precision(qB, rB, qL, rL, topk=None),
        "evaluate": lambda: evaluate_retrieval(qB, rB, qL, rL, topk=k),
        "again": again,
        "separate": separate,
        "loop_k": lambda: loop_map(*sub, k),
        "loop_all": lambda: loop_map(*sub, None),
        "loop_every": lambda: loop_all_metrics(*sub, k, ns, 100),
    }
    t, res = best_of(fns, repeat)
    for name in ("loop_k", "loop_all", "loop_every"):
        t[name] *= scale
    # the references compute the same numbers: check on the loop's queries
    aps_k = RetrievalEvaluator(*sub).average_precisions(k)
    assert np.allclose(aps_k, res["loop_k"], atol=1e-6, rtol=0), "mAP@k differs from the loop"
    assert np.isclose(res["evaluate"]["map"], res["map_k"], atol=1e-12)

    loop_name = f"stable argsort loop ({n_loop} of {nq} queries, x{scale:g})"
    raw_name = "raw limit (xor+popcount, all pairs)"
    out = []

    def add(work, mine, refs):
        for ref_name, ref_key in refs:
            out.append({
                "work": work,
                "hashguard_s": t[mine],
                "reference_name": ref_name,
                "reference_s": t[ref_key],
                "ratio": t[ref_key] / t[mine],
            })  # fmt: skip

    size = f"{nq} x {ndb} x {bits}"
    add(f"mAP@{k}, {size}", "map_k", [(loop_name, "loop_k"), (raw_name, "raw")])
    add(f"mAP@all, {size}", "map_all", [(loop_name, "loop_all"), (raw_name, "raw")])
    every = f"evaluate_retrieval (every metric, one pass), {size}"
    add(every, "evaluate", [(loop_name, "loop_every"), (raw_name, "raw")])
    add(
        "RetrievalEvaluator, repeated calls after its pass: mAP@5000, mAP@1000, tie-aware mAP@5000, P@N, radius",
        "again",
        [("the same five module functions, one pass each", "separate"), (raw_name, "raw")],
    )
    return out


def markdown(table: list[dict]) -> str:
    lines = [
        "| work | hashguard (s) | reference | reference (s) | reference / hashguard |",
        "|---|---:|---|---:|---:|",
    ]
    for r in table:
        lines.append(
            f"| {r['work']} | {r['hashguard_s']:.3f} | {r['reference_name']} | {r['reference_s']:.3f} | "
            f"{r['ratio']:.2f} |"
        )
    return "\n".join(lines)


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
        "--loop-queries", type=int, default=None, help="queries the loop runs when not --full-loop (default 5%%)"
    )
    ap.add_argument("--topk", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    if args.quick:
        search_cfgs = [(200, 20000, 64)]
    else:
        search_cfgs = [(1000, 193734, 64), (1000, 1000000, 64)]

    threads = numba.get_num_threads() if HAVE_NUMBA else "none (numba missing)"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"numba threads {threads}, numpy {np.__version__}")  # fmt: skip
    # warm-up: compile (or load from cache) every kernel once
    wq, wl = make_data(50, 64, 5, rng)
    evaluate_retrieval(wq, wq, wl, wl, topk=10)
    HammingIndex(64).add(wq)
    ix = HammingIndex(64)
    ix.add(wq)
    ix.search(wq, 5)
    ix.range_search(wq, 3)

    load = os.getloadavg()
    table = rows(args.quick, loop_queries=10**9 if args.full_loop else args.loop_queries, seed=args.seed)
    load_after = os.getloadavg()
    print(f"\nmetrics (min of 5 alternating rounds; 1-minute load average before {load[0]:.2f}, "
          f"after {load_after[0]:.2f})\n")  # fmt: skip
    print(markdown(table))

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
