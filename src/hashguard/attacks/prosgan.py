"""ProS-GAN: prototype-supervised generative targeted attack on deep hashing (docs/attacks.md).

Reference: X. Wang, Z. Zhang, B. Wu, F. Shen, G. Lu, "Prototype-supervised Adversarial Network for Targeted
Attack of Deep Hashing", CVPR 2021. Implemented from docs/attacks.md (no research code copied).

* :class:`ProSPrototypeNet` (the PrototypeNet of :mod:`hashguard.attacks.prototype`, shared with THA and ATRDH,
  with its label head): t -> Linear(C, 4096) -> ReLU -> Linear(4096, 512) = semantic feature f(t), with two
  heads h = tanh(Linear(512, K)(f)) and c = sigmoid(Linear(512, C)(f)). Trained (:func:`train_prosgan_prototype`)
  with the DPSH likelihood of theta = h G^T / 2 against the training sign codes G (s = 1[<t, Y_j> > 0]), plus
  MSE(c, t), plus sum (sign h - h)^2 / (1e4 B); Adam 1e-4 (0.5, 0.999), learning rate / 10 at 50% and 75%.
* :class:`ProSGenerator`: StarGAN-like encoder-decoder on x~ = 2x - 1 conditioned on f(t) (label encoder that
  upsamples to the image size, image encoder, residual blocks, decoder, head with Tanh).
* :class:`ProSDiscriminator`: spectral-norm convs with LeakyReLU(0.01) and a final conv to C + 1 outputs
  (label vector + real/fake flag, flag 0 = real, 1 = fake), trained with LSGAN (MSE) losses.
* :func:`train_prosgan`: D every 3rd iteration, L_D = 1/2 [MSE(D(x~), [y, 0]) + MSE(D(x~_adv), [t, 1])],
  L_G = w_rec MSE(x~_adv, x~) + 5 (1 - mean(H((x~_adv + 1) / 2) * sign(h_t))) + MSE(D(x~_adv), [t, 0]); Adam
  1e-4 (0.5, 0.999); constant learning rate for the first half of the epochs, then linear decay.

Size-generic architecture. The paper's sizes assume 224 x 224: the label encoder starts at 14 x 14 and
upsamples 4 times, the image encoder downsamples twice and the discriminator five times to 7 x 7. Here the
number of stages is derived from the image size S: label-encoder upsamplings = the largest n <= 4 with
2^n | S (start S / 2^n; 224 -> 14 x 14 with 4, 28 -> 7 x 7 with 2), encoder/decoder stages = the largest
n <= 2 with 2^n | S, discriminator stages = the largest n <= 5 with 2^n | S, then a conv whose kernel covers
the remaining map. Widths (``width``, ``label_width``, ``disc_width``), residual blocks, epochs and steps are
parameters; channels follow the attacked model's ``in_channels``.

Deliberate difference from the original (docs/attacks.md): the original has no epsilon bound. By default the
attack projects x' = (G(x~, f(t)) + 1) / 2 onto the L-infinity ball of radius ``eps`` around x and onto [0, 1]
(``project=True``); ``project=False`` returns the unbounded generator output (clamped to [0, 1] only, which the
Tanh already guarantees up to rounding). The reported code is sign(f(x'; 1)) of the returned image.

Training images: setup needs the training images in the same order as the training codes and labels of the
:class:`~hashguard.attacks.base.AttackContext` (``AttackContext.train_images``): a tensor, or a dataset read batch
by batch (``build_context(..., train_images=True)`` passes the training split itself, so nothing is stacked).
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm
from torch.utils.data import Dataset

from hashguard.attacks.base import (
    AttackContext,
    HashAttack,
    Objective,
    PreparedObjective,
    image_batch,
    image_count,
)
from hashguard.attacks.prototype import PrototypeNet, freeze, likelihood_prototype_loss, prototype_pull, train_prototype
from hashguard.attacks.registry import ATTACKS, Budget
from hashguard.attacks.threat import check_images, clip_to_ball, frozen_eval
from hashguard.errors import ConfigError
from hashguard.progress_bar import progress_bar
from hashguard.protocol import ATTACKS as PROTOCOL
from hashguard.protocol import PROSGAN_REC_WEIGHT_DEFAULT
from hashguard.registry import Range


def _stages(size: int, most: int) -> int:
    """The largest n <= ``most`` with 2^n dividing ``size`` (and size / 2^n >= 1)."""
    n = 0
    while n < most and size % (2 ** (n + 1)) == 0:
        n += 1
    return n


class ProSPrototypeNet(PrototypeNet):
    """ProS-GAN's PrototypeNet (Wang et al., CVPR 2021): the shared :class:`PrototypeNet` with its label head;
    :meth:`~PrototypeNet.heads` gives (f, h, c)."""

    def __init__(self, num_classes: int, bits: int, hidden: int = 4096, feature: int = 512) -> None:
        super().__init__(num_classes, bits, hidden=hidden, feature=feature, label_head=True)


def _seed_from(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (), generator=generator))


def train_prosgan_prototype(
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
) -> PrototypeNet:
    """Train ProS-GAN's PrototypeNet (with its label head) on the training sign codes with the likelihood loss
    (Wang et al., CVPR 2021; :func:`~hashguard.attacks.prototype.train_prototype`); seeded, frozen and in eval
    mode out.

    ``label_pool`` holds the labels to sample targets from (the unique database labels).
    """
    return train_prototype(
        train_codes,
        train_labels,
        label_pool,
        likelihood_prototype_loss,
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        hidden=hidden,
        feature=feature,
        label_head=True,
        generator=generator,
        desc="prosgan PrototypeNet",
    )


class _Residual(nn.Module):
    """Two 3x3 convs without bias, InstanceNorm without affine, skip connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ProSGenerator(nn.Module):
    """ProS-GAN generator G(x~, f(t)) -> x~_adv in [-1, 1], size-generic (see the module docstring)."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        feature: int = 512,
        width: int = 64,
        label_width: int = 128,
        res_blocks: int = 3,
    ) -> None:
        super().__init__()
        if width < 1 or label_width < 1 or res_blocks < 0:
            raise ConfigError("generator widths must be positive and res_blocks non-negative")
        self.image_size = image_size
        n_up = _stages(image_size, 4)
        self.start = image_size // 2**n_up
        self.label_width = label_width
        self.label_fc = nn.Sequential(nn.Linear(feature, label_width * self.start**2), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        ch = label_width
        for _ in range(n_up):
            out = max(1, ch // 2)
            layers += [nn.ConvTranspose2d(ch, out, 4, 2, 1, bias=False), nn.InstanceNorm2d(out), nn.ReLU(inplace=True)]
            ch = out
        layers.append(nn.Conv2d(ch, channels, 3, 1, 1, bias=False))
        self.label_up = nn.Sequential(*layers)
        n_down = _stages(image_size, 2)
        enc: list[nn.Module] = [
            nn.Conv2d(2 * channels, width, 7, 1, 3, bias=True),
            nn.InstanceNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        ch = width
        for _ in range(n_down):
            enc += [nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=True), nn.InstanceNorm2d(2 * ch), nn.ReLU(inplace=True)]
            ch *= 2
        enc += [_Residual(ch) for _ in range(res_blocks)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [_Residual(ch) for _ in range(res_blocks)]
        for _ in range(n_down):
            dec += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.InstanceNorm2d(ch // 2),
                nn.ReLU(inplace=True),
            ]
            ch //= 2
        self.decoder = nn.Sequential(*dec)
        self.head = nn.Sequential(nn.Conv2d(ch + channels, channels, 3, 1, 1, bias=False), nn.Tanh())

    def forward(self, x: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """``x`` in [-1, 1] (B, C, S, S), ``feature`` = f(t) (B, 512); returns x~_adv in [-1, 1]."""
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ConfigError(f"generator built for {self.image_size}x{self.image_size} images, got {tuple(x.shape)}")
        lab = self.label_fc(feature).view(-1, self.label_width, self.start, self.start)
        z = self.encoder(torch.cat([x, self.label_up(lab)], dim=1))
        return self.head(torch.cat([self.decoder(z), x], dim=1))


class ProSDiscriminator(nn.Module):
    """Spectral-norm discriminator with C + 1 outputs (label vector, real/fake flag) (docs/attacks.md)."""

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        n = _stages(image_size, 5)
        layers: list[nn.Module] = []
        ch_in, ch = channels, width
        for _ in range(n):
            layers += [spectral_norm(nn.Conv2d(ch_in, ch, 4, 2, 1), n_power_iterations=1), nn.LeakyReLU(0.01)]
            ch_in, ch = ch, 2 * ch
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(ch_in, num_classes + 1, image_size // 2**n, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x)).flatten(1)


def _flagged(labels: torch.Tensor, flag: float) -> torch.Tensor:
    return torch.cat([labels, torch.full_like(labels[:, :1], flag)], dim=1)


def discriminator_loss(
    disc: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """ProS-GAN's LSGAN discriminator loss (Wang et al., CVPR 2021):
    L_D = 1/2 [MSE(D(x~), [y, 0]) + MSE(D(x~_adv), [t, 1])], flag 0 = real, 1 = fake; ``x_adv`` is detached.

    ``x`` and ``x_adv`` are images in [-1, 1], ``labels`` the true labels y and ``targets`` the target labels t.
    """
    real = F.mse_loss(disc(x), _flagged(labels, 0.0))
    fake = F.mse_loss(disc(x_adv.detach()), _flagged(targets, 1.0))
    return 0.5 * (real + fake)


def generator_loss(
    model: nn.Module,
    disc: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    targets: torch.Tensor,
    prototypes: torch.Tensor,
    rec_weight: float,
    hash_weight: float,
) -> torch.Tensor:
    """ProS-GAN's generator loss (Wang et al., CVPR 2021):
    L_G = w_rec MSE(x~_adv, x~) + w_hash (1 - mean(H((x~_adv + 1) / 2) * p)) + MSE(D(x~_adv), [t, 0]),

    with H the attacked hashing model fed [0, 1] images and ``prototypes`` p = sign(h_t) the target prototype codes.
    """
    codes = model((x_adv + 1) / 2)
    return (
        rec_weight * F.mse_loss(x_adv, x)
        + hash_weight * (1 - (codes * prototypes).mean())
        + F.mse_loss(disc(x_adv), _flagged(targets, 0.0))
    )


def train_prosgan(
    model: nn.Module,
    prototype: PrototypeNet,
    images: torch.Tensor | Dataset,
    labels: torch.Tensor,
    label_pool: torch.Tensor,
    *,
    epochs: int = 100,
    batch_size: int = 24,
    lr: float = 1e-4,
    rec_weight: float = 50.0,
    hash_weight: float = 5.0,
    width: int = 64,
    label_width: int = 128,
    disc_width: int = 64,
    res_blocks: int = 3,
    max_steps: int | None = None,
    generator: torch.Generator,
) -> ProSGenerator:
    """Train ProS-GAN's generator and discriminator against the frozen ``model`` (docs/attacks.md).

    ``images`` (N, C, S, S) in [0, 1] (a tensor, or a dataset read batch by batch) with float ``labels`` (N, C);
    targets are sampled uniformly from
    ``label_pool`` (the unique database labels), one per training image. D is updated on every 3rd batch of an
    epoch; ``max_steps`` caps the batches per epoch (None = all). Returns the generator, frozen and in eval mode.
    A progress bar (epoch, step, ETA) is drawn when the enclosing :func:`hashguard.progress_bar.progress_scope`
    asks for one.
    """
    if epochs < 0 or batch_size < 1:
        raise ConfigError("ProS-GAN training needs epochs >= 0 and batch_size >= 1")
    device = next(model.parameters()).device
    n = image_count(images)
    if n < 1:
        raise ConfigError("ProS-GAN needs at least one training image")
    if labels.shape[0] != n:
        raise ConfigError(f"ProS-GAN: {n} training images but {labels.shape[0]} training labels")
    lazy = not isinstance(images, torch.Tensor)
    _, channels, height, width_px = image_batch(images, torch.zeros(1, dtype=torch.long)).shape
    if height != width_px:
        raise ConfigError(f"ProS-GAN needs square images, got {height}x{width_px}")
    pool = label_pool.float().to(device)
    feature = prototype.feature_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_from(generator))
        gen = ProSGenerator(channels, height, feature, width, label_width, res_blocks).to(device)
        disc = ProSDiscriminator(channels, height, pool.shape[1], disc_width).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    half = epochs // 2

    def decay(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - half) / float(epochs - half + 1)

    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, decay)
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, decay)
    gen.train()
    disc.train()
    per_epoch = -(-n // batch_size) if max_steps is None else min(-(-n // batch_size), max_steps)
    with frozen_eval(model), progress_bar(total=epochs * per_epoch, desc="prosgan GAN", unit="step") as bar:
        for epoch in range(epochs):
            bar.set_postfix_str(f"epoch {epoch + 1}/{epochs}", refresh=False)
            order = torch.randperm(n, generator=generator)
            batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
            if max_steps is not None:
                batches = batches[:max_steps]
            for i, idx in enumerate(batches):
                batch = image_batch(images, idx)
                if lazy:
                    check_images(batch)
                x = batch.to(device).float() * 2 - 1
                y = labels[idx].to(device).float()
                t = pool[torch.randint(0, pool.shape[0], (len(idx),), generator=generator).to(device)]
                with torch.no_grad():
                    f_t, h_t, _ = prototype.heads(t)
                x_adv = gen(x, f_t)
                if i % 3 == 0:
                    loss_d = discriminator_loss(disc, x, x_adv, y, t)
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    opt_d.step()
                loss_g = generator_loss(model, disc, x, x_adv, t, torch.sign(h_t), rec_weight, hash_weight)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                bar.update()
            sched_g.step()
            sched_d.step()
    freeze(gen)
    return gen


_PROS = PROTOCOL["prosgan"]


class ProSGANObjective(Objective):
    """ProS-GAN's setup (PrototypeNet + GAN training) and its theory code sign(h_t) (docs/attacks.md).

    It is driven by :class:`ProSGANAttack`, which replaces the perturbation optimizer by the generator.
    """

    name = "prosgan"
    targeted = True
    needs = ("train", "database")
    needs_train_images = True

    def __init__(
        self,
        proto_epochs: Annotated[int, Range(0), "PrototypeNet epochs"] = _PROS["proto_epochs"],
        proto_steps: Annotated[int, Range(1), "PrototypeNet steps per epoch"] = _PROS["proto_steps"],
        proto_batch_size: Annotated[int, Range(1), "PrototypeNet label batch"] = _PROS["proto_batch_size"],
        proto_lr: Annotated[float, Range(0, exclusive_low=True), "PrototypeNet Adam learning rate"] = _PROS["proto_lr"],
        hidden: Annotated[int, Range(1), "PrototypeNet hidden width"] = _PROS["hidden"],
        epochs: Annotated[int, Range(0), "GAN epochs (constant lr for the first half, then linear decay)"] = _PROS[
            "epochs"
        ],
        gan_steps: Annotated[int, Range(0), "cap on GAN batches per epoch (0 = the whole training set)"] = 0,
        batch_size: Annotated[int, Range(1), "GAN batch size"] = _PROS["batch_size"],
        lr: Annotated[float, Range(0, exclusive_low=True), "G and D Adam learning rate"] = _PROS["lr"],
        rec_weight: Annotated[
            float, Range(0), "reconstruction weight w_rec (protocol: 100 FLICKR-25K, 50 NUS-WIDE / MS-COCO; default 50)"
        ] = PROSGAN_REC_WEIGHT_DEFAULT,
        hash_weight: Annotated[float, Range(0), "weight of the prototype hash term"] = _PROS["hash_weight"],
        width: Annotated[int, Range(1), "generator image-encoder width"] = 64,
        label_width: Annotated[int, Range(1), "generator label-encoder width"] = 128,
        disc_width: Annotated[int, Range(1), "discriminator width"] = 64,
        res_blocks: Annotated[int, Range(0), "residual blocks in the encoder and in the decoder"] = 3,
        project: Annotated[
            bool, "project onto the eps ball and [0, 1] (a bounded departure; the original generator is unbounded)"
        ] = _PROS["project"],
    ) -> None:
        self.proto_epochs = int(proto_epochs)
        self.proto_steps = int(proto_steps)
        self.proto_batch_size = int(proto_batch_size)
        self.proto_lr = float(proto_lr)
        self.hidden = int(hidden)
        self.epochs = int(epochs)
        self.gan_steps = int(gan_steps)  # 0: the whole training set
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.rec_weight = float(rec_weight)
        self.hash_weight = float(hash_weight)
        self.width = int(width)
        self.label_width = int(label_width)
        self.disc_width = int(disc_width)
        self.res_blocks = int(res_blocks)
        self.project = bool(project)
        self.prototype_net: PrototypeNet | None = None
        self.generator_net: ProSGenerator | None = None


    def setup(self, model: nn.Module, context: AttackContext, generator: torch.Generator) -> None:
        codes, labels = context.require("train", self.name)
        _, db_labels = context.require("database", self.name)
        images = context.train_images
        if images is None:
            raise ConfigError(
                f"attack {self.name} trains a generator: pass the training images as AttackContext.train_images"
            )
        if isinstance(images, torch.Tensor):  # a dataset is checked batch by batch while training
            check_images(images)
        pool = torch.unique(db_labels.float(), dim=0)
        self.prototype_net = train_prosgan_prototype(
            codes,
            labels,
            pool,
            epochs=self.proto_epochs,
            steps=self.proto_steps,
            batch_size=self.proto_batch_size,
            lr=self.proto_lr,
            hidden=self.hidden,
            generator=generator,
        )
        self.generator_net = train_prosgan(
            model,
            self.prototype_net,
            images,
            labels,
            pool,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            rec_weight=self.rec_weight,
            hash_weight=self.hash_weight,
            width=self.width,
            label_width=self.label_width,
            disc_width=self.disc_width,
            res_blocks=self.res_blocks,
            max_steps=self.gan_steps or None,
            generator=generator,
        )

    def generate(self, images: torch.Tensor, target_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x' = (G(2x - 1, f(t)) + 1) / 2 unprojected, sign(h_t)) for images in [0, 1]."""
        if self.prototype_net is None or self.generator_net is None:
            raise ConfigError(f"attack {self.name} is not set up")
        with torch.no_grad():
            f_t, h_t, _ = self.prototype_net.heads(target_labels.float())
            adv = (self.generator_net(images * 2 - 1, f_t) + 1) / 2
        return adv, torch.sign(h_t)

    def prepare(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None,
        context: AttackContext,
        generator: torch.Generator,
    ) -> PreparedObjective:
        """The hash term of L_G for the batch (for reference); the attack itself uses the generator."""
        assert target_labels is not None
        if self.prototype_net is None:
            self.setup(model, context, generator)
        assert self.prototype_net is not None
        loss, prototypes = prototype_pull(self.prototype_net, target_labels, images)
        return PreparedObjective(loss=loss, theory_codes=prototypes)


