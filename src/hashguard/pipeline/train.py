"""``hashguard train`` as a function: dataset -> model + method -> trainer -> checkpoint directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hashguard.config import DataConfig, ExperimentConfig, load_experiment_config
from hashguard.data.base import DatasetSplits, HashingDataset, carve_validation
from hashguard.devices import resolve_device
from hashguard.errors import ConfigError
from hashguard.io_utils import atomic_write_text
from hashguard.methods import build_method, method_class
from hashguard.models.backbones import wants_rgb_imagenet
from hashguard.models.hash_model import IMAGENET_MEAN, IMAGENET_STD, HashModel, ModelSpec
from hashguard.models.heads import HEADS, holds_batchnorm
from hashguard.retrieval.health import CodeHealth, code_health
from hashguard.training import TrainResult, train_model
from hashguard.training.state import existing_run

if TYPE_CHECKING:
    from hashguard.labeling import PoolLabels

#: the configuration of a training run, written into its directory (``hashguard train --resume`` reads it)
CONFIG_FILE = "config.yaml"


def open_splits(data: DataConfig) -> DatasetSplits:
    """Open the dataset a config names (no download ever happens)."""
    from hashguard.data import open_dataset

    return open_dataset(data.source, root=data.root, image_size=data.image_size, seed=data.seed, **data.options)


def model_spec_for(config: ExperimentConfig, splits: DatasetSplits) -> ModelSpec:
    """The model spec for ``config`` on ``splits``: channels and size from the data, the method's needs."""
    channels, height, _ = splits.image_shape
    if wants_rgb_imagenet(config.model.backbone) or splits.mean is None:
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        if not wants_rgb_imagenet(config.model.backbone) and channels == 1:
            mean, std = [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
    else:
        mean, std = list(splits.mean), list(splits.std)
    fields: dict[str, Any] = dict(
        backbone=config.model.backbone,
        bits=config.model.bits,
        in_channels=channels,
        image_size=height,
        mean=mean,
        std=std,
        pretrained=config.model.pretrained,
        hash_norm=config.model.hash_norm,
    )
    overrides = dict(method_class(config.method.name).model_overrides())
    if overrides.get("hash_norm") == "batchnorm" and fields["hash_norm"] in HEADS and holds_batchnorm(
        fields["hash_norm"]
    ):
        overrides.pop("hash_norm")  # the chosen head (bn-sign, say) already has the BatchNorm such a method asks for
    fields.update(overrides)
    spec = ModelSpec(**fields)
    spec.validate()
    return spec


def dataset_description(config: ExperimentConfig, splits: DatasetSplits) -> dict[str, Any]:
    return {
        "source": config.data.source,
        "name": splits.name,
        "num_classes": splits.num_classes,
        "image_shape": list(splits.image_shape),
        "fingerprint": splits.fingerprint(),
        "sizes": {"train": len(splits.train), "query": len(splits.query), "database": len(splits.database)},
    }


def run_training(
    config: ExperimentConfig,
    out_dir: str | Path,
    resume: bool = False,
    stop_after_epoch: int | None = None,
    splits: DatasetSplits | None = None,
    log: Any = print,
) -> TrainResult:
    """Train the experiment ``config`` into ``out_dir`` (resumable)."""
    import yaml

    from hashguard.distributed.world import current_world
    from hashguard.seeding import seed_everything

    seed_everything(config.seed)
    splits = splits or open_splits(config.data)
    spec = model_spec_for(config, splits)
    device = resolve_device(config.device)
    model = HashModel(spec).to(device)
    out = Path(out_dir)
    train_split, labeling = scarce_labels(config, splits.train, device, log)
    recorded = {"labels": {**labeling.summary, "selected": labeling.selected.tolist()}} if labeling else {}
    fit_set, val_set = carve_validation(train_split, config.train.val_fraction, config.seed)
    method = build_method(
        config.method.name,
        bits=spec.bits,
        num_classes=splits.num_classes,
        num_train=len(fit_set),
        seed=config.seed,
        **config.method.params,
    )
    # refuse to overwrite a run before anything is written; a run with a checkpoint resumes only as itself
    existing = existing_run(out, resume, "a training run")
    stored = out / CONFIG_FILE
    if existing is not None and stored.is_file():
        check_same_run(stored, config)
    elif current_world().is_main:  # in a torchrun job rank 0 writes
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(stored, yaml.safe_dump(config.model_dump(), sort_keys=False))
    if labeling is not None and current_world().is_main:  # the labels trained on, for later stages
        from hashguard.labeling.store import save_pool_labels

        save_pool_labels(out, labeling.labels, labeling.selected)
    result = train_model(
        model,
        method,
        fit_set,
        config.train,
        out,
        seed=config.seed,
        val_set=val_set,
        resume=resume,
        describe={"dataset": dataset_description(config, splits), "data": config.data.model_dump(), **recorded},
        stop_after_epoch=stop_after_epoch,
        log=log,
    )
    if result.epochs_done >= config.train.epochs and log is not None:
        line = trained_code_health(model, fit_set, val_set, final_val_map(result, config)).warning(
            "the trained codes"
        )
        if line:
            log(line)
    return result


def scarce_labels(
    config: ExperimentConfig, train: HashingDataset, device: Any, log: Any
) -> tuple[HashingDataset, PoolLabels | None]:
    """The training split to train on: itself, or, with a ``labels.budget``, the split labelled from that many
    items by :func:`hashguard.labeling.label_pool` (the validation part is then carved from the propagated
    labels too: no label outside the budget is used), and the labelling (None without a budget)."""
    if config.labels.budget is None:
        return train, None
    from hashguard.labeling import label_pool

    labels = config.labels
    result = label_pool(
        train, labels.budget, labels.selection, features=labels.features, neighbours=labels.neighbours,
        alpha=labels.alpha, rounds=labels.rounds, seed=config.seed, device=device,
    )
    if log is not None:
        summary = result.summary
        log(f"labels: {summary['labelled']} of {summary['pool']} training items labelled ({labels.selection}), "
            f"the rest propagated; label accuracy {summary['label_accuracy']:.4f}")
    return result.dataset(train), result


def final_val_map(result: TrainResult, config: ExperimentConfig) -> float | None:
    """The validation mAP of the weights the run kept (the best epoch's or the last one's), if validated."""
    if config.train.select == "best" and result.best_score is not None:
        return result.best_score
    scores = [record["val_map"] for record in result.history if "val_map" in record]
    return scores[-1] if scores else None


def trained_code_health(
    model: HashModel, fit_set: HashingDataset, val_set: HashingDataset | None, val_map: float | None
) -> CodeHealth:
    """The collapse check of :mod:`hashguard.retrieval.health` on the final model: the codes of the training
    split (the database of the validation ranking) and, with a validation part, the kept weights' validation
    mAP against its chance level (validation part ranked against the training split)."""
    from hashguard.encoding import encode_dataset

    codes, labels = encode_dataset(model, fit_set, progress=False)
    if val_set is not None and val_map is not None:
        return code_health(codes, labels, map_value=val_map, query_labels=val_set.labels)
    return code_health(codes, labels)


#: the settings a resumed run may change: they do not change what is computed
RESUMABLE_CHANGES = ("device", "train.progress", "train.num_workers", "train.checkpoint_every")


def _flatten(payload: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_same_run(stored: Path, config: ExperimentConfig) -> None:
    """Refuse to resume the run whose configuration is ``stored`` with another ``config``, with one line naming
    the settings that differ (those of :data:`RESUMABLE_CHANGES` may differ)."""
    before = _flatten(load_experiment_config(stored).model_dump())
    after = _flatten(config.model_dump())
    differ = [key for key in sorted(set(before) | set(after))
              if before.get(key) != after.get(key) and key not in RESUMABLE_CHANGES]
    if differ:
        def value(flat: dict[str, Any], key: str) -> str:
            return repr(flat[key]) if key in flat else "(unset)"

        shown = ", ".join(f"{key} {value(before, key)} -> {value(after, key)}" for key in differ[:8])
        more = f" (and {len(differ) - 8} more)" if len(differ) > 8 else ""
        raise ConfigError(
            f"{stored}: this run was started with another configuration ({shown}{more}); "
            f"`hashguard train --out {stored.parent} --resume` continues it with its own configuration, "
            "or choose another output directory"
        )
