"""Pseudo-labels for a model trained without labels: k-means clusters of its training codes.

Attacks and defenses built on class semantics (the mainstay codes of SAAT, Yuan et al., IEEE TIFS 2023; the
reference sets of SDHA, Lu et al., ICMR 2021) read the labels of the attacked model's training split. A model
trained without labels (docs/methods.md, ``bthash``) has none to give, so the toolkit substitutes them with
the clusters of its own codes:

* the sign codes B (N x K) of the training split are clustered by k-means (Lloyd, S. P., "Least squares
  quantization in PCM", IEEE Trans. Inf. Theory 1982) with k-means++ seeding (Arthur and Vassilvitskii, SODA
  2007), squared Euclidean distance (on +-1 codes: 2 x the Hamming distance to a centroid that is a code);
* a training item's pseudo-label is the one-hot vector of its cluster (k columns);
* any other image's pseudo-label (a query under attack) is the cluster whose centroid is nearest to its
  clean sign code; ties go to the lowest cluster index.

k is the method's ``clusters`` parameter; unset, it is the number of classes of the data (the label width,
known without reading a label), or :data:`DEFAULT_CLUSTERS` when that is unknown. The seeding draws from a
``torch.Generator`` seeded with the method's ``cluster_seed``; with exact integer distances at seeding and
float64 Lloyd steps the clusters are a function of the codes and the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hashguard.errors import ConfigError

#: k when neither the method nor the data says how many clusters to form
DEFAULT_CLUSTERS = 10
#: Lloyd iterations at most (a run stops earlier once no assignment changes)
MAX_ITERATIONS = 100


@dataclass(frozen=True)
class PseudoLabels:
    """k centroids (k, K) float64 in code space; :meth:`assign` maps codes to clusters."""

    centroids: torch.Tensor

    @property
    def clusters(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, codes: torch.Tensor) -> torch.Tensor:
        """The nearest centroid of each code (N,) long, lowest index on ties; computed on the codes' device."""
        points = codes.detach().to(torch.float64)
        centroids = self.centroids.to(points.device)
        distances = (centroids**2).sum(dim=1).unsqueeze(0) - 2.0 * points @ centroids.t()
        return distances.argmin(dim=1)

    def one_hot(self, codes: torch.Tensor) -> torch.Tensor:
        """One-hot pseudo-labels (N, k) float32 of ``codes`` on their device."""
        return torch.nn.functional.one_hot(self.assign(codes), self.clusters).to(torch.float32)


def _seed_centroids(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: the first centre uniformly, each next one with probability proportional to the squared
    distance to the nearest centre chosen so far (a uniform draw located in the cumulative sums, so that the
    choice depends on exact sums of integers for +-1 codes)."""
    count = points.shape[0]
    first = int(torch.randint(count, (1,), generator=generator))
    chosen = [first]
    nearest = ((points - points[first]) ** 2).sum(dim=1)
    for _ in range(1, k):
        total = float(nearest.sum())
        draw = float(torch.rand(1, generator=generator, dtype=torch.float64))
        if total <= 0:  # fewer distinct codes than clusters: the rest repeat a code (their clusters stay empty)
            index = first
        else:
            cumulative = nearest.cumsum(0)
            index = int(torch.searchsorted(cumulative, torch.tensor([draw * total], dtype=torch.float64)))
            index = min(index, count - 1)
        chosen.append(index)
        nearest = torch.minimum(nearest, ((points - points[index]) ** 2).sum(dim=1))
    return points[chosen].clone()


def kmeans(codes: torch.Tensor, clusters: int, seed: int, iterations: int = MAX_ITERATIONS) -> PseudoLabels:
    """k-means of ``codes`` (N, K) into ``clusters`` clusters, seeded (module docstring); computed on the CPU in
    float64. A cluster that loses all its members keeps its centroid."""
    if clusters < 1:
        raise ConfigError(f"the number of clusters must be positive, got {clusters}")
    if codes.dim() != 2 or codes.shape[0] == 0:
        raise ConfigError(f"k-means needs a non-empty (N, K) code matrix, got shape {tuple(codes.shape)}")
    points = codes.detach().to(device="cpu", dtype=torch.float64)
    generator = torch.Generator().manual_seed(int(seed))
    labels = PseudoLabels(_seed_centroids(points, min(clusters, points.shape[0]), generator))
    centroids = labels.centroids
    if centroids.shape[0] < clusters:  # more clusters than items: the extra ones repeat the first item
        centroids = torch.cat([centroids, points[:1].repeat(clusters - centroids.shape[0], 1)])
    assignment = PseudoLabels(centroids).assign(points)
    for _ in range(iterations):
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        counts = torch.bincount(assignment, minlength=clusters).to(torch.float64).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1.0), centroids)
        updated = PseudoLabels(centroids).assign(points)
        if torch.equal(updated, assignment):
            break
        assignment = updated
    return PseudoLabels(centroids)


def cluster_count(clusters: int | None, num_classes: int | None) -> int:
    """k: ``clusters`` when set, else the number of classes of the data when known (at least 2), else
    :data:`DEFAULT_CLUSTERS`."""
    if clusters is not None:
        return int(clusters)
    if num_classes is not None and int(num_classes) >= 2:
        return int(num_classes)
    return DEFAULT_CLUSTERS


@dataclass(frozen=True)
class PseudoLabelSpec:
    """How to derive pseudo-labels for one unsupervised model: k and the seed of the k-means seeding."""

    clusters: int
    seed: int

    def fit(self, codes: torch.Tensor) -> PseudoLabels:
        return kmeans(codes, self.clusters, self.seed)


def pseudo_label_spec(method: Any) -> PseudoLabelSpec | None:
    """The pseudo-label recipe of a hashing method object, or None for a method trained with labels."""
    if getattr(method, "supervised", True):
        return None
    return PseudoLabelSpec(cluster_count(method.clusters, method.num_classes), int(method.cluster_seed))


def pseudo_label_spec_of(meta: dict[str, Any]) -> PseudoLabelSpec | None:
    """The pseudo-label recipe of a checkpoint (its ``model.json``), or None when its method used labels or the
    method is unknown here."""
    from hashguard.methods.registry import method_class

    method = meta.get("method") or {}
    name = method.get("name")
    if not name:
        return None
    try:
        cls = method_class(str(name))
    except ConfigError:
        return None
    if getattr(cls, "supervised", True):
        return None
    params = method.get("params") or {}
    return PseudoLabelSpec(
        cluster_count(params.get("clusters"), meta.get("num_classes")), int(params.get("cluster_seed", 0))
    )


__all__ = [
    "DEFAULT_CLUSTERS",
    "PseudoLabelSpec",
    "PseudoLabels",
    "cluster_count",
    "kmeans",
    "pseudo_label_spec",
    "pseudo_label_spec_of",
]
