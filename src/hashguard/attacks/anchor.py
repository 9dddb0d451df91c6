"""DHTA and P2P: targeted attacks towards an anchor code.

Reference: J. Bai, B. Chen, Y. Li, D. Wu, W. Guo, S.-T. Xia, E.-H. Yang, "Targeted Attack for Deep Hashing
based Retrieval", ECCV 2020 (DHTA, and its point-to-point baseline P2P), as used by the SAAT code (Yuan et
al., IEEE TIFS 2023).

For query i with target label t_i, draw n database items whose label vector equals t_i exactly, and set the
anchor a_i = sign(sum of their database codes) (n = 9 for DHTA, n = 1 for P2P: a single random code). The loss
L = -mean_ik f(x'; alpha)_ik a_ik is minimised with sign steps of 1/255 from delta = 0 (BIM), eps = 0.032,
2,000 iterations, alpha schedule.

Anchor draw: the n items are drawn uniformly **with replacement** (``replacement=True``, the SAAT code's
protocol; a rare label combination then repeats items). ``replacement=False`` draws without replacement, as
the original DHTA code does, and uses every candidate when fewer than n items carry exactly the target label.
An even count can tie a bit (sign 0): that bit is left out of the loss, and the theory code resolves it to +1.
A target label that no database item carries exactly raises :class:`ConfigError`.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from hashguard.attacks.base import AttackContext, Objective, PreparedObjective
from hashguard.attacks.registry import ATTACKS, Budget
from hashguard.errors import ConfigError
from hashguard.protocol import ATTACKS as PROTOCOL
from hashguard.registry import Range


def anchor_codes(
    target_labels: torch.Tensor,
    database_codes: torch.Tensor,
    database_labels: torch.Tensor,
    n_anchors: int,
    generator: torch.Generator,
    replacement: bool = True,
) -> torch.Tensor:
    """DHTA anchors sign(sum of n database codes with exactly the target label), float (B, K) in {-1, 0, 1};
    the n codes are drawn with or without ``replacement``."""
    if n_anchors < 1:
        raise ConfigError(f"n_anchors must be at least 1, got {n_anchors}")
    db_labels = database_labels.float()
    codes = database_codes.float()
    anchors = torch.zeros(target_labels.shape[0], codes.shape[1], device=codes.device)
    for i, target in enumerate(target_labels.to(db_labels.device).float()):
        matches = torch.nonzero((db_labels == target).all(dim=1)).flatten()
        if matches.numel() == 0:
            raise ConfigError(
                f"target label {target.nonzero().flatten().tolist()} of query {i} matches no database item "
                "exactly; choose targets among the database label sets (hashguard.attacks.targets)"
            )
        if replacement:
            order = torch.randint(matches.numel(), (n_anchors,), generator=generator, device=generator.device)
        else:
            order = torch.randperm(matches.numel(), generator=generator, device=generator.device)[:n_anchors]
        chosen = matches[order.to(matches.device)]
        anchors[i] = torch.sign(codes[chosen].sum(dim=0))
    return anchors


_REPLACEMENT_HELP = "draw the anchor's codes with replacement (False: without, as the original DHTA code)"


@ATTACKS.register("dhta", display="DHTA", reference="Bai et al., ECCV 2020", budget=Budget.protocol("dhta"))
class AnchorObjective(Objective):
    """DHTA: pull the code onto the sign-sum of n = 9 database codes of the target label (Bai et al., ECCV
    2020)."""

    name = "dhta"
    targeted = True
    needs = ("database",)

    def __init__(
        self,
        n_anchors: Annotated[int, Range(1), "database codes summed into the anchor"] = PROTOCOL["dhta"]["n_anchors"],
        replacement: Annotated[bool, _REPLACEMENT_HELP] = PROTOCOL["dhta"]["replacement"],
    ) -> None:
        self.n_anchors = int(n_anchors)
        self.replacement = bool(replacement)
        if self.n_anchors < 1:
            raise ConfigError(f"n_anchors must be at least 1, got {n_anchors}")


    def prepare(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None,
        context: AttackContext,
        generator: torch.Generator,
    ) -> PreparedObjective:
        assert target_labels is not None
        codes, db_labels = context.require("database", self.name)
        anchors = anchor_codes(target_labels, codes, db_labels, self.n_anchors, generator, self.replacement)
        anchors = anchors.to(device=images.device, dtype=images.dtype)

        def loss(u: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
            return -(u * anchors).mean()

        return PreparedObjective(
            loss=loss, theory_codes=anchors, info={"anchor_ties": int((anchors == 0).sum())}
        )


@ATTACKS.register("p2p", display="P2P", reference="Bai et al., ECCV 2020", budget=Budget.protocol("p2p"))
class P2PObjective(AnchorObjective):
    """P2P: pull the code onto one random database code of the target label (Bai et al., ECCV 2020)."""

    name = "p2p"

    def __init__(
        self,
        n_anchors: Annotated[int, Range(1), "database codes summed into the anchor"] = PROTOCOL["p2p"]["n_anchors"],
        replacement: Annotated[bool, _REPLACEMENT_HELP] = PROTOCOL["p2p"]["replacement"],
    ) -> None:
        super().__init__(n_anchors, replacement)
