"""Every perturbation optimizer's update rule, checked step by step against the rule written out here.

The "model" is linear, u = alpha * W x (flattened per sample), and the loss is
L(u) = sum_b (<a_b, u_b> + 1/2 ||u_b||^2), so the gradient with respect to the images is known in closed form:
dL/dx_b = alpha * W^T (a_b + alpha * W x_b). The references below are plain numpy loops in float64 that
implement each rule from its paper (PGD, BIM, MI-FGSM, NI-FGSM, SI-NI-FGSM, VMI-FGSM, DI-FGSM, SGD with momentum,
Adam); random draws are reproduced by drawing from a generator seeded like the optimizer's, in the same order.
A second part checks that every optimizer lowers a convex loss by a margin derived from the problem.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hashguard.attacks.optimizers import (
    BIM,
    DIFGSM,
    MIFGSM,
    NIFGSM,
    PGD,
    SINIFGSM,
    VMIFGSM,
    Adam,
    SGDMomentum,
    get_alpha,
    input_diversity,
)

B, C, H, W_ = 2, 1, 2, 3
D = C * H * W_
K = 3
SEED = 11


class Linear(nn.Module):
    """u = alpha * W x; records the alphas and the input shapes it was called with."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight  # a plain tensor: the model has no parameters
        self.alphas: list[float] = []
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        self.alphas.append(alpha)
        self.inputs.append(x.detach().clone())
        return alpha * x.flatten(1) @ self.weight.t()


def problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(K, D, generator=g, dtype=torch.float64)
    images = torch.rand(B, C, H, W_, generator=g, dtype=torch.float64) * 0.6 + 0.2
    images[0, 0, 0, 0] = 0.001  # near the [0, 1] border, so the clip to [0, 1] matters
    # the unconstrained minimum lies close to the clean images: gradients are small and change sign along the
    # way, so momentum, look-ahead, variance and scale terms all change the signs of the steps
    a = -images.flatten(1) @ weight.t() + 0.05 * torch.randn(B, K, generator=g, dtype=torch.float64)
    return weight, a, images


