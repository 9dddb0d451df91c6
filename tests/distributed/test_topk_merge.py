"""Merging per-shard top-k lists (hashguard.distributed.topk) against a brute-force (distance, index) ranking,
in one process: shards searched one by one, as the ranks of a sharded search would."""

from __future__ import annotations

import numpy as np
import pytest

from hashguard.distributed.topk import merge_topk, sharded_search
from hashguard.errors import ConfigError, DataError
from hashguard.retrieval import HammingIndex


def _tied_codes(rng: np.random.Generator, n: int, bits: int = 8, distinct: int = 5) -> np.ndarray:
    """``n`` codes drawn from only ``distinct`` different ones: many exact duplicates, many distance ties."""
    pool = rng.choice([-1, 1], size=(distinct, bits)).astype(np.int8)
    return pool[rng.integers(0, distinct, size=n)]


def _brute_force(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full ranking by ascending (distance, index) with numpy's lexsort; -1 past the database size."""
    bits = queries.shape[1]
    dist = (bits - queries.astype(np.int64) @ database.astype(np.int64).T) // 2
    ids = np.broadcast_to(np.arange(database.shape[0]), dist.shape)
    order = np.lexsort((ids, dist), axis=1)
    out_d = np.full((queries.shape[0], k), -1, np.int64)
    out_i = np.full((queries.shape[0], k), -1, np.int64)
    kept = min(k, database.shape[0])
    out_d[:, :kept] = np.take_along_axis(dist, order, axis=1)[:, :kept]
    out_i[:, :kept] = order[:, :kept]
    return out_d, out_i


def test_merge_of_hand_made_lists():
    # shard A holds items 5 and 9, shard B items 2 and 7; distance ties are broken by the smaller index
    d, i = merge_topk([np.array([[1, 3]]), np.array([[1, 2]])], [np.array([[5, 9]]), np.array([[2, 7]])], 3)
    assert d.tolist() == [[1, 1, 2]] and i.tolist() == [[2, 5, 7]]
    assert d.dtype == np.int32 and i.dtype == np.int64
    # missing entries (-1) sort last; more columns than entries are filled with -1
    d, i = merge_topk([np.array([[4, -1]]), np.array([[0, -1]])], [np.array([[3, -1]]), np.array([[8, -1]])], 5)
    assert d.tolist() == [[0, 4, -1, -1, -1]] and i.tolist() == [[8, 3, -1, -1, -1]]


@pytest.mark.parametrize("k", [1, 4, 10, 37, 60])
def test_shard_searches_merge_into_the_single_index_search(k):
    rng = np.random.default_rng(7)
    database = _tied_codes(rng, 37)
    queries = np.concatenate([_tied_codes(rng, 6), rng.choice([-1, 1], size=(3, 8)).astype(np.int8)])
    whole = HammingIndex(bits=8)
    whole.add(database)
    expected_d, expected_i = whole.search(queries, k)
    # the index itself follows the rule (the reference the merge must reproduce)
    brute_d, brute_i = _brute_force(queries, database, k)
    np.testing.assert_array_equal(expected_d, brute_d)
    np.testing.assert_array_equal(expected_i, brute_i)
    # uneven shards, one empty and one smaller than k; each searched on its own with global offsets
    bounds = [0, 3, 3, 20, 37]
    parts_d, parts_i = [], []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        d, i = sharded_search(database[start:stop].reshape(-1, 8), start, queries, k)
        parts_d.append(d)
        parts_i.append(i)
    merged_d, merged_i = merge_topk(parts_d, parts_i, k)
    np.testing.assert_array_equal(merged_d, expected_d)
    np.testing.assert_array_equal(merged_i, expected_i)
    # the shards' order does not matter: the rule is a total order
    shuffled_d, shuffled_i = merge_topk(parts_d[::-1], parts_i[::-1], k)
    np.testing.assert_array_equal(shuffled_i, expected_i)
    np.testing.assert_array_equal(shuffled_d, expected_d)


def test_one_process_sharded_search_is_the_index_search():
    rng = np.random.default_rng(3)
    database = _tied_codes(rng, 25)
    index = HammingIndex(bits=8)
    index.add(database)
    queries = _tied_codes(rng, 4)
    d, i = sharded_search(index, None, queries, 30)  # one process: offset 0, k beyond the database
    expected_d, expected_i = index.search(queries, 30)
    np.testing.assert_array_equal(d, expected_d)
    np.testing.assert_array_equal(i, expected_i)
    assert (i[:, 25:] == -1).all() and (d[:, 25:] == -1).all()


def test_bad_inputs_are_refused():
    one = np.zeros((2, 3), np.int64)
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        merge_topk([one], [one], 0)
    with pytest.raises(DataError, match="one distance and one index array per shard"):
        merge_topk([one], [], 3)
    with pytest.raises(DataError, match="same Q"):
        merge_topk([one, np.zeros((3, 3))], [one, np.zeros((3, 3))], 3)
    with pytest.raises(ConfigError, match="offset"):
        sharded_search(np.ones((2, 8), np.int8), -1, np.ones((1, 8), np.int8), 2)
