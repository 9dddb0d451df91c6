"""Clean training of a hashing method: :func:`train_model`, seeded, checkpointed, resumable, validated on a
held-out part of the training split (never on the query set).

The loop is :func:`hashguard.training.loop.fit` and the per-batch work :class:`~hashguard.training.clean_step.
CleanStep`. Determinism: epoch ``e`` draws its shuffle order and its dropout randomness from seeds derived
from ``(seed, e)`` only, and the checkpoint holds the model, the method's buffers (memory banks) and the
optimizer. A run interrupted after any finished epoch and resumed therefore ends with the same weights as
an uninterrupted run on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hashguard.config import TrainConfig
from hashguard.data.base import HashingDataset
from hashguard.methods.base import HashingMethod
from hashguard.models.hash_model import HashModel
from hashguard.training.clean_step import BEST_WEIGHTS, CleanStep
from hashguard.training.loop import HISTORY_FILE, LoopSettings, config_digest, derived_seed, fit

__all__ = [
    "BEST_WEIGHTS",
    "HISTORY_FILE",
    "TrainResult",
    "build_optimizer",
    "config_digest",
    "derived_seed",
    "train_model",
]


def build_optimizer(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (paper recipe) or Adam (fast recipe), at the epoch-0 learning rate."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@dataclass
class TrainResult:
    """What a finished (or paused) training run produced."""

    out_dir: Path
    epochs_done: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None


def train_model(
    model: HashModel,
    method: HashingMethod,
    train_set: HashingDataset,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    seed: int = 0,
    val_set: HashingDataset | None = None,
    resume: bool = False,
    describe: dict[str, Any] | None = None,
    stop_after_epoch: int | None = None,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train ``model`` with ``method`` on ``train_set`` and write the checkpoint into ``out_dir``.

    ``val_set`` (carved from the training split) is ranked against ``train_set`` after every
    ``config.eval_every`` epochs to select the best epoch. ``describe`` is stored in ``model.json``
    (method, dataset fingerprint, ...). ``stop_after_epoch`` pauses the run after that many epochs have
    finished, exactly as an interruption would; ``resume=True`` continues from the newest checkpoint.
    """
    run_identity = {
        "train": config.model_dump(exclude={"progress", "num_workers", "checkpoint_every"}),
        "seed": seed,
        "model": model.spec.to_dict(),
        "method": {"name": method.name, "params": method.params()},
        "train_items": len(train_set),
        "val_items": len(val_set) if val_set is not None else 0,
    }
    step_class = method.training_step or CleanStep  # a method may bring its own step (e.g. learned database codes)
    step = step_class(model, method, train_set, config, seed=seed, val_set=val_set, describe=describe)
    settings = LoopSettings(
        epochs=config.epochs, batch_size=config.batch_size, seed=seed, checkpoint_every=config.checkpoint_every,
        num_workers=config.num_workers, progress=config.progress,
    )
    result = fit(
        step, train_set, settings, out_dir, identity=config_digest(run_identity),
        make_optimizer=lambda params: build_optimizer(params, config), resume=resume,
        stop_after_epoch=stop_after_epoch, log=log, what="a training run",
        sampler=step.sampler() if hasattr(step, "sampler") else None,  # a step may choose its items (ADSH's Omega)
    )
    return TrainResult(result.out_dir, result.epochs_done, result.history, step.best_epoch, step.best_score)
