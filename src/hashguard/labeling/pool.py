"""Label a pool under a budget: features -> kNN graph -> selection -> (oracle) labels of the selected items ->
progressive propagation -> the pool with propagated labels.

The "oracle" is the pool's own labels, read only at the selected items; the pool's other labels are read only
to report how accurate the propagated labels are (``label_accuracy``), never to produce them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashguard.data.base import HashingDataset
from hashguard.errors import ConfigError
from hashguard.labeling.budget import budget_count
from hashguard.labeling.features import checkpoint_features, pixel_features
from hashguard.labeling.graph import knn_graph
from hashguard.labeling.propagation import ALPHA, ROUNDS, propagate_labels
from hashguard.labeling.relabeled import RelabeledDataset
from hashguard.labeling.selection import SELECTIONS, select_random, select_representative

#: neighbours per item in the graph
NEIGHBOURS = 10


@dataclass
class PoolLabels:
    """What :func:`label_pool` produced."""

    selected: np.ndarray  #: indices of the labelled items, in pick order
    labels: np.ndarray  #: (N, C) float32 multi-hot: given at ``selected``, propagated elsewhere
    confidence: np.ndarray  #: (N,) confidence of each label when it was accepted (1 at ``selected``)
    summary: dict[str, Any] = field(default_factory=dict)

    def dataset(self, pool: HashingDataset) -> RelabeledDataset:
        """``pool`` with these labels."""
        return RelabeledDataset(pool, self.labels)


def label_accuracy(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``exact``: share of items whose whole label set is right; ``entries``: share of right (item, class)
    entries (for multi-hot labels)."""
    right = (predicted > 0.5) == (truth > 0.5)
    return {"exact": float(right.all(axis=1).mean()), "entries": float(right.mean())}


def pool_features(pool: HashingDataset, features: str, seed: int, device: str | torch.device) -> torch.Tensor:
    """``pixels`` or the pre-activations of the checkpoint directory ``features``, on ``device``."""
    if features == "pixels":
        return pixel_features(pool, seed=seed).to(device)
    if not Path(features).is_dir():
        raise ConfigError(f"label features must be 'pixels' or a checkpoint directory, got {features!r}")
    return checkpoint_features(features, pool, device=str(device)).to(device)


def label_pool(
    pool: HashingDataset,
    budget: Any,
    selection: str = "representative",
    *,
    features: str = "pixels",
    neighbours: int = NEIGHBOURS,
    alpha: float = ALPHA,
    rounds: int = ROUNDS,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> PoolLabels:
    """Select ``budget`` items of ``pool`` (a count, a fraction or ``"N%"``) by ``selection``
    (``representative`` or ``random``, seeded by ``seed``), take their labels and propagate them to the whole
    pool over the cosine kNN graph of ``features`` in ``rounds`` rounds: representative labelling after Yan et
    al. (arXiv 2108.06070, 2021) with the label propagation of Zhou et al. (NIPS 2004); docs/labeling.md."""
    if selection not in SELECTIONS:
        raise ConfigError(f"unknown label selection {selection!r}; choose one of: {', '.join(SELECTIONS)}")
    count = budget_count(budget, len(pool))
    start = time.perf_counter()
    vectors = pool_features(pool, features, seed, device)
    graph = knn_graph(vectors, neighbours)
    if selection == "random":
        selected = select_random(len(pool), count, seed)
    else:
        selected = select_representative(vectors, graph, count)
    truth = np.asarray(pool.labels, dtype=np.float32)
    given = torch.as_tensor(truth[selected], device=vectors.device)
    result = propagate_labels(graph, torch.as_tensor(selected, device=vectors.device), given, rounds, alpha)
    labels = result.labels.float().cpu().numpy()
    others = np.setdiff1d(np.arange(len(pool)), selected)
    accuracy = label_accuracy(labels, truth)
    summary = {
        "budget": budget, "labelled": count, "pool": len(pool), "selection": selection, "features": features,
        "neighbours": graph.k, "alpha": alpha, "rounds": rounds, "seed": seed,
        "single_label": result.single_label,
        "label_accuracy": accuracy["exact"], "label_accuracy_entries": accuracy["entries"],
        "propagated_accuracy": label_accuracy(labels[others], truth[others])["exact"] if others.size else None,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return PoolLabels(selected, labels, result.confidence.float().cpu().numpy(), summary)
