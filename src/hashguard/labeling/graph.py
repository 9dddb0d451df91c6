"""The k-nearest-neighbour graph of a pool of feature vectors, its in-degrees and its normalised operator.

Features are compared by cosine similarity (rows are L2-normalised). The directed graph has an edge i -> j when
j is one of the ``k`` most similar items to i (i itself excluded). An edge weighs ``max(cos, 0) ** power``
(power 3, as in Iscen, Tolias, Avrithis and Chum, "Label propagation for deep semi-supervised learning", CVPR
2019, section 3.2), and the undirected affinity is W = A + A^T. Propagation uses the symmetric normalisation
S = D^-1/2 W D^-1/2 of Zhou et al. (NIPS 2004), applied without ever forming the N x N matrix: the graph is
stored as an (N, k) neighbour table.

The *in-degree* of j (how many items count j among their k neighbours) is the representativeness score of
Yan et al., "Progressive Representative Labeling for Deep Semi-Supervised Learning" (arXiv 2108.06070, 2021):
a high in-degree marks a density peak ("hub") that many items lie close to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashguard.errors import ConfigError

#: exponent of the cosine similarity on an edge (Iscen et al., CVPR 2019)
EDGE_POWER = 3.0


def work_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (every solve and distance is computed in it), float32 on MPS."""
    return torch.float32 if device.type == "mps" else torch.float64


def unit_rows(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (an all-zero row stays zero)."""
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass
class KnnGraph:
    """A directed kNN graph: ``neighbours[i]`` are the k items most similar to i, ``similarity[i]`` their
    cosine similarities (both (N, k), on the features' device)."""

    neighbours: torch.Tensor
    similarity: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.neighbours.shape[0])

    @property
    def k(self) -> int:
        return int(self.neighbours.shape[1])

    def in_degree(self) -> torch.Tensor:
        """(N,) how many items list each item among their k nearest neighbours."""
        counts = torch.zeros(self.size, dtype=work_dtype(self.neighbours.device), device=self.neighbours.device)
        return counts.index_add_(0, self.neighbours.reshape(-1), torch.ones_like(counts).repeat(self.k))

    def edge_weights(self, power: float = EDGE_POWER) -> torch.Tensor:
        """(N, k) weights a_ij = max(cos_ij, 0) ** power of the directed edges."""
        return self.similarity.to(work_dtype(self.similarity.device)).clamp_min(0.0) ** power

    def operator(self, power: float = EDGE_POWER) -> NormalisedAffinity:
        """S = D^-1/2 (A + A^T) D^-1/2 as a function on (N, C) matrices."""
        return NormalisedAffinity(self.neighbours, self.edge_weights(power))


class NormalisedAffinity:
    """x -> S x with S = D^-1/2 W D^-1/2, W = A + A^T, D = diag(W 1); an isolated item (D = 0) maps to 0."""

    def __init__(self, neighbours: torch.Tensor, weights: torch.Tensor) -> None:
        self.neighbours = neighbours
        self.weights = weights
        ones = torch.ones(neighbours.shape[0], 1, dtype=weights.dtype, device=weights.device)
        degree = self.affinity(ones).squeeze(1)
        self.scale = torch.where(degree > 0, degree.clamp_min(1e-300).rsqrt(), torch.zeros_like(degree))

    def affinity(self, x: torch.Tensor) -> torch.Tensor:
        """W x = A x + A^T x."""
        forward = (self.weights.unsqueeze(2) * x[self.neighbours]).sum(dim=1)
        size, k = self.neighbours.shape
        backward = torch.zeros_like(x).index_add_(
            0, self.neighbours.reshape(-1), (self.weights.reshape(-1, 1) * x.repeat_interleave(k, dim=0))
        )
        return forward + backward

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale.to(x.dtype).unsqueeze(1)
        return scale * self.affinity(scale * x)

    def dense(self) -> torch.Tensor:
        """S as a dense matrix (for checks on small graphs)."""
        return self(torch.eye(self.neighbours.shape[0], dtype=self.weights.dtype, device=self.weights.device))


def knn_graph(features: torch.Tensor, k: int, chunk: int | None = None) -> KnnGraph:
    """The directed cosine kNN graph of ``features`` (N, D): every item's ``k`` most similar other items,
    computed in blocks of ``chunk`` rows (default: at most 1,024 rows and 2^22 similarities per block);
    ties go to the lower index."""
    size = int(features.shape[0])
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"the number of neighbours must be a positive integer, got {k!r}")
    if size < 2:
        raise ConfigError(f"a neighbour graph needs at least 2 items, got {size}")
    k = min(k, size - 1)
    chunk = chunk or max(1, min(1024, 2**22 // size))
    unit = unit_rows(features.to(work_dtype(features.device)))
    neighbours, similarity = [], []
    for start in range(0, size, chunk):
        block = unit[start : start + chunk] @ unit.T
        rows = torch.arange(block.shape[0], device=block.device)
        block[rows, rows + start] = -float("inf")  # never one's own neighbour
        values, index = _top_k_stable(block, k)
        neighbours.append(index)
        similarity.append(values)
    return KnnGraph(torch.cat(neighbours), torch.cat(similarity))


def _top_k_stable(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of each row; equal values ordered by column (a stable sort, not topk, whose tie
    order is unspecified)."""
    values, index = torch.sort(block, dim=1, descending=True, stable=True)
    return values[:, :k], index[:, :k]
