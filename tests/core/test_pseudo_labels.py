"""k-means pseudo-labels of a model trained without labels: seeded, exact on separated clusters, nearest centroid."""

from __future__ import annotations

import itertools

import pytest
import torch

from hashguard.errors import ConfigError
from hashguard.pseudo_labels import (
    DEFAULT_CLUSTERS,
    PseudoLabels,
    PseudoLabelSpec,
    cluster_count,
    kmeans,
    pseudo_label_spec_of,
)


def separated_codes(seed: int, members: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Three 16-bit prototypes at Hamming distance 8 or more from each other; each member flips at most one bit
    of its prototype (so members of one cluster are within distance 2, of different clusters 6 or more)."""
    prototypes = torch.tensor(
        [[1] * 16, [1] * 8 + [-1] * 8, [-1] * 4 + [1] * 4 + [-1] * 4 + [1] * 4], dtype=torch.float32
    )
    generator = torch.Generator().manual_seed(seed)
    truth = torch.arange(3).repeat_interleave(members)
    codes = prototypes[truth].clone()
    flips = torch.randint(0, 17, (codes.shape[0],), generator=generator)  # 16: no flip
    for row, bit in enumerate(flips.tolist()):
        if bit < 16:
            codes[row, bit] *= -1
    order = torch.randperm(codes.shape[0], generator=generator)
    return codes[order], truth[order]


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two assignments group the items identically (cluster numbers may be permuted)."""
    pairs = itertools.combinations(range(len(a)), 2)
    return all((a[i] == a[j]) == (b[i] == b[j]) for i, j in pairs)


@pytest.mark.parametrize("seed", range(5))
def test_separated_clusters_are_recovered(seed: int) -> None:
    codes, truth = separated_codes(seed)
    labels = kmeans(codes, 3, seed=seed)
    assert same_partition(labels.assign(codes), truth)


def test_deterministic_for_a_seed() -> None:
    generator = torch.Generator().manual_seed(0)
    codes = torch.where(torch.rand(200, 12, generator=generator) < 0.5, 1.0, -1.0)
    first, again = kmeans(codes, 6, seed=3), kmeans(codes, 6, seed=3)
    assert torch.equal(first.centroids, again.centroids)
    assert torch.equal(first.one_hot(codes), again.one_hot(codes))
    one_hot = first.one_hot(codes)
    assert one_hot.shape == (200, 6) and torch.equal(one_hot.sum(dim=1), torch.ones(200))
    assert codes.dtype == torch.float32 and torch.equal(kmeans(codes.to(torch.int8), 6, seed=3).centroids,
                                                        first.centroids)


def test_assign_is_the_nearest_centroid_lowest_index_on_ties() -> None:
    centroids = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], dtype=torch.float64)
    codes = torch.tensor([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=torch.int8)
    # [-1, 1] is at squared distance 4 from the first two centroids and 8 from the third: the first wins
    assert PseudoLabels(centroids).assign(codes).tolist() == [0, 1, 2, 0]


def test_fewer_distinct_codes_than_clusters_and_bad_input() -> None:
    codes = torch.tensor([[1.0, -1.0]] * 5 + [[-1.0, 1.0]] * 5)
    labels = kmeans(codes, 4, seed=0)
    assert labels.clusters == 4
    assert same_partition(labels.assign(codes), torch.tensor([0] * 5 + [1] * 5))
    assert kmeans(codes[:2], 5, seed=0).clusters == 5  # more clusters than items
    with pytest.raises(ConfigError):
        kmeans(codes, 0, seed=0)
    with pytest.raises(ConfigError):
        kmeans(torch.zeros(0, 4), 2, seed=0)


def test_cluster_count_and_the_checkpoint_recipe() -> None:
    assert cluster_count(7, 10) == 7
    assert cluster_count(None, 24) == 24
    assert cluster_count(None, None) == DEFAULT_CLUSTERS == cluster_count(None, 1)
    meta = {"method": {"name": "bthash", "params": {"clusters": None, "cluster_seed": 4}}, "num_classes": 10}
    assert pseudo_label_spec_of(meta) == PseudoLabelSpec(10, 4)
    meta["method"]["params"]["clusters"] = 3
    assert pseudo_label_spec_of(meta) == PseudoLabelSpec(3, 4)
    assert pseudo_label_spec_of({"method": {"name": "dpsh", "params": {}}, "num_classes": 10}) is None
    assert pseudo_label_spec_of({"method": {"name": "not-a-method"}}) is None
    assert pseudo_label_spec_of({}) is None
