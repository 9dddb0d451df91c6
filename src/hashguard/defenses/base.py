"""What a defense plugs into the adversarial trainer: an inner attack objective and an outer loss.

A :class:`Defense` is set up once with the clean model's sign codes of the training split (docs/defenses.md).
For each batch the trainer asks it for the inner loss (:meth:`Defense.inner_loss`, minimised by PGD over the
perturbation with the model's parameters frozen), runs the attack, and then asks for the outer loss
(:meth:`Defense.outer_loss`) on the benign and adversarial images, which it back-propagates into the model.
Whatever state a defense keeps between batches (code banks, an online PrototypeNet) is exposed as tensors so
that the trainer's checkpoints make a run resumable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from hashguard.attacks.threat import LossFn
from hashguard.defenses.config import DefenseConfig
from hashguard.methods.base import HashingMethod


@dataclass
class Batch:
    """One training batch: images in [0, 1] (B, C, H, W), float labels (B, C), training-split indices (B,).

    Under ``torchrun`` the batch is this rank's share of a global batch: ``span`` = (start, stop, total) places
    it in the global batch (one process: (0, B, B)), and ``gather`` turns per-rank tensors into the global
    batch's, this rank's rows still carrying gradients (:func:`hashguard.distributed.collectives.gather_live`).
    An outer loss gathers its model outputs, labels and indices and computes the global batch's loss; per-item
    randomness is drawn for the global batch and sliced with :meth:`own`, so a defense trains the same model on
    any number of processes.
    """

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    span: tuple[int, int, int] | None = None
    gather: Callable[..., tuple[torch.Tensor, ...]] = field(default=lambda *tensors: tensors)

    @property
    def global_size(self) -> int:
        return self.images.shape[0] if self.span is None else self.span[2]

    def own(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a tensor of the global batch (all of it in one process)."""
        return rows if self.span is None else rows[self.span[0] : self.span[1]]

    def gather_outputs(self, *outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The global batch's ``outputs`` (model outputs of this rank's rows), labels and indices, in one
        exchange: ``(*outputs, labels, index)``."""
        return self.gather(*outputs, self.labels, self.index)


@dataclass
class OuterLoss:
    """The loss to minimise and its parts (floats, for the history)."""

    loss: torch.Tensor
    parts: dict[str, float]


class Defense:
    """Base class of an adversarial-training defense (one inner attack, one outer loss)."""

    name: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    #: True when ``outer_loss`` gathers the global batch with ``batch.gather`` and per-item randomness of
    #: ``inner_loss`` is drawn for the global batch (:class:`Batch`): the defense may run under torchrun
    data_parallel: ClassVar[bool] = False

    def __init__(self, config: DefenseConfig) -> None:
        self.config = config

    def setup(self, train_codes: torch.Tensor, train_labels: torch.Tensor, bits: int, seed: int) -> None:
        """Install the clean model's sign codes (N, K) and labels (N, C) of the training split."""
        raise NotImplementedError

    def inner_loss(
        self, model: nn.Module, batch: Batch, generator: torch.Generator, lr_factor: float
    ) -> LossFn:
        """The loss ``loss(u, x_adv)`` the inner PGD minimises for this batch (u = f(x_adv; 1))."""
        raise NotImplementedError

    def outer_loss(
        self, model: nn.Module, method: HashingMethod, batch: Batch, adv_images: torch.Tensor
    ) -> OuterLoss:
        """The training loss on the benign and adversarial images (model in train mode)."""
        raise NotImplementedError

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint (banks, auxiliary networks)."""
        return {}

    def state_meta(self) -> dict[str, Any]:
        """JSON-able state to checkpoint beside the tensors."""
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Inverse of :meth:`state_tensors` / :meth:`state_meta`."""

    def to(self, device: torch.device) -> Defense:
        """Move the defense's tensors to ``device``."""
        return self

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "reference": self.reference}


def quantisation(u: torch.Tensor) -> torch.Tensor:
    """mean((u - sign(u))^2), the SAAT quantisation term (sign has no gradient)."""
    return ((u - u.detach().sign()) ** 2).mean()
