"""The shared PrototypeNet training (hashguard.attacks.prototype) against the pre-refactor code of THA and ProS-GAN.

The ``Old*`` / ``old_*`` definitions below are the pre-refactor code, copied verbatim (only renamed) from
``hashguard/attacks/tha.py`` and ``hashguard/attacks/prosgan.py`` as they were before THA, ProS-GAN and ATRDH
shared one PrototypeNet module. They are the oracle: for the same seed the shared training must give
bit-identical weights (same operations in the same order on the same machine, so this holds on any CPU and
thread count), and the generator must be left in the same state (same number of draws).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hashguard.attacks import ProSPrototypeNet, train_prosgan_prototype, train_prototype_net
from hashguard.attacks.prototype import (
    PrototypeNet,
    circle_prototype_loss,
    likelihood_prototype_loss,
    new_prototype_net,
    prototype_optimizer,
    prototype_step,
)
from hashguard.errors import ConfigError

# ---------------------------------------------------------------------------------- pre-refactor code (oracle)


class OldPrototypeNet(nn.Module):
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


def old_circle_loss(similarity: torch.Tensor, positive: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """THA's circle-type loss over all (label, training item) pairs; 0 when either pair set is empty."""
    negative = ~positive
    if not bool(positive.any()) or not bool(negative.any()):
        return similarity.sum() * 0.0
    s_p = similarity[positive]
    s_n = similarity[negative]
    a_p = (2 - s_p).clamp_min(0).detach()
    a_n = (s_n + 2).clamp_min(0).detach()
    return F.softplus(torch.logsumexp(a_n * s_n * gamma, dim=0) + torch.logsumexp(-a_p * s_p * gamma, dim=0))


