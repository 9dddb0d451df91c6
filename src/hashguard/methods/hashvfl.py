"""HashVFL's consistency loss: agreement of the codes with fixed per-class +-1 target codes (docs/detection.md).

Reference: P. Qiu, X. Zhang, S. Ji, C. Fu, X. Yang, T. Wang, "HashVFL: Defending Against Data Reconstruction
Attacks in Vertical Federated Learning", IEEE TIFS 19, 2024 (the consistency term with predefined class codes).

Each class c gets a fixed target code t_c in {-1, +1}^K, drawn once from the method's seed
(:func:`bit_balanced_codes`): every **bit** is +1 for exactly ceil(C/2) classes and -1 for the others (each
column a seeded random permutation), so that codes that follow their targets on class-balanced data are
bit-balanced too, which the BatchNorm of the ``bn-sign`` head asks of them; the whole table is redrawn until
every two classes are at Hamming distance >= ``min_distance`` (default 1: distinct codes, HashVFL's "random,
distinct" targets). An item's target is

    t(y) = sign(sum_{c : y_c > 0} t_c)   with sign(0) = +1 (the tie rule),

so a one-hot item gets its class code, and a component on which the active classes' codes cancel is +1. The
loss is the negative mean agreement

    L = -(1 / (N K)) sum_i u_i^T t(y_i)

over the N labelled rows of the batch (a row with no label has no target and is left out; a batch without a
labelled row gives 0). With the ``bn-sign`` head (``model.hash_norm=bn-sign``) u is exactly sign(BN(z)) and the
gradient reaches z through the straight-through rule, which is HashVFL's own setting; with a tanh head the same
loss pulls tanh(z) towards the target code.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch

from hashguard.errors import ConfigError
from hashguard.methods.base import HashingMethod
from hashguard.methods.centers import labelled_rows, masked_mean
from hashguard.methods.registry import METHODS
from hashguard.registry import Range
from hashguard.seeding import torch_generator

#: whole-table draws :func:`bit_balanced_codes` tries before giving up
MAX_TABLE_DRAWS = 1000


def bit_balanced_codes(count: int, bits: int, generator: torch.Generator, min_distance: int = 1) -> torch.Tensor:
    """``count`` x ``bits`` +-1 codes whose every column holds exactly ceil(count/2) entries +1 (a seeded random
    permutation per column), redrawn as a whole until all rows are pairwise at Hamming distance >= ``min_distance``;
    :class:`ConfigError` after :data:`MAX_TABLE_DRAWS` failed draws."""
    if count < 1 or bits < 1:
        raise ConfigError(f"need a positive code length and class count, got K={bits}, C={count}")
    if not 0 <= min_distance <= bits:
        raise ConfigError(f"minimum Hamming distance must lie in [0, {bits}] for {bits}-bit codes, got {min_distance}")
    column = torch.where(torch.arange(count) < (count + 1) // 2, 1.0, -1.0)
    for _ in range(MAX_TABLE_DRAWS):
        table = torch.stack([column[torch.randperm(count, generator=generator)] for _ in range(bits)], dim=1)
        distances = (bits - table @ table.t()) / 2
        distances.fill_diagonal_(float(bits))
        if count == 1 or distances.min() >= min_distance:
            return table
    raise ConfigError(
        f"cannot draw {count} bit-balanced {bits}-bit class codes at Hamming distance >= {min_distance}; "
        "use more bits or a smaller min_distance"
    )


def consistency_targets(labels: torch.Tensor, class_codes: torch.Tensor) -> torch.Tensor:
    """Per-item targets sign(sum of the active classes' codes) with sign(0) = +1, shape (B, K), in {-1, +1}."""
    summed = (labels > 0).to(class_codes.dtype) @ class_codes
    return torch.where(summed >= 0, 1.0, -1.0).to(class_codes.dtype)


@METHODS.register(reference="Qiu et al., IEEE TIFS 2024")
class HashVFL(HashingMethod):
    """HashVFL consistency: agreement of the codes with fixed per-class +-1 target codes.

    L = -mean_{i,k} u_ik t(y_i)_k (Qiu et al., "HashVFL", IEEE TIFS 2024)."""

    name = "hashvfl"

    def __init__(
        self,
        bits: int,
        num_classes: int,
        num_train: int,
        seed: int = 0,
        min_distance: Annotated[int, Range(0), "minimum Hamming distance of the class target codes"] = 1,
    ) -> None:
        super().__init__(bits, num_classes, num_train, seed)
        self.min_distance = int(min_distance)
        table = bit_balanced_codes(num_classes, bits, torch_generator(seed), self.min_distance)
        self.register_buffer("class_codes", table)

    def params(self) -> dict[str, Any]:
        return {"min_distance": self.min_distance}

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Per-item target codes (B, K) in {-1, +1} (:func:`consistency_targets`)."""
        return consistency_targets(labels, self.class_codes)

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        labels = labels.to(u.device)
        targets = self.targets(labels).to(u.dtype)
        return masked_mean(-(u * targets), labelled_rows(labels))
