"""Reduce a long activation pattern to K bits: drop constant units, then choose K of the rest.

The raw neural code of He et al. ("Neural networks behave as hash encoders: An empirical study", arXiv
2101.05490, 2021) has one bit per ReLU unit: tens of thousands of bits for a small CNN. A retrieval code
of K bits is chosen from the units that are not constant over the fitting set (a constant bit separates
nothing; the paper drops such bits too):

* **balanced** (:func:`balanced_selection`): a greedy choice of bits that are each near balance (on for
  about half the fitting set) and little correlated with the bits already chosen;
* **random** (:func:`random_selection`): a seeded uniform subset of the non-constant units.

The third reduction, the sign of a seeded random projection of the standardised activations, is built in
:mod:`hashguard.activation_codes.model` from the same non-constant units.
"""

from __future__ import annotations

import torch

from hashguard.errors import ConfigError

__all__ = ["non_constant_units", "balanced_selection", "random_selection", "bit_correlations"]


def non_constant_units(states: torch.Tensor) -> torch.Tensor:
    """Indices (int64, ascending) of the columns of the bool ``states`` (N, M) that take both values."""
    if states.dim() != 2 or states.shape[0] == 0:
        raise ConfigError("activation codes need a non-empty fitting set")
    on = states.sum(dim=0)
    return torch.nonzero((on > 0) & (on < states.shape[0])).flatten()


def _check_count(available: int, bits: int) -> None:
    if bits < 1:
        raise ConfigError(f"code length must be positive, got {bits}")
    if bits > available:
        raise ConfigError(
            f"only {available} ReLU units vary over the fitting set, fewer than the {bits} bits asked for: "
            "choose more layers, more fitting items or fewer bits"
        )


def bit_correlations(states: torch.Tensor) -> torch.Tensor:
    """Pearson correlation (the phi coefficient for binary data) between the columns of ``states`` (N, M),
    float64 (M, M); a constant column correlates 0 with everything (and 1 with itself)."""
    x = states.to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    norm = x.norm(dim=0)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    z = x / safe
    corr = z.T @ z
    corr.fill_diagonal_(1.0)
    return corr


def balanced_selection(states: torch.Tensor, bits: int, corr_weight: float = 1.0) -> torch.Tensor:
    """Greedy balanced, low-correlation choice of ``bits`` columns of the bool ``states`` (N, M), all of
    which must vary (call :func:`non_constant_units` first). Returns the chosen column indices, ascending.

    With p_j the fraction of the fitting set on which unit j is on, and rho(j, s) the Pearson correlation of
    units j and s over the fitting set, step t picks the unchosen unit j minimising

        cost(j) = 2 |p_j - 1/2| + corr_weight * max_{s chosen} |rho(j, s)|

    (the max is 0 at the first step; both terms lie in [0, 1]); ties go to the lowest index, so the choice is
    deterministic and needs no seed. ``corr_weight = 0`` picks the K best-balanced units.
    """
    _check_count(states.shape[1], bits)
    if corr_weight < 0:
        raise ConfigError(f"corr_weight must be >= 0, got {corr_weight}")
    x = states.to(torch.float64)
    p = x.mean(dim=0)
    z = x - p
    std = z.norm(dim=0)
    if bool((std == 0).any()):
        raise ConfigError("balanced_selection needs non-constant units only (drop constant ones first)")
    z = z / std
    balance = 2.0 * (p - 0.5).abs()
    worst = torch.zeros_like(p)  # max |rho| with the chosen units so far
    chosen: list[int] = []
    taken = torch.zeros(states.shape[1], dtype=torch.bool)
    for _ in range(bits):
        cost = balance + corr_weight * worst
        cost = torch.where(taken, torch.full_like(cost, float("inf")), cost)
        j = int(torch.argmin(cost))  # first minimum: the lowest index among ties
        chosen.append(j)
        taken[j] = True
        worst = torch.maximum(worst, (z.T @ z[:, j]).abs())
    return torch.tensor(sorted(chosen), dtype=torch.int64)


def random_selection(available: int, bits: int, seed: int) -> torch.Tensor:
    """A uniform random choice of ``bits`` of ``available`` columns (ascending), from a generator seeded with
    ``seed`` (the same seed gives the same choice on every machine)."""
    _check_count(available, bits)
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(available, generator=generator)[:bits].sort().values
