"""An attack = a perturbation optimizer x a code-space objective (composition, not one class per attack).

* :class:`AttackContext` holds what objectives need besides the query batch: the attacked model's sign codes
  of the training split (mainstay, SDHA, THA) and of the database (DHTA/P2P anchors, target labels of THA).
* :class:`Objective` turns a batch (images, labels, target labels) into a :class:`PreparedObjective`: the loss
  to minimise ``loss(u, x_adv)`` and the "theory" code, the ideal query code the attack aims for (docs/metrics.md).
* :class:`HashAttack` is what every attack shares, torchattacks style:
  ``attack(images, labels, target_labels=None) -> adversarial images``; :meth:`HashAttack.run` also returns
  the codes of the returned images, sign(f(x'; 1)) in eval mode (docs/attacks.md), and the theory codes.
  :class:`OptimizerAttack` runs a perturbation optimizer on a prepared objective (every attack but ProS-GAN,
  whose :class:`~hashguard.attacks.prosgan.ProSGANAttack` runs a trained generator instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from hashguard.attacks.optimizers import PerturbationOptimizer
from hashguard.attacks.threat import LossFn, check_images, frozen_eval
from hashguard.encoding import encode_dataset
from hashguard.errors import ConfigError
from hashguard.models.hash_model import sign_codes
from hashguard.progress_bar import progress_enabled
from hashguard.registry import constructor_values


@dataclass
class AttackContext:
    """Codes and labels of the attacked model's training split and database (sign codes, +-1)."""

    train_codes: torch.Tensor | None = None
    train_labels: torch.Tensor | None = None
    database_codes: torch.Tensor | None = None
    database_labels: torch.Tensor | None = None
    #: training images in the order of ``train_codes`` (optional; ProS-GAN trains on them): a (N, C, H, W) tensor
    #: in [0, 1], or a dataset whose items are images or ``(image, label, index)`` tuples, read batch by batch
    #: (nothing is stacked in memory; :func:`build_context` passes the training split itself)
    train_images: torch.Tensor | Dataset | None = None
    #: an ADSH checkpoint's learned database codes V (N, K) and the training pool's labels (N, C) (Jiang and Li,
    #: AAAI 2018); the mainstay objective reads them instead of ``train_codes`` with ``mainstay_from="database"``
    learned_codes: torch.Tensor | None = None
    learned_labels: torch.Tensor | None = None
    #: the reference codes (R, K) of the query detector an adaptive attack knows (the Hamming detector's:
    #: class centres or class target codes; :mod:`hashguard.detectors.reference`); None: the attack derives
    #: class centre codes from ``train_codes``
    reference_codes: torch.Tensor | None = None

    def require(self, what: str, attack: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes, labels) of ``what`` ("train", "database" or "learned"); a clear error when they are missing."""
        codes = getattr(self, f"{what}_codes")
        labels = getattr(self, f"{what}_labels")
        if (codes is None or labels is None) and what == "learned":
            raise ConfigError(
                f"attack {attack} with mainstay_from=database needs the learned database codes V of an ADSH "
                "checkpoint (AttackContext.learned_codes / learned_labels, from "
                "hashguard.methods.adsh.load_database_codes)"
            )
        if codes is None or labels is None:
            raise ConfigError(
                f"attack {attack} needs the {what} codes and labels of the attacked model "
                f"(pass an AttackContext, e.g. from hashguard.attacks.build_context)"
            )
        return codes, labels

    def to(self, device: torch.device | str) -> AttackContext:
        """A copy with every tensor on ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return AttackContext(
            move(self.train_codes),
            move(self.train_labels),
            move(self.database_codes),
            move(self.database_labels),
            self.train_images,  # left where it is: batches are moved to the device as they are used
            move(self.learned_codes),
            move(self.learned_labels),
            move(self.reference_codes),
        )


def image_count(images: torch.Tensor | Dataset) -> int:
    """Number of images in a tensor batch or a dataset."""
    return int(images.shape[0]) if isinstance(images, torch.Tensor) else len(images)  # type: ignore[arg-type]


def image_batch(images: torch.Tensor | Dataset, index: torch.Tensor) -> torch.Tensor:
    """The images at ``index`` (a 1-D index tensor) as a float batch, from a tensor or a dataset (lazily)."""
    if isinstance(images, torch.Tensor):
        return images[index]
    loader = getattr(images, "load_image", None)
    items = []
    for i in index.tolist():
        item = loader(int(i)) if loader is not None else images[int(i)]
        items.append(item[0] if isinstance(item, (tuple, list)) else item)
    return torch.stack(items).float()


