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
from hashguard.retrieval.codes import as_codes, as_labels, pack_codes, pack_labels

if TYPE_CHECKING:
    from hashguard.distributed.world import World

__all__ = [
    "TIE_RULE",
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

_QUERY_CHUNK = 4096


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
        q=pack_codes(qc, "uint64"),
        db=pack_codes(dc, "uint64"),
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


@dataclass
class _Raw:
    ap: np.ndarray  # Q x 4: AP@k, AP@all, tie AP@k, tie AP@all
    pn_sum: np.ndarray
    pr_sum: np.ndarray
    pr_n: int
    n_empty: int
    rad_p_sum: np.ndarray  # bits+1: precision within radius r, summed over queries
    rad_r_sum: np.ndarray
    rad_retrieved_sum: np.ndarray


def _run(
    p: _Prepared, k: int, ns: np.ndarray, n_levels: int = 0, rounding: str = "ceil", empty: str = "exclude"
) -> _Raw:
    if rounding not in ("ceil", "floor"):
        raise ConfigError(f"rounding must be 'ceil' or 'floor', not {rounding!r}")
    if empty not in ("exclude", "zero"):
        raise ConfigError(f"empty must be 'exclude' or 'zero', not {empty!r}")
    ap = np.zeros((p.n_query, 4), np.float64)
    pn_sum = np.zeros(ns.shape[0], np.float64)
    pr_sum = np.zeros(n_levels, np.float64)
    pr_n = 0
    n_empty = 0
    rad_p = np.zeros(p.bits + 1, np.float64)
    rad_r = np.zeros(p.bits + 1, np.float64)
    rad_ret = np.zeros(p.bits + 1, np.float64)
    for s in range(0, p.n_query, _QUERY_CHUNK):
        sl = slice(s, s + _QUERY_CHUNK)
        a, pn, pr, cnt, rcnt = _kernels.eval_queries(
            p.q[sl], p.db, p.ql[sl], p.dl, p.bits, k, ns, n_levels, rounding == "floor"
        )
        ap[sl] = a
        pn_sum += pn.sum(axis=0)
        T = rcnt.sum(axis=1)
        has = T > 0
        n_empty += int((~has).sum())
        if n_levels:
            if empty == "exclude":
                pr_sum += pr[has].sum(axis=0)
                pr_n += int(has.sum())
            else:
                pr_sum += np.where(has[:, None], pr, 0.0).sum(axis=0)
                pr_n += pr.shape[0]
        ccnt = np.cumsum(cnt, axis=1)
        crel = np.cumsum(rcnt, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rad_p += np.where(ccnt > 0, crel / np.maximum(ccnt, 1), 0.0).sum(axis=0)
            rad_r += np.where(has[:, None], crel / np.maximum(T, 1)[:, None], 0.0).sum(axis=0)
        rad_ret += ccnt.sum(axis=0)
    return _Raw(ap, pn_sum, pr_sum, pr_n, n_empty, rad_p, rad_r, rad_ret)


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
    p = _prepare(query_codes, db_codes, query_labels, db_labels)
    k = _check_topk(topk, p.n_db)
    raw = _run(p, k, np.zeros(0, np.int64))
    return raw.ap[:, 2 if tie_aware else 0].copy()


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
    ap = np.ascontiguousarray(_run(shard, k, np.zeros(0, np.int64)).ap[:, 2 if tie_aware else 0])
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
    p = _prepare(query_codes, db_codes, query_labels, db_labels)
    arr = _check_ns(ns)
    raw = _run(p, p.n_db, arr)
    return {int(n): float(v / p.n_query) for n, v in zip(arr, raw.pn_sum, strict=True)}


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
    p = _prepare(query_codes, db_codes, query_labels, db_labels)
    if isinstance(n_levels, bool) or not isinstance(n_levels, (int, np.integer)) or n_levels < 1:
        raise ConfigError(f"n_levels must be a positive integer, not {n_levels!r}")
    raw = _run(p, p.n_db, np.zeros(0, np.int64), int(n_levels), rounding, empty)
    return _pr_dict(raw, int(n_levels), rounding, empty)


def _pr_dict(raw: _Raw, n_levels: int, rounding: str, empty: str) -> dict[str, Any]:
    prec = raw.pr_sum / raw.pr_n if raw.pr_n else np.zeros(n_levels)
    return {
        "recall": [(i + 1) / n_levels for i in range(n_levels)],
        "precision": [float(v) for v in prec],
        "n_queries": int(raw.pr_n),
        "n_queries_without_relevant": int(raw.n_empty),
        "rounding": rounding,
        "empty": empty,
    }


def precision_recall_within_radius(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, radius: int = 2
) -> dict[str, float]:
    """Precision and recall of the Hamming ball {r : d(q, r) <= radius}, averaged over all queries.

    precision_q = relevant retrieved / retrieved (0 when the ball is empty); recall_q = relevant retrieved /
    T_q (0 when the query has no relevant item). Returns ``{"radius", "precision", "recall",
    "mean_retrieved"}``.
    """
    p = _prepare(query_codes, db_codes, query_labels, db_labels)
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ConfigError(f"radius must be a non-negative integer, not {radius!r}")
    raw = _run(p, p.n_db, np.zeros(0, np.int64))
    return _radius_dict(raw, p, int(radius))


def _radius_dict(raw: _Raw, p: _Prepared, radius: int) -> dict[str, float]:
    r = min(radius, p.bits)
    return {
        "radius": radius,
        "precision": float(raw.rad_p_sum[r] / p.n_query),
        "recall": float(raw.rad_r_sum[r] / p.n_query),
        "mean_retrieved": float(raw.rad_retrieved_sum[r] / p.n_query),
    }


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
    p = _prepare(query_codes, db_codes, query_labels, db_labels)
    k = _check_topk(topk, p.n_db)
    arr = _check_ns(ns)
    if isinstance(pr_levels, bool) or not isinstance(pr_levels, (int, np.integer)) or pr_levels < 1:
        raise ConfigError(f"pr_levels must be a positive integer, not {pr_levels!r}")
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ConfigError(f"radius must be a non-negative integer, not {radius!r}")
    raw = _run(p, k, arr, int(pr_levels), rounding, empty)
    means = raw.ap.mean(axis=0)
    out: dict[str, Any] = {
        "map": float(means[0]),
        "map_tie_aware": float(means[2]),
        "map_all": float(means[1]),
        "map_all_tie_aware": float(means[3]),
        "topk": None if topk is None else int(topk),
        "precision_at_n": {
            "n": [int(n) for n in arr],
            "precision": [float(v / p.n_query) for v in raw.pn_sum],
        },
        "pr_curve": _pr_dict(raw, int(pr_levels), rounding, empty),
        "radius": _radius_dict(raw, p, int(radius)),
        "n_queries": p.n_query,
        "n_database": p.n_db,
        "bits": p.bits,
        "n_queries_without_label": p.n_query_unlabeled,
        "n_queries_without_relevant": int(raw.n_empty),
        "tie_rule": TIE_RULE,
    }
    if include_per_query:
        out["ap"] = [float(v) for v in raw.ap[:, 0]]
        out["ap_tie_aware"] = [float(v) for v in raw.ap[:, 2]]
    return out
