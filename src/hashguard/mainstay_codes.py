"""Mainstay codes (DMFL) of SAAT and the CgAT centre code (docs/attacks.md).

Reference: X. Yuan, Z. Zhang, X. Wang, L. Wu, "Semantic-Aware Adversarial Training for Reliable Deep Hashing
Retrieval", IEEE TIFS 18:4681-4694, 2023 (DMFL, "discriminative mainstay features learning"); the centre-code
variant is from X. Wang et al., "CgAT: Center-Guided Adversarial Training for Deep Hashing-Based Retrieval",
WWW 2023.

For a query label y_i (the true label, or the target label of a targeted attack) and training codes B with
labels Y:

* c_ij = <y_i, Y_j> / (||y_i|| ||Y_j|| + 1e-8) (label cosine similarity, in [0, 1]);
* positives P_i = {j : c_ij > 0}, negatives N_i = {j : c_ij = 0};
* w+_ij = c_ij / sum_j' c_ij' (all 0 when P_i is empty);
* w-_ij = 1[j in N_i] / |N_i| (all 0 when N_i is empty);
* m_i = sign( sum_j w+_ij B_j - sum_j w-_ij B_j ).

m_i maximises sum_j w+_ij <h, B_j> - sum_j w-_ij <h, B_j> over h in {-1, +1}^K: the objective is linear and
separates per bit, so the bitwise sign is optimal; a component that is exactly 0 is a tie (either value is
optimal). A zero label vector has no positives: its mainstay code is sign(-mean of all training codes), and a
zero-label training item is a negative for every query.

The CgAT centre code (``weighting="uniform"``) uses the same sets with unweighted positives,
m_i = sign(mean_{P_i} B_j - mean_{N_i} B_j).

Everything is vectorised over the query batch and chunked over the training set: each chunk adds its weighted
sums (sum_j c_ij B_j, sum_j c_ij, sum_{j in N_i} B_j, |N_i|) to running totals in float64, so memory is
O(B x chunk) and the result does not depend on the chunk size beyond float64 rounding.
"""

from __future__ import annotations

import torch

from hashguard.errors import ConfigError

WEIGHTINGS = ("cosine", "uniform")
#: where the training codes B come from (``mainstay_from``): the attacked network's sign codes of the training
#: items (the paper's protocol), or an ADSH checkpoint's learned database codes V with the pool's labels
#: (Jiang and Li, AAAI 2018: V are the codes the retrieval system actually stores for the training pool)
MAINSTAY_SOURCES = ("network", "database")
TIE_BREAKS = (None, "positive", "negative", "random")
_COSINE_EPS = 1e-8


def mainstay_scores(
    labels: torch.Tensor,
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    weighting: str = "cosine",
    chunk_size: int = 8192,
) -> torch.Tensor:
    """The real-valued DMFL scores sum_j w+_ij B_j - sum_j w-_ij B_j, shape (B, K), float64.

    ``labels`` (B, C) are non-negative label vectors, ``train_codes`` (N, K) codes in {-1, 0, +1} (any dtype)
    and ``train_labels`` (N, C). ``weighting="cosine"`` is SAAT's DMFL, ``"uniform"`` CgAT's centre code.
    The computation runs on the device of ``train_codes``.
    """
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be positive, got {chunk_size}")
    if labels.dim() != 2 or train_labels.dim() != 2 or train_codes.dim() != 2:
        raise ConfigError("labels (B, C), train_codes (N, K) and train_labels (N, C) must be 2-D")
    if train_codes.shape[0] != train_labels.shape[0]:
        raise ConfigError(
            f"train_codes has {train_codes.shape[0]} rows but train_labels has {train_labels.shape[0]}"
        )
    if labels.shape[1] != train_labels.shape[1]:
        raise ConfigError(f"labels have {labels.shape[1]} classes, training labels {train_labels.shape[1]}")
    device = train_codes.device
    y = labels.detach().to(device=device, dtype=torch.float64)
    if (y < 0).any():
        raise ConfigError("label vectors must be non-negative")
    batch, bits = y.shape[0], train_codes.shape[1]
    y_norm = y.norm(dim=1, keepdim=True)
    pos_sum = torch.zeros(batch, bits, dtype=torch.float64, device=device)
    pos_weight = torch.zeros(batch, 1, dtype=torch.float64, device=device)
    neg_sum = torch.zeros(batch, bits, dtype=torch.float64, device=device)
    neg_count = torch.zeros(batch, 1, dtype=torch.float64, device=device)
    for start in range(0, train_codes.shape[0], chunk_size):
        codes = train_codes[start : start + chunk_size].detach().to(torch.float64)
        other = train_labels[start : start + chunk_size].detach().to(device=device, dtype=torch.float64)
        cosine = (y @ other.t()) / (y_norm * other.norm(dim=1).unsqueeze(0) + _COSINE_EPS)
        positive = cosine > 0
        weight = cosine if weighting == "cosine" else positive.to(torch.float64)
        negative = (~positive).to(torch.float64)
        pos_sum += weight @ codes
        pos_weight += weight.sum(dim=1, keepdim=True)
        neg_sum += negative @ codes
        neg_count += negative.sum(dim=1, keepdim=True)
    # Empty sets give all-zero weights (the reference code turns 1/0 = inf into 0).
    pos_mean = torch.where(pos_weight > 0, pos_sum / pos_weight.clamp_min(1e-300), torch.zeros_like(pos_sum))
    neg_mean = torch.where(neg_count > 0, neg_sum / neg_count.clamp_min(1.0), torch.zeros_like(neg_sum))
    return pos_mean - neg_mean


