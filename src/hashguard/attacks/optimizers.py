"""Perturbation optimizers: the step rules an attack combines with a code-space objective (docs/attacks.md).

Every optimizer minimises a loss ``loss_fn(u, x_adv) -> scalar`` where ``u = f(x_adv'; alpha)`` are the
relaxed codes of the (possibly transformed) adversarial images and ``x_adv`` the adversarial images.
It works on a perturbation ``delta`` (the only tensor that receives a gradient, through
``torch.autograd.grad``), keeps ``x + delta`` inside the L-infinity ball of radius ``eps`` and inside [0, 1]
after every update, and returns the adversarial images ``x + delta`` (detached). The constraint itself (ball,
box, frozen model) lives in :mod:`hashguard.attacks.threat`.

While an optimizer runs the model is in eval mode and its parameters have ``requires_grad=False``; both are
restored afterwards (:func:`~hashguard.attacks.threat.frozen_eval`). All randomness (random starts, input
diversity, variance-tuning samples) comes from the ``torch.Generator`` passed to
:meth:`PerturbationOptimizer.run`. Tensors follow the device of the images; random numbers are drawn on the
generator's device and moved.

Sign-gradient rules (step ``step``, default 1/255):

* :class:`PGD` - Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
* :class:`BIM` - Kurakin et al., "Adversarial examples in the physical world", ICLR workshop 2017.
* :class:`MIFGSM` - Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018.
* :class:`NIFGSM`, :class:`SINIFGSM` - Lin et al., "Nesterov Accelerated Gradient and Scale Invariance for
  Adversarial Attacks", ICLR 2020.
* :class:`VMIFGSM` - Wang & He, "Enhancing the Transferability of Adversarial Attacks through Variance
  Tuning", CVPR 2021.
* :class:`DIFGSM` - Xie et al., "Improving Transferability of Adversarial Examples with Input Diversity",
  CVPR 2019.

Pixel-space optimizers:

* :class:`SGDMomentum` - HAG's optimizer (Yang et al., "Adversarial Examples for Hamming Space Search",
  IEEE TCYB 2018): SGD with momentum on the pixels, lr 100, momentum 0.9.
* :class:`Adam` - SDHA's optimizer (Lu et al., "Smart Deep Hashing Attack", ICMR 2021): Adam, lr 0.01.

The alpha schedule (docs/attacks.md, :func:`get_alpha`) of the SAAT code (Yuan et al., IEEE TIFS 2023) relaxes the
tanh of the hash layer during the first half of the iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hashguard.attacks.threat import LossFn, check_images, finalize, frozen_eval, project, project_
from hashguard.errors import ConfigError
from hashguard.registry import Registry


def _optimizer_key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace("fgsm", "")


#: every registered perturbation optimizer; ``sign_steps=True`` declares a sign-gradient rule
OPTIMIZERS: Registry[PerturbationOptimizer] = Registry("optimizer", normalise=_optimizer_key)

#: alpha per tenth of the iterations (docs/attacks.md)
ALPHA_LEVELS = (0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
_TINY = 1e-12


def get_alpha(iteration: int, total: int) -> float:
    """alpha = ALPHA_LEVELS[floor(i / (T / 10))] (docs/attacks.md; SAAT code, Yuan et al., IEEE TIFS 2023)."""
    if total < 1:
        raise ConfigError(f"iteration count must be positive, got {total}")
    if not 0 <= iteration < total:
        raise ConfigError(f"iteration {iteration} outside [0, {total})")
    return ALPHA_LEVELS[min((10 * iteration) // total, 9)]


def uniform(
    shape: torch.Size,
    low: float,
    high: float,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """U(low, high) samples drawn from ``generator`` (on its own device) and moved to ``device``."""
    sample = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return (low + (high - low) * sample).to(device=device, dtype=dtype)


def _mean_abs(g: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |g| over (C, H, W), kept broadcastable; 0 is guarded."""
    return g.abs().mean(dim=tuple(range(1, g.dim())), keepdim=True).clamp_min(_TINY)


