"""Lifelong hashing sessions end to end: the base model (session 0) and the incremental sessions.

* :func:`train_base`: session 0, ADSH (Jiang and Li, AAAI 2018) trained from scratch on the training items of
  some classes of a data source, written as an ADSH checkpoint plus its code store;
* :func:`run_session`: the next session from an ADSH checkpoint (protocol ``adsh``) or a previous session
  directory and the training items of new classes (Wu et al., CVPR 2019; Xu et al., IEEE TCSVT 2024): the old
  codes stay byte for byte, the new items' codes and the query network are learned
  (:class:`~hashguard.lifelong.step.IncrementalStep`);
* a finished session is evaluated by :func:`hashguard.lifelong.evaluate.evaluate_store` when asked.

A session directory is an ADSH-protocol checkpoint (``model.json`` + weights + ``database_codes.safetensors``)
plus the store (:mod:`hashguard.lifelong.store`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashguard.config import DataConfig, ExperimentConfig, MethodConfig, ModelConfig, TrainConfig
from hashguard.data.base import DatasetSplits, SubsetDataset
from hashguard.encoding import encode_dataset
from hashguard.errors import CheckpointError, ConfigError, DataError
from hashguard.lifelong.classes import check_classes, items_of_classes
from hashguard.lifelong.config import LifelongConfig
from hashguard.lifelong.evaluate import evaluate_store
from hashguard.lifelong.store import STORE_META, CodeStore
from hashguard.methods.adsh import DATABASE_CODES_FILE, load_database_codes
from hashguard.models.checkpoint import WEIGHTS_FILE, save_model, save_state_file
from hashguard.models.hash_model import HashModel
from hashguard.pipeline.checkpoint import OpenedCheckpoint, open_checkpoint
from hashguard.training.loop import LoopSettings, config_digest, fit

Log = Callable[[str], None] | None


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass
class Base:
    """What a session starts from: the query network, the store (every code frozen) and the data."""

    path: Path
    opened: OpenedCheckpoint
    store: CodeStore
    splits: DatasetSplits

    @property
    def model(self) -> HashModel:
        return self.opened.model


def open_base(path: str | Path, device: str = "auto", data: DataConfig | None = None) -> Base:
    """Open an ADSH checkpoint (protocol ``adsh``) or a lifelong session directory as the start of a session."""
    path = Path(path)
    if not (path / "model.json").is_file():
        raise CheckpointError(f"{path}: not a checkpoint directory (no model.json)")
    opened = open_checkpoint(path, device=device, data=data)
    splits = opened.require_splits()
    meta = opened.meta
    if (path / STORE_META).is_file():
        store = CodeStore.load(path)
    else:
        protocol = (meta.get("adsh") or {}).get("protocol")
        if protocol != "adsh":
            method = (meta.get("method") or {}).get("name", "unknown")
            what = "an ADSH model under the saat protocol" if protocol else f"a {method} model"
            raise ConfigError(f"{path} holds {what}: a lifelong session starts from an ADSH checkpoint trained "
                              "with protocol adsh (its learned database codes) or from a previous session directory")
        codes, labels = load_database_codes(path)
        pool = opened.training_split()
        n = codes.shape[0]  # V covers the pool, or its first items (a run on the first items of the split)
        if n > len(pool) or not np.array_equal(np.asarray(pool.labels[:n], np.float32), labels.numpy()):
            raise CheckpointError(f"{path}: the stored database codes ({n} items) do not belong to the training "
                                  f"split of its data ({len(pool)} items)")
        rows = pool.indices[:n] if isinstance(pool, SubsetDataset) else np.arange(n)
        store = CodeStore.initial(codes, labels, rows, data=meta.get("data"))
    if store.bits != opened.model.bits:
        raise CheckpointError(f"{path}: code length mismatch: the stored codes have {store.bits} bits, the query "
                              f"network {opened.model.bits}")
    opened.check_classes(splits.num_classes)
    if store.num_classes != splits.num_classes:
        raise CheckpointError(f"{path}: the store's labels have {store.num_classes} classes, the data "
                              f"{splits.num_classes}")
    store.frozen = torch.ones(len(store), dtype=torch.bool)
    return Base(path, opened, store, splits)


def run_session(
    base_path: str | Path,
    classes: list[int],
    out: str | Path,
    config: LifelongConfig,
    *,
    device: str = "auto",
    data: DataConfig | None = None,
    resume: bool = False,
    stop_after_epoch: int | None = None,
    evaluation: dict[str, Any] | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Run the next lifelong session into ``out`` (see the module docstring); returns ``lifelong.json``'s record
    (with ``finished`` False when ``stop_after_epoch`` paused it). ``evaluation`` (keywords of
    :func:`evaluate_store`) is run on the finished session and recorded; None skips it."""
    out = Path(out)
    base = open_base(base_path, device, data)
    if out.resolve() == base.path.resolve():
        raise ConfigError(f"{out}: the session writes a new directory; it cannot overwrite its base {base.path}")
    store, splits, model = base.store, base.splits, base.model
    check_classes(classes, splits.num_classes, store.seen_classes())
    train = splits.train
    new_rows = items_of_classes(train.labels, classes, store.source_rows.numpy(), config.items)
    if len(new_rows) < 2:
        raise DataError(f"classes {classes}: {len(new_rows)} new training item(s) in {splits.name}; a session needs "
                        "at least 2")
    known = store.source_rows.numpy()
    replay = config.sample_from == "all"
    replay_rows = np.flatnonzero(known >= 0) if replay else np.zeros(0, dtype=np.int64)
    if replay and not len(replay_rows):
        raise ConfigError("sample_from=all needs the old items' images, and this store does not know where they are: "
                          "use --set sample_from=new")
    dataset = train.subset(np.concatenate([new_rows, known[replay_rows]]))
    codes, _ = encode_dataset(model, train.subset(new_rows))
    initial = torch.from_numpy(codes).float()  # B_new starts at the base network's sign codes of the new items
    started = time.perf_counter()

    def finish(step: Any, history: list[dict[str, Any]]) -> None:
        session_store = step.final_store(classes, torch.as_tensor(new_rows))
        write_session(out, model, base, session_store, config, history, time.perf_counter() - started)

    from hashguard.lifelong.step import IncrementalStep

    step = IncrementalStep(model, store, dataset, len(new_rows), torch.as_tensor(replay_rows), initial, config,
                           on_finish=finish)
    identity = config_digest({
        "config": config.identity(), "classes": classes, "store": store.digest(), "items": len(new_rows),
        "weights": file_digest(base.path / WEIGHTS_FILE), "data": splits.fingerprint(),
    })
    settings = LoopSettings(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                            checkpoint_every=config.checkpoint_every, progress=config.progress)
    result = fit(
        step, dataset, settings, out, identity=identity,
        make_optimizer=lambda params: torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay),
        resume=resume, stop_after_epoch=stop_after_epoch, log=log, what="a lifelong session",
        sampler=step.sampler(),
    )
    if not result.finished:
        return {"finished": False, "epochs_done": result.epochs_done}
    session_store = CodeStore.load(out)
    record = session_record(out)
    if evaluation is not None:
        record["evaluation"] = evaluate_store(model, session_store, splits.query, **evaluation)
        session_store.save(out, extra=extras_of(record))
    record["finished"] = True
    return record


