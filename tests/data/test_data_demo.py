"""The embedded demo dataset: deterministic seeded splits of real MNIST digits, no download."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashguard.data import DatasetSplits, describe_sources, open_dataset
from hashguard.data.demo import load_mnist_5k
from hashguard.errors import DataError


def test_csv_layout_is_pixels_then_label() -> None:
    images, digits = load_mnist_5k()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert np.bincount(digits, minlength=10).tolist() == [500] * 10
    assert images.max() == 255 and images[:, :, 0, 0].max() == 0  # corners of MNIST digits are blank


def test_single_label_splits() -> None:
    splits = open_dataset("demo-mnist", seed=0)
    assert isinstance(splits, DatasetSplits)
    assert (len(splits.train), len(splits.query), len(splits.database)) == (2000, 500, 4500)
    assert splits.image_shape == (1, 28, 28) and splits.num_classes == 10
    image, label, index = splits.query[3]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert label.sum() == 1 and index == 3
    # class-balanced query and train; query and database disjoint; train inside database
    assert np.bincount(splits.query.labels.argmax(1)).tolist() == [50] * 10
    assert np.bincount(splits.train.labels.argmax(1)).tolist() == [200] * 10
    q, d, t = (set(s.source_rows.tolist()) for s in (splits.query, splits.database, splits.train))
    assert not q & d and t <= d and len(q | d) == 5000
    assert len(splits.mean) == 1 and 0.05 < splits.mean[0] < 0.3 and splits.std[0] > 0.1


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    a, b, c = (open_dataset("demo-mnist", seed=s) for s in (7, 7, 8))
    assert a.fingerprint() == b.fingerprint()
    assert np.array_equal(a.query.source_rows, b.query.source_rows)
    assert a.fingerprint() != c.fingerprint()
    m1, m2, m3 = (open_dataset("demo-mnist-multi", seed=s) for s in (7, 7, 8))
    assert m1.fingerprint() == m2.fingerprint() != m3.fingerprint()


def test_multi_label_variant() -> None:
    splits = open_dataset("demo-mnist-multi", seed=0)
    assert (len(splits.train), len(splits.query), len(splits.database)) == (2000, 500, 4500)
    assert splits.image_shape == (1, 56, 56)
    for part in (splits.train, splits.query, splits.database):
        per_image = part.labels.sum(1)
        assert per_image.min() >= 1  # at least one digit
        assert 1.5 < per_image.mean() < 2.5  # about 2 filled cells, some digits repeated
    # no digit image shared between query and database composites
    q_rows = splits.query.source_rows
    d_rows = splits.database.source_rows
    q_used = set(q_rows[q_rows >= 0].tolist())
    d_used = set(d_rows[d_rows >= 0].tolist())
    assert q_used and d_used and not q_used & d_used
    # labels match the digits in the cells
    _, digits = load_mnist_5k()
    for row, label in zip(q_rows[:20], splits.query.labels[:20], strict=True):
        assert set(np.flatnonzero(label).tolist()) == set(digits[row[row >= 0]].tolist())
    # a random ranking is far from perfect: the fraction of relevant pairs (random mAP) is ~0.35
    relevant = (splits.query.labels @ splits.database.labels.T) > 0
    assert 0.25 < relevant.mean() < 0.45
    image, label, _ = splits.database[0]
    assert image.shape == (1, 56, 56) and 0 <= float(image.min()) and float(image.max()) <= 1


def test_resize_and_channels_options() -> None:
    splits = open_dataset("demo-mnist", image_size=32, channels=3, query_size=100, train_size=100)
    assert splits.image_shape == (3, 32, 32) and len(splits.mean) == 3
    image = splits.train[0][0]
    assert image.shape == (3, 32, 32) and torch.equal(image[0], image[1])
    assert len(splits.query) == 100 and len(splits.database) == 4900


def test_bad_source_and_options() -> None:
    with pytest.raises(DataError, match="unknown dataset source 'nope'"):
        open_dataset("nope")
    with pytest.raises(DataError, match=r"demo-mnist has no parameter\(s\) bogus; it accepts query_size"):
        open_dataset("demo-mnist", bogus=1)
    with pytest.raises(DataError, match="train_size"):
        open_dataset("demo-mnist", train_size=10_000)
    with pytest.raises(DataError, match="takes no root"):
        open_dataset("demo-mnist", root="somewhere")
    assert "demo-mnist-multi" in describe_sources()
