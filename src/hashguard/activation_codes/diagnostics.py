"""Diagnostics of hash codes and of ReLU patterns after He et al. ("Neural networks behave as hash encoders:
An empirical study", arXiv 2101.05490, 2021): how redundant codes are, how well simple algorithms
categorise them, and how many ReLU units an adversarial perturbation switches.

Every function works on any +-1 codes (learned or activation codes) and any network with ``nn.ReLU``
modules. Definitions:

* **redundancy ratio** (the paper's): (N - number of distinct codes) / N over a set of N codes; 0 when every
  item has its own code ("determinism"), close to 1 when the codes collapse.
* **correlated-bit ratio**: the fraction of the K bits j for which another bit k has |rho(j, k)| >= threshold
  (Pearson correlation over the set, default threshold 0.9); a bit constant over the set counts as redundant
  (it carries nothing). 0 for K independent balanced bits, 1 when every bit duplicates another.
* **K-NN accuracy** (the paper uses k = 9 and the Hamming distance): each test code is labelled by the
  labels of its k nearest reference codes (ties in distance broken by reference index, the project's tie
  rule); every neighbour votes for each class it carries, the class with most votes wins (ties: lowest class
  index), and the prediction is correct when the test item carries that class.
* **K-Means accuracy**: Lloyd's K-Means (k-means++ start, seeded) on the codes as points of R^K with as many
  clusters as classes; each cluster is labelled by the class most of its members carry (votes as above) and an
  item is correct when it carries its cluster's class (cluster purity; the paper matches clusters to classes
  one-to-one instead, which can only be lower).
* **flip count**: for an image x and its perturbation x', the number of ReLU units whose binarised state
  (output > 0) differs between x and x'.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hashguard.activation_codes.patterns import find_sites, resolve_sites, unit_states
from hashguard.activation_codes.selection import bit_correlations
from hashguard.errors import ConfigError

__all__ = [
    "redundancy_ratio",
    "correlated_bit_ratio",
    "knn_accuracy",
    "kmeans_accuracy",
    "relu_flips",
    "attack_flips",
    "code_diagnostics",
]


def _codes(codes: Any) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(codes)).to(torch.float64)
    if tensor.dim() != 2 or tensor.shape[0] == 0:
        raise ConfigError("expected a non-empty (N, K) array of +-1 codes")
    return tensor


def _labels(labels: Any, count: int) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(labels)).to(torch.float64)
    if tensor.dim() != 2:
        raise ConfigError("labels must be a (N, classes) multi-hot array")
    if tensor.shape[0] != count:
        raise ConfigError(f"{tensor.shape[0]} labels for {count} codes")
    return tensor


def redundancy_ratio(codes: Any) -> float:
    """(N - number of distinct codes) / N (He et al., 2021)."""
    tensor = _codes(codes)
    distinct = torch.unique(tensor, dim=0).shape[0]
    return (tensor.shape[0] - distinct) / tensor.shape[0]


def correlated_bit_ratio(codes: Any, threshold: float = 0.9) -> float:
    """Fraction of bits that another bit correlates with at |rho| >= ``threshold``; constant bits count."""
    if not 0 < threshold <= 1:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    tensor = _codes(codes)
    constant = (tensor == tensor[:1]).all(dim=0)
    corr = bit_correlations(tensor > 0).abs()
    corr.fill_diagonal_(0.0)
    redundant = constant | (corr >= threshold).any(dim=1)
    return float(redundant.double().mean())


def _hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.shape[1] - a @ b.T) / 2


def knn_accuracy(
    reference_codes: Any, reference_labels: Any, test_codes: Any, test_labels: Any, k: int = 9
) -> float:
    """Accuracy of k-nearest-neighbour voting in Hamming distance (definition in the module docstring)."""
    ref, test = _codes(reference_codes), _codes(test_codes)
    ref_labels, test_lab = _labels(reference_labels, ref.shape[0]), _labels(test_labels, test.shape[0])
    if not 1 <= k <= ref.shape[0]:
        raise ConfigError(f"k must be in [1, {ref.shape[0]}], got {k}")
    if ref.shape[1] != test.shape[1]:
        raise ConfigError("reference and test codes have different lengths")
    distance = _hamming(test, ref)
    order = torch.sort(distance, dim=1, stable=True).indices[:, :k]  # ties: lowest reference index first
    votes = ref_labels[order].sum(dim=1)
    predicted = torch.argmax(votes, dim=1)  # ties: lowest class index
    return float((test_lab.gather(1, predicted[:, None]) > 0).double().mean())


def _kmeans(points: torch.Tensor, clusters: int, seed: int, iterations: int) -> torch.Tensor:
    """Cluster index of each point: k-means++ start from a seeded generator, then Lloyd steps."""
    generator = torch.Generator().manual_seed(int(seed))
    n = points.shape[0]
    centres = [points[int(torch.randint(n, (1,), generator=generator))]]
    for _ in range(1, clusters):
        nearest = torch.cdist(points, torch.stack(centres)).min(dim=1).values ** 2
        if float(nearest.sum()) == 0:
            weights = torch.ones(n, dtype=points.dtype)
        else:
            weights = nearest
        centres.append(points[int(torch.multinomial(weights, 1, generator=generator))])
    centre = torch.stack(centres)
    assign = torch.cdist(points, centre).argmin(dim=1)
    for _ in range(iterations):
        for c in range(clusters):
            members = assign == c
            if bool(members.any()):  # an empty cluster keeps its centre
                centre[c] = points[members].mean(dim=0)
        new = torch.cdist(points, centre).argmin(dim=1)
        if bool((new == assign).all()):
            break
        assign = new
    return assign


def kmeans_accuracy(
    codes: Any, labels: Any, clusters: int | None = None, seed: int = 0, iterations: int = 100
) -> float:
    """Cluster purity of K-Means on the codes (definition in the module docstring); ``clusters`` defaults to
    the number of classes."""
    points = _codes(codes)
    label = _labels(labels, points.shape[0])
    clusters = label.shape[1] if clusters is None else int(clusters)
    if not 1 <= clusters <= points.shape[0]:
        raise ConfigError(f"clusters must be in [1, {points.shape[0]}], got {clusters}")
    assign = _kmeans(points, clusters, seed, iterations)
    votes = torch.zeros(clusters, label.shape[1], dtype=torch.float64).index_add_(0, assign, label)
    cluster_class = torch.argmax(votes, dim=1)
    predicted = cluster_class[assign]
    return float((label.gather(1, predicted[:, None]) > 0).double().mean())


def relu_flips(
    network: nn.Module, clean: torch.Tensor, perturbed: torch.Tensor, layers: list[str | int] | None = None
) -> tuple[torch.Tensor, int]:
    """``(flips, units)``: per image, how many ReLU units of ``layers`` (default: every ReLU site) are on for
    one of ``clean`` / ``perturbed`` and off for the other (int64, shape (B,)), and how many units were read.
    The network runs in eval mode for the call (its mode is restored)."""
    if clean.shape != perturbed.shape:
        raise ConfigError(
            f"clean and perturbed images differ in shape: {tuple(clean.shape)} vs {tuple(perturbed.shape)}"
        )
    device = next(network.parameters()).device
    clean, perturbed = clean.to(device), perturbed.to(device)
    was_training = network.training
    network.eval()
    try:
        sites = [site for site, _ in resolve_sites(find_sites(network, clean[:1]), layers)]
        before = unit_states(network, clean, sites)
        after = unit_states(network, perturbed, sites)
    finally:
        network.train(was_training)
    return (before != after).sum(dim=1).to(torch.int64).cpu(), int(before.shape[1])


def attack_flips(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str = "mainstay",
    *,
    train: Any = None,
    database: Any = None,
    layers: list[str | int] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Attack ``images`` with the registered ``attack`` (parameters ``params``: eps, iterations, step, seed,
    ...; ``train`` / ``database`` for attacks that need those codes, e.g. the mainstay attack of SAAT, Yuan et
    al., IEEE TIFS 2023) and count the ReLU units of ``model`` each adversarial image switches. Returns
    ``flips`` (list of per-image counts), ``mean_flips``, ``units`` and ``mean_flip_fraction``."""
    from hashguard.api import build_attack

    built = build_attack(attack, model, train=train, database=database, **params)
    adversarial = built(images, labels)
    flips, units = relu_flips(model, images, adversarial, layers)
    mean = float(flips.double().mean())
    return {"flips": flips.tolist(), "mean_flips": mean, "units": units, "mean_flip_fraction": mean / units}


def code_diagnostics(
    reference_codes: Any,
    reference_labels: Any,
    test_codes: Any,
    test_labels: Any,
    *,
    k: int = 9,
    threshold: float = 0.9,
    seed: int = 0,
) -> dict[str, float]:
    """Every code diagnostic at once: redundancy and correlated-bit ratios of the reference codes (the
    fitting / training set), K-NN accuracy of the test codes against them, K-Means accuracy of each set."""
    return {
        "redundancy_ratio": redundancy_ratio(reference_codes),
        "test_redundancy_ratio": redundancy_ratio(test_codes),
        "correlated_bit_ratio": correlated_bit_ratio(reference_codes, threshold),
        "knn_accuracy": knn_accuracy(reference_codes, reference_labels, test_codes, test_labels, k),
        "kmeans_accuracy_reference": kmeans_accuracy(reference_codes, reference_labels, seed=seed),
        "kmeans_accuracy_test": kmeans_accuracy(test_codes, test_labels, seed=seed),
    }
