"""CSQ and DPN: class centres (Hadamard / seeded balanced fallback) and hand-computed loss values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from hashguard.errors import ConfigError
from hashguard.methods import build_method

H4 = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=np.float64)
U = np.array(
    [[0.9, -0.5, 0.2, -0.7], [0.8, -0.6, 0.1, 0.3], [-0.4, 0.7, -0.9, 0.5], [0.3, 0.3, -0.3, 0.6]],
    dtype=np.float64,
)
# single label, two labels, another single label, no label
Y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float64)


def hamming_matrix(codes: np.ndarray) -> np.ndarray:
    return (codes[:, None, :] != codes[None, :, :]).sum(axis=2)


def sum_fill_threshold(y: np.ndarray, table: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """docs/methods.md multi-label rule, by loops."""
    out = np.zeros((len(y), table.shape[1]))
    for i, row in enumerate(y):
        for k in range(table.shape[1]):
            total = sum(table[c, k] for c in range(len(row)) if row[c] > 0)
            if total == 0:
                total = fill[k]
            out[i, k] = 1.0 if total > 0 else -1.0
    return out


def test_csq_hadamard_centres_are_orthogonal() -> None:
    method = build_method("csq", bits=16, num_classes=10, num_train=1)
    assert method.center_kind == "hadamard"
    centres = method.centers.numpy()
    assert np.array_equal(centres @ centres.T, 16 * np.eye(10))
    # K < C <= 2K: the negated rows join; distinct centres stay >= K/2 apart
    method = build_method("csq", bits=16, num_classes=24, num_train=1)
    assert method.center_kind == "hadamard"
    distances = hamming_matrix(method.centers.numpy())
    assert distances[~np.eye(24, dtype=bool)].min() >= 8
    small = build_method("csq", bits=4, num_classes=3, num_train=1)
    assert np.array_equal(small.centers.numpy(), H4[:3])


@pytest.mark.parametrize(("bits", "classes"), [(48, 10), (16, 38), (32, 80), (16, 80), (12, 21), (64, 200)])
def test_csq_fallback_centres_meet_min_distance(bits: int, classes: int) -> None:
    method = build_method("csq", bits=bits, num_classes=classes, num_train=1, seed=5)
    assert method.center_kind == "random"
    centres = method.centers.numpy()
    assert centres.shape == (classes, bits)
    assert set(np.unique(centres)) == {-1.0, 1.0}
    assert np.all((centres == -1).sum(axis=1) == bits // 2)  # balanced
    distances = hamming_matrix(centres)
    assert distances[~np.eye(classes, dtype=bool)].min() >= math.ceil(bits / 4)
    same = build_method("csq", bits=bits, num_classes=classes, num_train=1, seed=5)
    assert torch.equal(same.centers, method.centers) and torch.equal(same.fill, method.fill)
    other = build_method("csq", bits=bits, num_classes=classes, num_train=1, seed=6)
    assert not torch.equal(other.centers, method.centers)


def test_csq_impossible_settings_raise() -> None:
    with pytest.raises(ConfigError):
        build_method("csq", bits=2, num_classes=5, num_train=1)  # only two balanced 2-bit codes exist
    with pytest.raises(ConfigError):
        build_method("csq", bits=48, num_classes=10, num_train=1, centers="hadamard")
    with pytest.raises(ConfigError):
        build_method("csq", bits=16, num_classes=10, num_train=1, centers="circles")
    with pytest.raises(ConfigError):
        build_method("csq", bits=16, num_classes=10, num_train=1, min_distance=17)
    forced = build_method("csq", bits=16, num_classes=10, num_train=1, centers="random")
    assert forced.center_kind == "random"


def test_csq_loss_matches_hand_computation() -> None:
    method = build_method("csq", bits=4, num_classes=3, num_train=1, seed=2).double()
    fill = method.fill.numpy()
    targets = sum_fill_threshold(Y, H4[:3], fill)
    assert np.array_equal(targets[0], H4[0]) and np.array_equal(targets[2], H4[2])
    assert np.array_equal(targets[1], np.where(H4[0] + H4[1] == 0, fill, np.sign(H4[0] + H4[1])))
    loss = method(torch.tensor(U), torch.tensor(Y), torch.arange(4))
    p, t = (U + 1) / 2, (targets + 1) / 2
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    central = bce[:3].mean()  # the unlabelled row has no centre
    quantisation = ((np.abs(U) - 1) ** 2).mean()
    assert float(loss) == pytest.approx(central + 0.05 * quantisation, rel=1e-10)


def test_dpn_targets_are_balanced_distant_and_seeded() -> None:
    for bits, classes in [(16, 10), (48, 10), (16, 38), (32, 80), (15, 10)]:
        method = build_method("dpn", bits=bits, num_classes=classes, num_train=1, seed=11)
        table = method.targets_table.numpy()
        assert np.all((table == -1).sum(axis=1) == bits // 2)
        assert hamming_matrix(table)[~np.eye(classes, dtype=bool)].min() >= math.ceil(bits / 4)
        again = build_method("dpn", bits=bits, num_classes=classes, num_train=1, seed=11)
        assert torch.equal(again.targets_table, method.targets_table)
    with pytest.raises(ConfigError):
        build_method("dpn", bits=2, num_classes=4, num_train=1)
    with pytest.raises(ConfigError):
        build_method("dpn", bits=8, num_classes=4, num_train=1, margin=0.0)


def test_dpn_loss_matches_hand_computation() -> None:
    method = build_method("dpn", bits=4, num_classes=3, num_train=1, seed=4).double()
    targets = sum_fill_threshold(Y, method.targets_table.numpy(), method.fill.numpy())
    loss = method(torch.tensor(U), torch.tensor(Y), torch.arange(4))
    hinge = np.maximum(0.0, 1.0 - U * targets)
    assert float(loss) == pytest.approx(hinge[:3].mean(), rel=1e-10)
    wide = build_method("dpn", bits=4, num_classes=3, num_train=1, seed=4, margin=2.0).double()
    loss = wide(torch.tensor(U), torch.tensor(Y), torch.arange(4))
    assert float(loss) == pytest.approx(np.maximum(0.0, 2.0 - U * targets)[:3].mean(), rel=1e-10)


def test_centre_targets_of_one_hot_rows_are_class_centres() -> None:
    for name, attribute in [("csq", "centers"), ("dpn", "targets_table")]:
        method = build_method(name, bits=48, num_classes=10, num_train=1)
        table = getattr(method, attribute)
        assert torch.equal(method.targets(torch.eye(10)), table)


def test_hadamard_rows_distinct_pairs_small() -> None:
    # every pair of 8-bit Hadamard centres (with negations) differs in 4 or 8 bits
    method = build_method("csq", bits=8, num_classes=16, num_train=1)
    codes = method.centers.numpy()
    for a, b in itertools.combinations(range(16), 2):
        assert int((codes[a] != codes[b]).sum()) in (4, 8)
