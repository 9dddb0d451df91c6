"""Optimizers (docs/attacks.md): eps ball, [0, 1], no parameter gradients, restored state, seeds, SI-NI scales."""

from __future__ import annotations

import math

import pytest
import torch

from hashguard.attacks import OPTIMIZERS, build_attack, build_optimizer, get_alpha, mainstay_loss
from hashguard.attacks.optimizers import SINIFGSM, input_diversity
from hashguard.attacks.threat import check_eps
from hashguard.errors import ConfigError
from hashguard.models.hash_model import HashModel, ModelSpec


def tiny_model(bits: int = 16) -> HashModel:
    torch.manual_seed(0)
    return HashModel(ModelSpec(backbone="small_cnn", bits=bits, in_channels=1, image_size=28, mean=[0.13], std=[0.3]))


@pytest.fixture(scope="module")
def setup():
    model = tiny_model(bits=16)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(6, 1, 28, 28, generator=g)
    images[0] = 0.0  # saturated images exercise the [0, 1] clip
    images[1] = 1.0
    target = torch.sign(torch.randn(6, 16, generator=g))
    return model, images, target


def test_alpha_schedule_matches_spec():
    assert [get_alpha(i, 100) for i in (0, 49, 50, 60, 70, 80, 90, 99)] == [0.1, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.0]
    assert [get_alpha(i, 2000) for i in (999, 1000, 1199, 1200, 1799, 1800)] == [0.1, 0.2, 0.2, 0.3, 0.7, 1.0]
    assert get_alpha(0, 1) == 0.1


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_stays_in_ball_and_leaves_the_model_untouched(setup, name):
    model, images, target = setup
    model.train()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)  # a flag the attack must restore as it found it
    eps = 8 / 255
    step = {"sgd": 100.0, "adam": 0.01}.get(name, 1 / 255)
    optimizer = build_optimizer(name, step=step)
    adv = optimizer.run(
        model,
        images,
        lambda u, x: mainstay_loss(u, target),
        eps=eps,
        iterations=4,
        generator=torch.Generator().manual_seed(0),
    )
    assert adv.shape == images.shape and torch.isfinite(adv).all()
    assert (adv - images).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert model.training
    assert not frozen.requires_grad
    assert all(p.requires_grad for p in list(model.parameters())[1:])
    assert all(p.grad is None for p in model.parameters())
    frozen.requires_grad_(True)
    model.eval()


@pytest.mark.parametrize("name", ["pgd", "di", "vmi", "sini"])
def test_same_seed_same_result(setup, name):
    model, images, target = setup

    def run(seed):
        return build_optimizer(name).run(
            model,
            images,
            lambda u, x: mainstay_loss(u, target),
            eps=0.05,
            iterations=3,
            generator=torch.Generator().manual_seed(seed),
        )

    assert torch.equal(run(3), run(3))
    if name in ("pgd", "vmi"):
        assert not torch.equal(run(3), run(4))


@pytest.mark.parametrize("eps", [-0.1, 1.5, math.nan, "x"])
def test_eps_is_validated_where_it_enters(setup, eps):
    """One validation at the boundary (check_eps, build_attack); the optimizers trust the validated radius."""
    model, images, target = setup
    with pytest.raises(ConfigError, match=r"eps must be"):
        check_eps(eps)
    with pytest.raises(ConfigError, match=r"eps must be"):
        build_attack("mainstay", model, eps=eps)


@pytest.mark.parametrize(("eps", "value"), [(0, 0.0), (1, 1.0), ("0.5", 0.5), (8 / 255, 8 / 255)])
def test_check_eps_accepts_the_closed_unit_interval(eps, value):
    assert check_eps(eps) == value and isinstance(check_eps(eps), float)


def test_images_outside_unit_range_are_refused(setup):
    model, images, _ = setup
    with pytest.raises(ConfigError):
        build_optimizer("bim").run(
            model, images * 2, lambda u, x: u.sum(), eps=0.1, iterations=1, generator=torch.Generator()
        )


def test_unknown_optimizer_or_parameter():
    with pytest.raises(ConfigError):
        build_optimizer("lbfgs")
    with pytest.raises(ConfigError):
        build_optimizer("pgd", momentum=0.9)
    assert build_optimizer("SI-NI-FGSM").name == "sini"


@pytest.mark.parametrize("batch_scales", [False, True])
def test_sini_uses_the_intended_scales_and_gradients_wrt_x_nes(setup, batch_scales):
    model, images, target = setup
    optimizer = SINIFGSM(scales=5, batch_scales=batch_scales)
    assert optimizer.scale_factors() == [1.0, 0.5, 0.25, 0.125, 0.0625]

    def loss(u, x):
        return mainstay_loss(u, target)

    delta = torch.full_like(images, 0.01)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    got = optimizer.lookahead_gradient(model, images, delta, loss, 1.0)
    expected = torch.zeros_like(images)
    for factor in optimizer.scale_factors():
        x = (images + delta).clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(model(x * factor), x), x)
        expected += g / 5
    for p in model.parameters():
        p.requires_grad_(True)
    assert torch.allclose(got, expected, atol=1e-7, rtol=1e-5)


def test_input_diversity_keeps_size_and_is_seeded():
    x = torch.rand(2, 1, 28, 28)
    a = input_diversity(x, 0.9, 1.0, torch.Generator().manual_seed(0))
    b = input_diversity(x, 0.9, 1.0, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(input_diversity(x, 0.9, 0.0, torch.Generator()), x)


def test_masked_loss_without_active_elements_is_zero_not_nan():
    u = torch.full((2, 4), -0.9, requires_grad=True)
    m = torch.ones(2, 4)
    loss = mainstay_loss(u, m)  # every s = -0.9 < -0.5: no active element
    (g,) = torch.autograd.grad(loss, u)
    assert loss.item() == 0.0 and torch.isfinite(g).all()
    loss_t = mainstay_loss(-u, m, targeted=True)  # every s = 0.9 > 0.5
    assert loss_t.item() == 0.0
    assert mainstay_loss(u, m, kind="plain").item() == pytest.approx(-0.9)
