"""The mainstay-code attack of SAAT, non-targeted and targeted (docs/attacks.md).

Reference: X. Yuan, Z. Zhang, X. Wang, L. Wu, "Semantic-Aware Adversarial Training for Reliable Deep Hashing
Retrieval", IEEE TIFS 2023 ("SAAT (Ours)" rows of Table I).

The target code is the mainstay code m (:func:`hashguard.mainstay_codes.mainstay_codes`) of the query's true label
(non-targeted) or of its target label (targeted), built from the attacked model's sign codes of the training
items (``mainstay_from="network"``, the paper's protocol) or, for an ADSH model (Jiang and Li, AAAI 2018), from
its learned database codes V with the training pool's labels (``mainstay_from="database"``). With
s_ik = f(x'_i; alpha)_k * m_ik the masked quadratic loss (minimised) is

* non-targeted: w = 1[s > -0.5], L = sum w (s + 2) s / max(sum w, 1)  (pushes the code away from m);
* targeted:     w = 1[s < 0.5],  L = -sum w (s + 2) s / max(sum w, 1) (pulls the code onto m).

The max(., 1) guards the 0/0 of the reference code when no element is active (docs/attacks.md); it does not
change a sign-gradient step. ``loss="plain"`` gives SAAT's inner training loss mean(f * m) (targeted:
-mean(f * m)). The theory code is -m (non-targeted) or m (targeted).
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from torch import nn

from hashguard.attacks.base import AttackContext, Objective, PreparedObjective
from hashguard.attacks.registry import ATTACKS, Budget
from hashguard.errors import ConfigError
from hashguard.mainstay_codes import MAINSTAY_SOURCES, TIE_BREAKS, WEIGHTINGS, mainstay_codes
from hashguard.registry import Choices, Range

LOSSES = ("masked", "plain")


def mainstay_loss(
    u: torch.Tensor, target_codes: torch.Tensor, targeted: bool = False, kind: str = "masked"
) -> torch.Tensor:
    """SAAT's attack loss of relaxed codes ``u`` against mainstay codes (Yuan et al., IEEE TIFS 2023).

    ``kind="masked"``: the masked quadratic surrogate with the 0/0 guard; ``kind="plain"``: mean(u * m)
    (non-targeted; the SAAT inner loss) or -mean(u * m) (targeted). Both are minimised.
    """
    s = u * target_codes
    if kind == "plain":
        value = s.mean()
        return -value if targeted else value
    if kind != "masked":
        raise ConfigError(f"mainstay loss must be one of {LOSSES}, got {kind!r}")
    mask = (s < 0.5) if targeted else (s > -0.5)
    mask = mask.to(s.dtype)
    value = (mask * (s + 2) * s).sum() / mask.sum().clamp_min(1.0)
    return -value if targeted else value


@ATTACKS.register(
    "mainstay", display="Mainstay", reference="Yuan et al., IEEE TIFS 2023", budget=Budget.protocol("mainstay")
)
class MainstayObjective(Objective):
    """Attack towards/away from DMFL mainstay codes (SAAT, Yuan et al., IEEE TIFS 2023; docs/attacks.md)."""

    name = "mainstay"
    targeted = False
    needs = ("train",)

    def __init__(
        self,
        loss: Annotated[str, Choices(*LOSSES), "masked quadratic loss (attack) or plain mean (SAAT inner)"] = "masked",
        weighting: Annotated[str, Choices(*WEIGHTINGS), "cosine (DMFL) or uniform (CgAT centre code)"] = "cosine",
        tie_break: Annotated[str | None, Choices(*TIE_BREAKS), "resolve mainstay ties"] = None,
        chunk_size: Annotated[int, Range(1), "training rows per block of the mainstay computation (memory)"] = 8192,
        mainstay_from: Annotated[
            str, Choices(*MAINSTAY_SOURCES),
            "codes B of the mainstay code: network (its sign codes of the training items, the paper's) or database "
            "(an ADSH checkpoint's learned codes V)",
        ] = "network",
    ) -> None:
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {loss!r}")
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if tie_break not in TIE_BREAKS:
            raise ConfigError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
        if mainstay_from not in MAINSTAY_SOURCES:
            raise ConfigError(f"mainstay_from must be one of {MAINSTAY_SOURCES}, got {mainstay_from!r}")
        self.loss_kind = loss
        self.weighting = weighting
        self.tie_break = tie_break
        self.chunk_size = int(chunk_size)
        self.mainstay_from = mainstay_from
        self.needs = ("learned",) if mainstay_from == "database" else ("train",)

    def params(self) -> dict[str, Any]:
        return {
            "loss": self.loss_kind, "weighting": self.weighting, "tie_break": self.tie_break,
            "mainstay_from": self.mainstay_from,
        }

    def prepare(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None,
        context: AttackContext,
        generator: torch.Generator,
    ) -> PreparedObjective:
        train_codes, train_labels = context.require(self.needs[0], self.name)
        reference = target_labels if self.targeted else labels
        assert reference is not None
        m = mainstay_codes(
            reference,
            train_codes,
            train_labels,
            chunk_size=self.chunk_size,
            weighting=self.weighting,
            tie_break=self.tie_break,
            generator=generator,
        )
        m = m.to(device=images.device, dtype=images.dtype)
        targeted, kind = self.targeted, self.loss_kind

        def loss(u: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
            return mainstay_loss(u, m, targeted, kind)

        theory = m if targeted else -m
        return PreparedObjective(loss=loss, theory_codes=theory, info={"mainstay_ties": int((m == 0).sum())})


@ATTACKS.register(
    "mainstay-targeted",
    display="Mainstay (targeted)",
    reference="Yuan et al., IEEE TIFS 2023",
    budget=Budget.protocol("mainstay-targeted"),
)
class TargetedMainstayObjective(MainstayObjective):
    """Targeted mainstay attack: pull the code onto mainstay(target label) (Yuan et al., IEEE TIFS 2023)."""

    name = "mainstay-targeted"
    targeted = True
