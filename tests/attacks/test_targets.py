"""Target labels (docs/attacks.md): disjoint from the query, seeded, saved and reused, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from hashguard.attacks import load_or_create_target_labels, load_target_labels, save_target_labels, select_target_labels
from hashguard.errors import ConfigError, DataError


def _labels(seed, n, c=6, p=0.35):
    rng = np.random.default_rng(seed)
    return (rng.random((n, c)) < p).astype(np.float32)


def test_targets_share_no_label_and_come_from_the_database():
    queries, database = _labels(0, 50), _labels(1, 200)
    queries[0] = 0  # zero-label query: any candidate
    targets = select_target_labels(queries, database, seed=3)
    assert targets.shape == queries.shape
    assert np.all((queries * targets).sum(axis=1) == 0)
    assert np.all(targets.sum(axis=1) > 0)
    db_rows = {tuple(r) for r in (database > 0).astype(np.float32)}
    assert all(tuple(t) in db_rows for t in targets)
    assert np.array_equal(targets, select_target_labels(queries, database, seed=3))
    assert not np.array_equal(targets, select_target_labels(queries, database, seed=4))


def test_no_candidate_is_a_clear_error():
    database = np.eye(3, dtype=np.float32)
    with pytest.raises(ConfigError, match="query 0"):
        select_target_labels(np.ones((1, 3), np.float32), database)
    with pytest.raises(ConfigError):
        select_target_labels(np.ones((1, 3), np.float32), np.zeros((4, 3), np.float32))


def test_save_load_roundtrip_and_reuse(tmp_path):
    queries, database = _labels(5, 20), _labels(6, 100)
    path = tmp_path / "targets.json"
    first = load_or_create_target_labels(path, queries, database, seed=1)
    again = load_or_create_target_labels(path, queries, database, seed=99)  # file wins over the seed
    assert np.array_equal(first, again)
    assert np.array_equal(load_target_labels(path), first)
    with pytest.raises(DataError, match="20 target labels"):
        load_target_labels(path, num_queries=21)
    with pytest.raises(DataError, match="other query labels"):
        load_target_labels(path, query_labels=_labels(7, 20))
    with pytest.raises(DataError, match="not found"):
        load_target_labels(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="not a hashguard target-label file"):
        load_target_labels(tmp_path / "bad.json")
    save_target_labels(tmp_path / "plain.json", first)
    assert np.array_equal(load_target_labels(tmp_path / "plain.json"), first)
