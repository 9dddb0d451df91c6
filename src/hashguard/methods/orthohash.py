"""OrthoHash: one cross-entropy loss on cosine logits against a fixed codebook (docs/methods.md).

Reference: J. T. Hoe, K. W. Ng, T. Zhang, C. S. Chan, Y.-Z. Song, T. Xiang, "One loss for all: Deep
hashing with a single cosine similarity based learning objective", NeurIPS 2021.

    cos_ic = <u_i, w_c> / (||u_i|| ||w_c||),   logit_ic = s (cos_ic - m y_ic),   s = 8, m = 0.2
    L = mean_{i labelled} [ -sum_c (y_ic / sum_c' y_ic') log softmax_c(logit_i) ] + q * mean (|u| - 1)^2

``w`` is a fixed (not learned) seeded Bernoulli +-1 codebook (C x K, distinct rows) held as a buffer; the
quantisation weight q defaults to 0 as in the reference.

Fixes of docs/attacks.md and 21:

* the model applies BatchNorm1d to z **inside** the hash head (``model_overrides`` asks for
  ``hash_norm="batchnorm"``), so u = tanh(BN(z)) and the retrieval codes sign(BN(z)) are exactly the
  representation the loss trains;
* single-label data (``multilabel=False``, or auto-detected when every labelled row sums to 1) uses the
  ordinary cross-entropy on the argmax class, which is the formula above for one-hot rows;
* rows with no label are excluded from the mean (no 0/0); a batch with no labelled row gives 0.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F

from hashguard.errors import ConfigError
from hashguard.methods.base import HashingMethod
from hashguard.methods.centers import bernoulli_codes, labelled_rows
from hashguard.methods.registry import METHODS
from hashguard.registry import Range
from hashguard.seeding import torch_generator


@METHODS.register(reference="Hoe et al., NeurIPS 2021")
class OrthoHash(HashingMethod):
    """OrthoHash: margin cross-entropy on cosine similarities to a fixed +-1 codebook."""

    name = "orthohash"

    def __init__(
        self,
        bits: int,
        num_classes: int,
        num_train: int,
        seed: int = 0,
        scale: Annotated[float, Range(0), "cosine scale s"] = 8.0,
        margin: Annotated[float, Range(0), "cosine margin m"] = 0.2,
        quantization_weight: Annotated[float, Range(0), "weight of the quantisation term"] = 0.0,
        multilabel: Annotated[bool | None, "multi-label loss (None: from the labels)"] = None,
    ) -> None:
        super().__init__(bits, num_classes, num_train, seed)
        if scale <= 0:
            raise ConfigError(f"OrthoHash's 'scale' must be positive, got {scale}")
        if margin < 0 or quantization_weight < 0:
            raise ConfigError("OrthoHash's 'margin' and 'quantization_weight' must be >= 0")
        self.scale = float(scale)
        self.margin = float(margin)
        self.quantization_weight = float(quantization_weight)
        self.multilabel = multilabel
        self.register_buffer("codebook", bernoulli_codes(num_classes, bits, torch_generator(seed)))

    @classmethod
    def model_overrides(cls) -> dict[str, Any]:
        return {"hash_norm": "batchnorm"}

    def params(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "margin": self.margin,
            "quantization_weight": self.quantization_weight,
            "multilabel": self.multilabel,
        }

    def logits(self, u: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """s * (cos(u, w_c) - m * y_c), shape (B, C)."""
        cosine = F.normalize(u, dim=1) @ F.normalize(self.codebook.to(u.dtype), dim=1).t()
        return self.scale * (cosine - self.margin * labels)

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        labels = labels.to(device=u.device, dtype=u.dtype)
        mask = labelled_rows(labels)
        multilabel = self.multilabel
        if multilabel is None:
            multilabel = bool((labels[mask].sum(dim=1) != 1).any()) if mask.any() else False
        if not multilabel:
            # Single label: the margin goes on the argmax class only; ordinary cross-entropy.
            classes = labels.argmax(dim=1)
            one_hot = F.one_hot(classes, self.num_classes).to(u.dtype)
            per_row = F.cross_entropy(self.logits(u, one_hot), classes, reduction="none")
        else:
            weights = labels / labels.sum(dim=1, keepdim=True).clamp_min(1.0)
            per_row = -(weights * F.log_softmax(self.logits(u, labels), dim=1)).sum(dim=1)
        count = mask.sum()
        if count == 0:
            loss = 0.0 * u.sum()
        else:
            loss = (per_row * mask.to(u.dtype)).sum() / count.to(u.dtype)
        if self.quantization_weight > 0:
            loss = loss + self.quantization_weight * ((u.abs() - 1) ** 2).mean()
        return loss
