"""Label propagation (Zhou et al., NIPS 2004) on the kNN graph: a three-item graph solved by hand, the
conjugate-gradient solve against a dense brute-force solve, multi-hot decoding, progressive rounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hashguard.errors import ConfigError
from hashguard.labeling import knn_graph, propagate_labels
from hashguard.labeling.graph import EDGE_POWER
from hashguard.labeling.propagation import class_scores, decode, solve_propagation


def path_graph() -> torch.Tensor:
    """Three unit vectors at angles 0, 30 and 60 degrees: with k = 1, 0 -> 1, 1 -> 0 (a tie with 2, the lower
    index wins) and 2 -> 1, all edges of weight cos(30)^3 = c."""
    angles = torch.tensor([0.0, math.pi / 6, math.pi / 3], dtype=torch.float64)
    return torch.stack([angles.cos(), angles.sin()], dim=1)


def test_three_item_graph_by_hand() -> None:
    """W = A + A^T has W01 = 2c, W12 = c; D = (2c, 3c, c); S01 = 2c / sqrt(2c * 3c) = sqrt(2/3) = s and
    S12 = c / sqrt(3c * c) = 1/sqrt(3) = t. det(I - a S) = 1 - a^2 (s^2 + t^2) = 1 - a^2 and the inverse is
    [[1 - a^2 t^2, a s, a^2 s t], [a s, 1, a t], [a^2 s t, a t, 1 - a^2 s^2]] / (1 - a^2)."""
    graph = knn_graph(path_graph(), 1)
    assert graph.neighbours.squeeze(1).tolist() == [1, 0, 1]
    s, t = math.sqrt(2 / 3), 1 / math.sqrt(3)
    expected_s = torch.tensor([[0, s, 0], [s, 0, t], [0, t, 0]], dtype=torch.float64)
    assert torch.allclose(graph.operator().dense(), expected_s, atol=1e-12)
    assert graph.in_degree().tolist() == [1.0, 2.0, 0.0]
    a = 0.9
    inverse = torch.tensor(
        [[1 - a * a * t * t, a * s, a * a * s * t], [a * s, 1, a * t], [a * a * s * t, a * t, 1 - a * a * s * s]],
        dtype=torch.float64,
    ) / (1 - a * a)
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    solved = solve_propagation(graph.operator(), targets, alpha=a)
    assert torch.allclose(solved, inverse @ targets, atol=1e-10)
    # item 1 is the weighted average of items 0 (class A) and 2 (class B): (a s, a t) / (a s + a t)
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    scores, mass = class_scores(graph.operator(), labels, torch.tensor([True, False, True]), alpha=a)
    assert scores[1].tolist() == pytest.approx([s / (s + t), t / (s + t)], abs=1e-10)
    assert mass[1].item() == pytest.approx((a * s + a * t) / (1 - a * a), abs=1e-10)
    result = propagate_labels(graph, torch.tensor([0, 2]), labels[[0, 2]], rounds=1, alpha=a)
    assert result.labels.tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]] and result.single_label
    assert result.confidence[1].item() == pytest.approx(math.sqrt(2) / (1 + math.sqrt(2)), abs=1e-10)
    assert EDGE_POWER == 3.0  # the weights cancel in S above whatever the power; this pins the documented value


@pytest.mark.parametrize("seed", range(3))
def test_conjugate_gradients_equal_a_dense_solve(seed: int) -> None:
    """S built densely from the neighbour table with loops (W_ij += a_ij, W_ji += a_ij) and solved by numpy."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(30, 5, generator=generator, dtype=torch.float64).abs()
    graph = knn_graph(features, 4)
    weights = graph.similarity.clamp_min(0).numpy() ** EDGE_POWER
    dense = np.zeros((30, 30))
    for i in range(30):
        for slot, j in enumerate(graph.neighbours[i].tolist()):
            dense[i, j] += weights[i, slot]
            dense[j, i] += weights[i, slot]
    scale = 1 / np.sqrt(dense.sum(axis=1))
    s_matrix = scale[:, None] * dense * scale[None, :]
    targets = torch.rand(30, 3, generator=generator, dtype=torch.float64)
    expected = np.linalg.solve(np.eye(30) - 0.95 * s_matrix, targets.numpy())
    assert np.allclose(solve_propagation(graph.operator(), targets, alpha=0.95).numpy(), expected, atol=1e-8)


