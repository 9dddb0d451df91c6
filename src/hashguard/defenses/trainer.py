"""The adversarial-training loop shared by every defense: inner attack, outer loss, hashing loss.

Per batch: the defense supplies the inner loss; PGD (random start, sign steps of ``step``, ``iterations``
iterations, alpha = 1, :class:`hashguard.attacks.optimizers.PGD`) minimises it over the L-infinity ball of
radius ``eps`` with the model's parameters frozen (``requires_grad=False``: no parameter gradient is
computed or accumulated; the reference code accumulated and then discarded them); then the model (train
mode) takes one optimiser step on the defense's outer loss, which contains the method's own hashing loss.

Mode of the model during the inner attack (the paper protocol runs it in train mode):

* ``inner_bn="update"`` with ``inner_dropout=True`` (protocol default): train mode, batch norm normalises
  with the batch's statistics and updates its running statistics, dropout is on;
* ``inner_bn="frozen"`` with ``inner_dropout=False`` (the ``demo`` preset): eval mode, batch norm uses and
  keeps its running statistics, exactly as at test time, so adversarial batches never touch them;
* ``inner_bn="batch"``: batch norm normalises with the adversarial batch's own statistics, but its running
  statistics are restored afterwards.

``augment=True`` (CgAT's protocol) randomly crops (zero padding of about size / 14 pixels on each side, then a
crop back to the same size: 16 px at 224 x 224, the margin of Resize(256) + RandomCrop(224)) and horizontally
flips (probability 1/2) every training batch, per image, before the inner attack.

The outer forward passes run in train mode as in the reference code (Yuan et al., TIFS 2023): batch norm sees
the adversarial and then the benign batch. All forward passes use alpha = 1 (SAAT pins HashNet's continuation
scale at 1).

Memory banks of the hashing method are preinstalled from the clean model's sign codes of the training split
and so is the defense's own code bank.

Determinism and resumption follow :func:`hashguard.training.train_model`: epoch ``e`` draws its shuffle
order, dropout randomness and attack randomness (random starts, sampled target labels) from seeds derived
from ``(seed, e)``; a checkpoint after each epoch holds the model, the method's buffers, the optimiser and the
defense state, written atomically (:mod:`hashguard.training.state`). The learning rate is a pure function of
the iteration count (MultiStepLR with integer milestones), so an interrupted and resumed run ends with the
same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from hashguard.attacks.optimizers import PGD
from hashguard.data.base import HashingDataset
from hashguard.defenses.base import Batch, Defense
from hashguard.defenses.config import DefenseConfig, lr_factor, milestone_steps
from hashguard.encoding import encode_dataset
from hashguard.errors import HashguardError
from hashguard.io_utils import atomic_write_json
from hashguard.methods.base import HashingMethod
from hashguard.models.checkpoint import save_model
from hashguard.models.hash_model import HashModel
from hashguard.training.state import (
    existing_run,
    optimizer_to_flat,
    restore_checkpoint,
    write_checkpoint,
)
from hashguard.training.trainer import HISTORY_FILE, config_digest, derived_seed

_DEFENSE_PREFIX = "defense."


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


@contextlib.contextmanager
def inner_modes(model: nn.Module, inner_bn: str = "update", dropout: bool = True) -> Iterator[nn.Module]:
    """Module modes for the inner attack (see the module docstring); everything is restored afterwards."""
    was_training = model.training
    model.eval()
    saved: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if inner_bn != "frozen":
                module.train()
            if inner_bn == "batch":
                saved.append((module, {n: b.detach().clone() for n, b in module.named_buffers(recurse=False)}))
        elif isinstance(module, nn.modules.dropout._DropoutNd):
            module.train(dropout)
    try:
        yield model
    finally:
        with torch.no_grad():
            for module, buffers in saved:
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)
        model.train(was_training)


def augment_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding of max(1, round(size / 14)) pixels, crop back) and horizontal flip per image.

    CgAT's training augmentation (Wang et al., WWW 2023: RandomCrop + RandomHorizontalFlip on the train split);
    on already centre-cropped images the padding reproduces the 256 -> 224 crop margin. Seeded by ``generator``.
    """
    b, _, h, w = images.shape
    pad = max(1, round(min(h, w) / 14))
    padded = nn.functional.pad(images, (pad, pad, pad, pad))
    tops = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    lefts = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    flips = (torch.rand(b, generator=generator) < 0.5).to(images.device).view(b, 1, 1, 1)
    windows = zip(tops, lefts, strict=True)
    cropped = torch.stack([padded[i, :, t : t + h, s : s + w] for i, (t, s) in enumerate(windows)])
    return torch.where(flips, cropped.flip(-1), cropped)