def loss_fn(a: torch.Tensor):
    def loss(u: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return (a * u).sum() + 0.5 * (u**2).sum()

    return loss


def grad_np(w: np.ndarray, a: np.ndarray, x: np.ndarray, alpha: float) -> np.ndarray:
    """dL/dx for a batch x of shape (B, D): alpha W^T (a_b + alpha W x_b), written as a loop."""
    out = np.zeros_like(x)
    for b in range(x.shape[0]):
        u = alpha * w @ x[b]
        out[b] = alpha * w.T @ (a[b] + u)
    return out


def project_np(x: np.ndarray, delta: np.ndarray, eps: float) -> np.ndarray:
    delta = np.clip(delta, -eps, eps)
    return np.clip(x + delta, 0.0, 1.0) - x


def mean_abs(g: np.ndarray) -> np.ndarray:
    return np.abs(g).mean(axis=1, keepdims=True)


def start_noise(seed: int, eps: float) -> np.ndarray:
    """The first U(-eps, eps) draw of a generator seeded with ``seed`` (float32 draw, as the optimizers)."""
    g = torch.Generator().manual_seed(seed)
    sample = torch.rand((B, C, H, W_), generator=g, dtype=torch.float32)
    return (-eps + 2 * eps * sample).to(torch.float64).reshape(B, D).numpy()


def run(optimizer, weight, a, images, eps, iterations, seed=SEED):
    model = Linear(weight)
    adv = optimizer.run(
        model, images, loss_fn(a), eps=eps, iterations=iterations, generator=torch.Generator().manual_seed(seed)
    )
    return adv.reshape(B, D).numpy(), model


EPS = 0.15
STEP = 0.04


def test_pgd_random_start_sign_step_and_projection():
    weight, a, images = problem()
    adv, model = run(PGD(step=STEP, alpha_schedule=False, alpha=0.7), weight, a, images, EPS, 3)
    w, av, x = weight.numpy(), a.numpy(), images.reshape(B, D).numpy()
    delta = project_np(x, start_noise(SEED, EPS), EPS)
    assert np.all(np.abs(delta) <= EPS)
    for _ in range(3):
        delta = project_np(x, delta - STEP * np.sign(grad_np(w, av, x + delta, 0.7)), EPS)
    np.testing.assert_allclose(adv, x + delta, rtol=0, atol=1e-12)
    assert model.alphas == [0.7, 0.7, 0.7]


def test_bim_starts_at_zero():
    weight, a, images = problem()
    adv, _ = run(BIM(step=STEP, alpha_schedule=False), weight, a, images, EPS, 2)
    w, av, x = weight.numpy(), a.numpy(), images.reshape(B, D).numpy()
    delta = np.zeros_like(x)
    for _ in range(2):
        delta = project_np(x, delta - STEP * np.sign(grad_np(w, av, x + delta, 1.0)), EPS)
    np.testing.assert_allclose(adv, x + delta, rtol=0, atol=1e-12)
    # one step from zero: every pixel moved by exactly the step (or was clipped at 0)
    one, _ = run(BIM(step=STEP, alpha_schedule=False), weight, a, images, EPS, 1)
    moved = np.abs(one - x)
    assert np.all((np.abs(moved - STEP) < 1e-12) | (one == 0.0))


def test_optimizers_pass_the_alpha_schedule():
    weight, a, images = problem()
    _, model = run(BIM(step=STEP), weight, a, images, EPS, 10)
    assert model.alphas == [get_alpha(i, 10) for i in range(10)]
    assert model.alphas == [0.1] * 5 + [0.2, 0.3, 0.5, 0.7, 1.0]


def test_mi_fgsm_momentum_with_l1_mean_normalisation():
    weight, a, images = problem()
    adv, _ = run(MIFGSM(step=STEP, alpha_schedule=False), weight, a, images, EPS, 3)
    w, av, x = weight.numpy(), a.numpy(), images.reshape(B, D).numpy()
    delta, v = np.zeros_like(x), np.zeros_like(x)
    for _ in range(3):
        g = grad_np(w, av, x + delta, 1.0)
        v = 1.0 * v + g / mean_abs(g)
        delta = project_np(x, delta - STEP * np.sign(v), EPS)
    np.testing.assert_allclose(adv, x + delta, rtol=0, atol=1e-12)


def test_ni_fgsm_nesterov_lookahead_in_the_minimising_convention():
    weight, a, images = problem()
    model = Linear(weight)
    adv = NIFGSM(step=STEP, alpha_schedule=False).run(
        model, images, loss_fn(a), eps=EPS, iterations=3, generator=torch.Generator()
    )
    w, av, x = weight.numpy(), a.numpy(), images.reshape(B, D).numpy()
    delta, v = np.zeros_like(x), np.zeros_like(x)
    lookaheads = []
    for _ in range(3):
        x_nes = x + delta - 1.0 * STEP * v
        lookaheads.append(x_nes)
        g = grad_np(w, av, x_nes, 1.0)
        v = 1.0 * v + g / mean_abs(g)
        delta = project_np(x, delta - STEP * np.sign(v), EPS)
    np.testing.assert_allclose(adv.reshape(B, D).numpy(), x + delta, rtol=0, atol=1e-12)
    # the gradient was taken at the look-ahead point x_t - mu * step * v_t (behind x_t for a descent)
    for seen, expected in zip(model.inputs, lookaheads, strict=True):
        np.testing.assert_allclose(seen.reshape(B, D).numpy(), expected, rtol=0, atol=1e-12)


def test_si_ni_fgsm_averages_gradients_of_scaled_copies_wrt_x_nes():
    weight, a, images = problem()
    m = 4
    adv, model = run(SINIFGSM(step=STEP, alpha_schedule=False, scales=m), weight, a, images, EPS, 2)
    w, av, x = weight.numpy(), a.numpy(), images.reshape(B, D).numpy()
    delta, v = np.zeros_like(x), np.zeros_like(x)
    for _ in range(2):
        x_nes = x + delta - STEP * v
        g = np.zeros_like(x)
        for i in range(m):  # copy x_nes / 2^i; chain rule d(x_nes / 2^i)/dx_nes = 1 / 2^i
            g += grad_np(w, av, x_nes / 2**i, 1.0) / 2**i
        g /= m
        v = v + g / mean_abs(g)
        delta = project_np(x, delta - STEP * np.sign(v), EPS)
    np.testing.assert_allclose(adv, x + delta, rtol=0, atol=1e-12)
    # the copies seen by the model: x_nes, x_nes/2, x_nes/4, x_nes/8 (not the cumulative 1, 1/2, 1/8, 1/64)
    first = model.inputs[0].reshape(B, D).numpy()
    for i, seen in enumerate(model.inputs[:m]):
        np.testing.assert_allclose(seen.reshape(B, D).numpy(), first / 2**i, rtol=1e-15, atol=0)


@pytest.mark.parametrize("batch_scales", [False, True])
def test_si_ni_batched_and_per_copy_gradients_agree(batch_scales):
    weight, a, images = problem(1)
    adv, _ = run(SINIFGSM(step=STEP, alpha_schedule=False, batch_scales=batch_scales), weight, a, images, EPS, 2)
    ref, _ = run(SINIFGSM(step=STEP, alpha_schedule=False, batch_scales=not batch_scales), weight, a, images, EPS, 2)
    np.testing.assert_allclose(adv, ref, rtol=0, atol=1e-12)


def test_vmi_fgsm_variance_tuning_with_reproduced_noise():
    weight, a, images = problem()
    beta, samples, iterations = 1.5, 3, 3
    adv, _ = run(
        VMIFGSM(step=STEP, alpha_schedule=False, samples=samples, beta=beta), weight, a, images, EPS, iterations
    )
    w, av, x = weight.numpy(), a.numpy(), images.reshape(B, D).numpy()
    g_noise = torch.Generator().manual_seed(SEED)
    radius = beta * EPS
    delta, u, v = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for _ in range(iterations):
        g = grad_np(w, av, x + delta, 1.0)
        combined = g + v
        u = combined / mean_abs(combined) + 1.0 * u
        neighbours = np.zeros_like(x)
        for _ in range(samples):
            r = (-radius + 2 * radius * torch.rand((B, C, H, W_), generator=g_noise, dtype=torch.float32))
            r = r.to(torch.float64).reshape(B, D).numpy()
            assert np.all(np.abs(r) <= radius)
            neighbours += grad_np(w, av, x + delta + r, 1.0)
        v = neighbours / samples - g
        delta = project_np(x, delta - STEP * np.sign(u), EPS)
    np.testing.assert_allclose(adv, x + delta, rtol=0, atol=1e-12)


def test_vmi_with_beta_zero_is_mi():
    """beta = 0: every neighbour is x_t itself, so v = 0 and VMI-FGSM reduces to MI-FGSM."""
    weight, a, images = problem(2)
    vmi, _ = run(VMIFGSM(step=STEP, alpha_schedule=False, beta=0.0), weight, a, images, EPS, 4)
    mi, _ = run(MIFGSM(step=STEP, alpha_schedule=False), weight, a, images, EPS, 4)
    np.testing.assert_allclose(vmi, mi, rtol=0, atol=1e-12)


def test_di_fgsm_without_diversity_is_a_normalised_sign_step_from_a_random_start():
    weight, a, images = problem()
    adv, model = run(DIFGSM(step=STEP, alpha_schedule=False, diversity_prob=0.0), weight, a, images, EPS, 3)
    w, av, x = weight.numpy(), a.numpy(), images.reshape(B, D).numpy()
    delta = project_np(x, start_noise(SEED, EPS), EPS)
    for _ in range(3):
        g = grad_np(w, av, x + delta, 1.0)
        delta = project_np(x, delta - STEP * np.sign(g / mean_abs(g)), EPS)
    np.testing.assert_allclose(adv, x + delta, rtol=0, atol=1e-12)
    assert all(seen.shape == images.shape for seen in model.inputs)


def test_di_fgsm_with_diversity_feeds_the_resized_and_padded_image():
    """diversity_prob 1 on 10 x 10 images: the model sees input_diversity(x + delta) (resize to 9 x 9, zero pad),
    and the step follows the gradient through that transform."""
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 1, 10, 10, generator=g, dtype=torch.float64) * 0.5 + 0.25
    weight = torch.randn(K, 100, generator=g, dtype=torch.float64)
    a = torch.randn(2, K, generator=g, dtype=torch.float64)
    model = Linear(weight)
    optimizer = DIFGSM(step=STEP, alpha_schedule=False, diversity_prob=1.0, resize_rate=0.9)
    adv = optimizer.run(model, images, loss_fn(a), eps=EPS, iterations=1, generator=torch.Generator().manual_seed(5))
    # reproduce: the random start, then the transform's draws, from a generator seeded alike
    replay = torch.Generator().manual_seed(5)
    sample = torch.rand(images.shape, generator=replay, dtype=torch.float32)
    delta = ((-EPS + 2 * EPS * sample).to(torch.float64)).clamp(-EPS, EPS)
    delta = (images + delta).clamp(0, 1) - images
    delta = delta.requires_grad_(True)
    transformed = input_diversity(images + delta, 0.9, 1.0, replay)
    assert transformed.shape == images.shape
    seen = model.inputs[0]
    assert torch.allclose(seen, transformed.detach(), rtol=0, atol=1e-12)
    # the 9 x 9 resize leaves one zero row and one zero column of padding
    assert int((seen.abs().sum(dim=(0, 1, 3)) == 0).sum()) == 1 and int((seen.abs().sum(dim=(0, 1, 2)) == 0).sum()) == 1
    assert not torch.allclose(seen, (images + delta).detach())
    (grad,) = torch.autograd.grad(loss_fn(a)(model(transformed), images + delta), delta)
    expected = (images + (delta.detach() - STEP * grad.sign()).clamp(-EPS, EPS)).clamp(0, 1)
    assert torch.allclose(adv, expected, rtol=0, atol=1e-12)


