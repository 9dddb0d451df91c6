"""Exact top-k Hamming search kernels: a filtered linear scan and multi-index hashing (MIH).

Both return, per query, the first ``k`` database items in ascending (distance, index) order -- ties included
-- as ``(distances int32 Q x k, ids int64 Q x k)``; columns past the database size hold -1.

* :func:`scan_topk`: queries in blocks of up to 32 against tiles of 2,048 database codes (a tile stays in L1
  while the block's queries pass over it). Per query a buffer keeps the items that can still be in the top k:
  once ``k`` items at distance ``<= t`` have been seen, a later item (larger index) needs distance ``< t``
  to enter, so almost every item costs one XOR + popcount + compare. The buffer is pruned back to ``k`` items
  when it fills; the survivors are sorted by (distance, index) at the end (no histogram of all N items).
* :func:`mih_topk`: multi-index hashing (Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with
  Multi-Index Hashing", CVPR 2012; TPAMI 2014). The code is split into ``m`` disjoint substrings; table ``j``
  maps the key bits of substring ``j`` to the sorted ids holding them (CSR: offsets + ids). Radii r = 0, 1,
  ... are probed in every table; each candidate is verified with its full distance. By the pigeonhole
  principle an item at distance ``d`` differs in at most ``floor(d / m)`` bits of some substring, so after
  radius r every item with ``d <= m (r + 1) - 1`` has been seen and the search stops once ``k`` of them are.
  A key may use only part of its substring's bits (to bound the table size): an item's key distance is at
  most its substring distance, so the bound still holds. An item met again in a later probe is recognised from
  its key distances (the probe order is known), so no visited set is needed. A query whose probes and
  candidates exceed ``max_work`` stops and is answered by the scan (flagged in the returned mask).

Without numba (missing, or ``HASHGUARD_NO_NUMBA=1``) the scan is a NumPy stable ``argsort`` and MIH is not
used; results are identical.
"""

from __future__ import annotations

import warnings

import numpy as np

# numba, its cached-jit helper and the popcount intrinsic are the metrics kernels' (HASHGUARD_NO_NUMBA=1 turns
# both off)
from hashguard.retrieval._kernels import HAVE_NUMBA, _jit

__all__ = ["HAVE_NUMBA", "scan_topk", "mih_topk", "mih_build_table", "num_threads"]

_QBLOCK = 32
_TILE = 2048

