"""Adversarial training (SAAT, Yuan et al., IEEE TIFS 2023; ATRDH, Wang et al., SIGIR 2021; CgAT, Wang et al.,
WWW 2023) as a step of :func:`hashguard.training.loop.fit`.

Per batch: optionally augment (CgAT), ask the defense for the inner loss, run the inner attack
(:func:`hashguard.defenses.inner_attack.run_inner_attack`: PGD with the parameters frozen), then return the
defense's outer loss on the benign and adversarial images with the model in train mode (batch norm sees the
adversarial and then the benign batch, as in the reference code of Yuan et al.); it contains the method's own
hashing loss. All forward passes use alpha = 1 (SAAT pins HashNet's continuation scale at 1).

Before the first epoch the clean model's sign codes of the training split (eval mode) are preinstalled in the
method's memory bank and in the defense's own state. For a method trained without labels (BTHash) the
training labels are never read: k-means pseudo-labels of those clean codes (:mod:`hashguard.pseudo_labels`)
replace them for the whole run, in the defense's code bank and in every batch. The learning rate is
MultiStepLR with integer milestones (:func:`hashguard.defenses.config.milestone_steps`), a pure function of
the step index; the defense's state (code banks, an online PrototypeNet and its optimiser) is checkpointed
under ``defense.``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hashguard.data.base import HashingDataset
from hashguard.defenses.base import Batch, Defense
from hashguard.defenses.config import DefenseConfig, lr_factor, milestone_steps
from hashguard.defenses.inner_attack import augment_batch, run_inner_attack
from hashguard.encoding import encode_dataset
from hashguard.methods.base import HashingMethod
from hashguard.models.checkpoint import save_model
from hashguard.models.hash_model import HashModel
from hashguard.pseudo_labels import pseudo_label_spec
from hashguard.training.loop import Plan, StepOutput, TrainingStep, derived_seed

DEFENSE_PREFIX = "defense."


class AdversarialStep(TrainingStep):
    """One outer step of ``defense`` on a batch and its inner attack.

    Under ``torchrun`` each rank attacks its share of the global batch (random starts and augmentation drawn
    for the global batch and sliced) and the defense's outer loss is the global batch's (:class:`Batch`), so
    the hardened model equals the one-process one up to the order of float additions.
    """

    data_parallel = True

    def __init__(
        self,
        model: HashModel,
        method: HashingMethod,
        defense: Defense,
        train_set: HashingDataset,
        config: DefenseConfig,
        describe: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.method, self.defense, self.train_set = model, method, defense, train_set
        self.config, self.describe, self.name = config, dict(describe or {}), defense.name
        self.data_parallel = defense.data_parallel
        self.milestones: list[int] = []
        self.generator = torch.Generator()
        #: (N, k) one-hot pseudo-labels replacing the training labels of a method trained without labels
        self.pseudo_labels: torch.Tensor | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "method": self.method}

    def start(self, plan: Plan) -> None:
        super().start(plan)
        codes, labels = encode_dataset(self.model, self.train_set)
        device = self.model.device
        train_codes = torch.from_numpy(codes).float().to(device)
        train_labels = torch.from_numpy(labels).float().to(device)
        spec = pseudo_label_spec(self.method)
        if spec is not None:  # a method trained without labels: k-means clusters of the clean codes stand in
            train_labels = spec.fit(train_codes).one_hot(train_codes).to(device)
            self.pseudo_labels = train_labels
        self.method.to(device)
        if self.method.uses_memory_bank:
            self.method.preinstall(train_codes, train_labels)
        self.defense.setup(train_codes, train_labels, self.model.bits, derived_seed(self.config.seed, 0, 3))
        self.defense.to(device)
        self.milestones = milestone_steps(plan.epochs * plan.steps_per_epoch, self.config.milestones)

    def lr(self, step_index: int, epoch: int) -> float:
        return self.config.lr * lr_factor(step_index, self.milestones, self.config.lr_gamma)

    def begin_epoch(self, epoch: int, generator: torch.Generator) -> None:
        super().begin_epoch(epoch, generator)
        self.generator = generator

    def __call__(self, batch: Any, step_index: int) -> StepOutput:
        images, labels, index = batch
        device = self.model.device
        images = images.to(device)
        span = self._span(images.shape[0])
        if self.config.augment:
            images = augment_batch(images, self.generator, span)
        if self.pseudo_labels is not None:
            labels = self.pseudo_labels[index.to(device).long()]
        batch = Batch(images, labels.to(device).float(), index.to(device), span, self.plan.gather)
        factor = lr_factor(step_index, self.milestones, self.config.lr_gamma)
        inner = self.defense.inner_loss(self.model, batch, self.generator, factor)
        adv = run_inner_attack(self.model, batch.images, inner, self.config, self.generator, span)
        self.model.train()
        outer = self.defense.outer_loss(self.model, self.method, batch, adv)
        return StepOutput(outer.loss, outer.parts, batch.global_size)

    def _span(self, rows: int) -> tuple[int, int, int] | None:
        """Where this rank's rows sit in the global batch (None in one process)."""
        world = self.plan.world
        if not world.distributed:
            return None
        (sizes,) = self.plan.gather(torch.tensor([rows]))
        start = int(sizes[: world.rank].sum())
        return start, start + rows, int(sizes.sum())

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{DEFENSE_PREFIX}{k}": v for k, v in self.defense.state_tensors().items()}

    def state_meta(self) -> dict[str, Any]:
        return {"defense": self.defense.state_meta()}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        n = len(DEFENSE_PREFIX)
        own = {k[n:]: v for k, v in tensors.items() if k.startswith(DEFENSE_PREFIX)}
        self.defense.load_state(own, meta["defense"])

    def finish(self, history: list[dict[str, Any]]) -> None:
        """Write the hardened model with the defense's provenance and leave it in eval mode."""
        provenance = {
            **self.defense.params(), "config": self.config.model_dump(), "milestone_steps": self.milestones,
            "steps_per_epoch": self.plan.steps_per_epoch, "train_items": len(self.train_set),
            "history": history, "base": self.describe.get("base"),
        }
        rest = {k: v for k, v in self.describe.items() if k not in ("dataset", "base")}
        if self.plan.is_main:
            save_model(
                self.plan.out_dir, self.model, method={"name": self.method.name, "params": self.method.params()},
                num_classes=self.train_set.num_classes, dataset=self.describe.get("dataset"),
                extra={"defense": provenance, **rest},
            )
        self.model.eval()
        self.plan.log(f"wrote {self.plan.out_dir} ({self.defense.name}-hardened weights)")
