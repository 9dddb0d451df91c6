"""The incremental hashing objective: frozen old codes, free new codes, a query network (docs/lifelong.md).

References: D. Wu, Q. Dai, J. Liu, B. Li, W. Wang, "Deep Incremental Hashing Network for Efficient Image
Retrieval", CVPR 2019 (DIHN); K. Xu, Y. Li, Z. Zheng, H. Li, J. Lv, "Deep Lifelong Cross-modal Hashing", IEEE
TCSVT 2024 (DLCH; multi-label cosine similarity). Both build on ADSH (Jiang and Li, AAAI 2018).

With the store's codes B = [B_old; B_new] (N x K; B_old frozen, B_new free in {-1, +1}), the relaxed codes
u_i = tanh(F(x_i)) of the sampled items Omega (drawn from the old and new items, or the new ones only) and the
target similarity T_ij in [-r, 1] (below), the session minimises

    J = sum_{i in Omega} sum_{j in store} (u_i^T b_j - K T_ij)^2 + gamma sum_{i in Omega} ||b_{row(i)} - u_i||^2
        + mu * balance(U)

over the network and B_new. T comes from the multi-label cosine similarity S_ij = <y_i, y_j> / (|y_i| |y_j|) in
[0, 1] (DLCH) mapped affinely onto ADSH's range: T = S (1 + r) - r, so T = 1 for identical label sets and -r for
disjoint ones, with r = 1 (``similarity="plain"``: T = 2S - 1) or r = sum S / sum (1 - S) over the store
(``"rebalanced"``, ADSH's default, for one-hot labels exactly its #similar / #dissimilar). For one-hot labels T is
ADSH's similarity, so the new codes are learned against the old ones with the target they were learned with.
``balance="square"`` is sum_i (u_i^T 1)^2 (zero for codes with as many +1 as -1 bits); ``"linear"`` is the
literal sum_i u_i^T 1 (see docs/lifelong.md for why the square is the default). The per-batch network loss is J
restricted to the batch divided by B N K^2, as ADSH's. B_new is updated in closed form by ADSH's discrete cyclic
coordinate descent restricted to the new rows (:func:`update_new_codes`); the old rows never enter it.
"""

from __future__ import annotations

import torch

from hashguard.methods.adsh import dcc_update

SIMILARITIES = ("rebalanced", "plain")
BALANCES = ("square", "linear")
_EPS = 1e-8


def cosine_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """S_ij = <a_i, b_j> / (|a_i| |b_j| + 1e-8), in [0, 1] for non-negative label vectors (DLCH)."""
    a, b = labels_a.float(), labels_b.float()
    return (a @ b.t()) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1).unsqueeze(0) + _EPS)


def similarity_ratio(labels: torch.Tensor, kind: str, chunk: int = 512) -> float:
    """r of the target T = S (1 + r) - r: 1 for ``"plain"``; sum S / sum (1 - S) over ordered pairs of the
    store (self pairs included) for ``"rebalanced"`` (1 when no pair is dissimilar)."""
    if kind == "plain":
        return 1.0
    labels = labels.float()
    similar = 0.0
    for start in range(0, labels.shape[0], chunk):
        similar += float(cosine_similarity(labels[start : start + chunk], labels).double().sum())
    dissimilar = float(labels.shape[0]) ** 2 - similar
    return similar / dissimilar if dissimilar > 1e-9 else 1.0


def target_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor, ratio: float) -> torch.Tensor:
    """T = S (1 + r) - r with S the label cosine similarity (see the module docstring)."""
    return cosine_similarity(labels_a, labels_b) * (1.0 + ratio) - ratio


def balance_term(u: torch.Tensor, kind: str = "square") -> torch.Tensor:
    """sum_i (u_i^T 1)^2 (``"square"``) or sum_i u_i^T 1 (``"linear"``)."""
    sums = u.sum(dim=1)
    return (sums**2).sum() if kind == "square" else sums.sum()


def incremental_objective(
    u: torch.Tensor, codes: torch.Tensor, rows: torch.Tensor, target: torch.Tensor, gamma: float, mu: float,
    balance: str = "square",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """J (un-normalised) of the items ``rows`` (their store rows) with relaxed codes ``u`` (m, K) against the store
    ``codes`` (N, K) with targets ``target`` (m, N); returns (J, its three parts)."""
    bits = codes.shape[1]
    codes = codes.to(u.dtype)
    square = ((u @ codes.t() - bits * target.to(u.dtype)) ** 2).sum()
    quantisation = ((codes[rows] - u) ** 2).sum()
    bal = balance_term(u, balance)
    parts = {"square": square, "quantisation": quantisation, "balance": bal}
    return square + gamma * quantisation + mu * bal, parts


@torch.no_grad()
def update_new_codes(
    new_codes: torch.Tensor, u: torch.Tensor, new_positions: torch.Tensor, target: torch.Tensor, gamma: float
) -> torch.Tensor:
    """One DCC sweep over the bit columns of B_new (ADSH's closed-form update, :func:`dcc_update`), returning a new
    tensor; the old codes never enter it.

    ``u`` (m, K) are the relaxed codes of the sampled items, ``target`` (m, N_new) their targets against the new
    items and ``new_positions`` (m,) the row of each sampled item in B_new, or -1 for a replayed old item (it
    takes part in the similarity term but has no free code to quantise towards). The old part of J does not
    depend on B_new, so minimising J over a column of B_new is minimising the new part. Each row's update depends
    on its own row only, so the replayed items get scratch rows that are dropped afterwards."""
    replayed = new_positions < 0
    count = int(replayed.sum())
    scratch = torch.ones(count, new_codes.shape[1], dtype=new_codes.dtype, device=new_codes.device)
    extended = torch.cat([new_codes, scratch])
    omega = new_positions.clone()
    omega[replayed] = torch.arange(new_codes.shape[0], new_codes.shape[0] + count, device=omega.device)
    padded = torch.cat([target, torch.zeros(target.shape[0], count, dtype=target.dtype, device=target.device)], 1)
    return dcc_update(extended, u, omega, padded, gamma)[: new_codes.shape[0]]