def run_inner_attack(
    model: nn.Module,
    images: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: DefenseConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """PGD on the perturbation only, parameters frozen, modes as ``config`` says; adversarial images out."""
    pgd = PGD(step=config.step, alpha_schedule=False, alpha=1.0, random_start=config.random_start)
    with inner_modes(model, config.inner_bn, config.inner_dropout):
        return pgd.run(
            model, images, loss_fn, eps=config.eps, iterations=config.iterations, generator=generator, keep_mode=True
        )


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
    out = Path(out_dir)
    say = log or (lambda _msg: None)
    describe = dict(describe or {})
    seed = config.seed
    device = model.device
    run_identity = {
        "defense": defense.name,
        "config": config.identity(),
        "model": model.spec.to_dict(),
        "method": {"name": method.name, "params": method.params()},
        "train_items": len(train_set),
        "base": describe.get("base"),
    }
    identity = config_digest(run_identity)
    existing = existing_run(out, resume, "an adversarial-training run")

    # the clean model's sign codes of the training split (eval mode) seed every bank (Yuan et al., TIFS 2023)
    codes, labels = encode_dataset(model, train_set)
    train_codes = torch.from_numpy(codes).float().to(device)
    train_labels = torch.from_numpy(labels).float().to(device)
    method.to(device)
    if method.uses_memory_bank:
        method.preinstall(train_codes, train_labels)
    defense.setup(train_codes, train_labels, model.bits, derived_seed(seed, 0, 3))
    defense.to(device)

    optimizer = build_outer_optimizer(list(model.parameters()) + list(method.parameters()), config)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume and existing is not None:
        tensors, meta = restore_checkpoint(existing, identity, model, method, optimizer)
        n = len(_DEFENSE_PREFIX)
        defense.load_state({k[n:]: v for k, v in tensors.items() if k.startswith(_DEFENSE_PREFIX)}, meta["defense"])
        start_epoch = int(meta["epochs_done"])
        history = list(meta["history"])
        say(f"resuming {out} after epoch {start_epoch}")
    elif resume:
        say(f"nothing to resume in {out}; starting a new run")

    steps_per_epoch = (len(train_set) + config.batch_size - 1) // config.batch_size
    milestones = milestone_steps(config.epochs * steps_per_epoch, config.milestones)
    end_epoch = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
    for epoch in range(start_epoch, end_epoch):
        started = time.perf_counter()
        torch.manual_seed(derived_seed(seed, epoch, 1))
        generator = torch.Generator().manual_seed(derived_seed(seed, epoch, 2))
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(derived_seed(seed, epoch, 0)))
        loader = DataLoader(
            train_set, batch_size=config.batch_size, sampler=order.tolist(), num_workers=config.num_workers
        )
        model.train()
        method.train()
        sums: dict[str, float] = {}
        count = 0
        batches: Any = loader
        if config.progress:
            from tqdm import tqdm

            batches = tqdm(loader, desc=f"{defense.name} epoch {epoch + 1}/{config.epochs}", leave=False, unit="batch")
        for batch_number, (images, batch_labels, index) in enumerate(batches):
            step = epoch * steps_per_epoch + batch_number
            factor = lr_factor(step, milestones, config.lr_gamma)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * factor
            images = images.to(device)
            if config.augment:
                images = augment_batch(images, generator)
            batch = Batch(images, batch_labels.to(device).float(), index.to(device))
            inner = defense.inner_loss(model, batch, generator, factor)
            adv = run_inner_attack(model, batch.images, inner, config, generator)
            model.train()
            outer = defense.outer_loss(model, method, batch, adv)
            if not torch.isfinite(outer.loss):
                raise HashguardError(
                    f"{defense.name} diverged at epoch {epoch + 1}, step {step}: loss is {outer.loss.item()}; "
                    "lower the learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            outer.loss.backward()
            optimizer.step()
            size = images.shape[0]
            count += size
            sums["loss"] = sums.get("loss", 0.0) + float(outer.loss.detach()) * size
            for key, value in outer.parts.items():
                sums[key] = sums.get(key, 0.0) + value * size
            if config.progress:
                batches.set_postfix(loss=f"{sums['loss'] / max(count, 1):.4f}")
        record: dict[str, Any] = {"epoch": epoch + 1, **{k: v / max(count, 1) for k, v in sums.items()}}
        record["lr"] = config.lr * lr_factor((epoch + 1) * steps_per_epoch - 1, milestones, config.lr_gamma)
        record["seconds"] = round(time.perf_counter() - started, 3)
        history.append(record)
        finished = epoch + 1
        say(f"{defense.name} epoch {finished}/{config.epochs}: loss {record['loss']:.4f} ({record['seconds']:.1f} s)")
        if finished % config.checkpoint_every == 0 or finished == end_epoch:
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
            tensors.update({f"method.{k}": v for k, v in method.state_dict().items()})
            tensors.update({f"{_DEFENSE_PREFIX}{k}": v for k, v in defense.state_tensors().items()})
            optim_tensors, optim_meta = optimizer_to_flat(optimizer)
            tensors.update(optim_tensors)
            meta = {
                "identity": identity,
                "epochs_done": finished,
                "history": history,
                "optimizer": optim_meta,
                "defense": defense.state_meta(),
            }
            write_checkpoint(out, finished, tensors, meta)
        atomic_write_json(out / HISTORY_FILE, history)

    epochs_done = max(end_epoch, start_epoch)
    done = epochs_done >= config.epochs
    if done:
        provenance = {
            **defense.params(),
            "config": config.model_dump(),
            "milestone_steps": milestones,
            "steps_per_epoch": steps_per_epoch,
            "train_items": len(train_set),
            "history": history,
            "base": describe.get("base"),
        }
        save_model(
            out,
            model,
            method={"name": method.name, "params": method.params()},
            num_classes=train_set.num_classes,
            dataset=describe.get("dataset"),
            extra={"defense": provenance, **{k: v for k, v in describe.items() if k not in ("dataset", "base")}},
        )
        model.eval()
        say(f"wrote {out} ({defense.name}-hardened weights)")
    return DefenseResult(out, epochs_done, done, history)
