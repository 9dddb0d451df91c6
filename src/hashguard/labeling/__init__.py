"""Representative labelling for scarce labels: label a few well-chosen items of an unlabelled training pool and
propagate their labels over a kNN graph (after Yan et al., "Progressive Representative Labeling for Deep
Semi-Supervised Learning", arXiv 2108.06070, 2021), then train any hashing method on the propagated labels.

* :mod:`~hashguard.labeling.budget` - a budget as a count, a fraction or a percentage;
* :mod:`~hashguard.labeling.features` - raw-pixel (randomly projected) or checkpoint features;
* :mod:`~hashguard.labeling.graph` - the cosine kNN graph, in-degrees, the normalised affinity;
* :mod:`~hashguard.labeling.selection` - representative (density-weighted farthest point) or random picks;
* :mod:`~hashguard.labeling.propagation` - progressive label propagation (Zhou et al., NIPS 2004), multi-hot;
* :mod:`~hashguard.labeling.relabeled` - a split with substituted labels, for the trainer;
* :mod:`~hashguard.labeling.pool` - the whole chain: :func:`label_pool`.
"""

from hashguard.labeling.budget import budget_count, check_budget
from hashguard.labeling.graph import KnnGraph, knn_graph
from hashguard.labeling.pool import PoolLabels, label_accuracy, label_pool
from hashguard.labeling.propagation import Propagation, propagate_labels
from hashguard.labeling.relabeled import RelabeledDataset
from hashguard.labeling.selection import SELECTIONS, select_random, select_representative

__all__ = [
    "SELECTIONS",
    "KnnGraph",
    "PoolLabels",
    "Propagation",
    "RelabeledDataset",
    "budget_count",
    "check_budget",
    "knn_graph",
    "label_accuracy",
    "label_pool",
    "propagate_labels",
    "select_random",
    "select_representative",
]
