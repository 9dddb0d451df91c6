"""The mainstay attack that knows the Hamming query detector (an adaptive attack; docs/detection.md).

The Hamming detector (:mod:`hashguard.detectors.hamming`, after Qiu et al., "HashVFL", IEEE TIFS 2024) rejects a
query whose code lies far from every reference code. An attacker who knows it adds to the mainstay loss of SAAT
(Yuan et al., IEEE TIFS 2023; :func:`hashguard.attacks.mainstay_attack.mainstay_loss`) the relaxed distance to
the nearest reference code, normalised by the code length K:

    L(u) = L_mainstay(u, m) + w * min_r (K - u^T r) / (2K)

where u = f(x'; alpha) are the relaxed codes (so (K - u^T r) / 2 is the Hamming distance at u = b), r ranges
over the reference codes and w = ``detector_weight``. The reference codes are the detector's own when the
attack context carries them (:attr:`hashguard.attacks.base.AttackContext.reference_codes`; the study passes the
detector's), otherwise the class centre codes of the attacked model's training codes
(:func:`hashguard.detectors.reference.class_centre_codes`). w = 0 is the plain mainstay attack.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from hashguard.attacks.base import AttackContext, PreparedObjective
from hashguard.attacks.mainstay_attack import LOSSES, MainstayObjective
from hashguard.attacks.registry import ATTACKS, Budget
from hashguard.detectors.reference import class_centre_codes
from hashguard.errors import ConfigError
from hashguard.mainstay_codes import MAINSTAY_SOURCES, TIE_BREAKS, WEIGHTINGS
from hashguard.registry import Choices, Range


def nearest_reference_distance(u: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Relaxed Hamming distance of each row of ``u`` (B, K) to its nearest reference code (R, K), over K: (B,)."""
    bits = u.shape[1]
    return ((bits - u @ reference.t()) / 2).min(dim=1).values / bits


def detector_reference(context: AttackContext) -> torch.Tensor:
    """The detector's reference codes from the context, or the class centre codes of its training codes."""
    if context.reference_codes is not None:
        return context.reference_codes.float()
    if context.train_codes is None or context.train_labels is None:
        raise ConfigError("the detector-aware attack needs the reference codes or the training codes and labels")
    centres = class_centre_codes(context.train_codes.cpu().numpy(), context.train_labels.cpu().numpy())
    return torch.as_tensor(centres, dtype=torch.float32, device=context.train_codes.device)


@ATTACKS.register(
    "mainstay-adaptive",
    display="Mainstay (detector-aware)",
    reference="Yuan et al., IEEE TIFS 2023; Qiu et al., IEEE TIFS 2024",
    budget=Budget.protocol("mainstay"),
)
class DetectorAwareMainstayObjective(MainstayObjective):
    """Mainstay attack plus w * the relaxed distance to the nearest reference code of the Hamming detector
    (SAAT's attack, Yuan et al., IEEE TIFS 2023, made adaptive to HashVFL's detector, Qiu et al., IEEE TIFS 2024)."""

    name = "mainstay-adaptive"
    targeted = False

    def __init__(
        self,
        detector_weight: Annotated[float, Range(0), "weight of the distance to the nearest reference code"] = 4.0,
        loss: Annotated[str, Choices(*LOSSES), "masked quadratic loss (attack) or plain mean (SAAT inner)"] = "masked",
        weighting: Annotated[str, Choices(*WEIGHTINGS), "cosine (DMFL) or uniform (CgAT centre code)"] = "cosine",
        tie_break: Annotated[str | None, Choices(*TIE_BREAKS), "resolve mainstay ties"] = None,
        chunk_size: Annotated[int, Range(1), "training rows per block of the mainstay computation (memory)"] = 8192,
        mainstay_from: Annotated[
            str, Choices(*MAINSTAY_SOURCES), "codes B of the mainstay code: network or database (ADSH's V)"
        ] = "network",
    ) -> None:
        super().__init__(loss, weighting, tie_break, chunk_size, mainstay_from)
        if not detector_weight >= 0:
            raise ConfigError(f"detector_weight must be >= 0, got {detector_weight}")
        self.detector_weight = float(detector_weight)

    def params(self) -> dict:
        return {"detector_weight": self.detector_weight, **super().params()}

    def prepare(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None,
        context: AttackContext,
        generator: torch.Generator,
    ) -> PreparedObjective:
        base = super().prepare(model, images, labels, target_labels, context, generator)
        reference = detector_reference(context).to(device=images.device, dtype=images.dtype)
        weight = self.detector_weight

        def loss(u: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
            return base.loss(u, x_adv) + weight * nearest_reference_distance(u, reference).mean()

        return PreparedObjective(loss=loss, theory_codes=base.theory_codes, info=base.info)
