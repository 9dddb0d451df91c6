"""Typed configuration: YAML files plus ``--set key.path=value`` overrides, validated by pydantic.

Every validation problem becomes one :class:`~hashguard.errors.ConfigError` line naming the file, the field
and the problem.
"""

from __future__ import annotations

import copy
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hashguard.errors import ConfigError
from hashguard.protocol import MAP_TOPK
from hashguard.protocol import TRAINING as PROTOCOL_TRAINING


def parse_fraction(value: Any) -> Any:
    """``"8/255"`` -> 0.0313...; other values pass through for pydantic to check."""
    if isinstance(value, str):
        try:
            return float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            return value
    return value


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class DataConfig(StrictModel):
    source: str = "demo-mnist"
    root: str | None = None
    image_size: int | None = Field(default=None, gt=0)
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(StrictModel):
    backbone: str = "small_cnn"
    bits: int = Field(default=32, gt=0, le=4096)
    pretrained: str | None = None
    #: ``batchnorm``: BatchNorm1d on the code logits before tanh (the from-scratch recipe of docs/methods.md);
    #: a method that needs it (OrthoHash) sets it whatever this says; ``bn-sign``: BatchNorm1d, then sign with a
    #: straight-through gradient (HashVFL, Qiu et al., IEEE TIFS 2024; docs/detection.md); any registered head
    hash_norm: str = "none"  # a registered code head (hashguard list heads), checked when the model is built


