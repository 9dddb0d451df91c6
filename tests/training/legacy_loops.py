"""The pre-refactor training loops, kept verbatim as the test oracle of :mod:`hashguard.training.loop`.

``legacy_train_model`` is ``hashguard.training.trainer.train_model`` and ``legacy_adversarial_train`` is
``hashguard.defenses.trainer.adversarial_train`` as they stood before clean and adversarial training became
steps of one loop (git commit c8466fb). Only the names changed; the helpers they call (optimiser builders,
seeds, the inner attack, the checkpoint writers) are imported from the package. ``tests/training/test_loop.py``
asserts that the new loop reproduces them bit for bit. Do not "fix" this file: it is the reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from hashguard.config import TrainConfig
from hashguard.data.base import HashingDataset
from hashguard.defenses.base import Batch, Defense
from hashguard.defenses.config import DefenseConfig, lr_factor, milestone_steps
from hashguard.defenses.trainer import DefenseResult, augment_batch, build_outer_optimizer, run_inner_attack
from hashguard.encoding import encode_dataset
from hashguard.errors import HashguardError
from hashguard.io_utils import atomic_write_json
from hashguard.methods.base import HashingMethod
from hashguard.models.checkpoint import load_state_file, save_model, save_state_file
from hashguard.models.hash_model import HashModel
from hashguard.training.state import existing_run, optimizer_to_flat, restore_checkpoint, write_checkpoint
from hashguard.training.trainer import (
    BEST_WEIGHTS,
    HISTORY_FILE,
    TrainResult,
    build_optimizer,
    config_digest,
    derived_seed,
)

_DEFENSE_PREFIX = "defense."


def _validation_map(
    model: HashModel, val_set: HashingDataset, database: HashingDataset, topk: int | None
) -> float:
    from hashguard.retrieval import mean_average_precision

    query_codes, query_labels = encode_dataset(model, val_set)
    db_codes, db_labels = encode_dataset(model, database)
    return float(mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=topk))


def legacy_train_model(
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
    out = Path(out_dir)
    say = log or (lambda _msg: None)
    describe = dict(describe or {})
    run_identity = {
        "train": config.model_dump(exclude={"progress", "num_workers", "checkpoint_every"}),
        "seed": seed,
        "model": model.spec.to_dict(),
        "method": {"name": method.name, "params": method.params()},
        "train_items": len(train_set),
        "val_items": len(val_set) if val_set is not None else 0,
    }
    identity = config_digest(run_identity)
    device = model.device
    method.to(device)
    optimizer = build_optimizer(list(model.parameters()) + list(method.parameters()), config)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    best_epoch: int | None = None
    best_score: float | None = None

    existing = existing_run(out, resume, "a training run")
    if resume and existing is not None:
        _, meta = restore_checkpoint(existing, identity, model, method, optimizer)
        start_epoch = int(meta["epochs_done"])
        history = list(meta["history"])
        best_epoch, best_score = meta.get("best_epoch"), meta.get("best_score")
        say(f"resuming {out} after epoch {start_epoch}")
    elif resume:
        say(f"nothing to resume in {out}; starting a new run")

    steps_per_epoch = (len(train_set) + config.batch_size - 1) // config.batch_size
    end_epoch = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
    for epoch in range(start_epoch, end_epoch):
        started = time.perf_counter()
        lr = config.lr_at_epoch(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(derived_seed(seed, epoch, 1))
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(derived_seed(seed, epoch, 0)))
        loader = DataLoader(
            train_set, batch_size=config.batch_size, sampler=order.tolist(), num_workers=config.num_workers
        )
        model.train()
        method.train()
        total, count = 0.0, 0
        batches = loader
        if config.progress:
            from tqdm import tqdm

            batches = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, unit="batch")
        for batch_number, (images, labels, index) in enumerate(batches):
            step = epoch * steps_per_epoch + batch_number
            images, labels, index = images.to(device), labels.to(device), index.to(device)
            u = model(images, alpha=method.alpha(step))
            loss = method(u, labels, index)
            if not torch.isfinite(loss):
                raise HashguardError(
                    f"training diverged at epoch {epoch + 1}, step {step}: loss is {loss.item()}; "
                    "lower the learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * images.shape[0]
            count += images.shape[0]
            if config.progress:
                batches.set_postfix(loss=f"{total / max(count, 1):.4f}")
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": total / max(count, 1),
            "lr": lr,
            "seconds": round(time.perf_counter() - started, 3),
        }
        finished = epoch + 1
        if val_set is not None and (finished % config.eval_every == 0 or finished == config.epochs):
            score = _validation_map(model, val_set, train_set, config.eval_topk)
            record["val_map"] = score
            if best_score is None or score > best_score:
                best_score, best_epoch = score, finished
                save_state_file(out / BEST_WEIGHTS, model.state_dict())
        history.append(record)
        cut = "all" if config.eval_topk is None else config.eval_topk
        val_text = f", val mAP@{cut} {record['val_map']:.4f}" if "val_map" in record else ""
        say(f"epoch {finished}/{config.epochs}: loss {record['loss']:.4f}{val_text} ({record['seconds']:.1f} s)")
        if finished % config.checkpoint_every == 0 or finished == end_epoch:
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
            tensors.update({f"method.{k}": v for k, v in method.state_dict().items()})
            optim_tensors, optim_meta = optimizer_to_flat(optimizer)
            tensors.update(optim_tensors)
            meta = {
                "identity": identity,
                "epochs_done": finished,
                "history": history,
                "best_epoch": best_epoch,
                "best_score": best_score,
                "optimizer": optim_meta,
            }
            write_checkpoint(out, finished, tensors, meta)
        atomic_write_json(out / HISTORY_FILE, history)

    epochs_done = max(end_epoch, start_epoch)
    if epochs_done >= config.epochs:
        final_state = model.state_dict()
        selected = "last"
        if config.select == "best" and best_epoch is not None and (out / BEST_WEIGHTS).is_file():
            final_state = load_state_file(out / BEST_WEIGHTS)
            selected = f"best (epoch {best_epoch}, validation mAP {best_score:.4f})"
        training = {
            "config": config.model_dump(),
            "seed": seed,
            "epochs": config.epochs,
            "selected": selected,
            "best_epoch": best_epoch,
            "best_val_map": best_score,
            "history": history,
        }
        save_model(
            out,
            model,
            state=final_state,
            method={"name": method.name, "params": method.params()},
            num_classes=train_set.num_classes,
            dataset=describe.get("dataset"),
            extra={"training": training, **{k: v for k, v in describe.items() if k != "dataset"}},
        )
        model.load_state_dict(final_state)
        say(f"wrote {out} ({selected} weights)")
    return TrainResult(out, epochs_done, history, best_epoch, best_score)


def legacy_adversarial_train(
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
