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

__all__ = [
    "HAVE_NUMBA",
    "rank_pass",
    "ap_from_bits",
    "hits_from_bits",
    "tie_aware_aps",
    "range_search",
    "harmonic_table",
    "tie_ap",
]


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


# --------------------------------------------------------------------------------------------------------
# numba
# --------------------------------------------------------------------------------------------------------

HAVE_NUMBA = False
if os.environ.get("HASHGUARD_NO_NUMBA", "") not in ("1", "true", "yes"):
    try:
        import numba
        from llvmlite import ir
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

    @intrinsic
    def _cttz(typingctx, x):
        """Number of trailing zero bits of a non-zero ``uint64`` (one instruction)."""
        sig = types.int64(types.uint64)

        def codegen(context, builder, signature, args):
            return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

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
    def _fill_w1(qw, qlw, dbw, dlw, buf, shift):
        """buf[i] = d(q, i) | rel(q, i) << shift for one-word codes and labels (1-D views; vectorises)."""
        for i in range(dbw.shape[0]):
            buf[i] = _popcnt(qw ^ dbw[i]) | (np.int64((qlw & dlw[i]) != 0) << shift)

    @numba.njit(cache=True, nogil=True)
    def _fill_generic(q, db, ql, dl, qi, buf, shift):
        """:func:`_fill_w1` for codes or labels of several 64-bit words."""
        W = q.shape[1]
        WL = ql.shape[1]
        for i in range(db.shape[0]):
            d = 0
            for w in range(W):
                d += _popcnt(q[qi, w] ^ db[i, w])
            r = 0
            for w in range(WL):
                if (ql[qi, w] & dl[i, w]) != 0:
                    r = 1
                    break
            buf[i] = d | (r << shift)

    @numba.njit(cache=True, nogil=True)
    def _hist4(buf, N, h):
        """h[s, v] = how often value v occurs at positions i < N, i = s (mod 4) of ``buf``: four interleaved
        counter streams break the store->load chain of one histogram when neighbours fall in the same bucket."""
        h[:, :] = 0
        n4 = N - N % 4
        for i in range(0, n4, 4):
            h[0, buf[i]] += 1
            h[1, buf[i + 1]] += 1
            h[2, buf[i + 2]] += 1
            h[3, buf[i + 3]] += 1
        for i in range(n4, N):
            h[0, buf[i]] += 1

    @numba.njit(cache=True, nogil=True)
    def _guess_cut(buf, N, shift, K1, hs, target):
        """The smallest distance G at which a 1-in-16 sample of the items predicts at least ``target`` items
        at distance <= G (K1 - 1 when none does)."""
        mask = (1 << shift) - 1
        hs[:] = 0
        for i in range(0, N, 16):
            hs[buf[i] & mask] += 1
        n_s = (N + 15) // 16
        acc = 0
        for d in range(K1):
            acc += hs[d]
            if acc * N >= target * n_s:
                return d
        return K1 - 1

    @numba.njit(cache=True, nogil=True)
    def _candidates(buf, N, shift, G, cand):
        """cand[:n] = the indices of the items at distance <= G, ascending; returns n. Branch-free: every
        index is written and only kept when it qualifies."""
        mask = (1 << shift) - 1
        nc = 0
        for i in range(N):
            cand[nc] = i
            nc += (buf[i] & mask) <= G
        return nc

    @numba.njit(cache=True, nogil=True)
    def _top_bits_candidates(buf, cand, nc, shift, G, cc, off, limit, bits_row):
        """Rank the candidates (every item at distance <= G, in index order) by (distance, index) and set bit r
        of ``bits_row`` for every relevant item of 0-based rank r < limit. Returns False, touching nothing,
        when the candidates are fewer than ``limit`` (the top ``limit`` reaches past distance G)."""
        one = np.uint64(1)
        mask = (1 << shift) - 1
        if nc < limit:
            return False
        cc[: G + 1] = 0
        for t in range(nc):
            cc[buf[cand[t]] & mask] += 1
        acc = 0
        dstar = G
        for d in range(G + 1):
            off[d] = acc
            acc += cc[d]
            if acc >= limit:
                dstar = d
                break
        for t in range(nc):
            v = buf[cand[t]]
            d = v & mask
            if d <= dstar:
                p = off[d]
                off[d] = p + 1
                if (v >> shift) != 0 and p < limit:
                    bits_row[p >> 6] |= one << np.uint64(p & 63)
        return True

    @numba.njit(cache=True, nogil=True)
    def _count_bits(bm, lo, hi):
        """Number of set bits at positions lo..hi-1 of the bitmap ``bm`` (bit j of word w = position 64 w + j)."""
        if hi <= lo:
            return 0
        one = np.uint64(1)
        wl = lo >> 6
        wh = (hi - 1) >> 6
        x = bm[wl] >> np.uint64(lo & 63)
        if wl == wh:
            n = hi - lo
            if n < 64:
                x &= (one << np.uint64(n)) - one
            return _popcnt(x)
        tot = _popcnt(x)
        for w in range(wl + 1, wh):
            tot += _popcnt(bm[w])
        x = bm[wh]
        last = hi - 64 * wh
        if last < 64:
            x &= (one << np.uint64(last)) - one
        return tot + _popcnt(x)

    @numba.njit(cache=True, nogil=True)
    def _positions(buf, N, c, keys, shift):
        """One pass over items i < N in index order: c[d] counts the items at distance d, and each relevant
        item leaves the key p << shift | d, p = its 0-based position among the items at distance d (``int32``
        keys when they fit: half the memory traffic when most items are relevant). Returns the number of keys."""
        mask = (1 << shift) - 1
        nr = 0
        for i in range(N):
            v = buf[i]
            d = v & mask
            p = c[d]
            c[d] = p + 1
            keys[nr] = (p << shift) | d  # written always, kept only when relevant: no branch to mispredict
            nr += v >> shift
        return nr

    # jit the shared helpers in place: jitted callers resolve these globals to the compiled versions
    _bucket_expected_sum = _jit(_bucket_expected_sum)
    _log_comb = _jit(_log_comb)
    _cut_term = _jit(_cut_term)
    tie_ap = _jit(tie_ap)

    def _nb_pass(
        q, db, ql, dl, dbw, dlw, inv, bproto, kproto, shift, prefix, full, want_hist, n_levels, floor_mode,
        out_cnt, out_rcnt, out_bits, out_ap_all, out_pr, n_blocks,
    ):  # fmt: skip
        Q = q.shape[0]
        N = db.shape[0]
        W = q.shape[1]
        WL = ql.shape[1]
        K1 = out_cnt.shape[1]
        half = 1 << shift
        one = np.uint64(1)
        zero = np.uint64(0)
        kmask = (1 << shift) - 1
        n_words = (N + 63) // 64
        for blk in prange(n_blocks):
            lo = blk * Q // n_blocks
            hi = (blk + 1) * Q // n_blocks
            # scratch reused by every query of the block (no per-query allocation); buf padded to whole words
            buf = np.empty((N + 7) // 8 * 8, bproto.dtype)
            h = np.zeros((4, 2 * half), np.int32)
            c = np.zeros(K1, np.int64)
            off = np.zeros(K1, np.int64)
            keys = np.empty(N + 1, kproto.dtype)
            cand = np.empty(N + 1 if prefix > 0 and not full else 0, np.int32)
            bm = np.zeros(n_words, np.uint64)
            for qi in range(lo, hi):
                # 1. distance d and relevance r of every item as one value d | r << shift
                if W == 1 and WL == 1:
                    _fill_w1(q[qi, 0], ql[qi, 0], dbw, dlw, buf, shift)
                else:
                    _fill_generic(q, db, ql, dl, qi, buf, shift)
                if not full:
                    if want_hist or prefix == 0:
                        _hist4(buf, N, h)
                        for d in range(K1):
                            rc = h[0, d + half] + h[1, d + half] + h[2, d + half] + h[3, d + half]
                            out_cnt[qi, d] = h[0, d] + h[1, d] + h[2, d] + h[3, d] + rc
                            out_rcnt[qi, d] = rc
                    if prefix == 0:
                        continue
                    # 2a. top-``prefix`` ranking: only the items up to the distance bucket holding rank
                    # ``prefix`` matter. A sample guesses a distance G past that bucket (with a margin); the items
                    # at distance <= G are listed and ranked. If the guess falls short, or G takes in a large part
                    # of the database, the whole ranking below is used instead.
                    target = prefix + prefix // 4 + 1024
                    if 8 * target <= N:
                        G = _guess_cut(buf, N, shift, K1, c, target)
                        nc = _candidates(buf, N, shift, G, cand)
                        if 8 * nc <= N and _top_bits_candidates(buf, cand, nc, shift, G, c, off, prefix, out_bits[qi]):
                            continue
                # 2b. the whole ranking: positions inside each distance group, then ranks = group start +
                # position, marked in a bitmap of the N ranks that is read in rank order
                c[:] = 0
                nr = _positions(buf, N, c, keys, shift)
                acc = 0
                for d in range(K1):
                    out_cnt[qi, d] = c[d]
                    off[d] = acc
                    acc += c[d]
                bm[:] = 0
                for t in range(nr):
                    key = keys[t]
                    r = off[key & kmask] + (key >> shift)
                    bm[r >> 6] |= one << np.uint64(r & 63)
                for d in range(K1):  # relevant items per distance = set bits in that distance's rank range
                    out_rcnt[qi, d] = _count_bits(bm, off[d], off[d] + c[d])
                # AP over the whole ranking: set bits in rank order, two sums (odd / even hits) so that the
                # additions do not wait on each other; top-``prefix`` bits copied on the way
                pw = (prefix + 63) // 64
                cum = 0
                s_even = 0.0
                s_odd = 0.0
                for w in range(n_words):
                    x = bm[w]
                    if w < pw:
                        base = 64 * w
                        if prefix - base < 64:
                            out_bits[qi, w] = x & ((one << np.uint64(prefix - base)) - one)
                        else:
                            out_bits[qi, w] = x
                    while x != zero:
                        r = 64 * w + _cttz(x) + 1
                        x &= x - one
                        cum += 1
                        s_odd += cum * inv[r]
                        if x == zero:
                            break
                        r = 64 * w + _cttz(x) + 1
                        x &= x - one
                        cum += 1
                        s_even += cum * inv[r]
                # precision at recall levels: the rank of the n-th relevant item for each needed n, found by
                # skipping whole words by their popcount
                w = 0
                seen = 0  # set bits in words before w
                for i in range(n_levels):
                    if nr == 0:
                        out_pr[qi, i] = np.nan
                        continue
                    if floor_mode:
                        need = (nr * (i + 1)) // n_levels
                    else:
                        need = (nr * (i + 1) + n_levels - 1) // n_levels
                    if need == 0:
                        out_pr[qi, i] = 1.0
                        continue
                    while seen + _popcnt(bm[w]) < need:
                        seen += _popcnt(bm[w])
                        w += 1
                    x = bm[w]
                    for _ in range(need - seen - 1):  # drop the lower set bits before the needed one
                        x &= x - one
                    out_pr[qi, i] = need / (64 * w + _cttz(x) + 1)
                if full:
                    out_ap_all[qi] = (s_odd + s_even) / nr if nr > 0 else 0.0

    def _nb_ap_bits(bits, k, out):
        Q = bits.shape[0]
        nw = (k + 63) // 64
        one = np.uint64(1)
        zero = np.uint64(0)
        for qi in prange(Q):
            cum = 0
            s = 0.0
            for w in range(nw):
                x = bits[qi, w]
                base = 64 * w
                if k - base < 64:  # drop the ranks past k
                    x &= (one << np.uint64(k - base)) - one
                while x != zero:  # set bits, lowest first: rank order
                    low = x & (~x + one)
                    x ^= low
                    cum += 1
                    s += cum / (base + _popcnt(low - one) + 1.0)
            out[qi] = s / cum if cum > 0 else 0.0

    def _nb_tie(cnt, rcnt, H, k, out):
        for qi in prange(cnt.shape[0]):
            out[qi] = tie_ap(cnt[qi], rcnt[qi], H, k)

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

    _nb_pass_j = _jit(_nb_pass, parallel=True)
    _nb_ap_bits_j = _jit(_nb_ap_bits, parallel=True)
    _nb_tie_j = _jit(_nb_tie, parallel=True)
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


def _np_pass(q, db, ql, dl, prefix, full, n_levels, floor_mode, out_cnt, out_rcnt, out_bits, out_ap_all, out_pr):
    """NumPy version of the ranking pass (stable ``argsort``); same outputs as the numba kernel."""
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
            out_cnt[qi] = np.bincount(d, minlength=K1)
            out_rcnt[qi] = np.bincount(d[rel], minlength=K1)
            if not (full or prefix > 0):
                continue
            ranks = np.nonzero(rel[np.argsort(d, kind="stable")])[0].astype(np.int64) + 1
            top = ranks[ranks <= prefix] - 1
            np.bitwise_or.at(out_bits[qi], top >> 6, np.left_shift(np.uint64(1), (top & 63).astype(np.uint64)))
            if not full:
                continue
            nr = ranks.shape[0]
            # cumsum adds in rank order, as the kernel does
            out_ap_all[qi] = np.cumsum(np.arange(1, nr + 1) / ranks)[-1] / nr if nr else 0.0
            if n_levels:
                if nr == 0:
                    out_pr[qi] = np.nan
                    continue
                lv = np.arange(1, n_levels + 1, dtype=np.int64)
                need = (nr * lv) // n_levels if floor_mode else (nr * lv + n_levels - 1) // n_levels
                out_pr[qi] = np.where(need == 0, 1.0, need / ranks[np.maximum(need, 1) - 1])


def _np_ap_bits(bits: np.ndarray, k: int, out: np.ndarray) -> None:
    for s in range(0, bits.shape[0], 256):
        b = np.unpackbits(bits[s : s + 256].view(np.uint8), axis=1, count=k, bitorder="little").astype(bool)
        cum = np.cumsum(b, axis=1)
        terms = np.where(b, cum / np.arange(1, k + 1), 0.0)
        tot = np.cumsum(terms, axis=1)[:, -1] if k else np.zeros(b.shape[0])  # rank order, as the kernel
        hits = cum[:, -1] if k else np.zeros(b.shape[0], np.int64)
        out[s : s + 256] = np.where(hits > 0, tot / np.maximum(hits, 1), 0.0)

def _pass_layout(bits: int) -> tuple[int, np.ndarray]:
    """(shift, buffer dtype witness): distance d and relevance r share one buffer value d | r << shift,
    2**shift > bits (one byte per item up to 127 bits)."""
    shift = max(1, int(bits).bit_length())
    bdt = np.uint8 if shift < 8 else np.uint16 if shift < 16 else np.uint32
    return shift, np.zeros(1, bdt)


def rank_pass(
    q: np.ndarray,
    db: np.ndarray,
    ql: np.ndarray,
    dl: np.ndarray,
    bits: int,
    prefix: int = 0,
    full: bool = False,
    n_levels: int = 0,
    floor_mode: bool = False,
    hist: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the database per query, on packed codes ``q``/``db`` and packed labels ``ql``/``dl``.

    Returns ``(cnt, rcnt, topbits, ap_all, pr)``:

    * ``cnt[Q, bits+1]`` / ``rcnt[Q, bits+1]``: items / relevant items at each Hamming distance (``int64``).
      Filled when ``hist`` or ``full`` or ``prefix == 0``; otherwise unspecified (a top-``prefix`` ranking
      alone does not need them and is faster without them).
    * ``topbits[Q, ceil(prefix/64)]`` (``uint64``): bit j of word w is set when the item at rank 64 w + j + 1
      of the (distance, index) ranking is relevant, for ranks <= ``prefix``.
    * with ``full``: ``ap_all[Q]`` (AP over the whole ranking) and, when ``n_levels`` > 0, ``pr[Q, n_levels]``
      (precision at recall levels i / n_levels, n_i = floor or ceil of T i / n_levels, computed in integers;
      precision 1 when n_i = 0; NaN when the query has no relevant item). Zeros otherwise.
    """
    Q = q.shape[0]
    N = db.shape[0]
    K1 = bits + 1
    prefix = int(min(max(prefix, 0), N))
    n_levels = int(n_levels) if full else 0
    out_cnt = np.zeros((Q, K1), np.int64)
    out_rcnt = np.zeros((Q, K1), np.int64)
    out_bits = np.zeros((Q, (prefix + 63) // 64), np.uint64)
    out_ap_all = np.zeros(Q, np.float64)
    out_pr = np.zeros((Q, n_levels), np.float64)
    outs = (out_cnt, out_rcnt, out_bits, out_ap_all, out_pr)
    if Q == 0 or N == 0:
        return outs
    if _use_numba():
        shift, bproto = _pass_layout(bits)
        kproto = np.zeros(1, np.int32 if (N << shift) < 2**31 else np.int64)
        # first words as 1-D contiguous arrays: the one-word loop then compiles to vector code
        dbw = np.ascontiguousarray(db[:, 0])
        dlw = np.ascontiguousarray(dl[:, 0])
        # reciprocals of the ranks: a multiplication per relevant item instead of a division
        inv = np.zeros(N + 1 if full or prefix else 1, np.float64)
        inv[1:] = 1.0 / np.arange(1, inv.shape[0], dtype=np.float64)
        nthr = numba.get_num_threads()
        # small blocks handed out one at a time: a thread slowed by other work on the machine takes fewer
        n_blocks = min(Q, 16 * nthr)
        try:
            with numba.parallel_chunksize(1):
                _nb_pass_j(
                    q, db, ql, dl, dbw, dlw, inv, bproto, kproto, shift, prefix, bool(full), bool(hist), n_levels,
                    bool(floor_mode),
                    *outs, n_blocks,
                )  # fmt: skip
            return outs
        except Exception as exc:  # pragma: no cover
            _numba_failed(exc)
    _np_pass(q, db, ql, dl, prefix, bool(full), n_levels, bool(floor_mode), *outs)  # histograms always
    return outs


def ap_from_bits(topbits: np.ndarray, k: int) -> np.ndarray:
    """Per-query AP@k from the relevance bits of the top ranks (``k`` <= 64 * columns), summed in rank order."""
    out = np.zeros(topbits.shape[0], np.float64)
    k = int(k)
    if topbits.shape[0] == 0:
        return out
    if k > 64 * topbits.shape[1]:
        raise ValueError(f"k = {k} exceeds the {64 * topbits.shape[1]} ranks kept")
    if _use_numba():
        try:
            _nb_ap_bits_j(topbits, k, out)
            return out
        except Exception as exc:  # pragma: no cover
            _numba_failed(exc)
    _np_ap_bits(topbits, k, out)
    return out


def hits_from_bits(topbits: np.ndarray, ns: np.ndarray) -> np.ndarray:
    """hits[q, t] = number of relevant items among the top ``ns[t]`` ranks (each ``ns[t]`` <= 64 * columns)."""
    hits = np.zeros((topbits.shape[0], len(ns)), np.int64)
    for t, n in enumerate(ns):
        n = int(n)
        full, rem = divmod(n, 64)
        if full:
            hits[:, t] = _popcount_words(topbits[:, :full])
        if rem:
            last = topbits[:, full] & np.uint64((1 << rem) - 1)
            hits[:, t] += _popcount_words(last[:, None])
    return hits


def _popcount_words(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).sum(axis=1, dtype=np.int64)
    return np.unpackbits(np.ascontiguousarray(x).view(np.uint8), axis=1).sum(axis=1, dtype=np.int64)  # pragma: no cover


def tie_aware_aps(cnt: np.ndarray, rcnt: np.ndarray, H: np.ndarray, k: int) -> np.ndarray:
    """Per-query tie-aware AP@k (:func:`tie_ap`) from the distance histograms of all and of relevant items."""
    out = np.zeros(cnt.shape[0], np.float64)
    if cnt.shape[0] == 0:
        return out
    if _use_numba():
        try:
            _nb_tie_j(cnt, rcnt, H, int(k), out)
            return out
        except Exception as exc:  # pragma: no cover
            _numba_failed(exc)
    for qi in range(cnt.shape[0]):
        out[qi] = tie_ap(cnt[qi], rcnt[qi], H, int(k))
    return out

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
