"""CSQ: central similarity quantisation with per-class hash centres (docs/methods.md).

Reference: L. Yuan, T. Wang, X. Zhang, F. E. H. Tay, Z. Jie, W. Liu, J. Feng, "Central similarity
quantization for efficient image and video retrieval", CVPR 2020; constants as in the SAAT code base.

    L = mean_{i,k} BCE((u_ik + 1) / 2, (c_ik + 1) / 2) + lambda_q * mean_{i,k} (|u_ik| - 1)^2

with lambda_q = 0.05.

Centres (docs/methods.md fixed): with ``centers="auto"`` the rows of [H_K; -H_K] (Sylvester Hadamard)
when K is a power of two and 2K >= C; otherwise the original CSQ fallback, seeded random balanced +-1
centres (exactly floor(K/2) entries -1) redrawn row by row until every pair is at Hamming distance
>= ``min_distance`` (default ceil(K/4)). So 48 bits, 38 classes at 16 bits and 80 classes at 16/32 bits
work; :class:`ConfigError` only when the distance cannot be reached.

Item targets: c = sign(sum of the centres of the classes present, zeros filled from a fixed seeded +-1
vector); a one-hot row gets its class centre. Rows with **no label** have no centre: they are left out of
the central term (the quantisation term still covers them); a batch with no labelled row has central term
0.

Training from scratch (the CPU demo): CSQ is the one loss here that also trains with plain tanh codes (+0.20
mAP over random codes on the multi-label demo after 4 epochs); the demo recipe of the tests (BatchNorm1d on
the code logits, ``ModelSpec(hash_norm="batchnorm")``, Adam at lr 5e-4) adds about 0.05 (docs/methods.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F

from hashguard.errors import ConfigError
from hashguard.methods.base import HashingMethod
from hashguard.methods.centers import (
    balanced_codes,
    check_min_distance,
    hadamard_available,
    hadamard_centers,
    label_targets,
    labelled_rows,
    masked_mean,
    random_signs,
)
from hashguard.methods.registry import METHODS
from hashguard.registry import Choices, Range
from hashguard.seeding import torch_generator

CENTER_KINDS = ("auto", "hadamard", "random")


@METHODS.register(reference="Yuan et al., CVPR 2020")
class CSQ(HashingMethod):
    """CSQ: BCE between relaxed codes and per-item hash centres, plus a light quantisation penalty."""

    name = "csq"

    def __init__(
        self,
        bits: int,
        num_classes: int,
        num_train: int,
        seed: int = 0,
        lambda_q: Annotated[float, Range(0), "weight of the quantisation term"] = 0.05,
        centers: Annotated[str, Choices(*CENTER_KINDS), "hash centres"] = "auto",
        min_distance: Annotated[int | None, Range(0), "minimum Hamming distance of random centres"] = None,
    ) -> None:
        super().__init__(bits, num_classes, num_train, seed)
        if centers not in CENTER_KINDS:
            raise ConfigError(f"CSQ 'centers' must be one of {CENTER_KINDS}, got {centers!r}")
        if lambda_q < 0:
            raise ConfigError(f"CSQ's 'lambda_q' must be >= 0, got {lambda_q}")
        self.lambda_q = float(lambda_q)
        self.min_distance = check_min_distance(bits, min_distance)
        generator = torch_generator(seed)
        if centers == "auto":
            centers = "hadamard" if hadamard_available(bits, num_classes) else "random"
        self.center_kind = centers
        if centers == "hadamard":
            table = hadamard_centers(bits, num_classes)
        else:
            table = balanced_codes(num_classes, bits, generator, self.min_distance)
        self.register_buffer("centers", table)
        self.register_buffer("fill", random_signs(bits, generator))

    def params(self) -> dict[str, Any]:
        return {"lambda_q": self.lambda_q, "centers": self.center_kind, "min_distance": self.min_distance}

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Per-item hash centres (B, K) in {-1, +1}."""
        return label_targets(labels, self.centers, self.fill)

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        targets = self.targets(labels.to(u.device)).to(u.dtype)
        central = F.binary_cross_entropy((u + 1) / 2, (targets + 1) / 2, reduction="none")
        central_term = masked_mean(central, labelled_rows(labels).to(u.device))
        quantisation = ((u.abs() - 1) ** 2).mean()
        return central_term + self.lambda_q * quantisation
