"""One lifelong session as a step of the shared training loop (:func:`hashguard.training.loop.fit`).

Deep incremental hashing (Wu et al., CVPR 2019, DIHN; Xu et al., IEEE TCSVT 2024, DLCH): one epoch of the loop is
one outer iteration. Its items are the sampled set Omega (``num_samples`` items of the whole database, old and new,
or of the new items only, drawn afresh per iteration by :class:`SessionSampler`) visited ``inner_epochs`` times;
each batch is one Adam step
of the query network on the incremental objective (:mod:`hashguard.lifelong.objective`) against the whole store
[B_old; B_new]; the end of the epoch updates B_new by one closed-form bit sweep. B_old is a constant of the step:
it is never written, and the finished session's store holds it byte for byte.

With ``saat`` the batch also runs SAAT's adversarial term (Yuan et al., IEEE TIFS 2023): PGD pushes the relaxed
code away from the mainstay code m(y) of the batch's labels computed from the store [B_old; B_new] with its labels
(DMFL, cosine-weighted positives), and the outer loss adds ``saat_weight * (-mean(u_adv * m)) + saat_quant *
mean((u_adv - sign(u_adv))^2)``.

State: the network and Adam are checkpointed by the loop; B_new is the step's own state (``lifelong.new_codes``),
so an interrupted session resumes exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hashguard.attacks.mainstay_attack import mainstay_loss
from hashguard.data.base import HashingDataset
from hashguard.defenses.base import quantisation
from hashguard.defenses.config import DefenseConfig
from hashguard.defenses.inner_attack import run_inner_attack
from hashguard.lifelong.config import LifelongConfig
from hashguard.lifelong.objective import incremental_objective, similarity_ratio, target_similarity, update_new_codes
from hashguard.lifelong.store import CodeStore
from hashguard.mainstay_codes import mainstay_codes
from hashguard.models.hash_model import HashModel
from hashguard.training.loop import Plan, StepOutput, TrainingStep, derived_seed

NEW_CODES = "lifelong.new_codes"


class SessionSampler:
    """The items of outer iteration ``e``: Omega_e, ``samples`` items drawn uniformly from the session's dataset
    (the ``new`` items at positions 0..new-1 and, with ``sample_from="all"``, the ``old`` ones after them; with
    ``"new"`` only the new ones), with a generator seeded from ``(seed, e)``, visited ``inner_epochs`` times in
    fresh seeded orders. A pure function of the seed and the epoch, so a resumed session draws the same sets."""

    def __init__(self, new: int, old: int, samples: int, inner_epochs: int, seed: int) -> None:
        self.pool, self.seed, self.inner_epochs = new + old, seed, inner_epochs
        self.samples = min(samples, self.pool)

    def num_items(self) -> int:
        return self.samples * self.inner_epochs

    def omega(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, epoch, 17))
        return torch.randperm(self.pool, generator=generator)[: self.samples].sort().values

    def order(self, epoch: int) -> list[int]:
        omega = self.omega(epoch)
        order: list[int] = []
        for inner in range(self.inner_epochs):
            generator = torch.Generator().manual_seed(derived_seed(self.seed, epoch, 18 + inner))
            order += omega[torch.randperm(len(omega), generator=generator)].tolist()
        return order


class IncrementalStep(TrainingStep):
    """A lifelong session: the query network and the new items' codes, the old codes fixed (module docstring).

    ``store`` is the previous session's store (every code frozen); ``train_set`` holds the session's new items
    first and then the old items that may be sampled (their images re-read from the data source), whose store rows
    are ``replay_rows``. ``initial_codes`` are B_new before the first iteration. ``finish`` hands the final network and
    the extended store to ``on_finish``.
    """

    name = "lifelong"

    def __init__(
        self,
        model: HashModel,
        store: CodeStore,
        train_set: HashingDataset,
        new_count: int,
        replay_rows: torch.Tensor,
        initial_codes: torch.Tensor,
        config: LifelongConfig,
        on_finish: Callable[[IncrementalStep, list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.model, self.store, self.train_set, self.config = model, store, train_set, config
        self.new_count, self.on_finish = new_count, on_finish
        self.old_codes = store.codes.float()
        labels = torch.as_tensor(train_set.labels, dtype=torch.float32)
        self.new_labels = labels[:new_count]
        self.all_labels = torch.cat([store.labels.float(), self.new_labels])
        self.new_codes = initial_codes.float().clone()
        old = len(store)
        # store row of every item of the session's dataset: new items follow the old ones
        self.rows = torch.cat([torch.arange(old, old + new_count), replay_rows.long()])
        self.sampler_ = SessionSampler(new_count, len(replay_rows), config.num_samples, config.inner_epochs,
                                       config.seed)
        self.ratio = similarity_ratio(self.all_labels, config.similarity)
        self.omega = torch.zeros(0, dtype=torch.long)
        self.relaxed = torch.zeros(0)
        self.generator = torch.Generator()
        self.defense_config = DefenseConfig(
            defense="saat", preset="demo", eps=config.eps, step=config.step, iterations=config.iterations,
        )

    def sampler(self) -> SessionSampler:
        return self.sampler_

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def start(self, plan: Plan) -> None:
        super().start(plan)
        device = self.model.device
        self.old_codes, self.new_codes = self.old_codes.to(device), self.new_codes.to(device)
        self.all_labels, self.rows = self.all_labels.to(device), self.rows.to(device)

    def codes(self) -> torch.Tensor:
        """The whole store's codes [B_old; B_new] (float, on the model's device)."""
        return torch.cat([self.old_codes, self.new_codes])

    def lr(self, step_index: int, epoch: int) -> float:
        return self.config.lr_at(epoch)

    def begin_epoch(self, epoch: int, generator: torch.Generator) -> None:
        super().begin_epoch(epoch, generator)
        self.generator = generator
        self.omega = self.sampler_.omega(epoch).to(self.model.device)
        self.relaxed = torch.zeros(len(self.train_set), self.model.bits, device=self.model.device)

    def __call__(self, batch: Any, step_index: int) -> StepOutput:
        images, labels, index = (t.to(self.model.device) for t in batch)
        labels = labels.float()
        codes = self.codes()
        parts: dict[str, float] = {}
        extra = torch.zeros((), device=self.model.device)
        if self.config.saat:
            mainstay = mainstay_codes(labels, codes, self.all_labels).to(images.dtype)

            def inner(u: torch.Tensor, _x: torch.Tensor) -> torch.Tensor:
                return mainstay_loss(u, mainstay, targeted=False, kind="plain")

            adv = run_inner_attack(self.model, images, inner, self.defense_config, self.generator)
            self.model.train()
            u_adv = self.model(adv, alpha=1.0)  # batch norm sees the adversarial batch, then the benign one (SAAT)
            adv_term = -(u_adv * mainstay).mean()
            quant = quantisation(u_adv)
            extra = self.config.saat_weight * adv_term + self.config.saat_quant * quant
            parts.update(adv=float(adv_term.detach()), adv_quant=float(quant.detach()))
        u = self.model(images, alpha=1.0)
        self.relaxed[index.long()] = u.detach()
        rows = self.rows[index.long()]
        target = target_similarity(labels, self.all_labels, self.ratio)
        value, terms = incremental_objective(u, codes, rows, target, self.config.gamma, self.config.mu,
                                             self.config.balance)
        scale = u.shape[0] * codes.shape[0] * self.model.bits**2
        parts.update({k: float(v.detach()) / scale for k, v in terms.items()})
        return StepOutput(value / scale + extra, parts, images.shape[0])

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        u = self.relaxed[self.omega]
        old = len(self.store)
        rows = self.rows[self.omega]
        positions = torch.where(rows >= old, rows - old, torch.full_like(rows, -1))
        labels = self.all_labels[rows]
        target_new = target_similarity(labels, self.all_labels[old:], self.ratio)
        updated = update_new_codes(self.new_codes, u, positions, target_new, self.config.gamma)
        changed = int((updated != self.new_codes).any(dim=1).sum())
        self.new_codes = updated
        target = target_similarity(labels, self.all_labels, self.ratio)
        objective, _ = incremental_objective(u, self.codes(), rows, target, self.config.gamma, self.config.mu,
                                             self.config.balance)
        return {"objective": float(objective), "codes_changed": changed}

    def note(self, record: dict[str, Any]) -> str:
        return f", J {record['objective']:.4g}, {record['codes_changed']} new codes changed"

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {NEW_CODES: self.new_codes.detach().to(torch.int8)}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.new_codes = tensors[NEW_CODES].float().to(self.model.device)

    def final_store(self, classes: list[int], new_rows: torch.Tensor) -> CodeStore:
        """The session's store: the previous codes unchanged (frozen), the new items' codes appended (their rows
        in the data source's training split are ``new_rows``)."""
        return self.store.extended(self.new_codes.cpu().to(torch.int8), self.new_labels, new_rows, classes)

    def finish(self, history: list[dict[str, Any]]) -> None:
        self.model.eval()
        if self.on_finish is not None:
            self.on_finish(self, history)