def _torch_reference(optimizer_factory, weight, a, images, eps, iterations):
    """The same problem solved with a torch.optim optimizer on the pixels, projecting after every step."""
    x_hat = images.clone().requires_grad_(True)
    opt = optimizer_factory([x_hat])
    loss = loss_fn(a)
    for _ in range(iterations):
        opt.zero_grad()
        loss(x_hat.flatten(1) @ weight.t(), x_hat).backward()
        opt.step()
        with torch.no_grad():
            x_hat.copy_(torch.minimum(torch.maximum(x_hat, images - eps), images + eps).clamp(0, 1))
    return x_hat.detach().reshape(B, D).numpy()


def test_hag_sgd_with_momentum_matches_torch_sgd_and_the_written_rule():
    weight, a, images = problem()
    lr, eps = 0.002, 0.2
    adv, _ = run(SGDMomentum(step=lr, alpha_schedule=False, momentum=0.9), weight, a, images, eps, 4)
    ref = _torch_reference(lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9), weight, a, images, eps, 4)
    np.testing.assert_allclose(adv, ref, rtol=0, atol=1e-12)
    w, av, x = weight.numpy(), a.numpy(), images.reshape(B, D).numpy()
    delta, buf = np.zeros_like(x), None
    for _ in range(4):
        g = grad_np(w, av, x + delta, 1.0)
        buf = g if buf is None else 0.9 * buf + g
        delta = project_np(x, delta - lr * buf, eps)
    np.testing.assert_allclose(adv, x + delta, rtol=0, atol=1e-12)
    assert not np.allclose(adv, x)  # the problem does move the pixels


