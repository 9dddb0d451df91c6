"""Class-code construction shared by the centre-based losses (CSQ, DPN, OrthoHash).

* :func:`hadamard_centers`: rows of a Sylvester Hadamard matrix stacked with their negations (CSQ).
* :func:`balanced_codes`: seeded random +-1 codes with exactly floor(K/2) entries -1 per row, drawn row by
  row and **rejected while closer than a minimum Hamming distance** to a row already kept (the fallback of
  the original CSQ; docs/methods.md also asks DPN for it).
* :func:`bernoulli_codes`: seeded Bernoulli(1/2) +-1 codes with distinct rows (OrthoHash codebook).
* :func:`label_targets`: the multi-label "sum, fill zeros, threshold" rule of docs/methods.md.

All draws use a CPU ``torch.Generator`` seeded by the caller, so the codes depend on the seed only (not on
the device) and the same seed always gives the same codes.
"""

from __future__ import annotations

import math

import torch

from hashguard.errors import ConfigError

#: Candidates tried for one row before :func:`balanced_codes` gives up.
MAX_DRAWS_PER_ROW = 2000


def default_min_distance(bits: int) -> int:
    """The minimum pairwise Hamming distance the random centres must keep: ceil(K/4).

    Two independent balanced K-bit codes are K/2 apart on average, so K/4 is half the expected distance:
    it rejects near-duplicate centres but is met quickly (a 16-bit draw misses it with probability ~0.5%).
    """
    return max(1, math.ceil(bits / 4))


def check_min_distance(bits: int, min_distance: int | None) -> int:
    """``min_distance`` (default :func:`default_min_distance`) after checking 0 <= d <= K."""
    threshold = default_min_distance(bits) if min_distance is None else int(min_distance)
    if not 0 <= threshold <= bits:
        raise ConfigError(f"minimum Hamming distance must lie in [0, {bits}] for {bits}-bit codes, got {threshold}")
    return threshold


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def sylvester_hadamard(order: int) -> torch.Tensor:
    """Sylvester Hadamard matrix of size ``order`` (a power of two): H_1 = [1], H_2n = [[H, H], [H, -H]]."""
    if not is_power_of_two(order):
        raise ConfigError(f"a Sylvester Hadamard matrix needs a power-of-two order, got {order}")
    h = torch.ones(1, 1)
    while h.shape[0] < order:
        h = torch.cat([torch.cat([h, h], dim=1), torch.cat([h, -h], dim=1)], dim=0)
    return h


def hadamard_available(bits: int, num_classes: int) -> bool:
    """Hadamard centres exist when K is a power of two and 2K >= C."""
    return is_power_of_two(bits) and 2 * bits >= num_classes


def hadamard_centers(bits: int, num_classes: int) -> torch.Tensor:
    """The first C rows of [H_K; -H_K]: mutually orthogonal (or antipodal) centres, C x K."""
    if not hadamard_available(bits, num_classes):
        raise ConfigError(
            f"Hadamard centres need a power-of-two code length K with 2K >= C; got K={bits}, C={num_classes}"
        )
    h = sylvester_hadamard(bits)
    return torch.cat([h, -h], dim=0)[:num_classes].clone()


def _balanced_row(bits: int, generator: torch.Generator) -> torch.Tensor:
    row = torch.ones(bits)
    row[torch.randperm(bits, generator=generator)[: bits // 2]] = -1.0
    return row


def balanced_codes(count: int, bits: int, generator: torch.Generator, min_distance: int | None = None) -> torch.Tensor:
    """``count`` x ``bits`` random +-1 codes, each with exactly floor(K/2) entries -1.

    Rows are drawn one at a time; a candidate closer than ``min_distance`` (Hamming; default
    :func:`default_min_distance`) to any row already kept is redrawn. Raises :class:`ConfigError` when
    :data:`MAX_DRAWS_PER_ROW` candidates in a row all fail (the constraint cannot be met, for example more
    classes than distinct balanced codes).
    """
    if bits < 1 or count < 1:
        raise ConfigError(f"need a positive code length and class count, got K={bits}, C={count}")
    threshold = check_min_distance(bits, min_distance)
    rows: list[torch.Tensor] = []
    for index in range(count):
        for _ in range(MAX_DRAWS_PER_ROW):
            candidate = _balanced_row(bits, generator)
            if not rows:
                break
            kept = torch.stack(rows)
            distances = ((bits - kept @ candidate) / 2).min()
            if distances >= threshold:
                break
        else:
            raise ConfigError(
                f"cannot draw {count} balanced {bits}-bit class codes at Hamming distance >= {threshold} "
                f"(stuck at code {index + 1}); use more bits or a smaller min_distance"
            )
        rows.append(candidate)
    return torch.stack(rows)


def bernoulli_codes(count: int, bits: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` x ``bits`` Bernoulli(1/2) +-1 codes; duplicated rows are redrawn so every class differs."""
    if bits < 63 and count > 2**bits:
        raise ConfigError(f"{count} classes need distinct codes but {bits} bits give only {2**bits}")
    codes = torch.where(torch.rand(count, bits, generator=generator) < 0.5, -1.0, 1.0)
    for index in range(1, count):
        while (codes[:index] == codes[index]).all(dim=1).any():
            codes[index] = torch.where(torch.rand(bits, generator=generator) < 0.5, -1.0, 1.0)
    return codes


def random_signs(bits: int, generator: torch.Generator) -> torch.Tensor:
    """A random +-1 vector of length ``bits`` (the fill vector of the multi-label rule)."""
    return torch.where(torch.rand(bits, generator=generator) < 0.5, -1.0, 1.0)


def label_targets(labels: torch.Tensor, centers: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Per-item target codes from multi-hot labels (docs/methods.md).

    c = sum of the centres of the classes present; zero components are taken from the fixed ``fill``
    vector; target = sign(c). A one-hot row gets exactly its class centre (the single-label rule). A row
    with no label gets ``fill`` itself; the losses exclude such rows (see :func:`labelled_rows`).
    """
    summed = labels.to(centers.dtype) @ centers
    summed = torch.where(summed == 0, fill.expand_as(summed), summed)
    return torch.where(summed > 0, 1.0, -1.0).to(centers.dtype)


def labelled_rows(labels: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the batch rows that carry at least one label."""
    return labels.sum(dim=1) > 0


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, ...) over the rows where ``mask`` holds; 0 (keeping the graph) if none do."""
    per_row = values.reshape(values.shape[0], -1).mean(dim=1)
    count = mask.sum()
    if count == 0:
        return 0.0 * values.sum()
    return (per_row * mask.to(per_row.dtype)).sum() / count.to(per_row.dtype)