def old_prototype_loss(
    net: OldPrototypeNet,
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
    return old_circle_loss(similarity, positive, gamma) / target.shape[0] + quantisation


def old_train_prototype_net(
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
) -> OldPrototypeNet:
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
        net = OldPrototypeNet(labels.shape[1], bits, hidden=hidden).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
    total = epochs * steps
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[max(1, total // 2), max(1, (3 * total) // 4)], gamma=0.1
    )
    net.train()
    for _ in range(total):
        pick = torch.randint(0, pool.shape[0], (batch_size,), generator=generator).to(device)
        loss = old_prototype_loss(net, pool[pick], codes, labels, gamma)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


class OldProSPrototypeNet(nn.Module):
    """ProS-GAN's PrototypeNet: semantic feature f(t) and two heads, h = tanh(...) (K) and c = sigmoid(...) (C)."""

    def __init__(self, num_classes: int, bits: int, hidden: int = 4096, feature: int = 512) -> None:
        super().__init__()
        self.feature = nn.Sequential(nn.Linear(num_classes, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, feature))
        self.hash_head = nn.Linear(feature, bits)
        self.label_head = nn.Linear(feature, num_classes)

    def forward(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(f, h, c): semantic feature, prototype code in (-1, 1) and reconstructed label in (0, 1)."""
        f = self.feature(labels)
        return f, torch.tanh(self.hash_head(f)), torch.sigmoid(self.label_head(f))


def old_prosgan_prototype_loss(
    net: OldProSPrototypeNet, target: torch.Tensor, codes: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """docs/attacks.md PrototypeNet loss: DPSH likelihood (mean over B x N) + MSE(c, t) + quantisation / (1e4 B)."""
    _, h, c = net(target)
    theta = 0.5 * h @ codes.t()
    s = ((target @ labels.t()) > 0).to(h.dtype)
    likelihood = (F.softplus(theta) - s * theta).mean()
    quantisation = ((h.detach().sign() - h) ** 2).sum() / (1e4 * target.shape[0])
    return likelihood + F.mse_loss(c, target) + quantisation


def _old_seed_from(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (), generator=generator))


def old_train_prosgan_prototype(
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    label_pool: torch.Tensor,
    *,
    epochs: int = 100,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-4,
    hidden: int = 4096,
    feature: int = 512,
    generator: torch.Generator,
) -> OldProSPrototypeNet:
    """Train ProS-GAN's PrototypeNet on the training sign codes (docs/attacks.md); seeded; frozen and in eval mode out.

    ``label_pool`` holds the labels to sample targets from (the unique database labels).
    """
    if epochs < 0 or steps < 1 or batch_size < 1:
        raise ConfigError("PrototypeNet training needs epochs >= 0, steps >= 1 and batch_size >= 1")
    device = train_codes.device
    codes = train_codes.float()
    labels = train_labels.float().to(device)
    pool = label_pool.float().to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_old_seed_from(generator))
        net = OldProSPrototypeNet(labels.shape[1], codes.shape[1], hidden=hidden, feature=feature).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
    total = epochs * steps
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[max(1, total // 2), max(1, (3 * total) // 4)], gamma=0.1
    )
    net.train()
    for _ in range(total):
        pick = torch.randint(0, pool.shape[0], (batch_size,), generator=generator).to(device)
        loss = old_prosgan_prototype_loss(net, pool[pick], codes, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


# ----------------------------------------------------------------------------------------------------- tests


def _problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """40 training items with 12-bit sign codes and 5 multi-hot labels; the pool is their unique labels."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2, (40, 12), generator=g).float() * 2 - 1
    labels = (torch.rand(40, 5, generator=g) < 0.4).float()
    labels[torch.arange(40), torch.arange(40) % 5] = 1.0  # every item has a label
    return codes, labels, torch.unique(labels, dim=0)


def _same_weights(old: nn.Module, new: nn.Module) -> None:
    old_params, new_params = list(old.parameters()), list(new.parameters())
    assert len(old_params) == len(new_params)
    for a, b in zip(old_params, new_params, strict=True):
        assert a.shape == b.shape and torch.equal(a, b)


def _draw(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (), generator=generator))


@pytest.mark.parametrize("seed", [0, 7])
def test_tha_prototype_training_is_bit_identical_to_the_pre_refactor_code(seed):
    codes, labels, pool = _problem(seed)
    settings = dict(epochs=2, steps=5, batch_size=8, lr=1e-2, hidden=32, gamma=1.0)
    g_old, g_new = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    old = old_train_prototype_net(codes, labels, pool, generator=g_old, **settings)
    new = train_prototype_net(codes, labels, pool, generator=g_new, **settings)
    assert isinstance(new, PrototypeNet) and new.label_head is None
    _same_weights(old, new)
    assert old.state_dict().keys() == new.state_dict().keys()  # ATRDH checkpoints keep their tensor names
    assert _draw(g_old) == _draw(g_new)
    assert not new.training and not any(p.requires_grad for p in new.parameters())
    # the training did something: an untrained net from the same seed differs
    untrained = old_train_prototype_net(
        codes, labels, pool, generator=torch.Generator().manual_seed(seed), **{**settings, "epochs": 0}
    )
    assert not torch.equal(untrained.net[0].weight, new.net[0].weight)
    t = pool[:3]
    assert torch.equal(old(t), new(t))


@pytest.mark.parametrize("seed", [0, 7])
def test_prosgan_prototype_training_is_bit_identical_to_the_pre_refactor_code(seed):
    codes, labels, pool = _problem(seed)
    settings = dict(epochs=2, steps=5, batch_size=8, lr=1e-2, hidden=32, feature=16)
    g_old, g_new = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    old = old_train_prosgan_prototype(codes, labels, pool, generator=g_old, **settings)
    new = train_prosgan_prototype(codes, labels, pool, generator=g_new, **settings)
    assert isinstance(new, PrototypeNet) and new.label_head is not None
    _same_weights(old, new)
    assert _draw(g_old) == _draw(g_new)
    t = pool[:3]
    for a, b in zip(old(t), new.heads(t), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(old(t)[1], new(t))  # forward is the prototype code h


def test_losses_match_the_pre_refactor_losses():
    codes, labels, pool = _problem(3)
    torch.manual_seed(0)
    old_tha = OldPrototypeNet(5, 12, hidden=16)
    torch.manual_seed(0)
    new_tha = PrototypeNet(5, 12, hidden=16)
    _same_weights(old_tha, new_tha)
    t = pool[:4]
    old_loss = old_prototype_loss(old_tha, t, codes, labels, 2.0)
    assert torch.equal(old_loss, circle_prototype_loss(new_tha, t, codes, labels, 2.0))
    torch.manual_seed(0)
    old_pros = OldProSPrototypeNet(5, 12, hidden=16, feature=8)
    torch.manual_seed(0)
    new_pros = ProSPrototypeNet(5, 12, hidden=16, feature=8)
    _same_weights(old_pros, new_pros)
    old_loss = old_prosgan_prototype_loss(old_pros, t, codes, labels)
    assert torch.equal(old_loss, likelihood_prototype_loss(new_pros, t, codes, labels))


def test_online_step_matches_the_pre_refactor_atrdh_code():
    """ATRDH's online PrototypeNet: seeded construction, Adam (0.5, 0.999), one step per batch, as before."""
    codes, labels, pool = _problem(5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        old = OldPrototypeNet(5, 12, hidden=32)
    old_opt = torch.optim.Adam(old.parameters(), lr=1e-3, betas=(0.5, 0.999))
    state = torch.random.get_rng_state()
    new = new_prototype_net(5, 12, seed=11, hidden=32)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left untouched
    new_opt = prototype_optimizer(new, 1e-3)
    for step in range(3):
        t = pool[torch.arange(step, step + 4) % pool.shape[0]]
        loss = old_prototype_loss(old, t, codes, labels, 1.0)
        old_opt.zero_grad(set_to_none=True)
        loss.backward()
        old_opt.step()
        prototype_step(new_opt, circle_prototype_loss(new, t, codes, labels, 1.0))
    _same_weights(old, new)


def test_heads_need_the_label_head():
    with pytest.raises(ConfigError, match="label head"):
        PrototypeNet(3, 4, hidden=8).heads(torch.eye(3))


@pytest.mark.parametrize("bad", [dict(epochs=-1), dict(steps=0), dict(batch_size=0)])
def test_training_settings_are_checked(bad):
    codes, labels, pool = _problem()
    settings = {"epochs": 1, "steps": 1, "batch_size": 1, **bad}
    with pytest.raises(ConfigError, match="PrototypeNet training needs"):
        train_prototype_net(codes, labels, pool, hidden=8, generator=torch.Generator(), **settings)
