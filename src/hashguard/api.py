"""The small public Python surface of hashguard, re-exported lazily as ``hashguard.<name>``.

    import hashguard as hg

    splits = hg.open_dataset("demo-mnist")                   # train / query / database splits
    model = hg.create_model(backbone="small_cnn", bits=32, data=splits)
    model = hg.load_model("runs/dpsh")                       # a checkpoint directory
    metrics = hg.evaluate(model, splits)                     # mAP@k, tie-aware mAP, P@N, PR curve
    images, labels = splits.query[0:8].tensors()
    adv = hg.attack(model, images, labels, name="hag", eps=8 / 255)

Each function is a thin, documented door into the library (``hashguard.models``, ``hashguard.data``,
``hashguard.attacks``, ``hashguard.retrieval``); the full API stays there.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hashguard.attacks.base import HashAttack, build_context
from hashguard.data.base import DatasetSplits, HashingDataset
from hashguard.devices import resolve_device
from hashguard.encoding import encode_dataset
from hashguard.errors import ConfigError
from hashguard.models.hash_model import IMAGENET_MEAN, IMAGENET_STD, HashModel, ModelSpec
from hashguard.protocol import MAP_TOPK


def create_model(
    backbone: str = "small_cnn",
    bits: int = 32,
    *,
    data: DatasetSplits | HashingDataset | None = None,
    in_channels: int | None = None,
    image_size: int | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    hash_norm: str = "none",
    pretrained: str | None = None,
    device: str = "cpu",
) -> HashModel:
    """A new (untrained) hash model: ``backbone`` (``hashguard list backbones``) with a ``bits``-bit head.

    ``data`` (splits or one split) sets the input channels, image size and, where the dataset declares them,
    the normalisation statistics; otherwise RGB 224-px input with the ImageNet statistics (their channel means
    for grey input), or the values passed. ``pretrained`` names a local weight file for the backbone.
    """
    from hashguard.models.backbones import wants_rgb_imagenet

    shape = data.image_shape if data is not None else None
    channels = in_channels if in_channels is not None else (shape[0] if shape else 3)
    size = image_size if image_size is not None else (shape[1] if shape else 224)
    data_mean = getattr(data, "mean", None)
    data_std = getattr(data, "std", None)
    if mean is None or std is None:
        if not wants_rgb_imagenet(backbone) and data_mean is not None and data_std is not None:
            mean, std = list(data_mean), list(data_std)
        elif not wants_rgb_imagenet(backbone) and channels == 1:
            mean, std = [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
        else:
            mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    spec = ModelSpec(
        backbone=backbone,
        bits=int(bits),
        in_channels=int(channels),
        image_size=int(size),
        mean=list(mean),
        std=list(std),
        hash_norm=hash_norm,
        pretrained=pretrained,
    )
    spec.validate()
    return HashModel(spec).to(resolve_device(device))


def load_model(path: str | os.PathLike[str], device: str = "cpu") -> HashModel:
    """The trained model of a checkpoint directory (``model.safetensors`` + ``model.json``), in eval mode.

    ``hashguard.models.load_model`` also returns the checkpoint's description (method, dataset, provenance).
    """
    from hashguard.models.checkpoint import load_model as load_checkpoint

    model, _ = load_checkpoint(path, device=resolve_device(device))
    return model


def encode(model: HashModel, dataset: Dataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(codes int8 (N, bits) in {-1, +1}, labels float32 (N, C))`` of every item of ``dataset``, in order."""
    _check_batch_size(batch_size)
    return encode_dataset(model, dataset, batch_size=batch_size)