def mainstay_codes(
    labels: torch.Tensor,
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    chunk_size: int = 8192,
    weighting: str = "cosine",
    tie_break: str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mainstay codes m = sign(sum w+ B - sum w- B) (SAAT DMFL, Yuan et al., IEEE TIFS 2023), shape (B, K).

    Returns float32 codes on the device of ``train_codes``. With ``tie_break=None`` a component whose score
    is exactly 0 stays 0 (the reference behaviour); ``"positive"`` / ``"negative"`` resolve ties to +1 / -1
    and ``"random"`` draws +-1 from ``generator`` (required, on the codes' device). An empty training set
    gives all-zero scores, i.e. all-tie codes. ``weighting="uniform"`` gives CgAT's centre code.
    """
    if tie_break not in TIE_BREAKS:
        raise ConfigError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    scores = mainstay_scores(labels, train_codes, train_labels, weighting=weighting, chunk_size=chunk_size)
    codes = torch.sign(scores).to(torch.float32)
    if tie_break is None:
        return codes
    ties = codes == 0
    if tie_break == "positive":
        fill = torch.ones_like(codes)
    elif tie_break == "negative":
        fill = -torch.ones_like(codes)
    else:
        if generator is None:
            raise ConfigError("tie_break='random' needs a seeded torch.Generator")
        bits = torch.randint(0, 2, codes.shape, generator=generator, device=generator.device)
        fill = (2 * bits - 1).to(device=codes.device, dtype=codes.dtype)
    return torch.where(ties, fill, codes)


def center_codes(
    labels: torch.Tensor,
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    chunk_size: int = 8192,
    tie_break: str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """CgAT's centre code sign(mean_P B - mean_N B), unweighted positives (docs/attacks.md, CgAT variant)."""
    return mainstay_codes(
        labels,
        train_codes,
        train_labels,
        chunk_size=chunk_size,
        weighting="uniform",
        tie_break=tie_break,
        generator=generator,
    )


def mainstay_objective(
    candidates: torch.Tensor,
    labels: torch.Tensor,
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    weighting: str = "cosine",
) -> torch.Tensor:
    """sum_j w+_ij <h_c, B_j> - sum_j w-_ij <h_c, B_j> for candidate codes ``candidates`` (M, K): (B, M).

    The quantity the mainstay code maximises; used by tests and for diagnostics.
    """
    scores = mainstay_scores(labels, train_codes, train_labels, weighting=weighting)
    return scores @ candidates.to(device=scores.device, dtype=torch.float64).t()


__all__ = [
    "mainstay_codes",
    "mainstay_scores",
    "center_codes",
    "mainstay_objective",
    "WEIGHTINGS",
    "TIE_BREAKS",
    "MAINSTAY_SOURCES",
]