class PerturbationOptimizer:
    """Base class: alpha schedule, gradient with respect to the perturbation only, projection.

    Parameters: ``step`` (sign step size or learning rate), ``alpha_schedule`` (use :func:`get_alpha`; when
    False the fixed ``alpha`` is used at every iteration).
    """

    name: ClassVar[str] = ""

    def __init__(self, step: float = 1 / 255, alpha_schedule: bool = True, alpha: float = 1.0) -> None:
        if not step > 0:
            raise ConfigError(f"step must be positive, got {step}")
        if not alpha > 0:
            raise ConfigError(f"alpha must be positive, got {alpha}")
        self.step = float(step)
        self.alpha_schedule = bool(alpha_schedule)
        self.alpha = float(alpha)
        self._last_loss: torch.Tensor | None = None

    @property
    def last_loss(self) -> float:
        """Loss of the last gradient evaluation (read lazily: no device sync inside the loop)."""
        return float("nan") if self._last_loss is None else float(self._last_loss)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as stored in results."""
        return {
            "optimizer": self.name,
            "step": self.step,
            "alpha_schedule": self.alpha_schedule,
            "alpha": self.alpha,
        }

    def alpha_at(self, iteration: int, total: int) -> float:
        return get_alpha(iteration, total) if self.alpha_schedule else self.alpha

    def gradient(
        self,
        model: nn.Module,
        images: torch.Tensor,
        delta: torch.Tensor,
        loss_fn: LossFn,
        alpha: float,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """d loss_fn(f(T(images + delta); alpha), images + delta) / d delta (delta only)."""
        delta = delta.detach().requires_grad_(True)
        adv = images + delta
        inputs = adv if transform is None else transform(adv)
        loss = loss_fn(model(inputs, alpha=alpha), adv)
        (grad,) = torch.autograd.grad(loss, delta)
        self._last_loss = loss.detach()
        return grad

    def run(
        self,
        model: nn.Module,
        images: torch.Tensor,
        loss_fn: LossFn,
        *,
        eps: float,
        iterations: int,
        generator: torch.Generator,
        keep_mode: bool = False,
    ) -> torch.Tensor:
        """Minimise ``loss_fn`` over the eps ball around ``images``; returns adversarial images in [0, 1].

        ``eps`` is trusted: it is validated once where it enters (``build_attack``, the CLI, the configs; see
        :mod:`hashguard.attacks.threat`). ``keep_mode=True`` runs the model in the modes the caller
        set (parameters are frozen either way).
        """
        eps = float(eps)
        if iterations < 0:
            raise ConfigError(f"iterations must be non-negative, got {iterations}")
        check_images(images)
        images = images.detach()
        with frozen_eval(model, eval_mode=not keep_mode):
            delta = self._run(model, images, loss_fn, eps, int(iterations), generator)
        return finalize(images, delta, eps)

    def _run(
        self,
        model: nn.Module,
        images: torch.Tensor,
        loss_fn: LossFn,
        eps: float,
        iterations: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        raise NotImplementedError


@OPTIMIZERS.register(reference="Madry et al., ICLR 2018", sign_steps=True)
class PGD(PerturbationOptimizer):
    """Projected sign-gradient descent with a uniform random start (Madry et al., ICLR 2018; docs/attacks.md).

    delta_0 ~ U(-eps, eps) (clipped into [0, 1]); delta <- Proj(delta - step * sign(grad)).
    """

    name = "pgd"

    def __init__(
        self,
        step: float = 1 / 255,
        alpha_schedule: bool = True,
        alpha: float = 1.0,
        random_start: bool = True,
    ) -> None:
        super().__init__(step, alpha_schedule, alpha)
        self.random_start = bool(random_start)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "random_start": self.random_start}

    #: a start drawn by the caller (U(-eps, eps) rows of a global batch split across ranks), used instead of
    #: zero when set
    start_noise: torch.Tensor | None = None

    def _run(self, model, images, loss_fn, eps, iterations, generator):  # noqa: ANN001, ANN202
        delta = torch.zeros_like(images)
        if self.start_noise is not None:
            delta = project(images, self.start_noise.to(images), eps)
        elif self.random_start:
            delta = project(
                images, uniform(images.shape, -eps, eps, generator, images.device, images.dtype), eps
            )
        for i in range(iterations):
            grad = self.gradient(model, images, delta, loss_fn, self.alpha_at(i, iterations))
            delta = project_(images, delta.sub_(grad.sign_(), alpha=self.step), eps)
        return delta


@OPTIMIZERS.register(reference="Kurakin et al., ICLR workshop 2017", sign_steps=True, aliases=("i-fgsm",))
class BIM(PGD):
    """Basic iterative method: PGD started at delta = 0 (Kurakin et al., ICLR workshop 2017; docs/attacks.md)."""

    name = "bim"

    def __init__(self, step: float = 1 / 255, alpha_schedule: bool = True, alpha: float = 1.0) -> None:
        super().__init__(step, alpha_schedule, alpha, random_start=False)


def input_diversity(
    images: torch.Tensor, resize_rate: float, diversity_prob: float, generator: torch.Generator
) -> torch.Tensor:
    """DI transform (Xie et al., CVPR 2019): with probability ``diversity_prob`` (one coin for the batch),
    resize bilinearly to r x r with r ~ U{floor(S * resize_rate), ..., S - 1} and zero-pad at a random offset
    back to S x S; otherwise return the images unchanged (docs/attacks.md)."""
    height, width = images.shape[-2:]
    low_h, low_w = int(height * resize_rate), int(width * resize_rate)
    coin = torch.rand((), generator=generator, device=generator.device).item()
    if coin >= diversity_prob or low_h >= height or low_w >= width:
        return images
    size = int(torch.randint(low_h, height, (), generator=generator, device=generator.device))
    if height == width:
        size_w = size
    else:
        size_w = int(torch.randint(low_w, width, (), generator=generator, device=generator.device))
    rem_h, rem_w = height - size, width - size_w
    top = int(torch.randint(0, rem_h + 1, (), generator=generator, device=generator.device))
    left = int(torch.randint(0, rem_w + 1, (), generator=generator, device=generator.device))
    resized = F.interpolate(images, size=(size, size_w), mode="bilinear", align_corners=False)
    return F.pad(resized, [left, rem_w - left, top, rem_h - top], value=0.0)


@OPTIMIZERS.register(reference="Xie et al., CVPR 2019", sign_steps=True)
class DIFGSM(PerturbationOptimizer):
    """DI-FGSM with optional momentum (Xie et al., CVPR 2019; docs/attacks.md).

    g = grad / mean|grad| (per sample) on the input-diversity-transformed image; v <- decay * v + g;
    delta <- Proj(delta - step * sign(v)). Defaults: decay 0 (no momentum), resize_rate 0.9,
    diversity_prob 0.5, random start U(-eps, eps).
    """

    name = "di"

    def __init__(
        self,
        step: float = 1 / 255,
        alpha_schedule: bool = True,
        alpha: float = 1.0,
        decay: float = 0.0,
        resize_rate: float = 0.9,
        diversity_prob: float = 0.5,
        random_start: bool = True,
    ) -> None:
        super().__init__(step, alpha_schedule, alpha)
        if not 0 < resize_rate <= 1:
            raise ConfigError(f"resize_rate must be in (0, 1], got {resize_rate}")
        if not 0 <= diversity_prob <= 1:
            raise ConfigError(f"diversity_prob must be in [0, 1], got {diversity_prob}")
        self.decay = float(decay)
        self.resize_rate = float(resize_rate)
        self.diversity_prob = float(diversity_prob)
        self.random_start = bool(random_start)

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "decay": self.decay,
            "resize_rate": self.resize_rate,
            "diversity_prob": self.diversity_prob,
            "random_start": self.random_start,
        }

    #: a start drawn by the caller (U(-eps, eps) rows of a global batch split across ranks), used instead of
    #: zero when set
    start_noise: torch.Tensor | None = None

    def _run(self, model, images, loss_fn, eps, iterations, generator):  # noqa: ANN001, ANN202
        delta = torch.zeros_like(images)
        if self.start_noise is not None:
            delta = project(images, self.start_noise.to(images), eps)
        elif self.random_start:
            delta = project(
                images, uniform(images.shape, -eps, eps, generator, images.device, images.dtype), eps
            )
        momentum = torch.zeros_like(images)
        use_di = self.diversity_prob > 0 and self.resize_rate < 1

        def transform(x: torch.Tensor) -> torch.Tensor:
            return input_diversity(x, self.resize_rate, self.diversity_prob, generator)

        for i in range(iterations):
            grad = self.gradient(
                model, images, delta, loss_fn, self.alpha_at(i, iterations), transform if use_di else None
            )
            momentum.mul_(self.decay).add_(grad.div_(_mean_abs(grad)))
            delta = project_(images, delta.sub_(momentum.sign(), alpha=self.step), eps)
        return delta


@OPTIMIZERS.register(reference="Dong et al., CVPR 2018", sign_steps=True)
class MIFGSM(DIFGSM):
    """MI-FGSM (Dong et al., CVPR 2018): DI-FGSM, diversity_prob 0, decay 1, no random start (docs/attacks.md)."""

    name = "mi"

    def __init__(
        self, step: float = 1 / 255, alpha_schedule: bool = True, alpha: float = 1.0, decay: float = 1.0
    ) -> None:
        super().__init__(step, alpha_schedule, alpha, decay=decay, diversity_prob=0.0, random_start=False)


@OPTIMIZERS.register(reference="Lin et al., ICLR 2020", sign_steps=True)
class NIFGSM(PerturbationOptimizer):
    """NI-FGSM (Lin et al., ICLR 2020; docs/attacks.md), loss-minimising convention, x_0 = x, v_0 = 0.

    x_nes = x_t - mu * step * v_t; g = grad L(x_nes); v <- mu * v + g / mean|g|;
    x <- Proj(x - step * sign(v)).
    """

    name = "ni"

    def __init__(
        self, step: float = 1 / 255, alpha_schedule: bool = True, alpha: float = 1.0, decay: float = 1.0
    ) -> None:
        super().__init__(step, alpha_schedule, alpha)
        self.decay = float(decay)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "decay": self.decay}

    def lookahead_gradient(self, model, images, delta_nes, loss_fn, alpha):  # noqa: ANN001, ANN201
        return self.gradient(model, images, delta_nes, loss_fn, alpha)

    def _run(self, model, images, loss_fn, eps, iterations, generator):  # noqa: ANN001, ANN202
        delta = torch.zeros_like(images)
        velocity = torch.zeros_like(images)
        for i in range(iterations):
            delta_nes = delta - self.decay * self.step * velocity
            grad = self.lookahead_gradient(model, images, delta_nes, loss_fn, self.alpha_at(i, iterations))
            velocity.mul_(self.decay).add_(grad.div_(_mean_abs(grad)))
            delta = project_(images, delta.sub_(velocity.sign(), alpha=self.step), eps)
        return delta


@OPTIMIZERS.register(reference="Lin et al., ICLR 2020", sign_steps=True)
class SINIFGSM(NIFGSM):
    """SI-NI-FGSM (Lin et al., ICLR 2020; docs/attacks.md).

    As NI-FGSM, but g = (1/m) sum_{i=0}^{m-1} grad_{x_nes} L(x_nes / 2^i): the intended scale copies
    x_nes, x_nes/2, x_nes/4, ... (not the cumulative 1, 1/2, 1/8, ... of the reference code), each gradient
    taken with respect to x_nes (chain rule included).

    ``batch_scales=False`` (default) runs one forward + backward per scale copy on the caller's batch and sums
    the gradients in place; ``True`` sends all m copies through the model as one batch of m x B. Both give the
    same gradient. On CPU the per-copy passes are faster (a 5 x 128 batch of the demo CNN took 1.56x the time of
    five 128 batches: the activations stop fitting the caches) and need 1/m of the activation memory; on an
    accelerator with spare parallelism one large batch can be faster.
    """

    name = "sini"

    def __init__(
        self,
        step: float = 1 / 255,
        alpha_schedule: bool = True,
        alpha: float = 1.0,
        decay: float = 1.0,
        scales: int = 5,
        batch_scales: bool = False,
    ) -> None:
        super().__init__(step, alpha_schedule, alpha, decay)
        if scales < 1:
            raise ConfigError(f"scales must be at least 1, got {scales}")
        self.scales = int(scales)
        self.batch_scales = bool(batch_scales)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "scales": self.scales, "batch_scales": self.batch_scales}

    def scale_factors(self) -> list[float]:
        """1 / 2^i for i = 0 .. scales - 1."""
        return [1.0 / (2**i) for i in range(self.scales)]

    def lookahead_gradient(self, model, images, delta_nes, loss_fn, alpha):  # noqa: ANN001, ANN201
        x_nes = (images + delta_nes).detach().requires_grad_(True)
        factors = self.scale_factors()
        if self.batch_scales:
            batch = images.shape[0]
            codes = model(torch.cat([x_nes * f for f in factors]), alpha=alpha)
            loss = sum(loss_fn(codes[k * batch : (k + 1) * batch], x_nes) for k in range(len(factors)))
            (grad,) = torch.autograd.grad(loss, x_nes)
        else:  # one graph per copy, freed before the next; the gradients accumulate in place
            grad = torch.zeros_like(images)
            loss = torch.zeros((), device=images.device)
            for factor in factors:
                copy_loss = loss_fn(model(x_nes * factor, alpha=alpha), x_nes)
                grad.add_(torch.autograd.grad(copy_loss, x_nes)[0])
                loss = loss + copy_loss.detach()
        self._last_loss = loss.detach() / len(factors)
        return grad.div_(len(factors))


@OPTIMIZERS.register(reference="Wang & He, CVPR 2021", sign_steps=True)
class VMIFGSM(PerturbationOptimizer):
    """VMI-FGSM (Wang & He, CVPR 2021; docs/attacks.md), x_0 = x.

    g_t = grad L(x_t); g_hat = (g_t + v_t) / mean|g_t + v_t|; u <- g_hat + mu * u;
    v <- (1/N) sum_n grad L(x_t + r_n) - g_t with r_n ~ U(-beta * eps, beta * eps);
    x <- Proj(x - step sign(u)).
    """

    name = "vmi"

    def __init__(
        self,
        step: float = 1 / 255,
        alpha_schedule: bool = True,
        alpha: float = 1.0,
        decay: float = 1.0,
        samples: int = 5,
        beta: float = 1.5,
    ) -> None:
        super().__init__(step, alpha_schedule, alpha)
        if samples < 1:
            raise ConfigError(f"samples must be at least 1, got {samples}")
        self.decay = float(decay)
        self.samples = int(samples)
        self.beta = float(beta)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "decay": self.decay, "samples": self.samples, "beta": self.beta}

    def _run(self, model, images, loss_fn, eps, iterations, generator):  # noqa: ANN001, ANN202
        delta = torch.zeros_like(images)
        momentum = torch.zeros_like(images)
        variance = torch.zeros_like(images)
        radius = self.beta * eps
        for i in range(iterations):
            alpha = self.alpha_at(i, iterations)
            grad = self.gradient(model, images, delta, loss_fn, alpha)
            combined = grad + variance
            momentum = combined / _mean_abs(combined) + self.decay * momentum
            neighbours = torch.zeros_like(images)
            for _ in range(self.samples):
                noise = uniform(images.shape, -radius, radius, generator, images.device, images.dtype)
                neighbours += self.gradient(model, images, delta + noise, loss_fn, alpha)
            variance = neighbours / self.samples - grad
            delta = project_(images, delta.sub_(momentum.sign(), alpha=self.step), eps)
        return delta


@OPTIMIZERS.register(reference="Yang et al., IEEE TCYB 2018 (HAG)", sign_steps=False)
class SGDMomentum(PerturbationOptimizer):
    """SGD with momentum on the pixels, HAG's optimizer (Yang et al., IEEE TCYB 2018; docs/attacks.md).

    buf <- momentum * buf + g (buf = g at the first step, as torch.optim.SGD);
    delta <- Proj(delta - lr * buf).
    Starts at the clean image. ``step`` is the learning rate (default 100).
    """

    name = "sgd"

    def __init__(
        self, step: float = 100.0, alpha_schedule: bool = True, alpha: float = 1.0, momentum: float = 0.9
    ) -> None:
        super().__init__(step, alpha_schedule, alpha)
        self.momentum = float(momentum)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "momentum": self.momentum}

    def _run(self, model, images, loss_fn, eps, iterations, generator):  # noqa: ANN001, ANN202
        delta = torch.zeros_like(images)
        buffer: torch.Tensor | None = None
        for i in range(iterations):
            grad = self.gradient(model, images, delta, loss_fn, self.alpha_at(i, iterations))
            buffer = grad if buffer is None else self.momentum * buffer + grad
            delta = project_(images, delta - self.step * buffer, eps)
        return delta


@OPTIMIZERS.register(reference="Lu et al., ICMR 2021 (SDHA)", sign_steps=False)
class Adam(PerturbationOptimizer):
    """Adam on the pixels, SDHA's optimizer (Lu et al., ICMR 2021; docs/attacks.md), lr 0.01, betas (0.9, 0.999).

    Bias-corrected as torch.optim.Adam (eps 1e-8); starts at the clean image; projects after every step.
    """

    name = "adam"

    def __init__(
        self,
        step: float = 0.01,
        alpha_schedule: bool = True,
        alpha: float = 1.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
    ) -> None:
        super().__init__(step, alpha_schedule, alpha)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ConfigError(f"Adam betas must be in [0, 1), got ({beta1}, {beta2})")
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "beta1": self.beta1, "beta2": self.beta2}

    def _run(self, model, images, loss_fn, eps, iterations, generator):  # noqa: ANN001, ANN202
        delta = torch.zeros_like(images)
        first = torch.zeros_like(images)
        second = torch.zeros_like(images)
        for i in range(iterations):
            grad = self.gradient(model, images, delta, loss_fn, self.alpha_at(i, iterations))
            first.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
            second.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            step = i + 1
            m_hat = first / (1 - self.beta1**step)
            v_hat = second / (1 - self.beta2**step)
            delta = project_(images, delta - self.step * m_hat / (v_hat.sqrt() + 1e-8), eps)
        return delta



def build_optimizer(name: str, **params: Any) -> PerturbationOptimizer:
    """Instantiate the registered optimizer ``name`` (pgd, bim, mi, ni, sini, vmi, di, sgd, adam; ``-fgsm``
    suffixes, ``-`` and ``_`` are ignored); unknown names or parameters raise ConfigError."""
    return OPTIMIZERS.build(name, **params)


def uses_sign_steps(name: str) -> bool:
    """True when optimizer ``name`` takes sign steps of size ``step`` (so ``step x iterations`` bounds its reach)."""
    return bool(OPTIMIZERS.entry(name).attributes.get("sign_steps", False))
