"""``defend``: harden a trained checkpoint with SAAT, ATRDH or CgAT and write a hardened checkpoint.

The hardened checkpoint has the format of :func:`hashguard.models.save_model` (loadable by
:func:`hashguard.models.load_model`, usable by ``hashguard attack`` / ``evaluate``); its ``model.json`` adds
``defense`` (name, paper, full configuration, history, integer LR milestones) with ``defense.base`` naming the
base checkpoint (path, SHA-256 of its weights, its method and training seed).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from hashguard.config import DataConfig, apply_overrides, build_config
from hashguard.data.base import HashingDataset, SubsetDataset
from hashguard.defenses.base import Defense
from hashguard.defenses.config import DefenseConfig
from hashguard.defenses.registry import DEFENSES
from hashguard.defenses.trainer import DefenseResult, adversarial_train
from hashguard.errors import ConfigError
from hashguard.models.checkpoint import WEIGHTS_FILE, read_model_config
from hashguard.pipeline.checkpoint import open_checkpoint
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
    data: DataConfig | None = None,
    stop_after_epoch: int | None = None,
    log: Any = print,
) -> DefenseResult:
    """Adversarially fine-tune the checkpoint in ``checkpoint_dir`` with ``defense`` into ``out_dir``.

    ``config`` (a :class:`DefenseConfig` or a dict) and ``overrides`` (``key=value`` strings) change the
    reference recipe; ``preset="demo"`` selects the CPU demo recipe. ``train_set`` replaces the base
    model's own training split (by default re-opened from the checkpoint's data description, or from ``data``
    when given, minus the validation items the clean trainer held out: see
    :meth:`hashguard.pipeline.checkpoint.OpenedCheckpoint.training_split`). ``resume=True`` continues an
    interrupted run.
    """
    settings = build_defense_config(defense, config, overrides, preset)
    checkpoint = Path(checkpoint_dir)
    check_output(checkpoint, Path(out_dir))
    from hashguard.activation_codes.checkpoint import is_activation_code_checkpoint
    from hashguard.activation_codes.harden import defend_activation_codes

    if is_activation_code_checkpoint(read_model_config(checkpoint)):  # no loss: harden its network, read it again
        return defend_activation_codes(
            checkpoint, settings, Path(out_dir), defend, resume=resume, device=device, train_set=train_set,
            data=data, stop_after_epoch=stop_after_epoch, log=log,
        )
    opened = open_checkpoint(checkpoint, device=device, data=data, with_data=train_set is None)
    model, meta = opened.model, opened.meta
    if train_set is not None:
        train_source = "given by the caller"
    else:
        train_source = "base checkpoint's training split" if data is None else f"training split of {data.source}"
        train_set = opened.training_split()
    if settings.train_items is not None and settings.train_items < len(train_set):
        train_set = SubsetDataset(train_set, range(settings.train_items))  # type: ignore[arg-type]
    num_classes = opened.num_classes or train_set.num_classes
    opened.check_classes(train_set.num_classes)
    method = opened.hashing_method(len(train_set), num_classes)
    asymmetric = meta.get("adsh") or {}
    from_database = settings.defense_params().get("mainstay_from") == "database"
    if from_database and not asymmetric:
        from hashguard.methods.adsh import learned_codes_of

        learned_codes_of(meta, checkpoint)  # one ConfigError line: not an ADSH checkpoint
    if asymmetric:  # ADSH: the method's loss compares queries with the learned database codes V of the base model
        method.install_checkpoint(checkpoint)  # type: ignore[attr-defined]
    method_meta = meta.get("method") or {}
    training = opened.training
    weights = checkpoint / WEIGHTS_FILE
    base = {
        "path": str(checkpoint),
        "weights_sha256": _sha256(weights),
        "method": method_meta,
        "training_seed": training.get("seed"),
        "val_fraction": opened.val_fraction,
        "dataset_fingerprint": (meta.get("dataset") or {}).get("fingerprint"),
    }
    describe: dict[str, Any] = {"base": base, "dataset": meta.get("dataset")}
    if data is not None:
        describe["data"] = data.model_dump()
    elif meta.get("data"):
        describe["data"] = meta["data"]
    describe["train_source"] = train_source
    if asymmetric:
        describe["adsh"] = asymmetric
    if meta.get("labels"):  # a scarce-label base: its labels record (and file, below) travel with the hardened model
        describe["labels"] = meta["labels"]
    defense_obj = build_defense(settings.defense, settings)
    if from_database:  # the code bank is V (its first train_items rows, as installed in the method) and the labels
        defense_obj.use_learned_codes(method.V, method.Y)  # type: ignore[attr-defined]
    result = adversarial_train(
        model,
        method,
        defense_obj,
        train_set,
        settings,
        out_dir,
        resume=resume,
        describe=describe,
        stop_after_epoch=stop_after_epoch,
        log=log,
    )
    if asymmetric:  # the defense trains the query network only: the database codes V stay the base model's
        from hashguard.methods.adsh import DATABASE_CODES_FILE

        shutil.copyfile(checkpoint / DATABASE_CODES_FILE, Path(out_dir) / DATABASE_CODES_FILE)
    if meta.get("labels") and result.finished:
        from hashguard.labeling.store import copy_labels

        copy_labels(checkpoint, out_dir)
    return result