def extras_of(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("previous", "new_items", "training_seconds", "settings", "evaluation", "base")
    return {k: record[k] for k in keep if k in record}


def session_record(out: Path) -> dict[str, Any]:
    import json

    return json.loads((out / STORE_META).read_text(encoding="utf-8"))


def write_session(out: Path, model: HashModel, base: Base, store: CodeStore, config: LifelongConfig,
                  history: list[dict[str, Any]], seconds: float) -> None:
    """The session directory: the network, ``model.json`` (ADSH protocol, the lifelong record), the store's codes
    as ``database_codes.safetensors`` and the store itself."""
    meta = base.opened.meta
    record = {
        "session": store.number, "classes": store.session_classes[-1], "base": str(base.path),
        "previous_codes_sha256": base.store.digest(), "codes_sha256": store.digest(),
    }
    save_state_file(out / DATABASE_CODES_FILE, {"codes": store.codes, "labels": store.labels})
    save_model(
        out, model, method=meta.get("method"), num_classes=store.num_classes, dataset=meta.get("dataset"),
        extra={
            "data": meta.get("data"),
            "adsh": {"protocol": "adsh", "database_codes": DATABASE_CODES_FILE, "pool_items": len(store)},
            "lifelong": record,
            "training": {"config": config.model_dump(), "seed": config.seed, "epochs": config.epochs,
                         "history": history},
        },
    )
    store.save(out, extra={
        "previous": str(base.path), "new_items": int((store.session == store.number).sum()),
        "training_seconds": round(sum(float(h.get("seconds", 0.0)) for h in history), 3),
        "settings": config.model_dump(),
    })


def train_base(
    data: DataConfig,
    classes: list[int],
    out: str | Path,
    config: LifelongConfig,
    *,
    device: str = "auto",
    resume: bool = False,
    stop_after_epoch: int | None = None,
    evaluation: dict[str, Any] | None = None,
    splits: DatasetSplits | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Session 0: ADSH from scratch (the shared loop's ADSH step) on the training items of ``classes``, written as
    an ADSH-protocol checkpoint plus its store. Also the "retrain from scratch on all data so far" baseline."""
    from hashguard.pipeline.train import open_splits, run_training

    out = Path(out)
    splits = splits or open_splits(data)
    check_classes(classes, splits.num_classes, [])
    rows = items_of_classes(splits.train.labels, classes, limit=config.items)
    if len(rows) < 2:
        raise DataError(f"classes {classes}: {len(rows)} training item(s) in {splits.name}; need at least 2")
    subset = splits.train.subset(rows)
    restricted = DatasetSplits(splits.name, subset, splits.query, splits.database, mean=splits.mean, std=splits.std)
    experiment = ExperimentConfig(
        data=data,
        model=ModelConfig(backbone=config.backbone, bits=config.bits, hash_norm=config.hash_norm),
        method=MethodConfig(name="adsh", params={
            "gamma": config.gamma, "num_samples": config.num_samples, "inner_epochs": config.inner_epochs,
            "similarity": config.similarity, "protocol": "adsh",
        }),
        train=TrainConfig(recipe="custom", epochs=config.epochs, batch_size=config.batch_size, optimizer="adam",
                          lr=config.lr, momentum=0.0, weight_decay=config.weight_decay, val_fraction=0.0,
                          select="last", progress=config.progress, checkpoint_every=config.checkpoint_every),
        seed=config.seed, device=device,
    )
    started = time.perf_counter()
    result = run_training(experiment, out, resume=resume, stop_after_epoch=stop_after_epoch, splits=restricted,
                          log=log)
    if result.epochs_done < config.epochs:
        return {"finished": False, "epochs_done": result.epochs_done}
    codes, labels = load_database_codes(out)
    store = CodeStore.initial(codes, labels, np.asarray(getattr(subset, "indices", rows)), data=data.model_dump())
    store.session_classes = [sorted(classes)]
    store.save(out, extra={
        "new_items": len(store), "settings": config.model_dump(),
        "training_seconds": round(sum(float(h.get("seconds", 0.0)) for h in result.history), 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
    })
    record = session_record(out)
    if evaluation is not None:
        opened = open_checkpoint(out, device=device, splits=splits)
        record["evaluation"] = evaluate_store(opened.model, store, splits.query, **evaluation)
        store.save(out, extra=extras_of(record))
    record["finished"] = True
    return record