class ProSGANAttack(HashAttack):
    """ProS-GAN (Wang et al., CVPR 2021) as a :class:`HashAttack`: one pass of the trained generator per batch
    instead of an iterative optimizer (so no optimizer and no iteration count).

    ``eps`` bounds the returned images when the objective's ``project`` is True (default; docs/attacks.md).
    """

    objective: ProSGANObjective

    def __init__(
        self,
        model: nn.Module,
        objective: ProSGANObjective,
        *,
        eps: float,
        seed: int = 0,
        context: AttackContext | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(model, objective, eps=eps, seed=seed, context=context, name=name)

    def _perturb(
        self, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        assert targets is not None  # the base class refuses a targeted attack without target labels
        adv, prototypes = self.objective.generate(images, targets)
        adv = clip_to_ball(adv, images, self.eps) if self.objective.project else adv.clamp(0.0, 1.0).detach()
        # numbers only, summed over batches by evaluate_attack (perceptibility is reported there)
        info = {"projected_queries": int(images.shape[0]) if self.objective.project else 0}
        return adv, prototypes, info


ATTACKS.register(
    "prosgan",
    display="ProS-GAN",
    reference="Wang et al., CVPR 2021",
    budget=Budget(eps=8 / 255),
    attack_class=ProSGANAttack,
    aliases=("pros-gan",),
)(ProSGANObjective)
