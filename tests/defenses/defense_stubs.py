"""Stand-ins for the hand-computed defense tests: an identity 'model' and a loss with an obvious value."""

from __future__ import annotations

import torch
from torch import nn


class Identity(nn.Module):
    """f(x; alpha) = x: the 'images' are the relaxed codes themselves."""

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return x


class MeanSquare(nn.Module):
    """A stand-in hashing loss with an obvious value: mean(u^2)."""

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return (u**2).mean()