def test_multi_hot_decoding_by_hand() -> None:
    scores = torch.tensor([[0.9, 0.6, 0.1], [0.2, 0.4, 0.3], [0.5, 0.0, 1.0]], dtype=torch.float64)
    labels, confidence = decode(scores, single_label=False)
    # every class at or above 0.5; row 1 has none, so its top class; confidence = min |2p - 1|
    assert labels.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert confidence.tolist() == pytest.approx([0.2, 0.2, 0.0])
    labels, confidence = decode(scores, single_label=True)
    assert labels.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]] and confidence.tolist() == [0.9, 0.4, 1.0]


def two_blobs(seed: int, multi: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Two tight groups of 20 in 6-D; single-label: classes 0 / 1; multi-label: {0, 2} / {1, 2}."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(6, dtype=torch.float64)[:2] * 5
    features = torch.cat([centres[g] + 0.3 * torch.randn(20, 6, generator=generator, dtype=torch.float64)
                          for g in (0, 1)])
    rows = [[1, 0, 1], [0, 1, 1]] if multi else [[1, 0], [0, 1]]
    return features, torch.tensor([rows[0]] * 20 + [rows[1]] * 20, dtype=torch.float64)


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("rounds", [1, 3])
def test_two_groups_are_labelled_from_one_seed_each(multi: bool, rounds: int) -> None:
    features, truth = two_blobs(0, multi)
    graph = knn_graph(features, 5)
    seeds = torch.tensor([3, 27])
    result = propagate_labels(graph, seeds, truth[seeds], rounds=rounds)
    assert torch.equal(result.labels, truth) and result.single_label is not multi
    assert result.round[seeds].tolist() == [0, 0] and int(result.round.max()) == rounds
    assert torch.equal(result.confidence[seeds], torch.ones(2, dtype=torch.float64))
    assert (result.labels.sum(dim=1) >= 1).all()  # every item keeps at least one label


def test_progressive_rounds_accept_equal_shares() -> None:
    """Of 38 open items in 3 rounds: ceil(38 / 3) = 13, then ceil(25 / 2) = 13, then the last 12."""
    features, truth = two_blobs(1, False)
    result = propagate_labels(knn_graph(features, 5), torch.tensor([0, 39]), truth[[0, 39]], rounds=3)
    assert torch.bincount(result.round).tolist() == [2, 13, 13, 12]


def test_an_unreachable_item_gets_the_most_common_label_with_no_confidence() -> None:
    """k = 1 on two far pairs: items 2 and 3 have no path to the labelled items 0 and 1."""
    features = torch.tensor([[1.0, 0.0], [0.99, 0.1], [-1.0, 0.0], [-0.99, -0.1]], dtype=torch.float64)
    labels = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    result = propagate_labels(knn_graph(features, 1), torch.tensor([0, 1]), labels, rounds=1)
    assert result.labels[2:].tolist() == [[0.0, 1.0], [0.0, 1.0]] and result.confidence[2:].tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("seeds", "rounds", "message"),
    [([], 1, "at least one"), ([0, 0], 1, "distinct"), ([5], 1, "distinct"), ([0], 0, "rounds")],
)
def test_bad_propagation_inputs(seeds: list[int], rounds: int, message: str) -> None:
    graph = knn_graph(torch.rand(4, 3, generator=torch.Generator().manual_seed(0)), 2)
    with pytest.raises(ConfigError, match=message):
        propagate_labels(graph, torch.tensor(seeds, dtype=torch.long), torch.ones(len(seeds), 2), rounds=rounds)
    with pytest.raises(ConfigError, match="alpha"):
        solve_propagation(graph.operator(), torch.ones(4, 1, dtype=torch.float64), alpha=1.0)


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_knn_graph_equals_brute_force_in_any_chunking(chunk: int | None) -> None:
    """Neighbours by a stable numpy sort of the full cosine matrix (self excluded); in-degree by counting."""
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(25, 6, generator=generator, dtype=torch.float64)
    features[7] = features[3] * 2.0  # an exact tie in cosine: the lower index must come first
    graph = knn_graph(features, 4, chunk=chunk)
    unit = features.numpy() / np.linalg.norm(features.numpy(), axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    expected = np.argsort(-cosine, axis=1, kind="stable")[:, :4]
    assert np.array_equal(graph.neighbours.numpy(), expected)
    assert np.allclose(graph.similarity.numpy(), np.take_along_axis(cosine, expected, axis=1), atol=1e-12)
    assert graph.in_degree().tolist() == np.bincount(expected.ravel(), minlength=25).tolist()
    with pytest.raises(ConfigError, match="neighbours"):
        knn_graph(features, 0)