def code_tensors(
    model: nn.Module, dataset: Dataset, batch_size: int = 256, description: str = "encode"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sign codes (int8, +-1, eval mode) and float labels of every item of ``dataset``, in index order, as tensors.

    A thin tensor view of :func:`hashguard.encoding.encode_dataset`; an empty split is refused. A progress bar
    named ``description`` is drawn when the enclosing :func:`hashguard.progress_bar.progress_scope` asks for one.
    """
    codes, labels = encode_dataset(
        model, dataset, batch_size=batch_size, progress=progress_enabled(), description=description
    )
    if len(codes) == 0:
        raise ConfigError("cannot encode an empty split")
    return torch.from_numpy(codes), torch.from_numpy(labels)


def build_context(
    model: nn.Module,
    train: Dataset | None = None,
    database: Dataset | None = None,
    batch_size: int = 256,
    *,
    train_images: bool = False,
) -> AttackContext:
    """Encode the training split and/or the database with the attacked model (eval mode, sign codes).

    ``train_images=True`` also hands the training split to attacks that train on images (ProS-GAN) as
    :attr:`AttackContext.train_images`. The split itself is stored, not a copy of its images: they are read batch
    by batch when the attack trains, so memory stays at one batch whatever the size of the split.
    """
    if train_images and train is None:
        raise ConfigError("train_images=True needs the training split")
    context = AttackContext()
    device = next(model.parameters()).device
    if train is not None:
        codes, labels = code_tensors(model, train, batch_size, "encode train")
        context.train_codes, context.train_labels = codes.to(device), labels.to(device)
        if train_images:
            context.train_images = train
    if database is not None:
        codes, labels = code_tensors(model, database, batch_size, "encode database")
        context.database_codes, context.database_labels = codes.to(device), labels.to(device)
    return context


@dataclass
class PreparedObjective:
    """The loss for one batch and the ideal ("theory") query codes (float, +-1 or 0 for ties)."""

    loss: LossFn
    theory_codes: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


class Objective:
    """A code-space attack objective. Subclasses set ``name``, ``targeted`` and ``needs``."""

    name: ClassVar[str] = ""
    targeted: ClassVar[bool] = False
    #: which parts of the context it needs: "train", "database" and/or "learned" (an instance may narrow it by its
    #: settings, e.g. the mainstay objective with ``mainstay_from="database"`` needs "learned" instead of "train")
    needs: tuple[str, ...] = ()
    #: whether it trains on the training images (:attr:`AttackContext.train_images`), e.g. ProS-GAN
    needs_train_images: ClassVar[bool] = False

    def setup(self, model: nn.Module, context: AttackContext, generator: torch.Generator) -> None:
        """One-off preparation before the first batch (e.g. training a PrototypeNet). Default: nothing."""

    def prepare(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        target_labels: torch.Tensor | None,
        context: AttackContext,
        generator: torch.Generator,
    ) -> PreparedObjective:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The objective's parameters as stored in results: its constructor's keywords, read back from the
        attributes of the same names."""
        return constructor_values(self)


@dataclass
class AttackOutput:
    """What an attack returns for a batch."""

    adv_images: torch.Tensor
    #: sign(f(x'; 1)) of the returned images, int8 +-1 (docs/attacks.md)
    adv_codes: torch.Tensor
    #: the ideal query codes (int8 +-1, ties resolved to +1)
    theory_codes: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


class HashAttack:
    """A white-box L-infinity attack on a deep hashing model (docs/attacks.md), torchattacks style.

    ``attack(images, labels, target_labels=None)`` returns adversarial images within ``eps`` of ``images``
    (L-infinity) and inside [0, 1]; :meth:`run` also returns their codes, sign(f(x'; 1)) in eval mode, and the
    objective's theory codes. The model is in eval mode with frozen parameters during the attack and is restored
    afterwards. Randomness comes from a ``torch.Generator`` seeded with ``seed`` at construction (:meth:`reset`
    re-seeds it): a fresh attack with the same seed on the same batches gives the same result.
    :func:`~hashguard.attacks.evaluate.evaluate_attack` re-seeds it before every query batch
    (:meth:`seed_batch`), so there a batch's result depends on ``(seed, batch number)`` only.

    This base holds what every attack shares: the model, the :class:`Objective` and its
    :class:`AttackContext`, the radius ``eps``, the seed, the one-off setup and the result plumbing. How a batch
    is perturbed is the subclass's :meth:`_perturb`: :class:`OptimizerAttack` runs an iterative perturbation
    optimizer, :class:`~hashguard.attacks.prosgan.ProSGANAttack` one pass of a trained generator.

    ``eps`` is trusted here: it is validated once where it enters (``build_attack``, the CLI, the configs; see
    :mod:`hashguard.attacks.threat`).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        *,
        eps: float,
        seed: int = 0,
        context: AttackContext | None = None,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.objective = objective
        self.eps = float(eps)
        self.seed = int(seed)
        self.name = name or objective.name
        self.context = context if context is not None else AttackContext()
        self._ready = False
        self.reset()

    @property
    def targeted(self) -> bool:
        return self.objective.targeted

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def reset(self, seed: int | None = None) -> None:
        """Re-seed the attack's generator (and forget one-off preparation if the seed changes)."""
        if seed is not None and int(seed) != self.seed:
            self.seed = int(seed)
            self._ready = False
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)

    def seed_batch(self, batch: int) -> None:
        """Re-seed the attack's generator for query batch ``batch`` (queries ``[batch*B, (batch+1)*B)`` of an
        evaluation with batch size B) from ``(seed, batch)``, so a batch's random draws (random starts, input
        diversity, anchor sampling) depend on its number only, not on the batches attacked before it (or on
        another process: see :func:`hashguard.attacks.evaluate.evaluate_attack`). The one-off preparation keeps
        the generator as :meth:`reset` seeded it."""
        from hashguard.training.loop import derived_seed  # lazy: the training package is heavy

        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(derived_seed(self.seed, int(batch)))

    def set_context(self, context: AttackContext) -> HashAttack:
        self.context = context
        self._ready = False
        return self

    def budget_params(self) -> dict[str, Any]:
        """The attack's search budget besides eps (e.g. the iteration count), for result files."""
        return {}

    def engine_params(self) -> dict[str, Any]:
        """Hyper-parameters of whatever perturbs the batch (e.g. the optimizer), for result files."""
        return {}

    def params(self) -> dict[str, Any]:
        """Every hyper-parameter of the attack, for result files."""
        return {
            "attack": self.name,
            "targeted": self.targeted,
            "eps": self.eps,
            **self.budget_params(),
            "seed": self.seed,
            **self.engine_params(),
            **self.objective.params(),
        }

    def _check_context(self) -> None:
        for part in self.objective.needs:
            self.context.require(part, self.name)
        if self.objective.needs_train_images and self.context.train_images is None:
            raise ConfigError(
                f"attack {self.name} trains on images: pass the training images as AttackContext.train_images "
                "(build_context(..., train_images=True))"
            )

    def setup(self) -> None:
        """Run the objective's one-off preparation (idempotent)."""
        if not self._ready:
            self._check_context()
            self.context = self.context.to(self.device)
            with frozen_eval(self.model):
                self.objective.setup(self.model, self.context, self.generator)
            self._ready = True

    def _perturb(
        self, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """(adversarial images in the eps ball and [0, 1], theory codes, info) for a batch already on the model's
        device, the model frozen and in eval mode."""
        raise NotImplementedError

    def run(
        self, images: torch.Tensor, labels: torch.Tensor, target_labels: torch.Tensor | None = None
    ) -> AttackOutput:
        """Attack a batch; returns the adversarial images, their codes and the theory codes."""
        check_images(images)
        if self.targeted and target_labels is None:
            raise ConfigError(f"attack {self.name} is targeted: pass target_labels")
        if labels.shape[0] != images.shape[0] or (
            target_labels is not None and target_labels.shape[0] != images.shape[0]
        ):
            raise ConfigError("images, labels and target labels must have the same batch size")
        self.setup()
        device = self.device
        images = images.detach().to(device)
        labels = labels.detach().to(device).float()
        targets = None if target_labels is None else target_labels.detach().to(device).float()
        with frozen_eval(self.model):
            adv, theory, info = self._perturb(images, labels, targets)
        codes = self.model.encode(adv)
        return AttackOutput(adv_images=adv, adv_codes=codes, theory_codes=sign_codes(theory), info=info)

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, target_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.run(images, labels, target_labels).adv_images

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, eps={self.eps:.4g})"


