"""Compute kernels: popcount on packed ``uint64`` codes + counting sort over the K+1 distance values.

Every kernel has a numba implementation (``@njit(parallel=True, cache=True)``) and a plain NumPy fallback
that produces identical results (used when numba is missing, fails to compile, or when the environment
variable ``HASHGUARD_NO_NUMBA=1`` is set). The public modules never import numba directly.

Ranking rule everywhere: ascending Hamming distance, ties broken by ascending database index.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

__all__ = ["HAVE_NUMBA", "eval_queries", "topk_search", "range_search", "harmonic_table", "tie_ap"]


# --------------------------------------------------------------------------------------------------------
# scalar helpers, shared by the numba and NumPy paths (plain Python, jitted below when numba is present)
# --------------------------------------------------------------------------------------------------------


def _bucket_expected_sum(a: int, b: int, n: int, m: int, H: np.ndarray) -> float:
    """E[sum of r/pos over the relevant items of a tie group] when its order is uniformly random.

    The group occupies ranks a+1..a+n, holds m relevant items, and b relevant items precede it. Slot p of
    the group is relevant with probability m/n and, given that, the expected number of relevant items in
    slots 1..p-1 is (p-1)(m-1)/(n-1). Hence
    E = (m/n) * sum_{p=1..n} (b + 1 + (p-1)(m-1)/(n-1)) / (a+p)
      = (m/n) * [(b+1) S + (m-1)/(n-1) * (n - (a+1) S)],  S = H(a+n) - H(a).
    """
    if m == 0:
        return 0.0
    if n == 1:
        return (b + 1.0) / (a + 1.0)
    S = H[a + n] - H[a]
    return (m / n) * ((b + 1.0) * S + ((m - 1.0) / (n - 1.0)) * (n - (a + 1.0) * S))


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1.0) - math.lgamma(k + 1.0) - math.lgamma(n - k + 1.0)


def tie_ap(cnt: np.ndarray, rcnt: np.ndarray, H: np.ndarray, k: int) -> float:
    """Exact expected AP@k of one query when the order inside each equal-distance group is random.

    ``cnt[d]`` / ``rcnt[d]``: number of database items / relevant items at distance d. Groups entirely inside
    the top k contribute their expected r/pos sum (independent of the cut). In the group cut by the top-k
    boundary, s of its n slots are kept, and the number X of relevant items among them is hypergeometric
    (n, m, s); given X = x those x items are a uniform x-subset of the s kept slots. Since
    AP@k = (F + G) / (R_before + X), the expectation is
    sum_x P(X=x) (E[F] + E[G | X=x]) / (R_before + x), with terms of zero denominator contributing 0.
    """
    n_items = 0
    for d in range(cnt.shape[0]):
        n_items += cnt[d]
    if k > n_items:
        k = n_items
    if k <= 0:
        return 0.0
    a = 0
    b = 0
    F = 0.0
    dstar = 0
    for d in range(cnt.shape[0]):
        if a + cnt[d] >= k:
            dstar = d
            break
        F += _bucket_expected_sum(a, b, cnt[d], rcnt[d], H)
        a += cnt[d]
        b += rcnt[d]
    n = cnt[dstar]
    m = rcnt[dstar]
    s = k - a
    if s == n:  # the cut falls on a group boundary: X = m surely
        if b + m == 0:
            return 0.0
        return (F + _bucket_expected_sum(a, b, n, m, H)) / (b + m)
    lo = s - (n - m)
    if lo < 0:
        lo = 0
    hi = m if m < s else s
    S = H[a + s] - H[a]
    # hypergeometric pmf by its term ratio, walking away from the mode in both directions until the
    # probabilities are negligible (each conditional AP is <= 1, so the dropped mass bounds the error)
    mode = ((s + 1) * (m + 1)) // (n + 2)
    if mode < lo:
        mode = lo
    if mode > hi:
        mode = hi
    p_mode = math.exp(_log_comb(m, mode) + _log_comb(n - m, s - mode) - _log_comb(n, s))
    out = 0.0
    p = p_mode
    x = mode
    while True:
        out += p * _cut_term(x, a, b, s, S, F)
        if x >= hi or p < 1e-300:
            break
        p *= (m - x) * (s - x) / ((x + 1.0) * (n - m - s + x + 1.0))
        x += 1
        if p < 1e-20:
            break
    p = p_mode
    x = mode
    while x > lo:
        p *= x * (n - m - s + x) / ((m - x + 1.0) * (s - x + 1.0))
        x -= 1
        if p < 1e-20:
            break
        out += p * _cut_term(x, a, b, s, S, F)
    return out


def _cut_term(x: int, a: int, b: int, s: int, S: float, F: float) -> float:
    """E[AP@k | X = x] for the group cut by the top-k boundary (x relevant among its s kept slots)."""
    if b + x == 0:
        return 0.0
    if x == 0:
        g = 0.0
    elif s == 1:
        g = (b + 1.0) / (a + 1.0)
    else:
        g = (x / s) * ((b + 1.0) * S + ((x - 1.0) / (s - 1.0)) * (s - (a + 1.0) * S))
    return (F + g) / (b + x)


def harmonic_table(n: int) -> np.ndarray:
    """H[i] = 1 + 1/2 + ... + 1/i for i = 0..n (H[0] = 0), float64."""
    H = np.zeros(n + 1, dtype=np.float64)
    if n:
        H[1:] = np.cumsum(1.0 / np.arange(1, n + 1, dtype=np.float64))
    return H


def _finish_query(
    cnt, rcnt, rel_d, rel_p, rel_j, nr, ranks, H, k, ns, n_levels, floor_mode, out_ap, out_pn, out_pr, qi
):
    """Per-query metrics from one pass: the distance histogram ``cnt`` and, for the ``nr`` relevant items in
    index order, their distance ``rel_d`` and 1-based position ``rel_p`` inside their group of equal distance.
    Fills ``rcnt`` (relevant histogram) and uses ``rel_j`` / ``ranks`` as work space.

    out_ap[qi] = [AP@k, AP@all, tieAP@k, tieAP@all]. ranks[t] becomes the 1-based rank of the (t+1)-th
    relevant item in the stable order.
    """
    K1 = cnt.shape[0]
    n_db = 0
    for d in range(K1):
        n_db += cnt[d]
        rcnt[d] = 0
    for t in range(nr):  # rel_j[t]: rank of relevant item t among the relevant items of its group
        d = rel_d[t]
        rcnt[d] += 1
        rel_j[t] = rcnt[d]
    a = np.empty(K1, np.int64)
    b = np.empty(K1, np.int64)
    sa = 0
    sb = 0
    for d in range(K1):
        a[d] = sa
        b[d] = sb
        sa += cnt[d]
        sb += rcnt[d]
    for t in range(nr):
        d = rel_d[t]
        ranks[b[d] + rel_j[t] - 1] = a[d] + rel_p[t]
    s_k = 0.0
    s_all = 0.0
    r_k = 0
    for t in range(nr):
        v = (t + 1.0) / ranks[t]
        s_all += v
        if ranks[t] <= k:
            s_k += v
            r_k += 1
    out_ap[qi, 0] = s_k / r_k if r_k > 0 else 0.0
    out_ap[qi, 1] = s_all / nr if nr > 0 else 0.0
    out_ap[qi, 2] = tie_ap(cnt, rcnt, H, k)
    out_ap[qi, 3] = tie_ap(cnt, rcnt, H, n_db)
    for t in range(ns.shape[0]):
        N = ns[t]
        lo = 0
        hi = nr
        while lo < hi:  # number of ranks <= N (ranks are increasing)
            mid = (lo + hi) // 2
            if ranks[mid] <= N:
                lo = mid + 1
            else:
                hi = mid
        out_pn[qi, t] = lo / (N if N < n_db else n_db)
    for i in range(n_levels):
        if nr == 0:
            out_pr[qi, i] = np.nan
            continue
        if floor_mode:
            need = (nr * (i + 1)) // n_levels
        else:
            need = (nr * (i + 1) + n_levels - 1) // n_levels
        out_pr[qi, i] = 1.0 if need == 0 else need / ranks[need - 1]


# --------------------------------------------------------------------------------------------------------
# numba
# --------------------------------------------------------------------------------------------------------

HAVE_NUMBA = False
if os.environ.get("HASHGUARD_NO_NUMBA", "") not in ("1", "true", "yes"):
    try:
        import numba
        from numba import prange, types
        from numba.extending import intrinsic

        HAVE_NUMBA = True
    except Exception:  # pragma: no cover - numba missing or broken
        HAVE_NUMBA = False


def _jit(fn, parallel: bool = False):
    """``njit(cache=True)`` with a graceful fallback to an uncached build when no cache dir is writable."""
    try:
        return numba.njit(parallel=parallel, cache=True, nogil=True)(fn)
    except Exception:  # pragma: no cover - no writable cache locator
        return numba.njit(parallel=parallel, cache=False, nogil=True)(fn)


if HAVE_NUMBA:

    @intrinsic
    def _popcnt(typingctx, x):
        sig = types.int64(types.uint64)

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return sig, codegen

    @numba.njit(inline="always", cache=True)
    def _dist(q, db, qi, i, W):
        if W == 1:
            return _popcnt(q[qi, 0] ^ db[i, 0])
        d = 0
        for w in range(W):
            d += _popcnt(q[qi, w] ^ db[i, w])
        return d

    @numba.njit(inline="always", cache=True)
    def _rel(ql, dl, qi, i, WL):
        if WL == 1:
            return (ql[qi, 0] & dl[i, 0]) != 0
        for w in range(WL):
            if (ql[qi, w] & dl[i, w]) != 0:
                return True
        return False

    @numba.njit(cache=True, nogil=True)
    def _scan_generic(q, db, ql, dl, qi, W, WL, N, n4, c, rel_d, rel_p):
        c[:, :] = 0
        nr = 0
        for i in range(0, n4, 4):
            d0 = _dist(q, db, qi, i, W)
            d1 = _dist(q, db, qi, i + 1, W)
            d2 = _dist(q, db, qi, i + 2, W)
            d3 = _dist(q, db, qi, i + 3, W)
            r0 = _rel(ql, dl, qi, i, WL)
            r1 = _rel(ql, dl, qi, i + 1, WL)
            r2 = _rel(ql, dl, qi, i + 2, WL)
            r3 = _rel(ql, dl, qi, i + 3, WL)
            if r0:
                rel_d[nr] = d0
                rel_p[nr] = c[0, d0] + c[1, d0] + c[2, d0] + c[3, d0] + 1
                nr += 1
            if r1:
                rel_d[nr] = d1
                rel_p[nr] = c[0, d1] + c[1, d1] + c[2, d1] + c[3, d1] + (d0 == d1) + 1
                nr += 1
            if r2:
                rel_d[nr] = d2
                rel_p[nr] = c[0, d2] + c[1, d2] + c[2, d2] + c[3, d2] + (d0 == d2) + (d1 == d2) + 1
                nr += 1
            if r3:
                rel_d[nr] = d3
                rel_p[nr] = (
                    c[0, d3] + c[1, d3] + c[2, d3] + c[3, d3] + (d0 == d3) + (d1 == d3) + (d2 == d3) + 1
                )
                nr += 1
            c[0, d0] += 1
            c[1, d1] += 1
            c[2, d2] += 1
            c[3, d3] += 1
        for i in range(n4, N):
            d0 = _dist(q, db, qi, i, W)
            if _rel(ql, dl, qi, i, WL):
                rel_d[nr] = d0
                rel_p[nr] = c[0, d0] + c[1, d0] + c[2, d0] + c[3, d0] + 1
                nr += 1
            c[0, d0] += 1
        return nr

    @numba.njit(cache=True, nogil=True)
    def _scan_w1(qw, qlw, dbw, dlw, N, n4, c, rel_d, rel_p):
        """_scan_generic for one-word codes and labels (1-D views: lets LLVM keep everything in registers)."""
        c[:, :] = 0
        nr = 0
        for i in range(0, n4, 4):
            d0 = _popcnt(qw ^ dbw[i])
            d1 = _popcnt(qw ^ dbw[i + 1])
            d2 = _popcnt(qw ^ dbw[i + 2])
            d3 = _popcnt(qw ^ dbw[i + 3])
            r0 = (qlw & dlw[i]) != 0
            r1 = (qlw & dlw[i + 1]) != 0
            r2 = (qlw & dlw[i + 2]) != 0
            r3 = (qlw & dlw[i + 3]) != 0
            if r0:
                rel_d[nr] = d0
                rel_p[nr] = c[0, d0] + c[1, d0] + c[2, d0] + c[3, d0] + 1
                nr += 1
            if r1:
                rel_d[nr] = d1
                rel_p[nr] = c[0, d1] + c[1, d1] + c[2, d1] + c[3, d1] + (d0 == d1) + 1
                nr += 1
            if r2:
                rel_d[nr] = d2
                rel_p[nr] = c[0, d2] + c[1, d2] + c[2, d2] + c[3, d2] + (d0 == d2) + (d1 == d2) + 1
                nr += 1
            if r3:
                rel_d[nr] = d3
                rel_p[nr] = (
                    c[0, d3] + c[1, d3] + c[2, d3] + c[3, d3] + (d0 == d3) + (d1 == d3) + (d2 == d3) + 1
                )
                nr += 1
            c[0, d0] += 1
            c[1, d1] += 1
            c[2, d2] += 1
            c[3, d3] += 1
        for i in range(n4, N):
            d0 = _popcnt(qw ^ dbw[i])
            if (qlw & dlw[i]) != 0:
                rel_d[nr] = d0
                rel_p[nr] = c[0, d0] + c[1, d0] + c[2, d0] + c[3, d0] + 1
                nr += 1
            c[0, d0] += 1
        return nr

    # jit the shared helpers in place: jitted callers resolve these globals to the compiled versions
    _bucket_expected_sum = _jit(_bucket_expected_sum)
    _log_comb = _jit(_log_comb)
    _cut_term = _jit(_cut_term)
    tie_ap = _jit(tie_ap)
    _finish_query = _jit(_finish_query)

    def _nb_eval(
        q, db, ql, dl, H, k, ns, n_levels, floor_mode, out_ap, out_pn, out_pr, out_cnt, out_rcnt, nthr
    ):
        Q = q.shape[0]
        W = q.shape[1]
        N = db.shape[0]
        WL = ql.shape[1]
        K1 = out_cnt.shape[1]
        nb = min(Q, 8 * nthr)
        for blk in prange(nb):
            lo = blk * Q // nb
            hi = (blk + 1) * Q // nb
            rel_d = np.empty(N, np.int32)
            rel_p = np.empty(N, np.int32)
            rel_j = np.empty(N, np.int32)
            ranks = np.empty(N, np.int64)
            cnt = np.zeros(K1, np.int64)
            rcnt = np.zeros(K1, np.int64)
            # 4 interleaved counter streams (item i counts in stream i % 4): breaks the store->load chain of
            # a single histogram; the in-group position of an item is the sum of the 4 streams' counts.
            c = np.zeros((4, K1), np.int32)
            n4 = N - N % 4
            dbw = db[:, 0]
            dlw = dl[:, 0]
            for qi in range(lo, hi):
                if W == 1 and WL == 1:
                    nr = _scan_w1(q[qi, 0], ql[qi, 0], dbw, dlw, N, n4, c, rel_d, rel_p)
                else:
                    nr = _scan_generic(q, db, ql, dl, qi, W, WL, N, n4, c, rel_d, rel_p)
                for d in range(K1):
                    cnt[d] = c[0, d] + c[1, d] + c[2, d] + c[3, d]
                _finish_query(
                    cnt,
                    rcnt,
                    rel_d,
                    rel_p,
                    rel_j,
                    nr,
                    ranks,
                    H,
                    k,
                    ns,
                    n_levels,
                    floor_mode,
                    out_ap,
                    out_pn,
                    out_pr,
                    qi,
                )
                for d in range(K1):
                    out_cnt[qi, d] = cnt[d]
                    out_rcnt[qi, d] = rcnt[d]

    def _nb_topk(q, db, K1, k, out_d, out_i, nthr):
        Q = q.shape[0]
        W = q.shape[1]
        N = db.shape[0]
        nb = min(Q, 8 * nthr)
        for blk in prange(nb):
            lo = blk * Q // nb
            hi = (blk + 1) * Q // nb
            dist = np.empty(N, np.int32)
            cnt = np.zeros(K1, np.int64)
            off = np.zeros(K1, np.int64)
            for qi in range(lo, hi):
                cnt[:] = 0
                for i in range(N):
                    d = 0
                    for w in range(W):
                        d += _popcnt(q[qi, w] ^ db[i, w])
                    dist[i] = d
                    cnt[d] += 1
                kk = k if k < N else N
                acc = 0
                dstar = K1 - 1
                for d in range(K1):
                    off[d] = acc
                    if acc + cnt[d] >= kk:
                        dstar = d
                        break
                    acc += cnt[d]
                room = kk - off[dstar]
                for i in range(N):
                    d = dist[i]
                    if d < dstar:
                        pos = off[d]
                        off[d] = pos + 1
                        out_d[qi, pos] = d
                        out_i[qi, pos] = i
                    elif d == dstar and room > 0:
                        pos = off[d]
                        off[d] = pos + 1
                        out_d[qi, pos] = d
                        out_i[qi, pos] = i
                        room -= 1
                for t in range(kk, out_d.shape[1]):
                    out_d[qi, t] = -1
                    out_i[qi, t] = -1

    def _nb_range_count(q, db, radius, K1, counts):
        Q = q.shape[0]
        W = q.shape[1]
        N = db.shape[0]
        for qi in prange(Q):
            c = 0
            for i in range(N):
                d = 0
                for w in range(W):
                    d += _popcnt(q[qi, w] ^ db[i, w])
                if d <= radius:
                    c += 1
            counts[qi] = c

    def _nb_range_fill(q, db, radius, K1, lims, out_d, out_i):
        Q = q.shape[0]
        W = q.shape[1]
        N = db.shape[0]
        for qi in prange(Q):
            cnt = np.zeros(K1, np.int64)
            start = lims[qi]
            seg = lims[qi + 1] - start
            dist = np.empty(seg, np.int32)
            idx = np.empty(seg, np.int64)
            c = 0
            for i in range(N):
                d = 0
                for w in range(W):
                    d += _popcnt(q[qi, w] ^ db[i, w])
                if d <= radius:
                    dist[c] = d
                    idx[c] = i
                    cnt[d] += 1
                    c += 1
            acc = start
            for d in range(K1):
                v = cnt[d]
                cnt[d] = acc
                acc += v
            for t in range(seg):
                d = dist[t]
                pos = cnt[d]
                cnt[d] = pos + 1
                out_d[pos] = d
                out_i[pos] = idx[t]

    _nb_eval_j = _jit(_nb_eval, parallel=True)
    _nb_topk_j = _jit(_nb_topk, parallel=True)
    _nb_range_count_j = _jit(_nb_range_count, parallel=True)
    _nb_range_fill_j = _jit(_nb_range_fill, parallel=True)


_NUMBA_BROKEN = False


def _use_numba() -> bool:
    return HAVE_NUMBA and not _NUMBA_BROKEN


def _numba_failed(exc: Exception) -> None:  # pragma: no cover - only when compilation breaks
    global _NUMBA_BROKEN
    _NUMBA_BROKEN = True
    warnings.warn(f"hashguard.retrieval: numba kernel failed ({exc}); using the NumPy fallback", stacklevel=3)


# --------------------------------------------------------------------------------------------------------
# NumPy fallbacks
# --------------------------------------------------------------------------------------------------------


def _np_dist(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    return np.bitwise_count(q[:, None, :] ^ db[None, :, :]).sum(axis=-1, dtype=np.int32)


def _np_rel(ql: np.ndarray, dl: np.ndarray) -> np.ndarray:
    return ((ql[:, None, :] & dl[None, :, :]) != 0).any(axis=-1)


def _np_eval(q, db, ql, dl, H, k, ns, n_levels, floor_mode, out_ap, out_pn, out_pr, out_cnt, out_rcnt):
    K1 = out_cnt.shape[1]
    N = db.shape[0]
    step = max(1, (1 << 22) // max(1, N))
    for s in range(0, q.shape[0], step):
        D = _np_dist(q[s : s + step], db)
        REL = _np_rel(ql[s : s + step], dl)
        for r in range(D.shape[0]):
            qi = s + r
            d = D[r]
            rel = REL[r]
            cnt = np.bincount(d, minlength=K1).astype(np.int64)
            rcnt = np.bincount(d[rel], minlength=K1).astype(np.int64)
            order = np.argsort(d, kind="stable")
            ranks = np.nonzero(rel[order])[0].astype(np.int64) + 1
            nr = ranks.shape[0]
            # feed _finish_query through its (d, p, j) interface: recover within-group positions
            pos_in_group = np.empty(N, np.int32)
            sorted_d = d[order]
            starts = np.concatenate(([0], np.cumsum(cnt)[:-1]))
            pos_in_group[order] = np.arange(N) - starts[sorted_d] + 1
            rel_idx = np.nonzero(rel)[0]
            rel_d = d[rel_idx].astype(np.int32)
            rel_p = pos_in_group[rel_idx]
            rel_j = np.empty(nr, np.int32)
            seen = np.zeros(K1, np.int64)
            for t in range(nr):
                seen[rel_d[t]] += 1
                rel_j[t] = seen[rel_d[t]]
            buf = np.empty(max(nr, 1), np.int64)
            _finish_query(
                cnt,
                rcnt,
                rel_d,
                rel_p,
                rel_j,
                nr,
                buf,
                H,
                k,
                ns,
                n_levels,
                floor_mode,
                out_ap,
                out_pn,
                out_pr,
                qi,
            )
            out_cnt[qi] = cnt
            out_rcnt[qi] = rcnt


def _np_topk(q, db, K1, k, out_d, out_i):
    N = db.shape[0]
    kk = min(k, N)
    step = max(1, (1 << 22) // max(1, N))
    for s in range(0, q.shape[0], step):
        D = _np_dist(q[s : s + step], db)
        order = np.argsort(D, axis=1, kind="stable")[:, :kk]
        out_i[s : s + step, :kk] = order
        out_d[s : s + step, :kk] = np.take_along_axis(D, order, axis=1)
    out_i[:, kk:] = -1
    out_d[:, kk:] = -1


# --------------------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------------------


def eval_queries(q, db, ql, dl, bits, k, ns, n_levels, floor_mode):
    """Run the single-pass evaluation kernel on packed codes ``q``/``db`` and packed labels ``ql``/``dl``.

    Returns ``(ap[Q, 4], pn[Q, len(ns)], pr[Q, n_levels], cnt[Q, bits+1], rcnt[Q, bits+1])``.
    """
    Q = q.shape[0]
    N = db.shape[0]
    K1 = bits + 1
    H = harmonic_table(N)
    ns = np.ascontiguousarray(ns, dtype=np.int64)
    out_ap = np.zeros((Q, 4), np.float64)
    out_pn = np.zeros((Q, ns.shape[0]), np.float64)
    out_pr = np.zeros((Q, n_levels), np.float64)
    out_cnt = np.zeros((Q, K1), np.int64)
    out_rcnt = np.zeros((Q, K1), np.int64)
    args = (
        q,
        db,
        ql,
        dl,
        H,
        int(k),
        ns,
        int(n_levels),
        bool(floor_mode),
        out_ap,
        out_pn,
        out_pr,
        out_cnt,
        out_rcnt,
    )
    if Q and _use_numba():
        try:
            _nb_eval_j(*args, numba.get_num_threads())
            return out_ap, out_pn, out_pr, out_cnt, out_rcnt
        except Exception as exc:  # pragma: no cover
            _numba_failed(exc)
    if Q:
        _np_eval(*args)
    return out_ap, out_pn, out_pr, out_cnt, out_rcnt


def topk_search(q: np.ndarray, db: np.ndarray, bits: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by (distance, index). Columns past the database size hold distance -1 and id -1."""
    Q = q.shape[0]
    out_d = np.empty((Q, k), np.int32)
    out_i = np.empty((Q, k), np.int64)
    if Q and k:
        if db.shape[0] == 0:
            out_d[:] = -1
            out_i[:] = -1
            return out_d, out_i
        if _use_numba():
            try:
                _nb_topk_j(q, db, bits + 1, int(k), out_d, out_i, numba.get_num_threads())
                return out_d, out_i
            except Exception as exc:  # pragma: no cover
                _numba_failed(exc)
        _np_topk(q, db, bits + 1, int(k), out_d, out_i)
    return out_d, out_i


