"""The per-item memory bank of the pairwise losses (docs/methods.md).

It holds U (N x K relaxed codes of the training set) and Y (N x C labels). Both start at **zero**: rows
not yet visited act as dissimilar items with a zero code and add a constant, gradient-free term. Each
loss call first writes the batch (``update``), then compares the batch against all N rows.
"""

from __future__ import annotations

import torch
from torch import nn


class MemoryBank(nn.Module):
    """Buffers ``U`` (N x K) and ``Y`` (N x C), zero-initialised, written batch by batch."""

    def __init__(self, num_items: int, bits: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("U", torch.zeros(num_items, bits))
        self.register_buffer("Y", torch.zeros(num_items, num_classes))

    @torch.no_grad()
    def update(self, index: torch.Tensor, u: torch.Tensor, labels: torch.Tensor) -> None:
        """U[index] <- u (detached), Y[index] <- labels."""
        index = index.to(self.U.device).long()
        self.U[index] = u.detach().to(self.U.dtype)
        self.Y[index] = labels.detach().to(self.Y.dtype)

    @torch.no_grad()
    def preinstall(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        """Overwrite the whole bank (for example with the sign codes of a trained model, docs/defenses.md)."""
        if codes.shape != self.U.shape or labels.shape != self.Y.shape:
            raise ValueError(
                f"bank holds {tuple(self.U.shape)} codes and {tuple(self.Y.shape)} labels, "
                f"got {tuple(codes.shape)} and {tuple(labels.shape)}"
            )
        self.U.copy_(codes.to(self.U))
        self.Y.copy_(labels.to(self.Y))
