"""Metrics against plain per-query references written out explicitly here."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from hashguard.errors import DataError, HashguardError
from hashguard.retrieval import (
    _kernels,
    average_precisions,
    evaluate_retrieval,
    mean_average_precision,
    precision_at_n,
    precision_recall_curve,
    precision_recall_within_radius,
    targeted_mean_average_precision,
    tie_aware_mean_average_precision,
)
from hashguard.retrieval.codes import pack_codes, pack_labels

# ------------------------------------------------------------------------------------------------------------
# plain references
# ------------------------------------------------------------------------------------------------------------


def ref_distances(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    K = q.shape[1]
    return (K - q.astype(np.int64) @ db.astype(np.int64).T) // 2


def ref_relevance(ql: np.ndarray, dl: np.ndarray) -> np.ndarray:
    return (ql.astype(np.float64) @ dl.astype(np.float64).T) > 0


def ref_ap_from_ranked_rel(ranked_rel: np.ndarray) -> float:
    hits = 0
    total = 0.0
    for pos, r in enumerate(ranked_rel, start=1):
        if r:
            hits += 1
            total += hits / pos
    return total / hits if hits else 0.0


def ref_map(q, db, ql, dl, topk):
    D = ref_distances(q, db)
    rel = ref_relevance(ql, dl)
    aps = []
    for i in range(q.shape[0]):
        order = np.argsort(D[i], kind="stable")  # (distance, index)
        if topk is not None:
            order = order[:topk]
        aps.append(ref_ap_from_ranked_rel(rel[i, order]))
    return float(np.mean(aps)), np.array(aps)


def ref_tie_aware_ap(d: np.ndarray, rel: np.ndarray, topk: int | None) -> float:
    """Average AP over every ordering inside each equal-distance group (full enumeration)."""
    groups = [np.nonzero(d == v)[0] for v in np.unique(d)]
    perms = [list(itertools.permutations(g)) for g in groups]
    total = 0.0
    count = 0
    for combo in itertools.product(*perms):
        order = np.concatenate([np.array(c, dtype=np.int64) for c in combo])
        if topk is not None:
            order = order[:topk]
        total += ref_ap_from_ranked_rel(rel[order])
        count += 1
    return total / count


def random_case(rng, n_q, n_db, bits, n_classes, multi=True, p_label=0.25, zero_rows=True):
    q = np.where(rng.random((n_q, bits)) < 0.5, -1, 1).astype(np.int8)
    db = np.where(rng.random((n_db, bits)) < 0.5, -1, 1).astype(np.int8)
    if multi:
        ql = (rng.random((n_q, n_classes)) < p_label).astype(np.float32)
        dl = (rng.random((n_db, n_classes)) < p_label).astype(np.float32)
    else:
        ql = np.eye(n_classes, dtype=np.float32)[rng.integers(0, n_classes, n_q)]
        dl = np.eye(n_classes, dtype=np.float32)[rng.integers(0, n_classes, n_db)]
    if zero_rows:
        ql[0] = 0
        dl[:3] = 0
    return q, db, ql, dl


# ------------------------------------------------------------------------------------------------------------
# mAP
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("multi", [True, False])
@pytest.mark.parametrize("topk", [1, 5, 37, 200, 250, None])
def test_map_matches_reference_with_ties(multi, topk):
    rng = np.random.default_rng(11 + (topk or 0) + 1000 * multi)
    q, db, ql, dl = random_case(rng, 40, 200, 8, 6, multi=multi)
    expected, aps = ref_map(q, db, ql, dl, topk)
    got = mean_average_precision(q, db, ql, dl, topk=topk)
    assert got == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(average_precisions(q, db, ql, dl, topk=topk), aps, atol=1e-12)


def test_map_counts_queries_without_relevant_items_as_zero():
    rng = np.random.default_rng(3)
    q, db, ql, dl = random_case(rng, 10, 60, 8, 4, multi=False, zero_rows=False)
    ql[:] = 0
    ql[:, 3] = 1
    dl[:, 3] = 0  # nothing in the database has class 3 ...
    ql[5] = 0
    ql[5, 0] = 1  # ... except what query 5 can see
    aps = average_precisions(q, db, ql, dl, topk=20)
    assert np.all(aps[np.arange(10) != 5] == 0)
    assert mean_average_precision(q, db, ql, dl, topk=20) == pytest.approx(aps[5] / 10)


def test_zero_label_rows_are_never_relevant():
    rng = np.random.default_rng(4)
    q, db, ql, dl = random_case(rng, 6, 40, 8, 3)
    ql[1] = 0
    aps = average_precisions(q, db, ql, dl)
    assert aps[1] == 0.0
    # a database row without label never counts: removing its label changes nothing, dropping it changes ranks
    dl2 = dl.copy()
    dl2[10:] = 0
    expected, _ = ref_map(q, db, ql, dl2, None)
    assert mean_average_precision(q, db, ql, dl2) == pytest.approx(expected, abs=1e-12)


def test_map_accepts_tensors_floats_and_class_indices():
    rng = np.random.default_rng(5)
    q, db, ql, dl = random_case(rng, 12, 80, 16, 5, multi=False, zero_rows=False)
    base = mean_average_precision(q, db, ql, dl, topk=30)
    assert (
        mean_average_precision(
            torch.from_numpy(q).float(),
            torch.from_numpy(db).double(),
            torch.from_numpy(ql),
            torch.from_numpy(dl),
            topk=30,
        )
        == base
    )
    assert (
        mean_average_precision(q.astype(np.float32), db.astype(np.int64), ql.argmax(1), dl, topk=30) == base
    )


def test_targeted_map_uses_target_labels():
    rng = np.random.default_rng(6)
    q, db, ql, dl = random_case(rng, 15, 90, 8, 5, multi=False, zero_rows=False)
    targets = np.roll(ql, 1, axis=1)
    expected, _ = ref_map(q, db, targets, dl, 25)
    assert targeted_mean_average_precision(q, db, targets, dl, topk=25) == pytest.approx(expected, abs=1e-12)
    assert expected != pytest.approx(ref_map(q, db, ql, dl, 25)[0])


def _pass_both_ways(q, db, ql, dl, bits, **kw):
    """rank_pass through the dispatcher (numba when present) and through the NumPy version."""
    args = [pack_codes(q), pack_codes(db), pack_labels(ql > 0), pack_labels(dl > 0)]
    fast = _kernels.rank_pass(*args, bits, **kw)
    Q, K1 = q.shape[0], bits + 1
    prefix = min(kw.get("prefix", 0), db.shape[0])
    levels = kw.get("n_levels", 0) if kw.get("full") else 0
    slow = (
        np.zeros((Q, K1), np.int64),
        np.zeros((Q, K1), np.int64),
        np.zeros((Q, (prefix + 63) // 64), np.uint64),
        np.zeros(Q),
        np.zeros((Q, levels)),
    )
    _kernels._np_pass(*args, prefix, bool(kw.get("full")), levels, bool(kw.get("floor_mode")), *slow)
    return fast, slow


@pytest.mark.parametrize(
    "kw",
    [
        {"prefix": 0},
        {"prefix": 40},
        {"prefix": 40, "hist": False},
        {"prefix": 10_000},
        {"full": True, "n_levels": 20},
        {"full": True, "n_levels": 7, "floor_mode": True, "prefix": 33},
    ],
)
def test_numpy_fallback_matches_numba_kernel(kw):
    rng = np.random.default_rng(7)
    q, db, ql, dl = random_case(rng, 30, 150, 12, 5)
    fast, slow = _pass_both_ways(q, db, ql, dl, 12, **kw)
    hist = kw.get("hist", True) or kw.get("full") or not kw.get("prefix")
    for i, (a, b) in enumerate(zip(fast, slow, strict=True)):
        if i < 2 and not hist:
            continue  # not asked for: unspecified
        np.testing.assert_allclose(a, b, atol=1e-12, rtol=0)
    if _kernels.HAVE_NUMBA:
        assert not _kernels._NUMBA_BROKEN  # the numba kernels compiled and ran: no silent fallback


# ------------------------------------------------------------------------------------------------------------
# tie-aware mAP
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_tie_aware_ap_matches_enumeration(seed):
    rng = np.random.default_rng(100 + seed)
    n_db = int(rng.integers(4, 8))
    bits = 3
    q, db, ql, dl = random_case(rng, 2, n_db, bits, 3, p_label=0.5, zero_rows=False)
    D = ref_distances(q, db)
    rel = ref_relevance(ql, dl)
    for topk in [1, 2, 3, n_db - 1, n_db, n_db + 2, None]:
        got = average_precisions(q, db, ql, dl, topk=topk, tie_aware=True)
        for i in range(2):
            assert got[i] == pytest.approx(ref_tie_aware_ap(D[i], rel[i], topk), abs=1e-12), (topk, i)


def test_tie_aware_equals_plain_map_without_ties():
    # 12 distinct distances: codes 0b111..1 with i leading flips -> all distances differ, no ties
    bits = 12
    db = np.ones((bits + 1, bits), np.int8)
    for i in range(bits + 1):
        db[i, :i] = -1
    q = np.ones((1, bits), np.int8)
    rng = np.random.default_rng(9)
    dl = (rng.random((bits + 1, 2)) < 0.5).astype(float)
    ql = np.array([[1.0, 1.0]])
    for topk in (3, 7, None):
        assert tie_aware_mean_average_precision(q, db, ql, dl, topk) == pytest.approx(
            mean_average_precision(q, db, ql, dl, topk), abs=1e-12
        )


def test_tie_aware_single_group_closed_form():
    # all items tied: expected AP over the whole ranking of m relevant in n is (1/m) sum_j E[j / P_j]
    q = np.ones((1, 4), np.int8)
    db = np.ones((6, 4), np.int8)
    dl = np.array([[1], [0], [1], [0], [0], [1]], float)
    got = tie_aware_mean_average_precision(q, db, [[1.0]], dl)
    expect = 0.0
    n, m = 6, 3
    for subset in itertools.combinations(range(1, n + 1), m):
        expect += sum((j + 1) / p for j, p in enumerate(subset)) / m
    expect /= math.comb(n, m)
    assert got == pytest.approx(expect, abs=1e-12)


# ------------------------------------------------------------------------------------------------------------
# P@N, PR curve, radius
# ------------------------------------------------------------------------------------------------------------


def test_precision_at_n_matches_reference():
    rng = np.random.default_rng(12)
    q, db, ql, dl = random_case(rng, 25, 120, 8, 5)
    ns = [1, 10, 50, 120, 300]
    got = precision_at_n(q, db, ql, dl, ns=ns)
    D = ref_distances(q, db)
    rel = ref_relevance(ql, dl)
    for n in ns:
        vals = []
        for i in range(q.shape[0]):
            order = np.argsort(D[i], kind="stable")[:n]
            vals.append(rel[i, order].sum() / len(order))
        assert got[n] == pytest.approx(np.mean(vals), abs=1e-12)


def ref_pr(q, db, ql, dl, levels, rounding, empty):
    D = ref_distances(q, db)
    rel = ref_relevance(ql, dl)
    curves = []
    for i in range(q.shape[0]):
        order = np.argsort(D[i], kind="stable")
        cum = np.cumsum(rel[i, order])
        T = int(cum[-1])
        if T == 0:
            if empty == "zero":
                curves.append(np.zeros(levels))
            continue
        row = []
        for lv in range(1, levels + 1):
            exact = T * lv / levels
            need = math.floor(exact + 1e-9) if rounding == "floor" else math.ceil(exact - 1e-9)
            if need == 0:
                row.append(1.0)
            else:
                first = int(np.nonzero(cum == need)[0][0]) + 1
                row.append(need / first)
        curves.append(row)
    return np.mean(np.array(curves), axis=0), len(curves)


@pytest.mark.parametrize("rounding", ["ceil", "floor"])
@pytest.mark.parametrize("empty", ["exclude", "zero"])
def test_pr_curve_matches_reference(rounding, empty):
    rng = np.random.default_rng(13)
    q, db, ql, dl = random_case(rng, 30, 100, 8, 6, p_label=0.15)
    got = precision_recall_curve(q, db, ql, dl, n_levels=100, rounding=rounding, empty=empty)
    expected, used = ref_pr(q, db, ql, dl, 100, rounding, empty)
    np.testing.assert_allclose(got["precision"], expected, atol=1e-12)
    assert got["n_queries"] == used
    assert got["n_queries_without_relevant"] >= 1  # query 0 has no label
    assert got["recall"][28] == pytest.approx(0.29)


def test_pr_curve_float_rounding_regression():
    # T = 100 relevant, level 0.29: int(100 * 0.29) == 28 in float arithmetic; the curve must use 29
    db = np.ones((100, 8), np.int8)
    q = np.ones((1, 8), np.int8)
    dl = np.ones((100, 1))
    got = precision_recall_curve(q, db, [[1.0]], dl, rounding="floor")
    assert got["precision"] == [1.0] * 100
    assert int(100 * 0.29) == 28


def test_radius_matches_reference():
    rng = np.random.default_rng(14)
    q, db, ql, dl = random_case(rng, 20, 90, 8, 4)
    D = ref_distances(q, db)
    rel = ref_relevance(ql, dl)
    for radius in (0, 2, 5, 8, 20):
        got = precision_recall_within_radius(q, db, ql, dl, radius=radius)
        ps, rs = [], []
        for i in range(q.shape[0]):
            ball = D[i] <= radius
            hit = (ball & rel[i]).sum()
            ps.append(hit / ball.sum() if ball.sum() else 0.0)
            rs.append(hit / rel[i].sum() if rel[i].sum() else 0.0)
        assert got["precision"] == pytest.approx(np.mean(ps), abs=1e-12)
        assert got["recall"] == pytest.approx(np.mean(rs), abs=1e-12)


def test_evaluate_retrieval_is_consistent_and_json_ready():
    import json

    rng = np.random.default_rng(15)
    q, db, ql, dl = random_case(rng, 20, 150, 8, 5)
    rep = evaluate_retrieval(q, db, ql, dl, topk=40, ns=[10, 20], pr_levels=10, radius=1)
    json.dumps(rep)
    assert rep["map"] == pytest.approx(mean_average_precision(q, db, ql, dl, 40), abs=1e-12)
    assert rep["map_all"] == pytest.approx(mean_average_precision(q, db, ql, dl), abs=1e-12)
    assert rep["map_tie_aware"] == pytest.approx(tie_aware_mean_average_precision(q, db, ql, dl, 40))
    assert rep["precision_at_n"]["precision"] == pytest.approx(
        list(precision_at_n(q, db, ql, dl, [10, 20]).values())
    )
    assert rep["radius"] == precision_recall_within_radius(q, db, ql, dl, 1)
    assert rep["n_queries_without_label"] == int((ql.sum(axis=1) == 0).sum()) >= 1


# ------------------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_data_error():
    rng = np.random.default_rng(16)
    q, db, ql, dl = random_case(rng, 5, 20, 8, 3)
    with pytest.raises(DataError, match="code length mismatch"):
        mean_average_precision(q[:, :6], db, ql, dl)
    with pytest.raises(DataError, match="label width mismatch"):
        mean_average_precision(q, db, ql[:, :2], dl)
    bad = q.copy()
    bad[2, 3] = 0
    with pytest.raises(DataError, match=r"\+-1"):
        mean_average_precision(bad, db, ql, dl)
    with pytest.raises(DataError, match=r"\+-1"):
        mean_average_precision(q, np.where(db > 0, 1, 0), ql, dl)
    with pytest.raises(DataError, match="label rows"):
        mean_average_precision(q, db, ql[:4], dl)
    with pytest.raises(HashguardError):
        mean_average_precision(q, db, ql, dl, topk=0)


# ------------------------------------------------------------------------------------------------------------
# the fast paths of the ranking pass and the evaluator
# ------------------------------------------------------------------------------------------------------------


def _sparse_path_taken(q, db, ql, dl, bits, k) -> int:
    """The candidates the numba pass lists for query 0 in a top-k ranking (asserting that it does list them: the
    guessed cut is tried when 8 * (1.25 k + 1024) <= N). The listed candidates are ranked when there are at least
    k of them and at most N / 8; otherwise the whole database is ranked."""
    from hashguard.retrieval.metrics import _prepare

    p = _prepare(q, db, ql, dl)
    shift, proto = _kernels._pass_layout(bits)
    N = db.shape[0]
    buf = np.empty((N + 7) // 8 * 8, proto.dtype)
    if p.q.shape[1] == 1 and p.ql.shape[1] == 1:
        dbw, dlw = np.ascontiguousarray(p.db[:, 0]), np.ascontiguousarray(p.dl[:, 0])
        _kernels._fill_w1(p.q[0, 0], p.ql[0, 0], dbw, dlw, buf, shift)
    else:
        _kernels._fill_generic(p.q, p.db, p.ql, p.dl, 0, buf, shift)
    target = k + k // 4 + 1024
    assert 8 * target <= N
    G = _kernels._guess_cut(buf, N, shift, bits + 1, np.zeros(bits + 1, np.int64), target)
    return _kernels._candidates(buf, N, shift, G, np.empty(N + 1, np.int32))


@pytest.mark.parametrize(
    "bits,n_classes",
    # one word; codes of two words (K not a multiple of 64); two-byte buffer and labels of two words (C > 64)
    [(16, 5), (70, 3), (130, 70)],
)
def test_top_k_paths_match_reference_on_a_large_database(bits, n_classes):
    rng = np.random.default_rng(21 + bits)
    q, db, ql, dl = random_case(rng, 6, 24_000, bits, n_classes, p_label=0.2)
    if _kernels.HAVE_NUMBA and bits == 16:
        nc = _sparse_path_taken(q, db, ql, dl, bits, 1000)
        assert 1000 <= nc and 8 * nc <= db.shape[0]  # these sizes do take the listed-candidates path
    for topk in (1, 37, 1000, None):
        _, aps = ref_map(q, db, ql, dl, topk)
        np.testing.assert_allclose(average_precisions(q, db, ql, dl, topk=topk), aps, atol=1e-12, rtol=0)
    got = precision_at_n(q, db, ql, dl, ns=[1, 10, 999, 1000])
    D = ref_distances(q, db)
    rel = ref_relevance(ql, dl)
    for n in (1, 10, 999, 1000):
        expect = np.mean([rel[i, np.argsort(D[i], kind="stable")[:n]].mean() for i in range(q.shape[0])])
        assert got[n] == pytest.approx(expect, abs=1e-12)


def test_top_k_when_the_sampled_cut_falls_short():
    # every 16th item (the ones a 1-in-16 sample sees) is at distance 0, every other item at distance 8: the
    # sample predicts 16 times more close items than there are, the guessed cut holds fewer than k items and
    # the pass must fall back to ranking the whole database
    bits, n = 16, 48_000
    q = np.ones((1, bits), np.int8)
    db = np.ones((n, bits), np.int8)
    db[np.arange(n) % 16 != 0, :8] = -1
    rng = np.random.default_rng(5)
    dl = (rng.random((n, 3)) < 0.3).astype(float)
    ql = np.array([[1.0, 0.0, 1.0]])
    if _kernels.HAVE_NUMBA:
        nc = _sparse_path_taken(q, db, ql, dl, bits, 3500)
        assert 8 * nc <= n and nc == 3000 < 3500
    for topk in (2999, 3000, 3001, 3500):
        _, aps = ref_map(q, db, ql, dl, topk)
        assert average_precisions(q, db, ql, dl, topk=topk)[0] == pytest.approx(aps[0], abs=1e-12)


def test_evaluator_answers_equal_the_functions_and_reuse_the_pass():
    from hashguard.retrieval import RetrievalEvaluator

    rng = np.random.default_rng(31)
    q, db, ql, dl = random_case(rng, 25, 400, 10, 6)
    ev = RetrievalEvaluator(q, db, ql, dl)
    report = ev.evaluate(topk=50, ns=[5, 20, 100], pr_levels=10, radius=2, include_per_query=True)
    assert ev.passes == 1
    kw = {"topk": 50, "ns": [5, 20, 100], "pr_levels": 10, "radius": 2, "include_per_query": True}
    assert report == evaluate_retrieval(q, db, ql, dl, **kw)
    # everything below is answered from what the first pass kept
    for topk in (1, 7, 50, None):
        for tie in (False, True):
            np.testing.assert_array_equal(
                ev.average_precisions(topk, tie_aware=tie), average_precisions(q, db, ql, dl, topk, tie_aware=tie)
            )
    assert ev.mean_average_precision(20) == mean_average_precision(q, db, ql, dl, 20)
    assert ev.precision_at_n([3, 100]) == precision_at_n(q, db, ql, dl, [3, 100])
    for radius in (0, 3, 10):
        assert ev.precision_recall_within_radius(radius) == precision_recall_within_radius(q, db, ql, dl, radius)
    assert ev.precision_recall_curve(10, empty="zero") == precision_recall_curve(q, db, ql, dl, 10, empty="zero")
    assert ev.passes == 1
    # beyond what is kept: one more pass each, same answers as the functions
    assert ev.mean_average_precision(300) == mean_average_precision(q, db, ql, dl, 300)
    assert ev.passes == 2
    assert ev.precision_recall_curve(8, "floor") == precision_recall_curve(q, db, ql, dl, 8, "floor")
    assert ev.passes == 3
    assert ev.nbytes > 25 * 11 * 16  # at least the two histograms


def test_evaluator_in_any_order_and_k_beyond_the_database():
    from hashguard.retrieval import RetrievalEvaluator

    rng = np.random.default_rng(32)
    q, db, ql, dl = random_case(rng, 15, 120, 8, 4, multi=False)
    ev = RetrievalEvaluator(q, db, ql, dl)
    assert ev.mean_average_precision(500) == pytest.approx(ref_map(q, db, ql, dl, None)[0], abs=1e-12)
    assert ev.mean_average_precision(10) == pytest.approx(ref_map(q, db, ql, dl, 10)[0], abs=1e-12)
    assert ev.passes == 2  # the whole ranking, then a top-10 ranking (the whole ranking keeps no rank bits)
    assert ev.mean_average_precision(10, tie_aware=True) == tie_aware_mean_average_precision(q, db, ql, dl, 10)
    assert ev.passes == 2
    with pytest.raises(HashguardError):
        ev.mean_average_precision(0)
    with pytest.raises(HashguardError):
        ev.precision_recall_curve(rounding="up")
