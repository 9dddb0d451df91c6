"""THA: targeted hashing attack with a label-conditioned prototype code (docs/attacks.md).

Reference: X. Wang, Z. Zhang, B. Wu, F. Shen, G. Lu, "Prototype-supervised Adversarial Network for Targeted
Attack of Deep Hashing" (CVPR 2021) introduced the PrototypeNet; the THA variant used here is from X. Wang,
Z. Zhang, G. Lu, Y. Xu, "Targeted Attack and Defense for Deep Hashing", SIGIR 2021, as used by the SAAT code
(Yuan et al., IEEE TIFS 2023).

PrototypeNet (:mod:`hashguard.attacks.prototype`, shared with ProS-GAN and ATRDH): y -> Linear(C, 4096) -> ReLU
-> Linear(4096, 512) -> Linear(512, K) -> tanh. It is trained on the attacked model's training sign codes
G (N x K): each step samples B_p labels uniformly (with replacement) from the unique database labels,
S = h G^T / K, positives <t, Y_j> > 0 and negatives otherwise over **all** pairs (no triangular mask;
docs/attacks.md), and the circle-type loss with gamma = 1

    a_p = max(0, 2 - s_p), a_n = max(0, s_n + 2) (detached)
    L_c = softplus( logsumexp(a_n s_n gamma) + logsumexp(-a_p s_p gamma) ),
    L = L_c / B_p + sum (sign(h) - h)^2 / (1e4 B_p),

with Adam (lr 1e-4, betas (0.5, 0.999)), epochs x steps (100 x 300 by default) and the learning rate divided
by 10 at 50% and 75% of the steps. A batch without positive or without negative pairs has no circle term (the
reference code's logsumexp over an empty set gives -inf and NaN gradients; docs/attacks.md).

Attack: p = sign(PrototypeNet(t)), L = -mean(f(x'; alpha) * p), BIM sign steps of 1/255 from delta = 0,
eps = 8/255, 100 iterations, alpha schedule. The theory code is p.
"""

from __future__ import annotations

import functools
from typing import Annotated

import torch
from torch import nn

from hashguard.attacks.base import AttackContext, Objective, PreparedObjective
from hashguard.attacks.prototype import PrototypeNet, circle_prototype_loss, prototype_pull, train_prototype
from hashguard.attacks.registry import ATTACKS, Budget
from hashguard.protocol import ATTACKS as PROTOCOL
from hashguard.registry import Range


def train_prototype_net(
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    label_pool: torch.Tensor,
    *,
    epochs: int = 100,
    steps: int = 300,
    batch_size: int = 128,
    lr: float = 1e-4,
    hidden: int = 4096,
    gamma: float = 1.0,
    generator: torch.Generator,
) -> PrototypeNet:
    """Train THA's PrototypeNet (Wang et al., SIGIR 2021) on the attacked model's training sign codes with the
    circle loss (:func:`~hashguard.attacks.prototype.train_prototype`); seeded, frozen and in eval mode out.

    ``label_pool`` holds the labels to sample from (the unique database labels).
    """
    return train_prototype(
        train_codes,
        train_labels,
        label_pool,
        functools.partial(circle_prototype_loss, gamma=gamma),
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        hidden=hidden,
        generator=generator,
        desc="tha PrototypeNet",
    )


_THA = PROTOCOL["tha"]


@ATTACKS.register("tha", display="THA", reference="Wang et al., SIGIR 2021", budget=Budget.protocol("tha"))
class THAObjective(Objective):
    """THA: pull the code onto sign(PrototypeNet(t)) (Wang et al., SIGIR 2021; docs/attacks.md)."""

    name = "tha"
    targeted = True
    needs = ("train", "database")

    def __init__(
        self,
        epochs: Annotated[int, Range(0), "PrototypeNet epochs"] = _THA["epochs"],
        steps: Annotated[int, Range(1), "PrototypeNet steps per epoch"] = _THA["steps"],
        batch_size: Annotated[int, Range(1), "PrototypeNet label batch"] = _THA["batch_size"],
        lr: Annotated[float, Range(0, exclusive_low=True), "PrototypeNet Adam learning rate"] = _THA["lr"],
        hidden: Annotated[int, Range(1), "PrototypeNet hidden width"] = _THA["hidden"],
        gamma: Annotated[float, Range(0, exclusive_low=True), "circle-loss scale"] = _THA["gamma"],
    ) -> None:
        self.epochs = int(epochs)
        self.steps = int(steps)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.hidden = int(hidden)
        self.gamma = float(gamma)
        self.prototype_net: PrototypeNet | None = None


    def setup(self, model: nn.Module, context: AttackContext, generator: torch.Generator) -> None:
        codes, labels = context.require("train", self.name)
        _, db_labels = context.require("database", self.name)
        pool = torch.unique(db_labels.float(), dim=0)
        self.prototype_net = train_prototype_net(
            codes,
            labels,
            pool,
            epochs=self.epochs,
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            hidden=self.hidden,
            gamma=self.gamma,
            generator=generator,
        )

    def prepare(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None,
        context: AttackContext,
        generator: torch.Generator,
    ) -> PreparedObjective:
        assert target_labels is not None
        if self.prototype_net is None:
            self.setup(model, context, generator)
        assert self.prototype_net is not None
        loss, prototypes = prototype_pull(self.prototype_net, target_labels, images)
        return PreparedObjective(loss=loss, theory_codes=prototypes)
