"""The inner attack of adversarial training: PGD with the model's parameters frozen, its module modes, and
CgAT's batch augmentation.

PGD (random start, sign steps of ``step``, ``iterations`` iterations, alpha = 1,
:class:`hashguard.attacks.optimizers.PGD`) minimises the defense's inner loss over the L-infinity ball of radius
``eps`` with the model's parameters frozen (``requires_grad=False``: no parameter gradient is computed or
accumulated; the reference code accumulated and then discarded them).

Mode of the model during the inner attack (the paper protocol runs it in train mode):

* ``inner_bn="update"`` with ``inner_dropout=True`` (protocol default): train mode, batch norm normalises
  with the batch's statistics and updates its running statistics, dropout is on;
* ``inner_bn="frozen"`` with ``inner_dropout=False`` (the ``demo`` preset): eval mode, batch norm uses and
  keeps its running statistics, exactly as at test time, so adversarial batches never touch them;
* ``inner_bn="batch"``: batch norm normalises with the adversarial batch's own statistics, but its running
  statistics are restored afterwards.

``augment=True`` (CgAT's protocol) randomly crops (zero padding of about size / 14 pixels on each side, then a
crop back to the same size: 16 px at 224 x 224, the margin of Resize(256) + RandomCrop(224)) and horizontally
flips (probability 1/2) every training batch, per image, before the inner attack.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from hashguard.attacks.optimizers import PGD, uniform
from hashguard.defenses.config import DefenseConfig


@contextlib.contextmanager
def inner_modes(model: nn.Module, inner_bn: str = "update", dropout: bool = True) -> Iterator[nn.Module]:
    """Module modes for the inner attack (see the module docstring); everything is restored afterwards."""
    was_training = model.training
    model.eval()
    saved: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if inner_bn != "frozen":
                module.train()
            if inner_bn == "batch":
                saved.append((module, {n: b.detach().clone() for n, b in module.named_buffers(recurse=False)}))
        elif isinstance(module, nn.modules.dropout._DropoutNd):
            module.train(dropout)
    try:
        yield model
    finally:
        with torch.no_grad():
            for module, buffers in saved:
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)
        model.train(was_training)


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, span: tuple[int, int, int] | None = None
) -> torch.Tensor:
    """Random crop (zero padding of max(1, round(size / 14)) pixels, crop back) and horizontal flip per image.

    CgAT's training augmentation (Wang et al., WWW 2023: RandomCrop + RandomHorizontalFlip on the train split);
    on already centre-cropped images the padding reproduces the 256 -> 224 crop margin. Seeded by ``generator``.
    ``span`` (start, stop, total): ``images`` are rows ``start:stop`` of a global batch of ``total``; the draws are
    made for the global batch and sliced, so every rank augments its rows as one process would.
    """
    b, _, h, w = images.shape
    start, stop, total = span or (0, b, b)
    pad = max(1, round(min(h, w) / 14))
    padded = nn.functional.pad(images, (pad, pad, pad, pad))
    tops = torch.randint(0, 2 * pad + 1, (total,), generator=generator)[start:stop].tolist()
    lefts = torch.randint(0, 2 * pad + 1, (total,), generator=generator)[start:stop].tolist()
    flips = (torch.rand(total, generator=generator)[start:stop] < 0.5).to(images.device).view(b, 1, 1, 1)
    windows = zip(tops, lefts, strict=True)
    cropped = torch.stack([padded[i, :, t : t + h, s : s + w] for i, (t, s) in enumerate(windows)])
    return torch.where(flips, cropped.flip(-1), cropped)


def run_inner_attack(
    model: nn.Module,
    images: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: DefenseConfig,
    generator: torch.Generator,
    span: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """PGD on the perturbation only, parameters frozen, modes as ``config`` says; adversarial images out.

    ``span`` (start, stop, total): ``images`` are rows ``start:stop`` of a global batch of ``total`` split across
    ``torchrun`` ranks. The random start is drawn for the global batch and sliced, and the loss is weighted by
    the rank's share, (stop - start) / total, so that through batch norm synchronised over the ranks every
    rank takes the sign-gradient steps of the one-process attack on the global batch.
    """
    pgd = PGD(step=config.step, alpha_schedule=False, alpha=1.0, random_start=config.random_start)
    if span is not None:
        start, stop, total = span
        share = (stop - start) / total
        if config.random_start:
            noise = uniform(
                torch.Size((total, *images.shape[1:])), -config.eps, config.eps, generator, images.device,
                images.dtype,
            )
            pgd = PGD(step=config.step, alpha_schedule=False, alpha=1.0, random_start=False)
            pgd.start_noise = noise[start:stop]
        unweighted = loss_fn

        def loss_fn(u: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
            return unweighted(u, x_adv) * share

    with inner_modes(model, config.inner_bn, config.inner_dropout):
        return pgd.run(
            model, images, loss_fn, eps=config.eps, iterations=config.iterations, generator=generator, keep_mode=True
        )
