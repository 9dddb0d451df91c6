"""PrototypeNet: the label-to-code network of ProS-GAN, THA and ATRDH, its losses and its training.

References: X. Wang, Z. Zhang, B. Wu, F. Shen, G. Lu, "Prototype-supervised Adversarial Network for Targeted
Attack of Deep Hashing", CVPR 2021 (ProS-GAN, which introduced the PrototypeNet); X. Wang, Z. Zhang, G. Lu,
Y. Xu, "Targeted Attack and Defense for Deep Hashing", SIGIR 2021 (THA and the ATRDH defense). Implemented from
docs/attacks.md (no research code copied).

Network (:class:`PrototypeNet`): t -> Linear(C, hidden) -> ReLU -> Linear(hidden, feature) = f(t), the semantic
feature; h = tanh(Linear(feature, K)(f)), the prototype code. ProS-GAN adds a label head
c = sigmoid(Linear(feature, C)(f)) (``label_head=True``). Hidden 4096 and feature 512 are the papers' sizes.

Losses, for a batch of target labels t (B x C) against the attacked model's training sign codes G (N x K) and
labels Y (N x C), over **all** (target, training item) pairs:

* :func:`circle_prototype_loss` (THA, ATRDH): the circle-type loss of S = h G^T / K with positives
  <t_i, Y_j> > 0, divided by B, plus sum (sign(h) - h)^2 / (1e4 B);
* :func:`likelihood_prototype_loss` (ProS-GAN): the DPSH likelihood of theta = h G^T / 2 (mean over B x N) plus
  MSE(c, t) plus the same quantisation term.

Training: :func:`new_prototype_net` (initialised from a seed, the global RNG left untouched),
:func:`prototype_optimizer` (Adam, betas (0.5, 0.999)) and :func:`prototype_step` (one Adam step) are shared by
the offline training of the attacks (:func:`train_prototype`: epochs x steps batches of targets drawn uniformly
with replacement from a label pool, the learning rate divided by 10 at 50% and 75% of the steps) and the online
training of ATRDH (one step per batch of adversarial training).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hashguard.errors import ConfigError
from hashguard.progress_bar import progress_bar

#: a PrototypeNet loss ``loss(net, targets, codes, labels) -> scalar`` (float codes and labels)
PrototypeLoss = Callable[["PrototypeNet", torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class PrototypeNet(nn.Module):
    """Label-to-code network (Wang et al., CVPR 2021; SIGIR 2021): f(t) and h = tanh(...) in (-1, 1)^K.

    ``label_head=True`` adds ProS-GAN's reconstructed label c = sigmoid(Linear(feature, C)(f)) (:meth:`heads`).
    The layers are created in the order Linear(C, hidden), Linear(hidden, feature), Linear(feature, K), then the
    label head, so a seed gives the same weights with or without the label head.
    """

    def __init__(
        self, num_classes: int, bits: int, hidden: int = 4096, feature: int = 512, label_head: bool = False
    ) -> None:
        super().__init__()
        self.feature_dim = int(feature)
        self.net = nn.Sequential(
            nn.Linear(num_classes, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, feature),
            nn.Linear(feature, bits),
        )
        self.label_head = nn.Linear(feature, num_classes) if label_head else None

    def features(self, labels: torch.Tensor) -> torch.Tensor:
        """The semantic feature f(t) (B x feature)."""
        return self.net[2](self.net[1](self.net[0](labels)))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """The prototype code h(t) = tanh(...) in (-1, 1)^K."""
        return torch.tanh(self.net(labels))

    def heads(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(f, h, c): semantic feature, prototype code in (-1, 1) and reconstructed label in (0, 1)."""
        if self.label_head is None:
            raise ConfigError("this PrototypeNet has no label head (build it with label_head=True)")
        f = self.features(labels)
        return f, torch.tanh(self.net[3](f)), torch.sigmoid(self.label_head(f))


def _quantisation(h: torch.Tensor) -> torch.Tensor:
    """sum (sign(h) - h)^2 / (1e4 B), with sign(h) held constant."""
    return ((h.detach().sign() - h) ** 2).sum() / (1e4 * h.shape[0])


