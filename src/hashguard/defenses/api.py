"""``defend``: harden a trained checkpoint with SAAT, ATRDH or CgAT and write a hardened checkpoint.

The hardened checkpoint has the format of :func:`hashguard.models.save_model` (loadable by
:func:`hashguard.models.load_model`, usable by ``hashguard attack`` / ``evaluate``); its ``model.json`` adds
``defense`` (name, paper, full configuration, history, integer LR milestones) with ``defense.base`` naming the
base checkpoint (path, SHA-256 of its weights, its method and training seed).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hashguard.config import DataConfig, apply_overrides, build_config
from hashguard.data.base import HashingDataset, SubsetDataset, carve_validation
from hashguard.defenses.base import Defense
from hashguard.defenses.config import DefenseConfig
from hashguard.defenses.registry import DEFENSES
from hashguard.defenses.trainer import DefenseResult, adversarial_train
from hashguard.devices import resolve_device
from hashguard.errors import CheckpointError, ConfigError
from hashguard.methods import build_method
from hashguard.models.checkpoint import WEIGHTS_FILE, load_model
from hashguard.training.state import latest_checkpoint


def defense_name(name: str) -> str:
    """The registered name of ``name`` (case-insensitive); unknown names raise :class:`ConfigError`."""
    return DEFENSES.key(name)


def build_defense_config(
    name: str,
    config: DefenseConfig | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    preset: str | None = None,
) -> DefenseConfig:
    """The validated configuration of defense ``name``: reference defaults < preset < ``config`` < overrides."""
    key = defense_name(name)
    payload = config.model_dump() if isinstance(config, DefenseConfig) else dict(config or {})
    if isinstance(config, DefenseConfig) and config.defense != key:
        raise ConfigError(f"the configuration is for defense {config.defense!r}, not {key!r}")
    payload["defense"] = key
    if preset is not None:
        payload["preset"] = preset
    payload = apply_overrides(payload, list(overrides or []))
    if str(payload.get("defense", key)).lower() != key:
        raise ConfigError(f"defense {payload['defense']!r} in the settings contradicts the chosen defense {key!r}")
    return build_config(DefenseConfig, payload, f"{key} configuration")


def build_defense(name: str, config: DefenseConfig) -> Defense:
    """An unset-up defense object for ``name`` with the defense's own settings from ``config``."""
    return DEFENSES.build(name, config, **config.defense_params())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def training_split(meta: dict[str, Any], checkpoint: Path) -> HashingDataset:
    """The split the base model was fitted on: its dataset's train split minus the validation items it
    carved (same fraction and seed as the clean trainer)."""
    from hashguard.data import open_dataset

    stored = meta.get("data")
    if not stored:
        raise CheckpointError(f"{checkpoint}: the checkpoint does not record its dataset; pass train_set")
    data = build_config(DataConfig, stored, f"{checkpoint} data description")
    splits = open_dataset(data.source, root=data.root, image_size=data.image_size, seed=data.seed, **data.options)
    training = meta.get("training") or {}
    fraction = float((training.get("config") or {}).get("val_fraction", 0.0))
    fit, _ = carve_validation(splits.train, fraction, int(training.get("seed", 0)))
    return fit


def check_output(checkpoint: Path, out: Path) -> None:
    """Refuse an output directory that would overwrite the base checkpoint or a model that is not a resumable
    defense run there (nothing already written is ever lost)."""
    if out.exists() and checkpoint.exists() and out.resolve() == checkpoint.resolve():
        raise ConfigError(f"{out}: the output directory is the base checkpoint; choose another --out")
    if (out / WEIGHTS_FILE).exists() and latest_checkpoint(out) is None:
        raise ConfigError(f"{out}: already holds a model that is not a resumable defense run; choose another --out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")


def defend(
    checkpoint_dir: str | Path,
    defense: str,
    out_dir: str | Path,
    config: DefenseConfig | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    *,
    preset: str | None = None,
    resume: bool = False,
    device: str = "auto",
    train_set: HashingDataset | None = None,
    stop_after_epoch: int | None = None,
    log: Any = print,
) -> DefenseResult:
    """Adversarially fine-tune the checkpoint in ``checkpoint_dir`` with ``defense`` into ``out_dir``.

    ``config`` (a :class:`DefenseConfig` or a dict) and ``overrides`` (``key=value`` strings) change the
    reference recipe; ``preset="demo"`` selects the CPU demo recipe. ``train_set`` replaces the base
    model's own training split (by default re-opened from the checkpoint's data description, minus the
    validation items the clean trainer held out). ``resume=True`` continues an interrupted run.
    """
    settings = build_defense_config(defense, config, overrides, preset)
    checkpoint = Path(checkpoint_dir)
    check_output(checkpoint, Path(out_dir))
    model, meta = load_model(checkpoint, device=resolve_device(device))
    train_source = "base checkpoint's training split" if train_set is None else "given by the caller"
    if train_set is None:
        train_set = training_split(meta, checkpoint)
    if settings.train_items is not None and settings.train_items < len(train_set):
        train_set = SubsetDataset(train_set, range(settings.train_items))  # type: ignore[arg-type]
    num_classes = meta.get("num_classes") or train_set.num_classes
    if train_set.num_classes != num_classes:
        raise ConfigError(f"{checkpoint}: model trained on {num_classes} classes, data has {train_set.num_classes}")
    method_meta = meta.get("method") or {}
    if not method_meta.get("name"):
        raise CheckpointError(f"{checkpoint}: model.json names no hashing method; cannot rebuild its loss")
    training = meta.get("training") or {}
    method = build_method(
        method_meta["name"],
        bits=model.bits,
        num_classes=num_classes,
        num_train=len(train_set),
        seed=int(training.get("seed", 0)),  # CSQ/DPN centres must be the base model's
        **(method_meta.get("params") or {}),
    )
    weights = checkpoint / WEIGHTS_FILE
    base = {
        "path": str(checkpoint),
        "weights_sha256": _sha256(weights),
        "method": method_meta,
        "training_seed": training.get("seed"),
        "dataset_fingerprint": (meta.get("dataset") or {}).get("fingerprint"),
    }
    describe: dict[str, Any] = {"base": base, "dataset": meta.get("dataset")}
    if meta.get("data"):
        describe["data"] = meta["data"]
    describe["train_source"] = train_source
    return adversarial_train(
        model,
        method,
        build_defense(settings.defense, settings),
        train_set,
        settings,
        out_dir,
        resume=resume,
        describe=describe,
        stop_after_epoch=stop_after_epoch,
        log=log,
    )