def test_sdha_adam_matches_torch_adam_and_the_written_rule():
    weight, a, images = problem()
    lr, eps = 0.01, 0.05
    adv, _ = run(Adam(step=lr, alpha_schedule=False), weight, a, images, eps, 5)
    ref = _torch_reference(lambda p: torch.optim.Adam(p, lr=lr, betas=(0.9, 0.999)), weight, a, images, eps, 5)
    np.testing.assert_allclose(adv, ref, rtol=0, atol=1e-12)
    w, av, x = weight.numpy(), a.numpy(), images.reshape(B, D).numpy()
    delta, m, v = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for t in range(1, 6):
        g = grad_np(w, av, x + delta, 1.0)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        delta = project_np(x, delta - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8), eps)
    np.testing.assert_allclose(adv, x + delta, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------- convex toy problem


class Identity(nn.Module):
    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return x.flatten(1)


X0, TARGET, DIST = 0.2, 0.6, 0.4  # every pixel starts at 0.2, the loss pulls it to 0.6 (distance 0.4)
N_PIX = 2 * 1 * 4 * 4


def quadratic(u: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((u - TARGET) ** 2).sum()


def convex_loss(name: str, steps: int) -> float:
    images = torch.full((2, 1, 4, 4), X0, dtype=torch.float64)
    optimizer = {
        "pgd": lambda: PGD(step=0.01, alpha_schedule=False),
        "bim": lambda: BIM(step=0.01, alpha_schedule=False),
        "mi": lambda: MIFGSM(step=0.01, alpha_schedule=False),
        "ni": lambda: NIFGSM(step=0.01, alpha_schedule=False),
        "sini": lambda: SINIFGSM(step=0.01, alpha_schedule=False),
        "vmi": lambda: VMIFGSM(step=0.01, alpha_schedule=False),
        "di": lambda: DIFGSM(step=0.01, alpha_schedule=False, random_start=False),
        "sgd": lambda: SGDMomentum(step=0.05, alpha_schedule=False),
        "adam": lambda: Adam(step=0.01, alpha_schedule=False),
    }[name]()
    generator = torch.Generator().manual_seed(0)
    adv = optimizer.run(Identity(), images, quadratic, eps=0.2, iterations=steps, generator=generator)
    return float(quadratic(adv.flatten(1), adv))


def bound(name: str, steps: int) -> float:
    """An upper bound on the loss after ``steps`` steps, derived from the problem.

    * sign methods from delta = 0 (BIM, MI, NI, SI-NI, VMI, DI): the gradient sign is the same for every pixel
      and step (the pixels stay below 0.6; VMI's noise, at most 1.5 * 0.2 = 0.3, cannot flip it since
      |x - 0.6| >= 0.36 while the gradient of every neighbour keeps its sign; the scale copies of SI stay below
      0.6 too; DI's resize of a constant image is that constant), so each step moves every pixel by exactly
      0.01: loss = 1/2 n (0.4 - 0.01 t)^2;
    * PGD: from a random start in [-0.2, 0.2], every pixel moves by 0.01 per step:
      loss <= 1/2 n (0.4 + 0.2 - 0.01 t)^2 - and exactly 0.01 t less than its start, checked separately;
    * SGD with momentum 0.9, lr 0.05: at least plain gradient descent's progress, distance 0.4 (1 - 0.05)^t, as
      long as the momentum does not overshoot (it does not within 4 steps: distance 0.23 > 0);
    * Adam, lr 0.01: the per-pixel gradients shrink from 0.4 to no less than 0.36 over 4 steps, so
      m_hat / sqrt(v_hat) >= 0.36 / 0.4 = 0.9 and each step moves at least 0.009: loss <= 1/2 n (0.4 - 0.009 t)^2.
    """
    if name == "pgd":
        return 0.5 * N_PIX * (DIST + 0.2 - 0.01 * steps) ** 2
    if name == "sgd":
        return 0.5 * N_PIX * (DIST * 0.95**steps) ** 2
    if name == "adam":
        return 0.5 * N_PIX * (DIST - 0.009 * steps) ** 2
    return 0.5 * N_PIX * (DIST - 0.01 * steps) ** 2


@pytest.mark.parametrize("name", ["pgd", "bim", "mi", "ni", "sini", "vmi", "di", "sgd", "adam"])
def test_every_optimizer_lowers_a_convex_loss_by_the_derived_margin(name):
    losses = [convex_loss(name, t) for t in range(5)]
    for t in range(1, 5):
        assert losses[t] <= bound(name, t) + 1e-9, (name, t, losses)
    if name != "pgd":  # from the clean image: a strict decrease of at least 1/2 n (0.4^2 - bound) per run
        assert losses[0] == pytest.approx(0.5 * N_PIX * DIST**2)
        assert losses[4] <= losses[0] - (0.5 * N_PIX * DIST**2 - bound(name, 4)) + 1e-9
        assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False))
    else:  # same start (the generator's first U(-0.2, 0.2) draw), then 0.01 per step up to the ball's edge
        start = torch.rand((2, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float32)
        start = (-0.2 + 0.4 * start).to(torch.float64).flatten()
        for t in range(5):
            moved = torch.clamp(start + 0.01 * t, max=0.2)
            assert losses[t] == pytest.approx(float(0.5 * ((DIST - moved) ** 2).sum()), rel=1e-9)
        assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False))


