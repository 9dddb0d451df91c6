"""The hash model: normalisation buffers, a backbone and the relaxed sign head tanh(alpha * z).

``HashModel.forward(x, alpha=1.0)`` takes images in [0, 1] (normalisation happens inside the model) and
returns relaxed codes in (-1, 1). With the ``bn-sign`` head (``ModelSpec(hash_norm="bn-sign")``) it returns
sign(BN(z)) in {-1, +1} instead, with a straight-through gradient (:func:`straight_through_sign`; Qiu et al.,
"HashVFL", IEEE TIFS 2024). ``encode(x)`` returns +-1 int8 codes with sign(0) resolved to +1, so a code
never holds a zero. The model has no hidden state: a continuation scale (HashNet) is passed as ``alpha``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from hashguard.errors import ConfigError
from hashguard.models.backbones import BACKBONES, build_backbone, wants_rgb_imagenet
from hashguard.models.heads import HEADS, is_straight_through
from hashguard.precision import current_runtime

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelSpec:
    """Everything needed to rebuild a :class:`HashModel` (stored as JSON beside the weights)."""

    backbone: str = "small_cnn"
    bits: int = 32
    in_channels: int = 3
    image_size: int = 224
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    hash_norm: str = "none"
    pretrained: str | None = None

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field that cannot work."""
        BACKBONES.key(self.backbone)  # unknown names: one line listing the registered backbones
        if self.bits < 1:
            raise ConfigError(f"code length must be positive, got {self.bits}")
        if self.in_channels not in (1, 3):
            raise ConfigError(f"images must have 1 or 3 channels, got {self.in_channels}")
        HEADS.key(self.hash_norm)  # unknown names: one line listing the registered code heads
        channels = self.network_channels
        if len(self.mean) != channels or len(self.std) != channels:
            raise ConfigError(
                f"mean/std need {channels} values for {self.backbone} on {self.in_channels}-channel input"
            )
        if any(s <= 0 for s in self.std):
            raise ConfigError("normalisation std values must be positive")

    @property
    def network_channels(self) -> int:
        """Channels the network sees: grey images are repeated to RGB for torchvision backbones."""
        if wants_rgb_imagenet(self.backbone):
            return 3
        return self.in_channels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(payload) - known
        if unknown:
            raise ConfigError(f"unknown model fields: {', '.join(sorted(unknown))}")
        spec = cls(**payload)
        spec.validate()
        return spec


class StraightThroughSign(torch.autograd.Function):
    """sign with sign(0) = +1 forward, identity backward (see :func:`straight_through_sign`)."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.where(z >= 0, 1.0, -1.0).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def straight_through_sign(z: torch.Tensor) -> torch.Tensor:
    """The straight-through sign of the ``bn-sign`` head (Qiu et al., "HashVFL", IEEE TIFS 2024, after
    GreedyHash, Su et al., NeurIPS 2018).

    Forward: b = sign(z) with sign(0) = +1, so b is exactly +-1 (the same rule as :func:`sign_codes`).
    Backward: the identity, dL/dz = dL/db for every component (no clipping at |z| > 1).
    """
    return StraightThroughSign.apply(z)


class CodesFromLogits(nn.Module):
    """What every model of hash codes derives from its pre-activations z(x) (``logits``, on ``device``):
    relaxed codes tanh(alpha * z) (or, with :attr:`straight_through`, sign(z) with the identity gradient) and
    int8 sign codes. Shared by :class:`HashModel` and models built on one (NMLayer's merged model)."""

    #: True for the ``bn-sign`` head: forward gives straight-through sign codes and ignores alpha
    straight_through: bool = False

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """Relaxed codes tanh(alpha * z(x)) in (-1, 1); for the ``bn-sign`` head the straight-through sign codes
        (:func:`straight_through_sign`), exactly +-1, whatever ``alpha``."""
        if self.straight_through:
            return straight_through_sign(self.logits(x))
        return torch.tanh(alpha * self.logits(x))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Binary codes in {-1, +1} as int8 (eval mode for the call; the caller's mode is restored)."""
        was_training = self.training
        self.eval()
        try:
            z = self.logits(x.to(self.device))
        finally:
            self.train(was_training)
        return sign_codes(z)


class HashModel(CodesFromLogits):
    """A deep hashing network f(x; alpha) = tanh(alpha * z(x)) on images in [0, 1] (docs/methods.md)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        self.backbone = build_backbone(
            spec.backbone, spec.bits, spec.network_channels, spec.image_size, spec.pretrained
        )
        self.hash_norm: nn.Module = HEADS.build(spec.hash_norm, spec.bits)  # hashguard.models.heads
        self.straight_through = is_straight_through(spec.hash_norm)
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def bits(self) -> int:
        return self.spec.bits

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activations z(x) of the hash layer for images ``x`` in [0, 1], shape (B, K)."""
        if x.dim() != 4 or x.shape[1] != self.spec.in_channels:
            raise ValueError(
                f"expected images of shape (B, {self.spec.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if self.spec.network_channels != x.shape[1]:
            x = x.expand(-1, self.spec.network_channels, -1, -1)
        x = (x - self.mean) / self.std
        runtime = current_runtime()
        if runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            if not getattr(self, "_channels_last", False):
                self.backbone.to(memory_format=torch.channels_last)
                self._channels_last = True
        if runtime.precision == "float32":
            return self.hash_norm(self.backbone(x))
        with runtime.autocast(x.device):  # bfloat16 network, float32 logits (hashguard.precision)
            features = self.backbone(x)
        return self.hash_norm(features.float())


def sign_codes(values: torch.Tensor) -> torch.Tensor:
    """sign(values) as int8 codes with sign(0) = +1, so every component is +-1."""
    return torch.where(values >= 0, 1, -1).to(torch.int8)