def range_search(q: np.ndarray, db: np.ndarray, bits: int, radius: int):
    """All items within Hamming distance ``<= radius``; FAISS-style ``(lims, distances, ids)``, each query's
    segment sorted by (distance, index)."""
    Q = q.shape[0]
    if _use_numba() and Q and db.shape[0]:
        try:
            counts = np.zeros(Q, np.int64)
            _nb_range_count_j(q, db, int(radius), bits + 1, counts)
            lims = np.zeros(Q + 1, np.int64)
            np.cumsum(counts, out=lims[1:])
            out_d = np.empty(lims[-1], np.int32)
            out_i = np.empty(lims[-1], np.int64)
            _nb_range_fill_j(q, db, int(radius), bits + 1, lims, out_d, out_i)
            return lims, out_d, out_i
        except Exception as exc:  # pragma: no cover
            _numba_failed(exc)
    lims = [0]
    ds: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    step = max(1, (1 << 22) // max(1, db.shape[0]))
    for s in range(0, Q, step):
        D = _np_dist(q[s : s + step], db) if db.shape[0] else np.zeros((min(step, Q - s), 0), np.int32)
        for row in D:
            sel = np.nonzero(row <= radius)[0]
            order = sel[np.argsort(row[sel], kind="stable")]
            ds.append(row[order].astype(np.int32))
            ids.append(order.astype(np.int64))
            lims.append(lims[-1] + order.shape[0])
    cat_d = np.concatenate(ds) if ds else np.zeros(0, np.int32)
    cat_i = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    return np.asarray(lims, np.int64), cat_d, cat_i