class MethodConfig(StrictModel):
    name: str = "dpsh"
    params: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(StrictModel):
    """Optimisation recipe. Defaults are the paper protocol's (:data:`hashguard.protocol.TRAINING`: SGD 0.01,
    momentum 0.9, weight decay 5e-4, batch 32, 100 epochs, lr / 10 every floor(epochs / 3) epochs, the whole
    training split, the last epoch kept); ``recipe: fast`` is the CPU demo (Adam, a validation part carved
    from the training split, the best epoch kept)."""

    recipe: Literal["paper", "fast", "custom"] = "paper"
    epochs: int = Field(default=100, gt=0)
    batch_size: int = Field(default=32, gt=0)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(default=0.01, gt=0)
    momentum: float = Field(default=0.9, ge=0)
    weight_decay: float = Field(default=5e-4, ge=0)
    lr_decay_every: int | None = Field(default=None, gt=0)
    lr_gamma: float = Field(default=0.1, gt=0, le=1)
    val_fraction: float = Field(default=0.0, ge=0, lt=1)
    eval_every: int = Field(default=1, gt=0)
    #: cut-off of the validation mAP that selects the best epoch (only with ``val_fraction`` > 0)
    eval_topk: int | None = Field(default=MAP_TOPK, gt=0)
    checkpoint_every: int = Field(default=1, gt=0)
    select: Literal["best", "last"] = "last"
    num_workers: int = Field(default=0, ge=0)
    progress: bool = True

    @model_validator(mode="before")
    @classmethod
    def _apply_recipe(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        recipe = values.get("recipe", "paper")
        base = RECIPES.get(recipe, {})
        return {**base, **values}

    def decay_step(self) -> int | None:
        """Epochs between learning-rate decays (paper: floor(epochs / 3))."""
        if self.lr_decay_every is not None:
            return self.lr_decay_every
        if self.recipe == "paper":
            return max(self.epochs // 3, 1)
        return None

    def lr_at_epoch(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``: decayed after each block of ``decay_step`` finished epochs.

        Paper protocol: after epoch e finishes, lr <- lr0 * gamma^floor(e / step), so epoch e runs at
        lr0 * gamma^floor((e - 1) / step) (epoch 0 at lr0). With 100 epochs: 0-33 at 1e-2, 34-66 at 1e-3,
        67-99 at 1e-4.
        """
        step = self.decay_step()
        if step is None or epoch == 0:
            return self.lr
        return self.lr * self.lr_gamma ** ((epoch - 1) // step)


RECIPES: dict[str, dict[str, Any]] = {
    "paper": {key: PROTOCOL_TRAINING[key] for key in (
        "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "val_fraction", "select"
    )},
    "fast": dict(epochs=8, batch_size=64, optimizer="adam", lr=1e-3, momentum=0.0, weight_decay=0.0,
                 val_fraction=0.1, select="best"),
    "custom": {},
}


class LabelConfig(StrictModel):
    """Scarce labels (docs/labeling.md): with a ``budget``, only that many training items keep their labels,
    chosen by ``selection``, and the rest of the training split is labelled by propagation over a kNN graph of
    ``features`` before training. No budget (the default): every label is used."""

    #: a count (100), a fraction of the training split (0.05) or a percentage ("5%"); None: every label
    budget: int | float | str | None = None
    selection: Literal["representative", "random"] = "representative"
    #: ``pixels`` or a checkpoint directory whose pre-activations serve as features
    features: str = "pixels"
    neighbours: int = Field(default=10, gt=0)
    alpha: float = Field(default=0.9, gt=0, lt=1)
    rounds: int = Field(default=1, gt=0)

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> Any:
        if value is None:
            return None
        from hashguard.labeling.budget import check_budget

        try:
            return check_budget(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class ExperimentConfig(StrictModel):
    """A training experiment: data, model, hashing method, recipe, seed, device (and scarce ``labels``)."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    seed: int = 0
    device: str = "auto"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return path, value


def apply_overrides(payload: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``key.path=value`` in a nested dict (creating levels as needed)."""
    for text in overrides:
        path, value = parse_override(text)
        node = payload
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return payload


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or malformed YAML raises :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        payload = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: malformed YAML ({getattr(exc, 'problem', exc)})") from None
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return payload


def validation_message(exc: ValidationError, source: str) -> str:
    """One line for the first pydantic error: ``source: field.path: problem``."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: {where}: {first['msg']}{more}"


def build_config(model: type[StrictModel], payload: dict[str, Any], source: str) -> Any:
    """Validate ``payload`` as ``model``; errors become one :class:`ConfigError` line."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source)) from None


#: ``hashguard train`` without ``--config``: the from-scratch CPU recipe of docs/methods.md on the embedded
#: single-label demo digits (CSQ on the small CNN, 32 bits, BatchNorm on the code logits, Adam 5e-4, the fast
#: recipe for 4 epochs). ``configs/train-demo.yaml`` holds the same settings as a file.
DEMO_TRAINING: dict[str, Any] = {
    "data": {"source": "demo-mnist", "seed": 0},
    "model": {"backbone": "small_cnn", "bits": 32, "hash_norm": "batchnorm"},
    "method": {"name": "csq"},
    "train": {"recipe": "fast", "epochs": 4, "lr": 0.0005},
    "seed": 0,
    "device": "auto",
}

#: top-level keys only a study configuration (``hashguard study``) has
STUDY_KEYS = ("name", "attacks", "defenses", "evaluation", "report", "checkpoint", "data_dir", "weights_dir")
#: the top-level keys of a training configuration (``hashguard train --config``)
TRAINING_KEYS = tuple(ExperimentConfig.model_fields)


def check_config_kind(payload: dict[str, Any], source: str, expected: Literal["training", "study"]) -> None:
    """Refuse a configuration file of the other kind with one line naming both kinds and their commands.

    A file is a study configuration when it has any of :data:`STUDY_KEYS` at the top level (``attacks``,
    ``defenses``, ``name``, ...), and a training configuration when its top-level keys are all among
    :data:`TRAINING_KEYS` (``data``, ``model``, ``method``, ``train``, ``seed``, ``device``).
    """
    study_keys = [key for key in STUDY_KEYS if key in payload]
    if expected == "training" and study_keys:
        raise ConfigError(
            f"{source} is a study configuration (it has {', '.join(study_keys)}): run it with "
            f"`hashguard study {source}`; `hashguard train --config` takes a training configuration "
            f"(keys {', '.join(TRAINING_KEYS)}), e.g. configs/train-demo.yaml"
        )
    if expected == "study" and payload and not study_keys and set(payload) <= set(TRAINING_KEYS):
        raise ConfigError(
            f"{source} is a training configuration (only {', '.join(k for k in TRAINING_KEYS if k in payload)}): "
            f"train it with `hashguard train --config {source} --out DIR`; `hashguard study` takes a study "
            f"configuration (with {', '.join(STUDY_KEYS[:3])}, ...), e.g. configs/demo.yaml"
        )


def load_experiment_config(
    path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None, *, default: bool = False
) -> ExperimentConfig:
    """Read the training configuration ``path``, apply overrides, validate. Without ``path`` the start is
    :data:`DEMO_TRAINING` when ``default`` is set (``hashguard train``) and the bare field defaults otherwise.
    A study configuration is refused with one line (:func:`check_config_kind`)."""
    if path is not None:
        payload = read_yaml(path)
        check_config_kind(payload, str(path), "training")
    else:
        payload = copy.deepcopy(DEMO_TRAINING) if default else {}
    payload = apply_overrides(payload, list(overrides or []))
    return build_config(ExperimentConfig, payload, str(path) if path is not None else "configuration")
