"""THA: targeted hashing attack with a label-conditioned prototype code (docs/attacks.md).

Reference: X. Wang, Z. Zhang, B. Wu, F. Shen, G. Lu, "Prototype-supervised Adversarial Network for Targeted
Attack of Deep Hashing" (CVPR 2021) introduced the PrototypeNet; the THA variant used here is from X. Wang,
Z. Zhang, G. Lu, Y. Xu, "Targeted Attack and Defense for Deep Hashing", SIGIR 2021, as used by the SAAT code
(Yuan et al., IEEE TIFS 2023).

PrototypeNet: y -> Linear(C, 4096) -> ReLU -> Linear(4096, 512) -> Linear(512, K) -> tanh. It is trained on
the
attacked model's training sign codes G (N x K): each step samples B_p labels uniformly (with replacement) from
the unique database labels, S = h G^T / K, positives <t, Y_j> > 0 and negatives otherwise over **all** pairs
(no triangular mask; docs/attacks.md), and the circle-type loss with gamma = 1

    a_p = max(0, 2 - s_p), a_n = max(0, s_n + 2) (detached)
    L_c = softplus( logsumexp(a_n s_n gamma) + logsumexp(-a_p s_p gamma) ),
    L = L_c / B_p + sum (sign(h) - h)^2 / (1e4 B_p),

with Adam (lr 1e-4, betas (0.5, 0.999)), epochs x steps (100 x 300 by default) and the learning rate divided
by
10 at 50% and 75% of the steps. A batch without positive or without negative pairs has no circle term (the
reference code's logsumexp over an empty set gives -inf and NaN gradients; docs/attacks.md).

Attack: p = sign(PrototypeNet(t)), L = -mean(f(x'; alpha) * p), BIM sign steps of 1/255 from delta = 0,
eps = 8/255, 100 iterations, alpha schedule. The theory code is p.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hashguard.attacks.base import AttackContext, Objective, PreparedObjective
from hashguard.errors import ConfigError


class PrototypeNet(nn.Module):
    """THA's label-to-code network (Wang et al., SIGIR 2021): C -> 4096 -> ReLU -> 512 -> K -> tanh."""

    def __init__(self, num_classes: int, bits: int, hidden: int = 4096, feature: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_classes, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, feature),
            nn.Linear(feature, bits),
        )

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(labels))


def circle_loss(similarity: torch.Tensor, positive: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """THA's circle-type loss over all (label, training item) pairs; 0 when either pair set is empty."""
    negative = ~positive
    if not bool(positive.any()) or not bool(negative.any()):
        return similarity.sum() * 0.0
    s_p = similarity[positive]
    s_n = similarity[negative]
    a_p = (2 - s_p).clamp_min(0).detach()
    a_n = (s_n + 2).clamp_min(0).detach()
    return F.softplus(torch.logsumexp(a_n * s_n * gamma, dim=0) + torch.logsumexp(-a_p * s_p * gamma, dim=0))


def prototype_loss(
    net: PrototypeNet,
    target: torch.Tensor,
    codes: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 1.0,
) -> torch.Tensor:
    """THA's PrototypeNet loss for one batch of labels ``target`` (docs/attacks.md): the circle loss of
    S = h G^T / K over all (label, training item) pairs, divided by the batch size, plus the quantisation
    term sum (sign(h) - h)^2 / (1e4 B). ``codes`` (N, K) are float sign codes, ``labels`` (N, C) float."""
    h = net(target)
    similarity = h @ codes.t() / codes.shape[1]
    positive = (target @ labels.t()) > 0
    quantisation = ((h.detach().sign() - h) ** 2).sum() / (1e4 * target.shape[0])
    return circle_loss(similarity, positive, gamma) / target.shape[0] + quantisation


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
    """Train THA's PrototypeNet on the attacked model's training sign codes (docs/attacks.md); seeded, eval mode
    out.

    ``label_pool`` holds the labels to sample from (the unique database labels).
    """
    if epochs < 0 or steps < 1 or batch_size < 1:
        raise ConfigError("PrototypeNet training needs epochs >= 0, steps >= 1 and batch_size >= 1")
    device = train_codes.device
    codes = train_codes.float()
    labels = train_labels.float().to(device)
    pool = label_pool.float().to(device)
    bits = codes.shape[1]
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = PrototypeNet(labels.shape[1], bits, hidden=hidden).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
    total = epochs * steps
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[max(1, total // 2), max(1, (3 * total) // 4)], gamma=0.1
    )
    net.train()
    for _ in range(total):
        pick = torch.randint(0, pool.shape[0], (batch_size,), generator=generator).to(device)
        loss = prototype_loss(net, pool[pick], codes, labels, gamma)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


class THAObjective(Objective):
    """THA: pull the code onto sign(PrototypeNet(t)) (Wang et al., SIGIR 2021; docs/attacks.md)."""

    name = "tha"
    targeted = True
    needs = ("train", "database")

    def __init__(
        self,
        epochs: int = 100,
        steps: int = 300,
        batch_size: int = 128,
        lr: float = 1e-4,
        hidden: int = 4096,
        gamma: float = 1.0,
    ) -> None:
        self.epochs = int(epochs)
        self.steps = int(steps)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.hidden = int(hidden)
        self.gamma = float(gamma)
        self.prototype_net: PrototypeNet | None = None

    def params(self) -> dict[str, Any]:
        return {
            "prototype_epochs": self.epochs,
            "prototype_steps": self.steps,
            "prototype_batch_size": self.batch_size,
            "prototype_lr": self.lr,
            "prototype_hidden": self.hidden,
            "gamma": self.gamma,
        }

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
        with torch.no_grad():
            prototypes = torch.sign(self.prototype_net(target_labels.to(images.device)))
        prototypes = prototypes.to(images.dtype)

        def loss(u: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
            return -(u * prototypes).mean()

        return PreparedObjective(loss=loss, theory_codes=prototypes)
