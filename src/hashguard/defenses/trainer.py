"""Adversarial training with any defense: :func:`adversarial_train` (inner attack, outer loss, hashing loss).

The loop is :func:`hashguard.training.loop.fit` and the per-batch work
:class:`~hashguard.defenses.adversarial_step.AdversarialStep`; the inner attack and its module modes are in
:mod:`hashguard.defenses.inner_attack`. Determinism and resumption follow :func:`hashguard.training.train_model`:
epoch ``e`` draws its shuffle order, dropout randomness and attack randomness (random starts, sampled target
labels) from seeds derived from ``(seed, e)``; a checkpoint after each epoch holds the model, the method's
buffers, the optimiser and the defense state, written atomically (:mod:`hashguard.training.state`). The
learning rate is a pure function of the iteration count (MultiStepLR with integer milestones), so an
interrupted and resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hashguard.data.base import HashingDataset
from hashguard.defenses.adversarial_step import AdversarialStep
from hashguard.defenses.base import Defense
from hashguard.defenses.config import DefenseConfig
from hashguard.defenses.inner_attack import augment_batch, inner_modes, run_inner_attack
from hashguard.methods.base import HashingMethod
from hashguard.models.hash_model import HashModel
from hashguard.training.loop import HISTORY_FILE, LoopSettings, config_digest, derived_seed, fit

__all__ = [
    "HISTORY_FILE",
    "DefenseResult",
    "adversarial_train",
    "augment_batch",
    "build_outer_optimizer",
    "config_digest",
    "derived_seed",
    "inner_modes",
    "run_inner_attack",
]


@dataclass
class DefenseResult:
    """What a finished (or paused) adversarial-training run produced."""

    out_dir: Path
    epochs_done: int
    finished: bool
    history: list[dict[str, Any]] = field(default_factory=list)


def build_outer_optimizer(params: Any, config: DefenseConfig) -> torch.optim.Optimizer:
    """SGD (SAAT, CgAT) or Adam (ATRDH) at the initial learning rate."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


def adversarial_train(
    model: HashModel,
    method: HashingMethod,
    defense: Defense,
    train_set: HashingDataset,
    config: DefenseConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    describe: dict[str, Any] | None = None,
    stop_after_epoch: int | None = None,
    log: Callable[[str], None] | None = print,
) -> DefenseResult:
    """Harden the trained ``model`` with ``defense`` on ``train_set`` and write the checkpoint into ``out_dir``.

    ``method`` is the model's hashing loss (fresh; its memory bank is preinstalled here). ``describe`` goes
    into ``model.json`` (base checkpoint, dataset, ...) and into the run identity, so a run cannot be
    resumed with another base model or configuration. ``stop_after_epoch`` pauses after that many epochs,
    exactly as an interruption would; ``resume=True`` continues from the newest checkpoint.
    """
    describe = dict(describe or {})
    run_identity = {
        "defense": defense.name,
        "config": config.identity(),
        "model": model.spec.to_dict(),
        "method": {"name": method.name, "params": method.params()},
        "train_items": len(train_set),
        "base": describe.get("base"),
    }
    step = AdversarialStep(model, method, defense, train_set, config, describe)
    settings = LoopSettings(
        epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
        checkpoint_every=config.checkpoint_every, num_workers=config.num_workers, progress=config.progress,
    )
    result = fit(
        step, train_set, settings, out_dir, identity=config_digest(run_identity),
        make_optimizer=lambda params: build_outer_optimizer(params, config), resume=resume,
        stop_after_epoch=stop_after_epoch, log=log, what="an adversarial-training run",
    )
    return DefenseResult(result.out_dir, result.epochs_done, result.finished, result.history)
