"""Label-needing attacks on a model trained without labels: k-means pseudo-labels stand in for the labels.

The mainstay attack (Yuan et al., IEEE TIFS 2023) and SDHA (Lu et al., ICMR 2021) build their target codes from
the labels of the attacked model's training split and of the query. For a model trained without labels
(``HashingMethod.supervised`` is False, e.g. BTHash, Zbontar et al., ICML 2021) :func:`use_pseudo_labels`
replaces them (:mod:`hashguard.pseudo_labels`):

* the training labels of the attack context become the one-hot k-means clusters of the training sign codes;
* each query's label becomes the cluster nearest to its clean sign code (eval mode, alpha = 1).

The database labels are untouched: they only judge the retrieval (mAP), at test time. Targeted attacks that
need training labels are refused: a target label names a class, and a model trained without labels has no map
from classes to its clusters.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from hashguard.attacks.base import AttackContext, HashAttack, Objective, PreparedObjective
from hashguard.errors import ConfigError
from hashguard.pseudo_labels import PseudoLabels, PseudoLabelSpec


class PseudoLabelledObjective(Objective):
    """``inner`` with every query label replaced by the pseudo-label of the query's clean code."""

    def __init__(self, inner: Objective, pseudo: PseudoLabels) -> None:
        self.inner, self.pseudo = inner, pseudo
        self.name = inner.name  # type: ignore[misc]
        self.targeted = inner.targeted  # type: ignore[misc]
        self.needs = inner.needs  # type: ignore[misc]
        self.needs_train_images = inner.needs_train_images  # type: ignore[misc]

    def setup(self, model: nn.Module, context: AttackContext, generator: torch.Generator) -> None:
        self.inner.setup(model, context, generator)

    def query_labels(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """One-hot pseudo-labels (B, k) of the clean sign codes of ``images``."""
        with torch.no_grad():
            codes = torch.where(model(images, alpha=1.0) >= 0, 1.0, -1.0)
        return self.pseudo.one_hot(codes).to(device=images.device, dtype=images.dtype)

    def prepare(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None,
        context: AttackContext,
        generator: torch.Generator,
    ) -> PreparedObjective:
        prepared = self.inner.prepare(model, images, self.query_labels(model, images), None, context, generator)
        prepared.info = {**prepared.info, "pseudo_label_clusters": self.pseudo.clusters}
        return prepared

    def params(self) -> dict[str, Any]:
        return self.inner.params()


def use_pseudo_labels(attack: HashAttack, spec: PseudoLabelSpec | None) -> HashAttack:
    """Give ``attack`` k-means pseudo-labels in place of the training and query labels (module docstring) when
    ``spec`` is set and the attack reads training labels; otherwise leave it as it is. Needs the attack's
    context with the training codes (``build_context``); returns the attack."""
    objective = attack.objective
    reads_train = "train" in objective.needs or objective.needs_train_images
    if spec is None or not reads_train or isinstance(objective, PseudoLabelledObjective):
        return attack
    if objective.targeted:
        raise ConfigError(
            f"attack {attack.name} is targeted and needs labelled training codes: the model was trained without "
            "labels, and its k-means pseudo-labels name no class to target (use a non-targeted attack)"
        )
    context = attack.context
    train_codes, _ = context.require("train", attack.name)
    pseudo = spec.fit(train_codes)
    train_labels = pseudo.one_hot(train_codes).to(train_codes.device)
    attack.objective = PseudoLabelledObjective(objective, pseudo)
    attack.set_context(replace(context, train_labels=train_labels))
    return attack


__all__ = ["PseudoLabelledObjective", "use_pseudo_labels"]
