"""Seeded random views of an image batch for two-view (self-supervised) hashing objectives.

A view of images in [0, 1] is, per image and in this order:

* a random crop-and-shift: the image is resampled (bilinear, zero outside the image) through an affine map
  that zooms in by a factor drawn uniformly from [1, 1 / ``min_scale``] (a crop of side ``min_scale`` to 1 of
  the image, scaled back to full size) and moves the crop by up to ``shift`` of the image side in x and y;
* a horizontal flip with probability 1/2 when ``flip`` is set (natural images; never for digits, whose
  mirror images are other shapes);
* additive Gaussian noise of standard deviation ``noise``, then clamping to [0, 1].

Every random number is drawn on the CPU from the caller's ``torch.Generator`` (the training loop seeds one per
epoch from the run's seed), in a fixed order and a fixed amount per batch, so the views of a run are a function
of its seed; the images are transformed on their own device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hashguard.errors import ConfigError


@dataclass(frozen=True)
class ViewSettings:
    """How strong a random view is (see the module docstring)."""

    min_scale: float = 0.8
    shift: float = 0.1
    flip: bool = False
    noise: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= 1:
            raise ConfigError(f"min_scale must be in (0, 1], got {self.min_scale}")
        if not 0 <= self.shift <= 1:
            raise ConfigError(f"shift must be in [0, 1], got {self.shift}")
        if self.noise < 0:
            raise ConfigError(f"noise must be non-negative, got {self.noise}")


def random_view(images: torch.Tensor, generator: torch.Generator, settings: ViewSettings) -> torch.Tensor:
    """One random view (B, C, H, W) of ``images`` in [0, 1], in [0, 1] (module docstring)."""
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    batch = images.shape[0]
    # all draws first, on the CPU, always the same amount: the stream does not depend on the settings' flags
    zoom = torch.rand(batch, generator=generator, dtype=torch.float64)
    offsets = torch.rand(batch, 2, generator=generator, dtype=torch.float64) * 2 - 1
    flips = torch.rand(batch, generator=generator, dtype=torch.float64) < 0.5
    noise = torch.randn(images.shape, generator=generator, dtype=torch.float32)
    scale = settings.min_scale + (1 - settings.min_scale) * zoom  # fraction of the side the crop keeps
    # theta maps output coordinates in [-1, 1] to input coordinates: x_in = scale * x_out + offset
    theta = torch.zeros(batch, 2, 3, dtype=torch.float64)
    mirror = torch.where(flips & settings.flip, -1.0, 1.0).to(torch.float64)
    theta[:, 0, 0] = scale * mirror
    theta[:, 1, 1] = scale
    theta[:, :, 2] = offsets * (2 * settings.shift)  # a shift of `shift` of the side is 2 * shift in [-1, 1]
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    view = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if settings.noise > 0:
        view = view + settings.noise * noise.to(device=images.device, dtype=images.dtype)
    return view.clamp(0.0, 1.0)


def two_views(
    images: torch.Tensor, generator: torch.Generator, settings: ViewSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random views of the same batch."""
    return random_view(images, generator, settings), random_view(images, generator, settings)
