"""The interface every hashing objective implements, and helpers shared by the pairwise losses."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from hashguard.registry import constructor_values


def label_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """s_ij = 1[<y_i, y_j> > 0]: items are similar when they share at least one label (docs/methods.md)."""
    return (labels_a.float() @ labels_b.float().t() > 0).float()


class HashingMethod(nn.Module):
    """A deep hashing objective: ``loss = method(u, labels, index)``.

    ``u`` holds relaxed codes f(x; alpha) in (-1, 1) of shape (B, K), ``labels`` the float multi-hot labels
    (B, C) and ``index`` the positions of the batch items in the training split (B,), used by memory banks.

    Hooks the trainer calls:

    * :meth:`alpha` gives the relaxation scale to use at a training step (HashNet-style continuation; an
      explicit step count, never a counter of forward calls);
    * :meth:`preinstall` fills memory banks from the codes of a trained model (adversarial training);
    * :meth:`model_overrides` lets a method ask for a model feature (OrthoHash's BatchNorm on the codes).
    """

    name: ClassVar[str] = ""
    uses_memory_bank: ClassVar[bool] = False
    #: False for a method trained without labels: attacks and defenses that need class semantics then use
    #: k-means pseudo-labels of its codes (:mod:`hashguard.pseudo_labels`)
    supervised: ClassVar[bool] = True
    #: the training step class (``hashguard.training.loop.TrainingStep``) for a method whose training is not a
    #: per-batch loss (alternating discrete steps, learned database codes, phases); None: the clean step.
    #: It is built as ``training_step(model, method, train_set, config, seed=..., val_set=..., describe=...)``.
    training_step: ClassVar[type | None] = None

    def __init__(self, bits: int, num_classes: int, num_train: int, seed: int = 0) -> None:
        super().__init__()
        self.bits = bits
        self.num_classes = num_classes
        self.num_train = num_train
        self.seed = seed

    def alpha(self, step: int) -> float:
        """Relaxation scale for training step ``step`` (0-based). 1 unless the method uses continuation."""
        return 1.0

    def preinstall(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        """Fill the memory bank (if any) with codes and labels of the whole training split."""

    @classmethod
    def model_overrides(cls) -> dict[str, Any]:
        """Model spec fields the method needs (for example ``{"hash_norm": "batchnorm"}``)."""
        return {}

    def params(self) -> dict[str, Any]:
        """The method's hyper-parameters, as stored in checkpoints and results: its constructor's keywords
        after ``bits, num_classes, num_train, seed``, read back from the attributes of the same names."""
        return constructor_values(self, skip=("bits", "num_classes", "num_train", "seed"))

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
