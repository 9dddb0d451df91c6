"""SDHA: the smart deep hashing attack, non-targeted and targeted (docs/attacks.md).

Reference: J. Lu, M. Chen, Y. Sun, W. Wang, Y. Wang, X. Yang, "A Smart Adversarial Attack on Deep Hashing
Based
Image Retrieval", ICMR 2021 (SDHA), as used by the SAAT code (Yuan et al., IEEE TIFS 2023).

q = f(x'; alpha); the reference set of query i is the attacked model's training sign codes r_j of items
sharing
a label with y_i (non-targeted) or with the target label t_i (targeted). With s = q_k r_jk:

* non-targeted: D_j = 1/2 sum_k |q_k - r_jk| sigmoid(5 s) + sum_k (1 - sigmoid(5 s)),
  w_j = max(d_H(sign q, r_j), min_distance)^(-1/2), L_sur = -(1/B) sum_i mean_j D_j w_j;
* targeted: D_j = 1/2 sum_k |q_k - r_jk| sigmoid(-10 s), w_j = (d_H + 1e-8)^(0.3), L_sur = +(1/B) sum_i
mean_j D_j w_j.

Loss = MSE(x', x) + (25 / K) L_sur, minimised by Adam on the pixels (lr 0.01, 1,500 iterations). The weights
pass through sign, so they get no gradient.

Guards (docs/attacks.md): the reference weight (d_H + 1e-8)^(-1/2) is 1e4 for a training code equal to the
query's code; here d_H is floored at ``min_distance`` (default 1; 1e-8 reproduces the reference). A
non-targeted query without label-sharing training items uses its own clean code as the reference (as the
reference code); a targeted query whose target shares no label with any training item contributes no surrogate
term (the reference gives NaN) and is counted in ``info["empty_reference_sets"]``.

Implementation: the mean over the reference set is taken over the *unique* training codes weighted by their
multiplicity in the set, which is exact and keeps memory at B x M x K for M unique codes.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from hashguard.attacks.base import AttackContext, Objective, PreparedObjective
from hashguard.attacks.registry import ATTACKS, Budget
from hashguard.errors import ConfigError
from hashguard.protocol import ATTACKS as PROTOCOL
from hashguard.registry import Range

_SDHA = PROTOCOL["sdha"]


@ATTACKS.register("sdha", display="SDHA", reference="Lu et al., ICMR 2021", budget=Budget.protocol("sdha"))
class SDHAObjective(Objective):
    """Non-targeted SDHA objective (Lu et al., ICMR 2021; docs/attacks.md)."""

    name = "sdha"
    targeted = False
    needs = ("train",)

    def __init__(
        self,
        weight: Annotated[float, Range(0), "weight of the surrogate term (times 1/K)"] = _SDHA["weight"],
        min_distance: Annotated[
            float,
            Range(0, exclusive_low=True),
            "d_H floor of the non-targeted weight (d_H + 1e-8)^-1/2; 1 guards against the 1e4 weight of equal codes",
        ] = _SDHA["min_distance"],
        mse_weight: Annotated[float, Range(0), "weight of the MSE(x', x) term"] = _SDHA["mse_weight"],
    ) -> None:
        if not min_distance > 0:
            raise ConfigError(f"min_distance must be positive, got {min_distance}")
        self.weight = float(weight)
        self.min_distance = float(min_distance)
        self.mse_weight = float(mse_weight)
        self._unique: torch.Tensor | None = None
        self._inverse: torch.Tensor | None = None


    def setup(self, model: nn.Module, context: AttackContext, generator: torch.Generator) -> None:
        codes, _ = context.require("train", self.name)
        unique, inverse = torch.unique(codes.float(), dim=0, return_inverse=True)
        self._unique, self._inverse = unique, inverse

    def prepare(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None,
        context: AttackContext,
        generator: torch.Generator,
    ) -> PreparedObjective:
        if self._unique is None:
            self.setup(model, context, generator)
        assert self._unique is not None and self._inverse is not None
        _, train_labels = context.require("train", self.name)
        reference = target_labels if self.targeted else labels
        assert reference is not None
        device = images.device
        unique = self._unique.to(device)
        relevant = (reference.to(device) @ train_labels.to(device).float().t() > 0).to(unique.dtype)
        counts = torch.zeros(relevant.shape[0], unique.shape[0], device=device, dtype=unique.dtype)
        counts.index_add_(1, self._inverse.to(device), relevant)
        totals = counts.sum(dim=1)
        empty = totals == 0
        with torch.no_grad():
            clean = model(images, alpha=1.0)
        own = torch.where(clean >= 0, 1.0, -1.0)
        bits = unique.shape[1]
        targeted, scale = self.targeted, self.weight / bits
        min_distance, mse_weight = self.min_distance, self.mse_weight
        clean_images = images.detach()

        def pair_terms(q: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
            """D_ij * w_ij for queries q (B, K) and reference codes refs (M, K): (B, M)."""
            s = q.unsqueeze(1) * refs.unsqueeze(0)
            gap = (1 - s).clamp_min(0)  # |q - r| for r in {-1, +1} and |q| < 1
            with torch.no_grad():
                q_sign = torch.where(q >= 0, 1.0, -1.0)
                distance = 0.5 * (bits - q_sign @ refs.t())
            if targeted:
                d = 0.5 * (gap * torch.sigmoid(-10 * s)).sum(dim=2)
                w = (distance + 1e-8) ** 0.3
            else:
                sig = torch.sigmoid(5 * s)
                d = 0.5 * (gap * sig).sum(dim=2) + (1 - sig).sum(dim=2)
                w = distance.clamp_min(min_distance) ** -0.5
            return d * w

        def loss(u: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
            terms = (pair_terms(u, unique) * counts).sum(dim=1) / totals.clamp_min(1.0)
            if not targeted and bool(empty.any()):
                own_terms = (pair_terms(u, own) * torch.eye(u.shape[0], device=u.device)).sum(dim=1)
                terms = torch.where(empty, own_terms, terms)
            elif targeted:
                terms = torch.where(empty, torch.zeros_like(terms), terms)
            surrogate = terms.mean() if targeted else -terms.mean()
            return mse_weight * F.mse_loss(x_adv, clean_images) + scale * surrogate

        # Theory code: the reference set's majority code (targeted) or its negation (non-targeted).
        with torch.no_grad():
            majority = counts @ unique
            majority = torch.where(empty.unsqueeze(1), own, torch.where(majority >= 0, 1.0, -1.0))
        theory = majority if targeted else -majority
        return PreparedObjective(
            loss=loss, theory_codes=theory, info={"empty_reference_sets": int(empty.sum())}
        )


@ATTACKS.register(
    "sdha-targeted",
    display="SDHA (targeted)",
    reference="Lu et al., ICMR 2021",
    budget=Budget.protocol("sdha-targeted"),
)
class TargetedSDHAObjective(SDHAObjective):
    """Targeted SDHA objective (Lu et al., ICMR 2021; docs/attacks.md)."""

    name = "sdha-targeted"
    targeted = True