if HAVE_NUMBA:
    import numba
    from numba import prange

    from hashguard.retrieval._kernels import _popcnt

    @numba.njit(cache=True, nogil=True)
    def _kth_distance(cnt, kk, K, none):
        """The smallest d < K with cnt[0] + ... + cnt[d] >= kk and that sum; ``(none, the total)`` when no d
        reaches kk. ``cnt[d]`` counts the buffered items at distance d."""
        acc = 0
        for d in range(K):
            acc += cnt[d]
            if acc >= kk:
                return d, acc
        return none, acc

    @numba.njit(cache=True, nogil=True)
    def _emit(bd, bi, f, kk, K1, qi, out_d, out_i):
        """Write the first ``kk`` buffered items in (distance, index) order; ``-1`` past them. The sort key
        ``(distance << 40) | index`` orders by (distance, index) for databases under 2^40 items."""
        cnt = np.zeros(K1 + 1, np.int64)
        for t in range(f):
            cnt[bd[t]] += 1
        thr, _ = _kth_distance(cnt, kk, K1, K1)
        n = 0
        for t in range(f):
            if bd[t] <= thr:
                n += 1
        comp = np.empty(n, np.int64)
        n = 0
        for t in range(f):
            if bd[t] <= thr:
                comp[n] = (np.int64(bd[t]) << 40) | bi[t]
                n += 1
        comp = np.sort(comp)
        take = kk if kk < n else n
        mask = (np.int64(1) << 40) - 1
        for t in range(take):
            out_d[qi, t] = np.int32(comp[t] >> 40)
            out_i[qi, t] = comp[t] & mask
        for t in range(take, out_d.shape[1]):
            out_d[qi, t] = -1
            out_i[qi, t] = -1

    def _nb_scan(q, dbf, n, k, K1, qb, out_d, out_i):
        Q = q.shape[0]
        nblocks = (Q + qb - 1) // qb
        for blk in prange(nblocks):
            _scan_block(blk, q, dbf, n, k, K1, qb, out_d, out_i)

    @numba.njit(cache=True, nogil=True)
    def _next_hit(tw, nw, start, add):
        """First word index >= start holding a byte below the threshold encoded in ``add`` (nw if none)."""
        hi = np.uint64(0x8080808080808080)
        for wi in range(start, nw):
            if ((tw[wi] + add) & hi) != hi:
                return wi
        return nw

    @numba.njit(cache=True, nogil=True)
    def _tile_dist1(qw, sub, tmp):
        for t in range(sub.shape[0]):
            tmp[t] = np.uint8(_popcnt(qw ^ sub[t]))

    @numba.njit(cache=True, nogil=True)
    def _scan_block(blk, q, dbf, n, k, K1, qb, out_d, out_i):
        Q = q.shape[0]
        q1d = q[:, 0].copy()
        W = q.shape[1]
        kk = k if k < n else n
        cap = 2 * kk + _TILE
        ones = np.uint64(0x0101010101010101)
        q0 = blk * qb
        q1 = min(Q, q0 + qb)
        nq = q1 - q0
        bd = np.empty((qb, cap), np.int32)
        bi = np.empty((qb, cap), np.int64)
        fill = np.zeros(qb, np.int64)
        lim = np.full(qb, K1, np.int64)  # accept d < lim
        cnt = np.zeros((qb, K1), np.int64)
        tw = np.zeros(_TILE // 8, np.uint64)
        tmp = tw.view(np.uint8)  # distances of one tile, clamped to 127: 8 per word for the SWAR test
        for t0 in range(0, n, _TILE):
            t1 = min(n, t0 + _TILE)
            T = t1 - t0
            sub = dbf[t0 * W : t1 * W]
            for j in range(nq):
                qi = q0 + j
                if W == 1:
                    _tile_dist1(q1d[qi], sub, tmp)
                else:
                    for t in range(T):
                        s = 0
                        for w in range(W):
                            s += _popcnt(q[qi, w] ^ sub[t * W + w])
                        tmp[t] = np.uint8(min(s, 127))
                L = lim[j]
                # byte v <= 127 of word x is < L' exactly when bit 7 of v + 128 - L' is clear
                add = np.uint64(128 - min(L, 128)) * ones
                f = fill[j]
                nw = (T + 7) // 8
                wi = _next_hit(tw, nw, 0, add)
                while wi < nw:
                    for t in range(wi * 8, min(T, wi * 8 + 8)):
                        if W == 1:
                            d = np.int64(tmp[t])
                        else:
                            d = 0
                            for w in range(W):
                                d += _popcnt(q[qi, w] ^ sub[t * W + w])
                        if d < L:
                            bd[j, f] = d
                            bi[j, f] = t0 + t
                            cnt[j, d] += 1
                            f += 1
                    wi = _next_hit(tw, nw, wi + 1, add)
                if f >= kk and f > fill[j]:
                    thr, acc = _kth_distance(cnt[j], kk, K1, K1 - 1)
                    lim[j] = thr
                    if f + _TILE > cap:
                        # keep d < thr and the first (by index) items at thr, k in all
                        room = kk - (acc - cnt[j, thr])
                        g = 0
                        for t in range(f):
                            d = bd[j, t]
                            if d < thr or (d == thr and room > 0):
                                if d == thr:
                                    room -= 1
                                bd[j, g] = d
                                bi[j, g] = bi[j, t]
                                g += 1
                        for d in range(thr, K1):
                            cnt[j, d] = 0
                        for t in range(g):
                            if bd[j, t] == thr:
                                cnt[j, thr] += 1
                        f = g
                fill[j] = f
        for j in range(nq):
            _emit(bd[j], bi[j], fill[j], kk, K1, q0 + j, out_d, out_i)

    @numba.njit(cache=True, nogil=True)
    def _mih_one(qi, q, db, n, kk, K1, qkeys, kbits, off, off_base, ids, pmask, max_work, maxb, out_d, out_i, fb, work):
        W = q.shape[1]
        m = kbits.shape[0]
        cap = 4 * kk + 256
        bd = np.empty(cap, np.int32)
        bi = np.empty(cap, np.int64)
        f = 0
        cnt = np.zeros(K1, np.int64)
        thr = K1 - 1  # keep items with d <= thr
        wk = 0
        xo = np.empty(W, np.uint64)
        r = 0
        stop = False
        while not stop:
            for j in range(m):
                b = kbits[j]
                if r > b:
                    continue
                qk = qkeys[qi, j]
                base = off_base[j]
                x = (np.int64(1) << r) - 1
                top = np.int64(1) << b
                while x < top:
                    key = qk ^ x
                    s = off[base + key]
                    e = off[base + key + 1]
                    wk += 1 + (e - s)
                    for p in range(s, e):
                        it = ids[j * n + p]
                        for w in range(W):
                            xo[w] = q[qi, w] ^ db[it, w]
                        first = True
                        for j2 in range(m):
                            if j2 == j:
                                continue
                            c2 = 0
                            for w in range(W):
                                c2 += _popcnt(xo[w] & pmask[j2, w])
                            if (j2 < j and c2 <= r) or (j2 > j and c2 < r):
                                first = False
                                break
                        if not first:
                            continue
                        d = 0
                        for w in range(W):
                            d += _popcnt(xo[w])
                        if d > thr:
                            continue
                        if f == cap:
                            thr, _ = _kth_distance(cnt, kk, K1, thr)
                            g = 0
                            for t in range(f):
                                if bd[t] <= thr:
                                    bd[g] = bd[t]
                                    bi[g] = bi[t]
                                    g += 1
                            for t in range(thr + 1, K1):
                                cnt[t] = 0
                            f = g
                            if f * 4 > cap * 3:
                                nbd = np.empty(2 * cap, np.int32)
                                nbi = np.empty(2 * cap, np.int64)
                                for t in range(f):
                                    nbd[t] = bd[t]
                                    nbi[t] = bi[t]
                                bd = nbd
                                bi = nbi
                                cap = 2 * cap
                            if d > thr:
                                continue
                        bd[f] = d
                        bi[f] = it
                        cnt[d] += 1
                        f += 1
                    if r == 0 or wk > max_work:
                        break
                    # next b-bit mask with r set bits (Gosper's hack, without the division)
                    tz = _popcnt(np.uint64((x & -x) - 1))
                    t = x | (x - 1)
                    x = (t + 1) | (((~t & (t + 1)) - 1) >> (tz + 1))
                if wk > max_work:
                    break
            if wk > max_work:
                fb[qi] = 1
                break
            bound = m * (r + 1) - 1
            acc = 0
            for t in range(min(bound, K1 - 1) + 1):
                acc += cnt[t]
            if acc >= kk or r >= maxb:
                stop = True
            r += 1
        work[qi] = wk
        if fb[qi] == 0:
            _emit(bd, bi, f, kk, K1, qi, out_d, out_i)

    def _nb_mih(q, db, n, k, K1, qkeys, kbits, off, off_base, ids, pmask, max_work, out_d, out_i, fb, work):
        Q = q.shape[0]
        kk = k if k < n else n
        maxb = 0
        for j in range(kbits.shape[0]):
            if kbits[j] > maxb:
                maxb = kbits[j]
        for qi in prange(Q):
            _mih_one(
                qi, q, db, n, kk, K1, qkeys, kbits, off, off_base, ids, pmask, max_work, maxb, out_d, out_i, fb, work
            )

    def _nb_counting_table(keys, nbuckets, off, ids):
        n = keys.shape[0]
        for i in range(n):
            off[keys[i] + 1] += 1
        for b in range(nbuckets):
            off[b + 1] += off[b]
        pos = off[:-1].copy()
        for i in range(n):
            key = keys[i]
            ids[pos[key]] = i
            pos[key] += 1

    _nb_scan_j = _jit(_nb_scan, parallel=True)
    _nb_mih_j = _jit(_nb_mih, parallel=True)
    _nb_counting_table_j = _jit(_nb_counting_table)


_BROKEN = False


def _use_numba() -> bool:
    return HAVE_NUMBA and not _BROKEN


def _failed(exc: Exception) -> None:  # pragma: no cover - only when compilation breaks
    global _BROKEN
    _BROKEN = True
    warnings.warn(f"hashguard.retrieval: numba search kernel failed ({exc}); using NumPy", stacklevel=3)


def num_threads() -> int:
    """Threads the kernels run on (numba's setting; 1 without numba)."""
    return int(numba.get_num_threads()) if _use_numba() else 1


def _np_scan(q: np.ndarray, db: np.ndarray, k: int, out_d: np.ndarray, out_i: np.ndarray) -> None:
    n = db.shape[0]
    kk = min(k, n)
    step = max(1, (1 << 22) // max(1, n * db.shape[1]))
    for s in range(0, q.shape[0], step):
        D = np.bitwise_count(q[s : s + step, None, :] ^ db[None, :, :]).sum(axis=-1, dtype=np.int32)
        order = np.argsort(D, axis=1, kind="stable")[:, :kk]
        out_i[s : s + step, :kk] = order
        out_d[s : s + step, :kk] = np.take_along_axis(D, order, axis=1)
    out_i[:, kk:] = -1
    out_d[:, kk:] = -1


def scan_topk(q: np.ndarray, db: np.ndarray, bits: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of packed ``uint64`` queries ``q`` over packed codes ``db`` by a filtered linear scan."""
    Q = q.shape[0]
    n = db.shape[0]
    out_d = np.full((Q, k), -1, np.int32)
    out_i = np.full((Q, k), -1, np.int64)
    if Q == 0 or n == 0:
        return out_d, out_i
    q = np.ascontiguousarray(q)
    if _use_numba():
        try:
            nthr = num_threads()
            qb = max(1, min(_QBLOCK, Q // (2 * nthr) if Q >= 2 * nthr else 1))
            # per-block buffers hold qb * (2k + tile) items of 12 bytes: keep them under ~32 MB for large k
            qb = max(1, min(qb, (32 << 20) // ((2 * min(int(k), n) + _TILE) * 12)))
            _nb_scan_j(q, db.reshape(-1), n, int(k), 64 * q.shape[1] + 1, qb, out_d, out_i)
            return out_d, out_i
        except Exception as exc:  # pragma: no cover
            _failed(exc)
    _np_scan(q, db, int(k), out_d, out_i)
    return out_d, out_i


def mih_build_table(keys: np.ndarray, key_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR table of one substring: ``offsets`` (2^key_bits + 1, int32) and ``ids`` (int32, sorted per key),
    by a counting sort (O(N + 2^key_bits))."""
    nb = 1 << int(key_bits)
    n = keys.shape[0]
    off = np.zeros(nb + 1, np.int32 if n < 2**31 else np.int64)
    ids = np.empty(n, np.int32 if n < 2**31 else np.int64)
    keys = np.ascontiguousarray(keys, np.int64)
    if _use_numba():
        try:
            _nb_counting_table_j(keys, nb, off, ids)
            return off, ids
        except Exception as exc:  # pragma: no cover
            _failed(exc)
    counts = np.bincount(keys, minlength=nb)
    np.cumsum(counts, out=off[1:])
    ids[:] = np.argsort(keys, kind="stable")
    return off, ids


def mih_topk(
    q: np.ndarray,
    db: np.ndarray,
    bits: int,
    k: int,
    qkeys: np.ndarray,
    key_bits: np.ndarray,
    offsets: np.ndarray,
    offset_base: np.ndarray,
    ids: np.ndarray,
    key_masks: np.ndarray,
    max_work: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k by multi-index hashing (see the module docstring).

    Returns ``(distances, ids, fallback, work)``: ``fallback[i]`` is True where query i exceeded ``max_work``
    (its row is then filled by :func:`scan_topk` here), ``work[i]`` its probes + candidates.
    """
    Q = q.shape[0]
    n = db.shape[0]
    out_d = np.full((Q, k), -1, np.int32)
    out_i = np.full((Q, k), -1, np.int64)
    fb = np.zeros(Q, np.uint8)
    work = np.zeros(Q, np.int64)
    if Q == 0 or n == 0:
        return out_d, out_i, fb.astype(bool), work
    if not _use_numba():
        d, i = scan_topk(q, db, bits, k)
        return d, i, np.ones(Q, bool), work
    try:
        _nb_mih_j(
            np.ascontiguousarray(q), db, n, int(k), 64 * q.shape[1] + 1, qkeys, key_bits, offsets,
            offset_base, ids, key_masks, int(max_work), out_d, out_i, fb, work,
        )  # fmt: skip
    except Exception as exc:  # pragma: no cover
        _failed(exc)
        d, i = scan_topk(q, db, bits, k)
        return d, i, np.ones(Q, bool), work
    fallback = fb.astype(bool)
    if fallback.any():
        rows = np.nonzero(fallback)[0]
        d, i = scan_topk(q[rows], db, bits, k)
        out_d[rows] = d
        out_i[rows] = i
    return out_d, out_i, fallback, work
