"""ProS-GAN (Wang et al., CVPR 2021; SPEC §6.7) on the small trained demo model, with tiny widths and budgets.

Tiny budgets on CPU make it a weak attack: only robust properties are asserted (shape, eps ball, [0, 1], no
NaN, seeded determinism, model untouched, t-mAP not worse than clean beyond a small tolerance).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hashguard.attacks import ATTACKS, build_attack
from hashguard.attacks.prosgan import ProSDiscriminator, ProSGenerator, ProSPrototypeNet, prosgan_prototype_loss
from hashguard.errors import ConfigError
from hashguard.retrieval import targeted_mean_average_precision

EPS = 16 / 255
TINY = dict(
    proto_epochs=1,
    proto_steps=60,
    hidden=256,
    proto_lr=1e-3,
    epochs=2,
    gan_steps=12,
    batch_size=32,
    lr=1e-3,
    width=8,
    label_width=16,
    disc_width=8,
    res_blocks=1,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """GAN training on a shared 2-core CPU is 10-50x slower with thread oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bench(attack_bench, demo_splits):
    n = attack_bench.context.train_codes.shape[0]
    images = torch.stack([demo_splits.train.load_image(i) for i in range(n)])
    return attack_bench, dataclasses.replace(attack_bench.context, train_images=images)


def _tmap(b, ctx, codes) -> float:
    return targeted_mean_average_precision(codes, ctx.database_codes, b.target_labels, ctx.database_labels)


@pytest.fixture(scope="module")
def outcome(bench):
    b, ctx = bench
    attack = build_attack("prosgan", b.model, ctx, eps=EPS, seed=3, **TINY)
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
    net = ProSPrototypeNet(4, 12, hidden=16)
    t = torch.eye(4)
    f, h, c = net(t)
    assert f.shape == (4, 512) and h.shape == (4, 12) and c.shape == (4, 4)
    assert h.abs().max() < 1 and 0 < c.min() and c.max() < 1
    codes = torch.randn(10, 12).sign()
    labels = torch.eye(4)[torch.arange(10) % 4]
    loss = prosgan_prototype_loss(net, t, codes, labels)
    assert torch.isfinite(loss) and loss > 0


def test_prosgan_is_bounded_seeded_and_leaves_model_untouched(bench, outcome):
    b, ctx = bench
    attack, out = outcome
    x = b.query_images
    assert ATTACKS["prosgan"].targeted and attack.targeted
    assert out.adv_images.shape == x.shape
    assert torch.isfinite(out.adv_images).all()
    assert (out.adv_images - x).abs().max() <= EPS + 1e-6
    assert out.adv_images.min() >= 0 and out.adv_images.max() <= 1
    assert torch.equal(out.adv_codes, b.model.encode(out.adv_images))
    assert set(out.theory_codes.unique().tolist()) <= {-1, 1}
    assert all(p.grad is None for p in b.model.parameters())
    assert all(p.requires_grad for p in b.model.parameters())
    assert not b.model.training
    again = build_attack("prosgan", b.model, ctx, eps=EPS, seed=3, **TINY)
    assert torch.equal(again(x, b.query_labels, b.target_labels), out.adv_images)


def test_prosgan_targeted_map_does_not_drop(bench, outcome):
    b, ctx = bench
    _, out = outcome
    clean = _tmap(b, ctx, b.model.encode(b.query_images))
    adv = _tmap(b, ctx, out.adv_codes)
    theory = _tmap(b, ctx, out.theory_codes)
    print(f"prosgan t-mAP clean {clean:.3f} adv {adv:.3f} theory {theory:.3f}")
    assert adv >= clean - 0.02


def test_unprojected_output_and_guards(bench, outcome):
    b, ctx = bench
    attack, _ = outcome
    objective = attack.objective
    raw, _ = objective.generate(b.query_images[:4], b.target_labels[:4])
    assert raw.min() >= 0 and raw.max() <= 1
    objective.project = False
    try:
        out = attack.run(b.query_images[:4], b.query_labels[:4], b.target_labels[:4])
    finally:
        objective.project = True
    assert torch.equal(out.adv_images, raw.clamp(0, 1))
    with pytest.raises(ConfigError, match="train_images"):
        build_attack("prosgan", b.model, b.context, **TINY).run(
            b.query_images[:2], b.query_labels[:2], b.target_labels[:2]
        )
    with pytest.raises(ConfigError, match="targeted"):
        attack.run(b.query_images[:2], b.query_labels[:2])
