"""``hashguard train`` as a function: dataset -> model + method -> trainer -> checkpoint directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hashguard.config import DataConfig, ExperimentConfig
from hashguard.data.base import DatasetSplits, carve_validation
from hashguard.devices import resolve_device
from hashguard.io_utils import atomic_write_text
from hashguard.methods import build_method, method_class
from hashguard.models.backbones import wants_rgb_imagenet
from hashguard.models.hash_model import IMAGENET_MEAN, IMAGENET_STD, HashModel, ModelSpec
from hashguard.training import TrainResult, train_model


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
    fields.update(method_class(config.method.name).model_overrides())
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

    from hashguard.seeding import seed_everything

    seed_everything(config.seed)
    splits = splits or open_splits(config.data)
    spec = model_spec_for(config, splits)
    device = resolve_device(config.device)
    model = HashModel(spec).to(device)
    fit_set, val_set = carve_validation(splits.train, config.train.val_fraction, config.seed)
    method = build_method(
        config.method.name,
        bits=spec.bits,
        num_classes=splits.num_classes,
        num_train=len(fit_set),
        seed=config.seed,
        **config.method.params,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config.model_dump(), sort_keys=False))
    return train_model(
        model,
        method,
        fit_set,
        config.train,
        out,
        seed=config.seed,
        val_set=val_set,
        resume=resume,
        describe={"dataset": dataset_description(config, splits), "data": config.data.model_dump()},
        stop_after_epoch=stop_after_epoch,
        log=log,
    )
