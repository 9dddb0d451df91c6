"""The training loop for every hashing method: seeded, checkpointed, resumable, validated on a held-out part
of the training split (never on the query set).

Determinism: epoch ``e`` draws its shuffle order and its dropout randomness from seeds derived from
``(seed, e)`` only, and the checkpoint holds the model, the method's buffers (memory banks) and the
optimizer. A run interrupted after any finished epoch and resumed therefore ends with the same weights as
an uninterrupted run on CPU.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from hashguard.config import TrainConfig
from hashguard.data.base import HashingDataset
from hashguard.encoding import encode_dataset
from hashguard.errors import HashguardError
from hashguard.io_utils import atomic_write_json
from hashguard.methods.base import HashingMethod
from hashguard.models.checkpoint import load_state_file, save_model, save_state_file
from hashguard.models.hash_model import HashModel
from hashguard.training.state import (
    existing_run,
    optimizer_to_flat,
    restore_checkpoint,
    write_checkpoint,
)

BEST_WEIGHTS = "best.safetensors"
HISTORY_FILE = "history.json"


def derived_seed(*parts: int) -> int:
    """A 63-bit seed derived deterministically from integers (stable across runs and platforms)."""
    digest = hashlib.sha256(",".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


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


def _validation_map(
    model: HashModel, val_set: HashingDataset, database: HashingDataset, topk: int | None
) -> float:
    from hashguard.retrieval import mean_average_precision

    query_codes, query_labels = encode_dataset(model, val_set)
    db_codes, db_labels = encode_dataset(model, database)
    return float(mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=topk))


def config_digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
