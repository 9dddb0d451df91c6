"""HAG: the Hamming-space adversarial attack (docs/attacks.md).

Reference: E. Yang, T. Liu, C. Deng, D. Tao, "Adversarial Examples for Hamming Space Search", IEEE
Transactions
on Cybernetics, 2018 (HAG), as used by the SAAT code (Yuan et al., IEEE TIFS 2023).

With h = f(x; 1) the clean continuous code and h' = f(x'; alpha), the per-bit mask
mu_k = (sign(1.5 - |h'_k - sign(h_k)|) + 1) / 2 keeps bits not yet pushed past -0.5 (relative to sign(h)), and

    L = mean_i [ sum_k mu_ik^2 h'_ik h_ik / (sum_k mu_ik + 1e-8) + 1 ]^2 + beta mean_i [ (1/K sum_k mu_ik
    h'_ik)^2 ]

is minimised (beta = 1) by SGD with momentum on the pixels (lr 100, momentum 0.9, 2,000 iterations). The mask
is
a constant for the gradient. The theory code is -sign(h). Unlike the reference code, the reported code is
that of
the returned image (docs/attacks.md; done by :class:`~hashguard.attacks.base.HashAttack`).
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from hashguard.attacks.base import AttackContext, Objective, PreparedObjective
from hashguard.attacks.registry import ATTACKS, Budget
from hashguard.protocol import ATTACKS as PROTOCOL
from hashguard.registry import Range


def hag_loss(u: torch.Tensor, clean: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """HAG's loss of adversarial relaxed codes ``u`` against clean relaxed codes ``clean`` (Yang et al.
    2018)."""
    with torch.no_grad():
        mask = (torch.sign(1.5 - (u - clean.sign()).abs()) + 1) / 2
    bits = u.shape[1]
    similarity = (mask**2 * u * clean).sum(dim=1) / (mask.sum(dim=1) + 1e-8)
    balance = ((mask * u).sum(dim=1) / bits) ** 2
    return ((similarity + 1) ** 2).mean() + beta * balance.mean()


@ATTACKS.register(
    "hag",
    display="HAG",
    reference="Yang et al., IEEE TCYB 2018",
    budget=Budget.protocol("hag"),
    optimizer_defaults={"momentum": PROTOCOL["hag"]["momentum"]},
)
class HAGObjective(Objective):
    """Non-targeted HAG objective (Yang et al., IEEE TCYB 2018; docs/attacks.md)."""

    name = "hag"
    targeted = False
    needs = ()

    def __init__(
        self, beta: Annotated[float, Range(0), "weight of the bit-balance term"] = PROTOCOL["hag"]["beta"]
    ) -> None:
        self.beta = float(beta)


    def prepare(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None,
        context: AttackContext,
        generator: torch.Generator,
    ) -> PreparedObjective:
        with torch.no_grad():
            clean = model(images, alpha=1.0).detach()
        beta = self.beta

        def loss(u: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
            return hag_loss(u, clean, beta)

        return PreparedObjective(loss=loss, theory_codes=-torch.where(clean >= 0, 1.0, -1.0))
