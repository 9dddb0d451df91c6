"""DPN: deep polarised network, a hinge that pushes every bit to the side of its class target (docs/methods.md).

Reference: L. Fan, K. W. Ng, C. Ju, T. Zhang, C. S. Chan, "Deep polarized network for supervised learning
of accurate binary hashing codes", IJCAI 2020; constants as in the SAAT code base (TIFS 2023).

    L = mean_{i,k} max(0, m - u_ik t_ik),  m = 1

Class targets are seeded random balanced +-1 codes (exactly floor(K/2) entries -1, so odd K is handled
with one more +1 than -1). Unlike the reference (docs/methods.md) they are drawn with the same minimum
pairwise Hamming distance as CSQ's fallback (default ceil(K/4)); :class:`ConfigError` when it cannot be
met. Item targets follow the multi-label "sum, fill zeros from a fixed seeded +-1 vector, threshold" rule;
rows with no label are left out of the mean (a batch with none labelled gives 0).

Margin: m = 1 is the reference value. Because |u| < 1 the hinge is then always active and the loss is linear
in u (d L / d u_ik = -t_ik / (B K) for every bit), so nothing stops the code logits from growing without
bound. Trained from scratch on the multi-label demo data with plain tanh codes (no normalisation of the code
logits, Adam 2e-3) every image collapsed to one code (mAP 0.357 vs random 0.350). With BatchNorm1d on the
code logits (``ModelSpec(hash_norm="batchnorm")``, the demo recipe of the tests and of docs/methods.md),
which keeps every bit centred over the batch, the reference m = 1 trains normally (+0.22 to +0.25 mAP
over random codes after 4 epochs, 3 seeds). ``margin < 1`` (for example 0.5: bits stop being pushed once
u t >= m) is the other remedy where the model cannot be changed.
"""

from __future__ import annotations

from typing import Annotated

import torch

from hashguard.errors import ConfigError
from hashguard.methods.base import HashingMethod
from hashguard.methods.centers import (
    balanced_codes,
    check_min_distance,
    label_targets,
    labelled_rows,
    masked_mean,
    random_signs,
)
from hashguard.methods.registry import METHODS
from hashguard.registry import Range
from hashguard.seeding import torch_generator


@METHODS.register(reference="Fan et al., IJCAI 2020")
class DPN(HashingMethod):
    """DPN: per-bit hinge max(0, m - u t) towards seeded balanced class targets."""

    name = "dpn"

    def __init__(
        self,
        bits: int,
        num_classes: int,
        num_train: int,
        seed: int = 0,
        margin: Annotated[float, Range(0), "hinge margin m"] = 1.0,
        min_distance: Annotated[int | None, Range(0), "minimum Hamming distance of the class targets"] = None,
    ) -> None:
        super().__init__(bits, num_classes, num_train, seed)
        if margin <= 0:
            raise ConfigError(f"DPN's 'margin' must be positive, got {margin}")
        self.margin = float(margin)
        self.min_distance = check_min_distance(bits, min_distance)
        generator = torch_generator(seed)
        self.register_buffer("targets_table", balanced_codes(num_classes, bits, generator, self.min_distance))
        self.register_buffer("fill", random_signs(bits, generator))


    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Per-item target codes (B, K) in {-1, +1}."""
        return label_targets(labels, self.targets_table, self.fill)

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        targets = self.targets(labels.to(u.device)).to(u.dtype)
        hinge = torch.clamp(self.margin - u * targets, min=0.0)
        return masked_mean(hinge, labelled_rows(labels).to(u.device))
