"""Representative selection (density-weighted farthest point on the kNN graph) against seeded random
selection: cluster coverage of a Gaussian mixture, label accuracy on the demo digits; budgets and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashguard.errors import ConfigError
from hashguard.labeling import (
    budget_count,
    knn_graph,
    label_pool,
    propagate_labels,
    select_random,
    select_representative,
)

CLUSTER_SIZES = (400, 200, 100, 50, 20, 12, 10, 8)


def mixture(seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Eight Gaussian clusters in 16-D with very unequal sizes (800 items; the smallest holds 1 %): centres
    on random directions at radius 4, isotropic spread 0.25 per dimension."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLUSTER_SIZES), 16))
    centres = 4 * centres / np.linalg.norm(centres, axis=1, keepdims=True)
    points = np.concatenate([c + 0.25 * rng.normal(size=(n, 16)) for c, n in zip(centres, CLUSTER_SIZES, strict=True)])
    return torch.tensor(points), np.repeat(np.arange(len(CLUSTER_SIZES)), CLUSTER_SIZES)


def picks_to_cover(order: np.ndarray, cluster: np.ndarray) -> int:
    """How many picks of ``order`` it takes until every cluster has one."""
    seen: set[int] = set()
    for position, item in enumerate(order, start=1):
        seen.add(int(cluster[item]))
        if len(seen) == len(CLUSTER_SIZES):
            return position
    return len(order) + 1


# Measured (x86-64), mixture seeds 0-4: representative selection covers all 8 clusters in exactly 8 picks every
# time; random orders (5 per mixture) need 29 - 461 picks (median about 110). The bound 12 leaves room; the
# random bound asserts the mixture is hard for random picks (expected ~100 picks for the 1 % cluster alone).
@pytest.mark.parametrize("seed", range(5))
def test_representative_covers_every_cluster_with_fewer_picks(seed: int) -> None:
    points, cluster = mixture(seed)
    graph = knn_graph(points, 10)
    representative = picks_to_cover(select_representative(points, graph, 20), cluster)
    random = [picks_to_cover(select_random(len(cluster), len(cluster), 10 * seed + t), cluster) for t in range(5)]
    assert representative <= 12, representative
    assert representative < min(random), (representative, random)
    assert np.median(random) > 3 * representative, random


def test_selection_is_distinct_deterministic_and_exhaustive() -> None:
    points, _ = mixture(0)
    points = points[:60]
    graph = knn_graph(points, 5)
    order = select_representative(points, graph, 60)
    assert sorted(order.tolist()) == list(range(60))  # a full budget picks every item once
    assert np.array_equal(order, select_representative(points, graph, 60))
    assert order[0] == int(torch.argmax(graph.in_degree()))  # the densest item (first maximum) comes first
    random = select_random(60, 10, seed=3)
    assert len(set(random.tolist())) == 10 and np.array_equal(random, select_random(60, 10, seed=3))


# Measured (x86-64), demo-mnist pools of the first 1,000 training digits of data seeds 0-4, raw-pixel features:
# label accuracy of representative selection minus the mean of 3 random selections (seeds 0-2)
#   1 % (10 labels): 0.098, 0.174, 0.200, 0.153, 0.216 (representative 0.535 - 0.631, random 0.295 - 0.581)
#   5 % (50 labels): 0.019, 0.068, 0.072, 0.068, 0.001, mean 0.046 (representative 0.782 - 0.828)
# At 5 % single random draws sometimes beat the representative one, so the 5 % claim is about the mean over the
# seeds. Margins: about half the smallest gap at 1 %, about half the mean gap at 5 %.
def test_representative_labels_the_demo_better_than_random() -> None:
    from hashguard.data import SubsetDataset, open_dataset
    from hashguard.labeling.features import pixel_features

    def accuracy(graph, picks: np.ndarray, truth: torch.Tensor) -> float:
        labels = propagate_labels(graph, torch.as_tensor(picks), truth[picks]).labels
        return float((labels == truth).all(dim=1).double().mean())

    gaps: dict[float, list[float]] = {0.01: [], 0.05: []}
    for data_seed in range(5):
        pool = SubsetDataset(open_dataset("demo-mnist", seed=data_seed).train, np.arange(1000))
        truth = torch.as_tensor(pool.labels, dtype=torch.float64)
        features = pixel_features(pool)
        graph = knn_graph(features, 10)
        for budget, found in gaps.items():
            count = budget_count(budget, len(pool))
            chosen = accuracy(graph, select_representative(features, graph, count), truth)
            random = [accuracy(graph, select_random(len(pool), count, s), truth) for s in range(3)]
            found.append(chosen - float(np.mean(random)))
    # label_pool is this same chain (features, graph, selection, propagation): the last case again through it
    assert label_pool(pool, 0.05, "representative").summary["label_accuracy"] == pytest.approx(chosen, abs=1e-12)
    assert min(gaps[0.01]) > 0.05, gaps
    assert float(np.mean(gaps[0.05])) > 0.02, gaps


def test_budgets_as_counts_fractions_and_percentages() -> None:
    assert budget_count(7, 100) == 7 and budget_count(100, 100) == 100
    assert budget_count(0.05, 2000) == 100 and budget_count("5%", 2000) == 100 and budget_count(1.0, 37) == 37
    assert budget_count(0.001, 100) == 1  # a fraction always buys at least one label
    assert budget_count("20", 50) == 20 and budget_count("0.5", 50) == 25


@pytest.mark.parametrize("budget", [0, -3, 101, 1.5, 0.0, -0.2, "none", True, float("nan"), "0%"])
def test_bad_budgets_are_one_config_error_line(budget: object) -> None:
    with pytest.raises(ConfigError) as error:
        budget_count(budget, 100)
    assert "\n" not in str(error.value) and "budget" in str(error.value)


def test_label_pool_refuses_bad_input_before_any_work(tiny_splits) -> None:
    with pytest.raises(ConfigError, match="exceeds the pool of 300"):
        label_pool(tiny_splits.train, 301)
    with pytest.raises(ConfigError, match="unknown label selection"):
        label_pool(tiny_splits.train, 10, "densest")
    with pytest.raises(ConfigError, match="pixels' or a checkpoint"):
        label_pool(tiny_splits.train, 10, features="no/such/dir")
