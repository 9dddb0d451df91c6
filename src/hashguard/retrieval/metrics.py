"""Retrieval metrics for binary codes under an explicit tie rule.

Definitions (also in ``docs/metrics.md``)
-----------------------------------------
Notation: a query q with code c_q and multi-hot label y_q; a database of N items r with codes c_r and labels
y_r; K bits; d(q, r) = Hamming distance = (K - <c_q, c_r>) / 2.

* **Relevance**: rel(q, r) = 1 if <y_q, y_r> > 0 (they share at least one class), else 0. A row with no
  label (all zeros) is relevant to nothing and nothing is relevant to it: a zero-label query has R = T = 0
  and contributes AP = 0 to every mean (it still counts in the denominator,
  as in the reference metric).
* **Tie rule (ranking)**: the database is ranked by ascending (d(q, r), r), i.e. by distance with ties broken
  by ascending database index. This is a stable sort of the distances; it does not depend on library
  versions or CPUs.
* **AP@k**: let pos_1 < ... < pos_R be the 1-based ranks of the relevant items among the top min(k, N).
  AP@k = (1/R) sum_{i=1..R} i / pos_i, and AP@k = 0 when R = 0. ``topk=None`` means k = N (the whole
  ranking, "mAP@all"; then R = T, the number of relevant items in the database).
* **mAP@k** = the mean of AP@k over *all* queries.
* **Tie-aware AP@k**: the exact expectation of AP@k when the items inside each group of equal distance
  are put in uniformly random order (groups still ranked by distance). Computed in closed form from the
  per-distance counts of items and relevant items, including the group cut by the top-k boundary (where the
  number of relevant items kept is hypergeometric). Tie-aware mAP is its mean over all queries.
* **Targeted mAP (t-mAP)**: mAP@k with y_q replaced by the query's *target* label: a database item is
  relevant when it shares a class with the target.
* **P@N** = (number of relevant items among the top min(N, N_db)) / min(N, N_db), averaged over all queries.
* **PR curve**: recall levels rho_i = i/L, i = 1..L (L = 100 by default). For a query with T >= 1 relevant
  items, n_i = ceil(T i / L) (the fewest relevant items that reach recall >= rho_i), computed in exact integer
  arithmetic; the precision at level i is n_i / (rank of the n_i-th relevant item). ``rounding="floor"``
  gives the reference code's n_i = floor(T i / L) (without its float error); a level with n_i = 0 then has precision 1.
  Queries with T = 0 have no defined curve and are left out of the mean (``empty="exclude"``, the default)
  or contribute precision 0 at every level (``empty="zero"``).
* **Precision/recall within Hamming radius r**: retrieved = {items with d <= r}. Precision = relevant
  retrieved / retrieved (0 when nothing is retrieved); recall = relevant retrieved / T (0 when T = 0).
  Both are averaged over all queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hashguard.errors import ConfigError, DataError
from hashguard.retrieval import _kernels
from hashguard.retrieval.codes import as_codes, as_labels, pack_labels

if TYPE_CHECKING:
    from hashguard.distributed.world import World

__all__ = [
    "TIE_RULE",
    "RetrievalEvaluator",
    "average_precisions",
    "mean_average_precision",
    "sharded_average_precisions",
    "sharded_mean_average_precision",
    "tie_aware_mean_average_precision",
    "targeted_mean_average_precision",
    "precision_at_n",
    "precision_recall_curve",
    "precision_recall_within_radius",
    "evaluate_retrieval",
    "DEFAULT_NS",
]

TIE_RULE = "ascending (hamming distance, database index)"
#: the N values of the reference P@N curve (metrics.py): 100, 110, ..., 1000
DEFAULT_NS: tuple[int, ...] = tuple(range(100, 1001, 10))



@dataclass
class _Prepared:
    q: np.ndarray
    db: np.ndarray
    ql: np.ndarray
    dl: np.ndarray
    bits: int
    n_query: int
    n_db: int
    n_query_unlabeled: int


def _pack_checked(codes: np.ndarray) -> np.ndarray:
    """:func:`~hashguard.retrieval.codes.pack_codes` to ``uint64`` words for codes :func:`as_codes` has already
    checked (the same layout, without checking a second time)."""
    packed = np.packbits(codes > 0, axis=1)
    n_bytes = packed.shape[1]
    padded = np.zeros((packed.shape[0], (n_bytes + 7) // 8 * 8), dtype=np.uint8)
    padded[:, :n_bytes] = packed
    return padded.view(np.uint64)


def _prepare(query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any) -> _Prepared:
    qc = as_codes(query_codes, "query_codes")
    dc = as_codes(db_codes, "db_codes")
    if qc.shape[1] != dc.shape[1]:
        raise DataError(
            f"code length mismatch: query codes have {qc.shape[1]} bits, database codes {dc.shape[1]} bits"
        )
    if dc.shape[0] == 0:
        raise DataError("db_codes: the database is empty")
    if qc.shape[0] == 0:
        raise DataError("query_codes: there are no queries")
    ql = as_labels(query_labels, qc.shape[0], "query_labels")
    dl = as_labels(db_labels, dc.shape[0], "db_labels")
    if ql.shape[1] != dl.shape[1]:
        raise DataError(
            f"label width mismatch: query labels have {ql.shape[1]} classes, database labels {dl.shape[1]}"
        )
    return _Prepared(
        q=_pack_checked(qc),
        db=_pack_checked(dc),
        ql=pack_labels(ql),
        dl=pack_labels(dl),
        bits=int(qc.shape[1]),
        n_query=int(qc.shape[0]),
        n_db=int(dc.shape[0]),
        n_query_unlabeled=int((~ql.any(axis=1)).sum()),
    )


def _check_topk(topk: int | None, n_db: int) -> int:
    if topk is None:
        return n_db
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise ConfigError(f"topk must be a positive integer or None, not {topk!r}")
    return int(min(topk, n_db))


def _check_ns(ns: Sequence[int]) -> np.ndarray:
    arr = np.asarray(list(ns), dtype=np.int64)
    if arr.ndim != 1 or (arr.size and arr.min() < 1):
        raise ConfigError(f"ns must be a list of positive integers, not {ns!r}")
    return arr


def _check_levels(n_levels: int, name: str = "n_levels") -> int:
    if isinstance(n_levels, bool) or not isinstance(n_levels, (int, np.integer)) or n_levels < 1:
        raise ConfigError(f"{name} must be a positive integer, not {n_levels!r}")
    return int(n_levels)


def _check_rounding(rounding: str, empty: str) -> None:
    if rounding not in ("ceil", "floor"):
        raise ConfigError(f"rounding must be 'ceil' or 'floor', not {rounding!r}")
    if empty not in ("exclude", "zero"):
        raise ConfigError(f"empty must be 'exclude' or 'zero', not {empty!r}")


def _check_radius(radius: int) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ConfigError(f"radius must be a non-negative integer, not {radius!r}")
    return int(radius)


class RetrievalEvaluator:
    """Every retrieval metric of one (queries, database) pair, the ranking work done once and kept.

    ``RetrievalEvaluator(query_codes, db_codes, query_labels, db_labels)`` checks and packs the inputs; the
    first metric asked for runs one pass over the database per query (numba, parallel over queries) and
    keeps what later calls need, so mAP@5000, then mAP@1000, then P@N, then the radius metrics cost one pass:

    * ``cnt`` / ``rcnt``: per query, the number of database items and of relevant items at each Hamming
      distance 0..K (``int64``, Q x (K+1) each). They alone answer the tie-aware mAP@k for any k and the
      precision/recall within any radius.
    * the relevance bits of the top ``P`` ranks of each query under the tie rule (``uint64``, Q x ceil(P/64)),
      P = the largest k or N asked for so far: exact AP@k for k <= P and P@N for N <= P.
    * AP over the whole ranking (Q ``float64``) and the precision at recall levels for each (levels, rounding)
      asked for (Q x levels ``float64``), once one of them is asked for.

    A request beyond what is kept (a larger k or N, another set of recall levels) runs one more pass. At the
    NUS-WIDE size (2,100 queries, 64 bits, P = 5,000, 100 levels) all of it is about 5 MB, 9.9 MB with the packed
    inputs and the harmonic numbers of the tie-aware AP (:attr:`nbytes`).
    Every answer equals the matching module function (which builds a throw-away evaluator). Definitions and
    the tie rule :data:`TIE_RULE`: module docstring. The tie-aware AP is the expected AP under random order
    within ties (McSherry and Najork, ECIR 2008, "Computing information retrieval performance measures
    efficiently in the presence of tied scores"), in closed form.
    """

    def __init__(self, query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any) -> None:
        self._setup(_prepare(query_codes, db_codes, query_labels, db_labels))

    @classmethod
    def _from_prepared(cls, p: _Prepared, keep_histograms: bool = True) -> RetrievalEvaluator:
        obj = cls.__new__(cls)
        obj._setup(p)
        obj._keep_histograms = keep_histograms
        return obj

    @classmethod
    def _one_shot(cls, query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any) -> RetrievalEvaluator:
        """An evaluator for a single answer (the module functions): computes only what that answer needs."""
        return cls._from_prepared(_prepare(query_codes, db_codes, query_labels, db_labels), keep_histograms=False)

    def _setup(self, p: _Prepared) -> None:
        self._p = p
        self._cnt: np.ndarray | None = None
        self._rcnt: np.ndarray | None = None
        self._bits = np.zeros((p.n_query, 0), np.uint64)
        self._prefix = 0
        self._ap_all: np.ndarray | None = None
        self._pr: dict[tuple[int, str], np.ndarray] = {}
        self._H: np.ndarray | None = None
        # an evaluator built by a module function for one answer skips the histograms when that answer
        # does not need them (a top-k ranking is faster without)
        self._keep_histograms = True
        self.passes = 0  #: how many passes over the database this evaluator has run

    # -- what is known ----------------------------------------------------------------------------------------

    @property
    def n_queries(self) -> int:
        return self._p.n_query

    @property
    def n_database(self) -> int:
        return self._p.n_db

    @property
    def bits(self) -> int:
        return self._p.bits

    @property
    def nbytes(self) -> int:
        """Bytes held: packed codes and labels plus the kept histograms, relevance bits, APs and PR curves."""
        p = self._p
        arrays = [p.q, p.db, p.ql, p.dl, self._bits, *self._pr.values()]
        arrays += [a for a in (self._cnt, self._rcnt, self._ap_all, self._H) if a is not None]
        return int(sum(a.nbytes for a in arrays))

    def _ensure(
        self, prefix: int = 0, ap_all: bool = False, pr: tuple[int, str] | None = None, hist: bool = False
    ) -> None:
        """Run one pass if something asked for is not kept yet; keep everything it gives."""
        p = self._p
        prefix = min(int(prefix), p.n_db)
        want_pr = pr is not None and pr not in self._pr
        full = (ap_all and self._ap_all is None) or want_pr
        want_hist = (hist or self._keep_histograms) and self._cnt is None
        grow = prefix > self._prefix
        if not (full or want_hist or grow):
            return
        levels, rounding = pr if (pr is not None and want_pr) else (0, "ceil")
        cnt, rcnt, bits, ap_all_arr, pr_arr = _kernels.rank_pass(
            p.q, p.db, p.ql, p.dl, p.bits, prefix if grow else 0, full, levels, rounding == "floor", want_hist
        )
        self.passes += 1
        if full or want_hist:
            self._cnt, self._rcnt = cnt, rcnt
        if grow:
            self._bits, self._prefix = bits, prefix
        if full:
            self._ap_all = ap_all_arr
        if want_pr:
            self._pr[(levels, rounding)] = pr_arr

    def _harmonic(self) -> np.ndarray:
        if self._H is None:
            self._H = _kernels.harmonic_table(self._p.n_db)
        return self._H

    def _relevant_counts(self) -> np.ndarray:
        self._ensure(hist=True)
        assert self._rcnt is not None
        return self._rcnt.sum(axis=1)

    # -- metrics ----------------------------------------------------------------------------------------------

    def average_precisions(self, topk: int | None = None, tie_aware: bool = False) -> np.ndarray:
        """Per-query AP@k (as :func:`average_precisions`); ``topk=None`` = whole ranking."""
        k = _check_topk(topk, self._p.n_db)
        if tie_aware:
            self._ensure(hist=True)
            assert self._cnt is not None and self._rcnt is not None
            return _kernels.tie_aware_aps(self._cnt, self._rcnt, self._harmonic(), k)
        if k >= self._p.n_db:  # the whole ranking: the same terms in the same order as AP@k with k = N
            self._ensure(ap_all=True)
            assert self._ap_all is not None
            return self._ap_all.copy()
        self._ensure(prefix=k)
        return _kernels.ap_from_bits(self._bits, k)

    def mean_average_precision(self, topk: int | None = None, tie_aware: bool = False) -> float:
        """mAP@k (as :func:`mean_average_precision`), or the tie-aware mAP@k with ``tie_aware=True``."""
        return float(self.average_precisions(topk, tie_aware).mean())

    def _mean_precision_at(self, arr: np.ndarray) -> np.ndarray:
        eff = np.minimum(arr, self._p.n_db)
        self._ensure(prefix=int(eff.max()) if eff.size else 0)
        hits = _kernels.hits_from_bits(self._bits, eff)
        return (hits / np.maximum(eff, 1)).sum(axis=0) / self._p.n_query

    def precision_at_n(self, ns: Sequence[int] = DEFAULT_NS) -> dict[int, float]:
        """``{N: P@N}`` (as :func:`precision_at_n`)."""
        arr = _check_ns(ns)
        return {int(n): float(v) for n, v in zip(arr, self._mean_precision_at(arr), strict=True)}

    def precision_recall_curve(
        self, n_levels: int = 100, rounding: str = "ceil", empty: str = "exclude"
    ) -> dict[str, Any]:
        """Precision at recall levels i/L (as :func:`precision_recall_curve`)."""
        n_levels = _check_levels(n_levels)
        _check_rounding(rounding, empty)
        self._ensure(pr=(n_levels, rounding))
        pr = self._pr[(n_levels, rounding)]
        has = self._relevant_counts() > 0
        if empty == "exclude":
            pr_sum = pr[has].sum(axis=0)
            pr_n = int(has.sum())
        else:
            pr_sum = np.where(has[:, None], pr, 0.0).sum(axis=0)
            pr_n = pr.shape[0]
        prec = pr_sum / pr_n if pr_n else np.zeros(n_levels)
        return {
            "recall": [(i + 1) / n_levels for i in range(n_levels)],
            "precision": [float(v) for v in prec],
            "n_queries": pr_n,
            "n_queries_without_relevant": int((~has).sum()),
            "rounding": rounding,
            "empty": empty,
        }

    def precision_recall_within_radius(self, radius: int = 2) -> dict[str, float]:
        """Precision and recall of the Hamming ball of ``radius`` (as :func:`precision_recall_within_radius`)."""
        radius = _check_radius(radius)
        self._ensure(hist=True)
        assert self._cnt is not None and self._rcnt is not None
        r = min(radius, self._p.bits)
        ccnt = np.cumsum(self._cnt[:, : r + 1], axis=1)
        crel = np.cumsum(self._rcnt[:, : r + 1], axis=1)
        T = self._rcnt.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = np.where(ccnt > 0, crel / np.maximum(ccnt, 1), 0.0).sum(axis=0)
            rec = np.where((T > 0)[:, None], crel / np.maximum(T, 1)[:, None], 0.0).sum(axis=0)
        nq = self._p.n_query
        return {
            "radius": radius,
            "precision": float(prec[r] / nq),
            "recall": float(rec[r] / nq),
            "mean_retrieved": float(ccnt[:, r].sum(axis=0) / nq),
        }

    def evaluate(
        self,
        topk: int | None = 5000,
        ns: Sequence[int] = DEFAULT_NS,
        pr_levels: int = 100,
        radius: int = 2,
        rounding: str = "ceil",
        empty: str = "exclude",
        include_per_query: bool = False,
    ) -> dict[str, Any]:
        """Every metric in one pass (as :func:`evaluate_retrieval`, same keys)."""
        p = self._p
        k = _check_topk(topk, p.n_db)
        arr = _check_ns(ns)
        pr_levels = _check_levels(pr_levels, "pr_levels")
        radius = _check_radius(radius)
        _check_rounding(rounding, empty)
        eff_n = int(np.minimum(arr, p.n_db).max()) if arr.size else 0
        self._ensure(prefix=max(k if k < p.n_db else 0, eff_n), ap_all=True, pr=(pr_levels, rounding), hist=True)
        ap_k = self.average_precisions(topk)
        tie_k = self.average_precisions(topk, tie_aware=True)
        tie_all = tie_k if k >= p.n_db else self.average_precisions(None, tie_aware=True)
        pr = self.precision_recall_curve(pr_levels, rounding, empty)
        out: dict[str, Any] = {
            "map": float(ap_k.mean()),
            "map_tie_aware": float(tie_k.mean()),
            "map_all": float(self.average_precisions(None).mean()),
            "map_all_tie_aware": float(tie_all.mean()),
            "topk": None if topk is None else int(topk),
            "precision_at_n": {
                "n": [int(n) for n in arr],
                "precision": [float(v) for v in self._mean_precision_at(arr)],
            },
            "pr_curve": pr,
            "radius": self.precision_recall_within_radius(radius),
            "n_queries": p.n_query,
            "n_database": p.n_db,
            "bits": p.bits,
            "n_queries_without_label": p.n_query_unlabeled,
            "n_queries_without_relevant": pr["n_queries_without_relevant"],
            "tie_rule": TIE_RULE,
        }
        if include_per_query:
            out["ap"] = [float(v) for v in ap_k]
            out["ap_tie_aware"] = [float(v) for v in tie_k]
        return out

# ------------------------------------------------------------------------------------------------------------
# public metrics
# ------------------------------------------------------------------------------------------------------------


def average_precisions(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None = None,
    tie_aware: bool = False,
) -> np.ndarray:
    """Per-query AP@k (``float64`` array of length Q) under the tie rule :data:`TIE_RULE`.

    AP@k = (1/R) sum_{i=1..R} i/pos_i over the R relevant items in the top min(k, N) (AP = 0 when R = 0);
    ``topk=None`` = whole ranking. With ``tie_aware=True`` each entry is instead the exact expected AP@k
    when the order inside every group of equal Hamming distance is uniformly random.
    """
    ev = RetrievalEvaluator._one_shot(query_codes, db_codes, query_labels, db_labels)
    return ev.average_precisions(topk, tie_aware)


def mean_average_precision(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, topk: int | None = None
) -> float:
    """mAP@k: the mean over **all** queries of AP@k, ranking by ascending (Hamming distance, database index).

    Args:
        query_codes: Q x K +-1 codes (NumPy array or torch tensor, any int/float dtype).
        db_codes: N x K +-1 codes.
        query_labels: Q x C multi-hot labels (entry > 0 = class present), or 1-D integer class ids.
        db_labels: N x C multi-hot labels.
        topk: k; ``None`` means the whole ranking (k = N).

    Definition: relevance rel(q, r) = 1[<y_q, y_r> > 0]; with pos_1 < ... < pos_R the 1-based ranks of the
    relevant items among the top min(k, N), AP@k = (1/R) sum_i i/pos_i, and AP@k = 0 when R = 0 (every
    query, including zero-label queries, counts in the mean). Zero-label rows are never relevant.

    Raises:
        DataError: non-+-1 codes, code-length or label-width mismatch, row-count mismatch, empty inputs.
    """
    return float(average_precisions(query_codes, db_codes, query_labels, db_labels, topk).mean())


def sharded_average_precisions(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None = None,
    tie_aware: bool = False,
    world: World | None = None,
) -> np.ndarray:
    """:func:`average_precisions` with the queries shared out over the ranks of a multi-process run.

    Every rank checks the whole input, computes the APs of its contiguous query shard
    (:func:`~hashguard.distributed.sharding.shard_bounds`) against the whole database, and the APs are gathered
    in query order, so every rank returns the same array as a one-process :func:`average_precisions` (each AP
    depends on its own query only). ``world`` (a :class:`~hashguard.distributed.world.World`, default the
    current one) makes it a collective call: every rank must make it with the same inputs. One process:
    :func:`average_precisions`.
    """
    from hashguard.distributed.collectives import gather_array
    from hashguard.distributed.sharding import shard_bounds
    from hashguard.distributed.world import current_world

    world = world or current_world()
    p = _prepare(query_codes, db_codes, query_labels, db_labels)
    k = _check_topk(topk, p.n_db)
    start, stop = shard_bounds(p.n_query, world.size, world.rank)
    shard = _Prepared(
        q=p.q[start:stop],
        db=p.db,
        ql=p.ql[start:stop],
        dl=p.dl,
        bits=p.bits,
        n_query=stop - start,
        n_db=p.n_db,
        n_query_unlabeled=0,  # not used by the AP
    )
    ev = RetrievalEvaluator._from_prepared(shard, keep_histograms=False)
    ap = np.ascontiguousarray(ev.average_precisions(k, tie_aware))
    return gather_array(ap, world)


def sharded_mean_average_precision(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None = None,
    tie_aware: bool = False,
    world: World | None = None,
) -> float:
    """mAP@k (:func:`mean_average_precision`, or the tie-aware one) with the queries shared out over the ranks of
    a multi-process run: the mean of :func:`sharded_average_precisions`, taken on the gathered per-query APs, so
    it equals the one-process value. A collective call (see :func:`sharded_average_precisions`); pass target
    labels as ``query_labels`` for the targeted t-mAP."""
    return float(
        sharded_average_precisions(query_codes, db_codes, query_labels, db_labels, topk, tie_aware, world).mean()
    )


def tie_aware_mean_average_precision(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, topk: int | None = None
) -> float:
    """Tie-aware mAP@k: the mean over all queries of the exact expected AP@k when the items inside each
    group of equal Hamming distance are ordered uniformly at random (groups stay ordered by distance).

    Computed in closed form (no sampling). For a group at ranks a+1..a+n with m relevant items, preceded by
    b relevant items, E[sum r/pos] = (m/n)[(b+1)S + (m-1)/(n-1)(n - (a+1)S)] with S = H_{a+n} - H_a
    (harmonic numbers). For the group cut by the top-k boundary (s of its n slots kept), the number X of
    relevant items kept is hypergeometric(n, m, s), and E[AP@k] = sum_x P(X=x) (E[F] + E[G|X=x]) / (b + x)
    where F is the contribution of the groups before it and G that of the kept part. AP = 0 when no
    relevant item is retrieved. Arguments as :func:`mean_average_precision`.
    """
    return float(
        average_precisions(query_codes, db_codes, query_labels, db_labels, topk, tie_aware=True).mean()
    )


def targeted_mean_average_precision(
    query_codes: Any,
    db_codes: Any,
    target_labels: Any,
    db_labels: Any,
    topk: int | None = None,
    tie_aware: bool = False,
) -> float:
    """Targeted mAP (t-mAP): :func:`mean_average_precision` with relevance judged against the **target**
    labels, rel(q, r) = 1[<t_q, y_r> > 0]. Higher means a more successful targeted attack.

    ``target_labels`` is Q x C (one target label row per query). ``tie_aware=True`` gives the tie-aware
    variant.
    """
    return float(
        average_precisions(query_codes, db_codes, target_labels, db_labels, topk, tie_aware=tie_aware).mean()
    )


def precision_at_n(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    ns: Sequence[int] = DEFAULT_NS,
) -> dict[int, float]:
    """P@N for each N in ``ns``: (relevant items among the top min(N, N_db)) / min(N, N_db), averaged over
    all queries, ranking by ascending (Hamming distance, database index). Returns ``{N: P@N}``."""
    return RetrievalEvaluator._one_shot(query_codes, db_codes, query_labels, db_labels).precision_at_n(ns)


def precision_recall_curve(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    n_levels: int = 100,
    rounding: str = "ceil",
    empty: str = "exclude",
) -> dict[str, Any]:
    """Precision at recall levels i/L, i = 1..L (docs/metrics.md; the reference code's empty-level error fixed).

    For a query with T >= 1 relevant items in the whole database, n_i = ceil(T i / L) (``rounding="ceil"``,
    the fewest relevant items reaching recall >= i/L) or floor(T i / L) (``"floor"``, the reference code's choice),
    computed in integer arithmetic; precision_i = n_i / rank of the n_i-th relevant item in the stable
    (distance, index) ranking; precision_i = 1 when n_i = 0 (floor only). Not interpolated. Queries with
    T = 0 are excluded from the mean (``empty="exclude"``) or count as precision 0 (``empty="zero"``).

    Returns ``{"recall": [...], "precision": [...], "n_queries": used, "n_queries_without_relevant": ...,
    "rounding": ..., "empty": ...}`` (JSON-serialisable). Precision is NaN-free: with no usable query it is 0.
    """
    ev = RetrievalEvaluator._one_shot(query_codes, db_codes, query_labels, db_labels)
    return ev.precision_recall_curve(n_levels, rounding, empty)


def precision_recall_within_radius(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, radius: int = 2
) -> dict[str, float]:
    """Precision and recall of the Hamming ball {r : d(q, r) <= radius}, averaged over all queries.

    precision_q = relevant retrieved / retrieved (0 when the ball is empty); recall_q = relevant retrieved /
    T_q (0 when the query has no relevant item). Returns ``{"radius", "precision", "recall",
    "mean_retrieved"}``.
    """
    ev = RetrievalEvaluator._one_shot(query_codes, db_codes, query_labels, db_labels)
    return ev.precision_recall_within_radius(radius)


def evaluate_retrieval(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None = 5000,
    ns: Sequence[int] = DEFAULT_NS,
    pr_levels: int = 100,
    radius: int = 2,
    rounding: str = "ceil",
    empty: str = "exclude",
    include_per_query: bool = False,
) -> dict[str, Any]:
    """All metrics in one pass over the data; returns a JSON-serialisable dict.

    Keys: ``map`` (mAP@topk, tie rule :data:`TIE_RULE`), ``map_tie_aware`` (expected mAP@topk under random
    order within ties), ``map_all`` / ``map_all_tie_aware`` (whole ranking), ``topk`` (the k used, ``null``
    for the whole ranking), ``precision_at_n`` ``{"n": [...], "precision": [...]}``, ``pr_curve`` (as
    :func:`precision_recall_curve`), ``radius`` (as :func:`precision_recall_within_radius`), ``n_queries``,
    ``n_database``, ``bits``, ``n_queries_without_label``, ``n_queries_without_relevant``, ``tie_rule``; with
    ``include_per_query=True`` also ``ap`` and ``ap_tie_aware`` (per-query lists).
    For targeted evaluation pass the target labels as ``query_labels``. Definitions: module docstring.
    """
    ev = RetrievalEvaluator(query_codes, db_codes, query_labels, db_labels)
    return ev.evaluate(topk, ns, pr_levels, radius, rounding, empty, include_per_query)