def test_sign_methods_reach_the_exact_value():
    """The derivation above is exact for the sign methods started at delta = 0."""
    for name in ("bim", "mi", "ni", "sini", "vmi", "di"):
        assert convex_loss(name, 4) == pytest.approx(0.5 * N_PIX * (DIST - 0.04) ** 2, rel=1e-9), name


def test_projection_onto_the_ball_and_the_unit_interval():
    """PGD on the convex problem with eps 0.05: after 10 steps of 0.01 (whatever the random start) every pixel
    sits at the edge of its ball nearest to its target, or at the border of [0, 1]: pixels at 0.2 end at 0.25,
    the one at 0.98 at 0.93, and the one at 0.02 pulled towards -0.5 stops at 0, not at -0.03."""
    images = torch.full((2, 1, 4, 4), X0, dtype=torch.float64)
    images[0, 0, 0, 0] = 0.98
    images[1, 0, 0, 0] = 0.02
    target = torch.full((2, 16), TARGET, dtype=torch.float64)
    target[1, 0] = -0.5

    def loss(u, x_adv):
        return 0.5 * ((u - target) ** 2).sum()

    adv = PGD(step=0.01, alpha_schedule=False).run(
        Identity(), images, loss, eps=0.05, iterations=10, generator=torch.Generator().manual_seed(0)
    )
    expected = images + 0.05
    expected[0, 0, 0, 0] = 0.93
    expected[1, 0, 0, 0] = 0.0
    assert torch.allclose(adv, expected, rtol=0, atol=1e-12)


def test_in_place_projection_gives_the_projection_bit_for_bit():
    """The optimizers' in-place projection (project_) is the same arithmetic as project, so it changes no number;
    it also lands in the eps ball and in [0, 1] when delta starts far outside both."""
    from hashguard.attacks.threat import project, project_

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 8, 8, generator=generator)
    delta = (torch.rand(4, 3, 8, 8, generator=generator) - 0.5) * 3
    expected = project(images, delta, 8 / 255)
    result = project_(images, delta.clone(), 8 / 255)
    assert torch.equal(result, expected)
    assert float(result.abs().max()) <= 8 / 255 + 1e-7
    assert float((images + result).min()) >= 0 and float((images + result).max()) <= 1
