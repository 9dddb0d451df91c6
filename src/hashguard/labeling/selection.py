"""Which items of an unlabelled pool to label: representative (density-weighted coverage) or random.

**Representative** selection is a density-weighted farthest-point (k-centre) greedy:

* the density of item i is its in-degree rho_i in the directed kNN graph, the representativeness score of
  Yan et al. ("Progressive Representative Labeling for Deep Semi-Supervised Learning", arXiv 2108.06070, 2021);
* the first pick is the item of largest density; each next pick maximises rho_i ** beta * d(i, chosen), where
  d is the Euclidean distance between L2-normalised features to the nearest item already chosen (the k-centre
  greedy of Sener and Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set Approach", ICLR
  2018, weighted by density).

The distance term spreads the picks over every region of the pool (a cluster far from everything chosen
scores high whatever its size), the density term keeps them on dense, typical items rather than outliers (an
item nobody counts among its neighbours has density 0 and is picked only once every item of positive density
is). Ties go to the lower index, so the selection is deterministic.

**Random** selection (the baseline) is a seeded uniform draw without replacement.
"""

from __future__ import annotations

import numpy as np
import torch

from hashguard.labeling.graph import KnnGraph, unit_rows, work_dtype

#: selection rules by name
SELECTIONS = ("representative", "random")
#: exponent of the density in the representative score (0.5 labelled the demo digits better than 1.0: with 1.0
#: a few hubs with very high in-degree win over typical items of other regions; docs/labeling.md)
DENSITY_POWER = 0.5


def select_random(pool_size: int, count: int, seed: int) -> np.ndarray:
    """``count`` distinct indices of ``range(pool_size)``, drawn uniformly with ``np.random.default_rng(seed)``."""
    return np.random.default_rng(seed).choice(pool_size, size=count, replace=False).astype(np.int64)


def select_representative(
    features: torch.Tensor, graph: KnnGraph, count: int, density_power: float = DENSITY_POWER
) -> np.ndarray:
    """``count`` distinct indices in pick order: density-weighted farthest-point greedy (module text)."""
    unit = unit_rows(features.to(work_dtype(features.device)))
    density = graph.in_degree().to(unit.dtype) ** density_power
    size = unit.shape[0]
    chosen = torch.zeros(size, dtype=torch.bool, device=unit.device)
    nearest = torch.full((size,), float("inf"), dtype=unit.dtype, device=unit.device)
    picks: list[int] = []
    for _ in range(count):
        if picks:
            score = density * nearest
        else:
            score = density.clone()
        score = torch.where(chosen, torch.full_like(score, -1.0), score)
        pick = int(torch.argmax(score))  # the first maximum: ties go to the lower index
        picks.append(pick)
        chosen[pick] = True
        distance = (2.0 - 2.0 * (unit @ unit[pick])).clamp_min(0.0).sqrt()
        nearest = torch.minimum(nearest, distance)
    return np.asarray(picks, dtype=np.int64)