def evaluate(
    model: HashModel,
    query: DatasetSplits | Dataset,
    database: Dataset | None = None,
    *,
    topk: int | None = MAP_TOPK,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Retrieval quality of ``model``: encodes ``query`` and ``database`` (or the query and database splits of
    ``query`` when it is a :class:`DatasetSplits`) and returns every metric of
    :func:`hashguard.retrieval.evaluate_retrieval`: ``map`` (mAP@``topk``, ties broken by database index),
    ``map_tie_aware``, ``map_all``, ``precision_at_n``, ``pr_curve``, ... ``topk=None`` ranks the whole database;
    a cut-off beyond the database size is capped at it."""
    from hashguard.pipeline.evaluate import evaluate_codes

    if isinstance(query, DatasetSplits):
        if database is not None:
            raise ConfigError("pass either splits, or a query and a database dataset")
        query, database = query.query, query.database
    if database is None:
        raise ConfigError("evaluate needs a database: pass splits, or a query and a database dataset")
    if topk is not None and (isinstance(topk, bool) or int(topk) < 1):
        raise ConfigError(f"topk must be a positive integer or None (whole ranking), not {topk!r}")
    query_codes, query_labels = encode(model, query, batch_size)
    db_codes, db_labels = encode(model, database, batch_size)
    return evaluate_codes(query_codes, db_codes, query_labels, db_labels, topk)


def build_attack(
    name: str,
    model: HashModel,
    *,
    train: Dataset | None = None,
    database: Dataset | None = None,
    batch_size: int = 256,
    **params: Any,
) -> HashAttack:
    """The registered attack ``name`` (``hashguard list attacks -v``) on ``model``, with the paper protocol's
    defaults overridden by ``params`` (eps, iterations, step, optimizer, seed, the attack's own ones).

    Attacks that read the attacked model's codes of the training split and/or the database (e.g. the mainstay
    attack of Wang et al., CVPR 2021, or THA) get them from ``train`` / ``database``, encoded here; the built
    attack is called as ``attack(images, labels[, target_labels])`` and returns adversarial images.
    """
    from hashguard.attacks import build_attack as build

    built = build(name, model, **params)
    needs = set(built.objective.needs)
    train_images = bool(getattr(built.objective, "needs_train_images", False))
    if train_images:
        needs.add("train")
    missing = [part for part, given in (("train", train), ("database", database)) if part in needs and given is None]
    if missing:
        raise ConfigError(f"attack {built.name} needs the {' and '.join(missing)} split: pass {missing[0]}=...")
    if needs:
        built.set_context(
            build_context(
                model,
                train if "train" in needs else None,
                database if "database" in needs else None,
                batch_size=batch_size,
                train_images=train_images,
            )
        )
    return built


def attack(
    model: HashModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    name: str = "hag",
    *,
    target_labels: torch.Tensor | None = None,
    train: Dataset | None = None,
    database: Dataset | None = None,
    **params: Any,
) -> torch.Tensor:
    """Attack one batch in one call: adversarial ``images`` (same shape, in [0, 1], within the attack's L-inf
    ``eps``) from :func:`build_attack` ``(name, model, train=..., database=..., **params)``. Targeted attacks
    need ``target_labels`` (one multi-hot row per image). ``name`` defaults to HAG (Yang et al., IEEE TCYB
    2018), which needs no split."""
    built = build_attack(name, model, train=train, database=database, **params)
    device = model.device
    targets = None if target_labels is None else target_labels.to(device)
    return built(images.to(device), labels.to(device), targets)


def list_plugins(kind: str | None = None, pattern: str | None = None) -> dict[str, list[str]]:
    """The registered names, ``{kind: [name, ...]}`` for every kind (sources, backbones, code heads, methods,
    optimizers, attacks, defenses, detectors; third-party plug-ins included), or for one ``kind``. ``pattern``
    (a glob such as ``"*pgd*"`` or a substring) keeps the matching names."""
    chosen = plugin_registries(kind)
    return {key: [name for name in entries if matches(name, pattern)] for key, entries in chosen.items()}


def plugin_registries(kind: str | None = None) -> dict[str, Any]:
    """Kind -> :class:`~hashguard.registry.Registry`, for every kind or the one ``kind`` names (plural or
    singular; ``datasets`` is an alias of ``sources``); an unknown kind is one :class:`ConfigError` line."""
    from hashguard.plugins import KINDS, registries

    everything = registries()
    if kind is None:
        return everything
    key = kind_name(kind)
    if key not in everything:
        raise ConfigError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)} (datasets = sources)")
    return {key: everything[key]}


def kind_name(kind: str) -> str:
    """The plural kind of ``kind`` (``method`` -> ``methods``; ``datasets`` -> ``sources``)."""
    key = kind.lower().rstrip("s") + "s"
    return {"datasets": "sources"}.get(key, key)


def matches(name: str, pattern: str | None) -> bool:
    """``pattern`` is None, a glob (``*``, ``?``, ``[``) matching ``name``, or a substring of it (any case)."""
    if pattern is None:
        return True
    name, pattern = name.lower(), pattern.lower()
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, not {batch_size!r}")
