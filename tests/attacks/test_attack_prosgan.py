"""ProS-GAN (Wang et al., CVPR 2021; docs/attacks.md) on the small trained demo model, with tiny widths and budgets.

The attack is trained once (1 thread) in its original, unbounded form (``project=False``; the original has no
eps bound, docs/attacks.md) with settings that make it learn within ~100 GAN steps on the 800 demo digits:
learning rate 3e-3 instead of 1e-4 and reconstruction weight 10 instead of 50-100. Measured on this fixture
(seeds 0, 1, 3): t-mAP 0.10 (clean queries) -> 0.78 / 0.75 / 0.78 (theory 0.93 / 0.91 / 0.95), mean |delta|
about 0.10, L-inf about 1 (strokes drawn or erased: a visible perturbation, as the reconstruction weight is low).
Projected onto the 16/255 ball the same generator barely moves t-mAP (0.11): its perturbation is not
concentrated on a few pixels, so only the bound is asserted for the projected output.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.utils.data import Subset

from hashguard.attacks import attack_spec, build_attack
from hashguard.attacks.evaluate import perceptibility
from hashguard.attacks.prosgan import ProSDiscriminator, ProSGenerator, ProSPrototypeNet
from hashguard.attacks.prototype import likelihood_prototype_loss
from hashguard.errors import ConfigError
from hashguard.retrieval import targeted_mean_average_precision
from hashguard.testing import MINI_PROSGAN as MINI  # seconds to train, for the seeding and guard tests
from hashguard.testing import TINY_PROSGAN as TINY  # learns within the test budget (module docstring)

EPS = 16 / 255
@pytest.fixture(scope="module")
def bench(attack_bench, demo_splits):
    """The attack bench with its training split as lazily read training images (as the CLI passes them)."""
    n = attack_bench.context.train_codes.shape[0]
    return attack_bench, dataclasses.replace(attack_bench.context, train_images=Subset(demo_splits.train, range(n)))


def _tmap(b, ctx, codes) -> float:
    return targeted_mean_average_precision(codes, ctx.database_codes, b.target_labels, ctx.database_labels)


@pytest.fixture(scope="module")
def outcome(bench):
    b, ctx = bench
    attack = build_attack("prosgan", b.model, ctx, eps=EPS, seed=3, project=False, **TINY)
    out = attack.run(b.query_images, b.query_labels, b.target_labels)
    return attack, out


@pytest.mark.parametrize(("size", "start", "ups"), [(28, 7, 2), (224, 14, 4), (32, 2, 4)])
def test_architecture_is_size_generic(size, start, ups):
    gen = ProSGenerator(1, size, feature=32, width=4, label_width=16, res_blocks=1)
    assert gen.start == start
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in gen.label_up) == ups
    x = torch.rand(2, 1, size, size) * 2 - 1
    y = gen(x, torch.randn(2, 32))
    assert y.shape == x.shape and y.abs().max() <= 1
    assert ProSDiscriminator(1, size, 5, width=4)(y).shape == (2, 6)


def test_prototype_net_heads_and_loss():
    """The PrototypeNet loss against a loop over every (target, training item) pair:
    mean_ij [log(1 + e^theta_ij) - s_ij theta_ij] with theta = 1/2 <h_i, G_j>, s_ij = 1[<t_i, Y_j> > 0],
    plus MSE(c, t), plus sum (sign h - h)^2 / (1e4 B)."""
    torch.manual_seed(0)
    net = ProSPrototypeNet(4, 12, hidden=16)
    t = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]])
    f, h, c = net.heads(t)
    assert f.shape == (3, 512) and h.shape == (3, 12) and c.shape == (3, 4)
    assert h.abs().max() < 1 and 0 < c.min() and c.max() < 1
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 2, (10, 12), generator=g).float() * 2 - 1
    labels = torch.eye(4)[torch.arange(10) % 4]
    h, c = h.detach().double(), c.detach().double()
    likelihood = 0.0
    for i in range(3):
        for j in range(10):
            theta = 0.5 * float(h[i] @ codes[j].double())
            s = 1.0 if float(t[i] @ labels[j]) > 0 else 0.0
            likelihood += math.log1p(math.exp(theta)) - s * theta
    likelihood /= 30
    mse = float(((c - t.double()) ** 2).mean())
    quantisation = float(((torch.sign(h) - h) ** 2).sum()) / (1e4 * 3)
    loss = likelihood_prototype_loss(net, t, codes, labels)
    assert loss.item() == pytest.approx(likelihood + mse + quantisation, rel=1e-6)


def test_prosgan_raises_targeted_map(bench, outcome):
    b, ctx = bench
    attack, out = outcome
    clean = _tmap(b, ctx, b.model.encode(b.query_images))
    adv = _tmap(b, ctx, out.adv_codes)
    theory = _tmap(b, ctx, out.theory_codes)
    delta = perceptibility(b.query_images, out.adv_images)
    print(f"prosgan t-mAP clean {clean:.3f} adv {adv:.3f} theory {theory:.3f}; {delta}")
    assert adv > clean + 0.3  # measured +0.65 over three seeds (module docstring)
    assert theory > clean + 0.5
    assert out.info["projected_queries"] == 0 and attack.params()["project"] is False
    assert torch.isfinite(out.adv_images).all()
    assert out.adv_images.min() >= 0 and out.adv_images.max() <= 1
    assert torch.equal(out.adv_codes, b.model.encode(out.adv_images))
    assert set(out.theory_codes.unique().tolist()) <= {-1, 1}
    assert all(p.grad is None for p in b.model.parameters())
    assert all(p.requires_grad for p in b.model.parameters())
    assert not b.model.training


def test_projected_output_stays_in_the_ball(bench, outcome):
    b, _ = bench
    attack, out = outcome
    objective = attack.objective
    objective.project = True
    try:
        projected = attack.run(b.query_images, b.query_labels, b.target_labels)
    finally:
        objective.project = False
    x = b.query_images
    assert attack_spec("prosgan").targeted and attack.targeted
    assert projected.adv_images.shape == x.shape and torch.isfinite(projected.adv_images).all()
    assert projected.info["projected_queries"] == x.shape[0]
    assert (projected.adv_images - x).abs().max() <= EPS + 1e-6
    assert projected.adv_images.min() >= 0 and projected.adv_images.max() <= 1
    assert (out.adv_images - x).abs().max() > EPS  # the unprojected output does leave the ball
    expected = torch.min(torch.max(out.adv_images, x - EPS), x + EPS).clamp(0, 1)
    assert torch.equal(projected.adv_images, expected)


def test_same_seed_same_codes(bench):
    b, ctx = bench
    x, y, t = b.query_images[:16], b.query_labels[:16], b.target_labels[:16]

    def codes(seed):
        return build_attack("prosgan", b.model, ctx, eps=EPS, seed=seed, **MINI).run(x, y, t)

    first, again, other = codes(1), codes(1), codes(2)
    assert torch.equal(first.adv_images, again.adv_images) and torch.equal(first.adv_codes, again.adv_codes)
    assert not torch.equal(first.adv_images, other.adv_images)


def test_guards(bench):
    b, ctx = bench
    with pytest.raises(ConfigError, match="train_images"):
        build_attack("prosgan", b.model, b.context, **MINI).run(
            b.query_images[:2], b.query_labels[:2], b.target_labels[:2]
        )
    with pytest.raises(ConfigError, match="targeted"):
        build_attack("prosgan", b.model, ctx, **MINI).run(b.query_images[:2], b.query_labels[:2])
    short = dataclasses.replace(ctx, train_images=Subset(ctx.train_images.dataset, range(10)))
    with pytest.raises(ConfigError, match="10 training images"):
        build_attack("prosgan", b.model, short, **MINI).run(
            b.query_images[:2], b.query_labels[:2], b.target_labels[:2]
        )