class OptimizerAttack(HashAttack):
    """An attack that is a perturbation ``optimizer`` minimising the ``objective`` for ``iterations`` steps
    (composition: any optimizer of :mod:`hashguard.attacks.optimizers` with any code-space objective;
    docs/attacks.md). Every registered attack but ProS-GAN is one."""

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        optimizer: PerturbationOptimizer,
        *,
        eps: float,
        iterations: int,
        seed: int = 0,
        context: AttackContext | None = None,
        name: str | None = None,
    ) -> None:
        if int(iterations) < 0:
            raise ConfigError(f"iterations must be non-negative, got {iterations}")
        self.optimizer = optimizer
        self.iterations = int(iterations)
        super().__init__(model, objective, eps=eps, seed=seed, context=context, name=name)

    def budget_params(self) -> dict[str, Any]:
        return {"iterations": self.iterations}

    def engine_params(self) -> dict[str, Any]:
        return self.optimizer.params()

    def _perturb(
        self, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        prepared = self.objective.prepare(self.model, images, labels, targets, self.context, self.generator)
        adv = self.optimizer.run(
            self.model,
            images,
            prepared.loss,
            eps=self.eps,
            iterations=self.iterations,
            generator=self.generator,
        )
        return adv, prepared.theory_codes, prepared.info

    def __repr__(self) -> str:
        name, opt = self.name, self.optimizer.name
        return f"OptimizerAttack({name}, eps={self.eps:.4g}, iterations={self.iterations}, {opt})"
