"""The threat model shared by every attack and adversarial-training defense (docs/attacks.md).

White-box, L-infinity, in [0, 1] pixel space (normalisation happens inside the model): an adversarial image
x' satisfies ||x' - x||_inf <= eps and 0 <= x' <= 1. This module holds that constraint and nothing that
searches inside it:

* :func:`check_eps` - the validation of a radius where it enters from the command line (``hashguard attack``);
  ``build_attack`` (its declared parameter range) and the study / defense configs (their field bounds) check
  the same [0, 1] where a value enters through them, and everything downstream (attacks, optimizers, the
  defenses' inner attack) trusts the validated value;
* :func:`check_images` - a float (B, C, H, W) batch in [0, 1];
* :func:`project` / :func:`finalize` - the projection onto the ball and the box (Madry et al., "Towards Deep
  Learning Models Resistant to Adversarial Attacks", ICLR 2018, Sec. 2);
* :func:`frozen_eval` - the attacked model in eval mode with frozen parameters, restored afterwards;
* :data:`LossFn` - the signature of a code-space attack loss ``loss(u, x_adv) -> scalar``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from hashguard.errors import ConfigError

#: a code-space attack loss: ``loss(u, x_adv) -> scalar`` with ``u`` the relaxed codes of the adversarial images
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_eps(eps: float) -> float:
    """``eps`` as a float in [0, 1] (pixel space); one-line :class:`ConfigError` otherwise."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ConfigError(f"eps must be a number in [0, 1], got {eps!r}") from None
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ConfigError(f"eps must be in [0, 1] (pixel space, e.g. 8/255 = 0.0314), got {eps!r}")
    return value


def check_images(images: torch.Tensor) -> None:
    """Images must be a float batch (B, C, H, W) in [0, 1]."""
    if images.dim() != 4 or not images.is_floating_point():
        raise ConfigError(
            f"expected a float image batch (B, C, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ConfigError("images must lie in [0, 1] (normalisation happens inside the model)")


@contextlib.contextmanager
def frozen_eval(model: nn.Module, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` on every parameter for the block; both restored afterwards.

    ``eval_mode=False`` only freezes the parameters and leaves the modules' modes as the caller set them
    (adversarial training chooses per module whether batch norm and dropout behave as in training).
    """
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    if eval_mode:
        model.eval()
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield model
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        model.train(was_training)


def project(images: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Clip ``delta`` to [-eps, eps], then so that images + delta lies in [0, 1]."""
    delta = delta.clamp(-eps, eps)
    return (images + delta).clamp(0.0, 1.0) - images


def project_(images: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """:func:`project` in place on ``delta`` (the same operations in the same order, so the same numbers) for
    the inner loops of the optimizers, which would otherwise allocate three image-sized temporaries per step;
    returns ``delta``."""
    return delta.clamp_(-eps, eps).add_(images).clamp_(0.0, 1.0).sub_(images)


def finalize(images: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """The adversarial images, clipped once more so that rounding cannot leave the ball or [0, 1]."""
    return clip_to_ball(images + delta, images, eps)


def clip_to_ball(adv: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """``adv`` clipped into the L-infinity ball of radius ``eps`` around ``images`` and into [0, 1], detached."""
    adv = torch.minimum(torch.maximum(adv, images - eps), images + eps)
    return adv.clamp(0.0, 1.0).detach()