def circle_loss(similarity: torch.Tensor, positive: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """THA's circle-type loss over all (label, training item) pairs (Wang et al., SIGIR 2021):

    a_p = max(0, 2 - s_p), a_n = max(0, s_n + 2) (detached),
    L_c = softplus(logsumexp(a_n s_n gamma) + logsumexp(-a_p s_p gamma));

    0 (with a zero gradient) when either pair set is empty, where the logsumexp of an empty set would give -inf
    and NaN gradients.
    """
    negative = ~positive
    if not bool(positive.any()) or not bool(negative.any()):
        return similarity.sum() * 0.0
    s_p = similarity[positive]
    s_n = similarity[negative]
    a_p = (2 - s_p).clamp_min(0).detach()
    a_n = (s_n + 2).clamp_min(0).detach()
    return F.softplus(torch.logsumexp(a_n * s_n * gamma, dim=0) + torch.logsumexp(-a_p * s_p * gamma, dim=0))


def circle_prototype_loss(
    net: PrototypeNet,
    target: torch.Tensor,
    codes: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 1.0,
) -> torch.Tensor:
    """THA's PrototypeNet loss for one batch of labels ``target`` (Wang et al., SIGIR 2021; docs/attacks.md): the
    circle loss of S = h G^T / K over all (label, training item) pairs, divided by the batch size, plus the
    quantisation term sum (sign(h) - h)^2 / (1e4 B). ``codes`` (N, K) are float sign codes, ``labels`` (N, C)
    float."""
    h = net(target)
    similarity = h @ codes.t() / codes.shape[1]
    positive = (target @ labels.t()) > 0
    return circle_loss(similarity, positive, gamma) / target.shape[0] + _quantisation(h)


def likelihood_prototype_loss(
    net: PrototypeNet, target: torch.Tensor, codes: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """ProS-GAN's PrototypeNet loss (Wang et al., CVPR 2021; docs/attacks.md): the DPSH likelihood
    mean_ij [log(1 + e^theta_ij) - s_ij theta_ij] with theta = h G^T / 2 and s_ij = 1[<t_i, Y_j> > 0], plus
    MSE(c, t), plus sum (sign(h) - h)^2 / (1e4 B). Needs the label head."""
    _, h, c = net.heads(target)
    theta = 0.5 * h @ codes.t()
    s = ((target @ labels.t()) > 0).to(h.dtype)
    likelihood = (F.softplus(theta) - s * theta).mean()
    return likelihood + F.mse_loss(c, target) + _quantisation(h)


def new_prototype_net(
    num_classes: int,
    bits: int,
    *,
    seed: int,
    hidden: int = 4096,
    feature: int = 512,
    label_head: bool = False,
    device: torch.device | str = "cpu",
) -> PrototypeNet:
    """A PrototypeNet initialised from ``seed`` (on the CPU, then moved), leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = PrototypeNet(num_classes, bits, hidden=hidden, feature=feature, label_head=label_head)
    return net.to(device)


def prototype_optimizer(net: PrototypeNet, lr: float) -> torch.optim.Adam:
    """Adam with betas (0.5, 0.999), the PrototypeNet optimizer of both papers."""
    return torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))


def prototype_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimizer step on ``loss`` (gradients cleared first)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def freeze(net: nn.Module) -> None:
    """Eval mode and ``requires_grad=False`` for good (a trained network used as a fixed function)."""
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)


def train_prototype(
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    label_pool: torch.Tensor,
    loss_fn: PrototypeLoss,
    *,
    epochs: int,
    steps: int,
    batch_size: int,
    lr: float,
    hidden: int = 4096,
    feature: int = 512,
    label_head: bool = False,
    generator: torch.Generator,
    desc: str = "PrototypeNet",
) -> PrototypeNet:
    """Train a PrototypeNet offline on the attacked model's training sign codes; frozen and in eval mode out.

    The initialisation seed is the first draw from ``generator``; then each of the ``epochs x steps`` steps draws
    ``batch_size`` targets uniformly (with replacement) from ``label_pool`` (the unique database labels) and takes
    one Adam step on ``loss_fn``; the learning rate is divided by 10 at 50% and 75% of the steps. A progress bar
    named ``desc`` (epoch, step, ETA) is drawn when the enclosing :func:`hashguard.progress_bar.progress_scope`
    asks for one.
    """
    if epochs < 0 or steps < 1 or batch_size < 1:
        raise ConfigError("PrototypeNet training needs epochs >= 0, steps >= 1 and batch_size >= 1")
    device = train_codes.device
    codes = train_codes.float()
    labels = train_labels.float().to(device)
    pool = label_pool.float().to(device)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    net = new_prototype_net(
        labels.shape[1], codes.shape[1], seed=seed, hidden=hidden, feature=feature, label_head=label_head,
        device=device,
    )
    optimizer = prototype_optimizer(net, lr)
    total = epochs * steps
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[max(1, total // 2), max(1, (3 * total) // 4)], gamma=0.1
    )
    net.train()
    with progress_bar(total=total, desc=desc, unit="step") as bar:
        for index in range(total):
            pick = torch.randint(0, pool.shape[0], (batch_size,), generator=generator).to(device)
            prototype_step(optimizer, loss_fn(net, pool[pick], codes, labels))
            scheduler.step()
            if index % steps == 0:
                bar.set_postfix_str(f"epoch {index // steps + 1}/{epochs}", refresh=False)
            bar.update()
    freeze(net)
    return net


def prototype_pull(net: nn.Module, target_labels: torch.Tensor, images: torch.Tensor) -> tuple[Callable, torch.Tensor]:
    """(loss, prototypes) pulling a batch's codes onto sign(net(t)): loss(u, x') = -mean(u * sign(net(t))), the
    targeted objective of THA (Wang et al., SIGIR 2021) and ProS-GAN's hash term (Wang et al., CVPR 2021)."""
    with torch.no_grad():
        prototypes = torch.sign(net(target_labels.float().to(images.device))).to(images.dtype)

    def loss(u: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return -(u * prototypes).mean()

    return loss, prototypes
