"""Configuration of an adversarial-training run: per-defense defaults (SPEC §7), presets, the LR schedule.

``DefenseConfig(defense="saat")`` holds SAAT's reference recipe (SPEC §7.1); ``preset: demo`` is the CPU demo
recipe; any field can be overridden (``--set epochs=5``). ``eps`` and ``step`` also accept fractions such as
``8/255``.

The learning rate follows MultiStepLR stepped once per iteration: it is multiplied by ``lr_gamma`` at each
milestone step ``int(fraction * total_iterations)`` (SPEC §7.1 step 2). The milestones are computed as
integers, so every epoch count decays (SPEC §10 item 26: the reference code's float milestones were silently
skipped unless integral).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hashguard.config import StrictModel, parse_fraction

DEFENSE_NAMES = ("saat", "atrdh", "cgat")
INNER_BN_MODES = ("frozen", "batch", "update")

#: The reference recipes (SPEC §7.1, §7.2 with the original weight 1, §7.4).
DEFAULTS: dict[str, dict[str, Any]] = {
    "saat": dict(
        epochs=20, batch_size=32, optimizer="sgd", lr=0.05, momentum=0.0, weight_decay=1e-5,
        adv_weight=1.0, quant_weight=1e-4,
    ),
    "atrdh": dict(
        epochs=100, batch_size=32, optimizer="adam", lr=1e-4, betas=(0.5, 0.999), momentum=0.0,
        weight_decay=0.0, adv_weight=1.0, quant_weight=0.0,
    ),
    "cgat": dict(
        epochs=30, batch_size=32, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4,
        adv_weight=1.0, quant_weight=0.0,
    ),
}

#: CPU demo recipes for the 28x28 demo digits (small CNN): fewer epochs, a larger batch, and the
#: eps / step the demo evidence uses (digits need eps 16/255-32/255 before an attack hurts; FIELD_NOTES).
_DEMO_COMMON: dict[str, Any] = dict(batch_size=64, eps=32 / 255, step=8 / 255, iterations=7)
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {name: {} for name in DEFENSE_NAMES},
    "demo": {
        "saat": dict(_DEMO_COMMON, epochs=4),
        "atrdh": dict(_DEMO_COMMON, epochs=4, lr=1e-3, prototype_hidden=512, prototype_lr=1e-3),
        "cgat": dict(_DEMO_COMMON, epochs=4),
    },
}


class DefenseConfig(StrictModel):
    """One adversarial-training run. Unset fields take the defense's reference value, then the preset's."""

    defense: Literal["saat", "atrdh", "cgat"] = "saat"
    preset: Literal["paper", "demo"] = "paper"
    seed: int = 0
    # outer optimisation
    epochs: int = Field(default=20, gt=0)
    batch_size: int = Field(default=32, gt=0)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(default=0.05, gt=0)
    momentum: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(default=1e-5, ge=0)
    milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75])
    lr_gamma: float = Field(default=0.1, gt=0, le=1)
    # inner attack (PGD, random start, sign steps, alpha = 1, SPEC §7.1)
    eps: float = Field(default=8 / 255, ge=0, le=1)
    step: float = Field(default=2 / 255, gt=0, le=1)
    iterations: int = Field(default=7, ge=0)
    random_start: bool = True
    inner_bn: Literal["frozen", "batch", "update"] = "frozen"
    inner_dropout: bool = False
    # outer loss weights: lambda (adversarial term) and mu (quantisation of the adversarial codes)
    adv_weight: float = Field(default=1.0, ge=0)
    quant_weight: float = Field(default=1e-4, ge=0)
    refresh_bank: bool = True
    # ATRDH only: the online PrototypeNet (SPEC §6.6)
    prototype_hidden: int = Field(default=4096, gt=0)
    prototype_lr: float = Field(default=1e-4, gt=0)
    prototype_gamma: float = Field(default=1.0, gt=0)
    # data and bookkeeping
    train_items: int | None = Field(default=None, gt=0)
    checkpoint_every: int = Field(default=1, gt=0)
    num_workers: int = Field(default=0, ge=0)
    progress: bool = True

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        name = str(values.get("defense", "saat")).lower()
        preset = values.get("preset", "paper")
        base = dict(DEFAULTS.get(name, {}))
        base.update(PRESETS.get(preset, {}).get(name, {}))
        merged = {**base, **values}
        if "defense" in merged:
            merged["defense"] = name
        return merged

    @field_validator("eps", "step", "lr", "prototype_lr", mode="before")
    @classmethod
    def _fractions(cls, value: Any) -> Any:
        return parse_fraction(value)

    @field_validator("milestones")
    @classmethod
    def _milestones_in_range(cls, value: list[float]) -> list[float]:
        if any(not (0 < f <= 1) or math.isnan(f) for f in value):
            raise ValueError("milestones are fractions of the total iterations in (0, 1]")
        return sorted(value)

    def identity(self) -> dict[str, Any]:
        """The fields that change the result (progress bar and checkpoint cadence do not)."""
        return self.model_dump(exclude={"progress", "checkpoint_every", "num_workers"})


def milestone_steps(total_iterations: int, fractions: list[float]) -> list[int]:
    """Integer MultiStepLR milestones: ``int(f * total)`` for each fraction, at least 1 (SPEC §10 item 26)."""
    return [max(1, int(Fraction(f).limit_denominator(10**6) * total_iterations)) for f in fractions]


def lr_factor(step: int, milestones: list[int], gamma: float) -> float:
    """gamma ** (number of milestones <= step): the factor MultiStepLR applies at 0-based iteration ``step``."""
    return gamma ** sum(1 for m in milestones if step >= m)
