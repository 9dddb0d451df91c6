"""Configuration of an adversarial-training run: per-defense defaults (the paper protocol), presets, the LR
schedule.

``DefenseConfig(defense="saat")`` holds SAAT's protocol recipe (:data:`hashguard.protocol.DEFENSES`, read
from there; ``docs/protocol.md``); ``preset: demo`` is the CPU demo recipe, an explicit departure (fewer
epochs, a larger batch, a larger radius, and the inner attack in eval mode); any field can be overridden
(``--set epochs=5``). ``eps`` and ``step`` also accept fractions such as ``8/255``.

The learning rate follows MultiStepLR stepped once per iteration: it is multiplied by ``lr_gamma`` at each
milestone step ``int(fraction * total_iterations)`` (Yuan et al., TIFS 2023: milestones at 50 % and 75 % of
the iterations). The milestones are computed as integers, so every epoch count decays (the reference code's
float milestones were silently skipped unless integral).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hashguard.config import StrictModel, parse_fraction
from hashguard.protocol import DEFENSES as PROTOCOL_DEFENSES

DEFENSE_NAMES = ("saat", "atrdh", "cgat")
INNER_BN_MODES = ("frozen", "batch", "update")

#: The paper protocol's recipes (SAAT: Yuan et al., TIFS 2023; ATRDH as ported for the paper's Table II,
#: adversarial weight 2 and U_ben from zeros; CgAT: Wang et al., WWW 2023, with its crop-and-flip augmentation).
DEFAULTS: dict[str, dict[str, Any]] = {name: dict(PROTOCOL_DEFENSES[name]) for name in DEFENSE_NAMES}

#: CPU demo recipes for the 28x28 demo digits (small CNN): fewer epochs, a larger batch, the eps / step the
#: demo uses (digits need eps 16/255-32/255 before an attack hurts), and the inner attack in eval mode.
_DEMO_COMMON: dict[str, Any] = dict(
    batch_size=64, eps=32 / 255, step=8 / 255, iterations=7, inner_bn="frozen", inner_dropout=False
)
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {name: {} for name in DEFENSE_NAMES},
    "demo": {
        "saat": dict(_DEMO_COMMON, epochs=4),
        "atrdh": dict(_DEMO_COMMON, epochs=4, lr=1e-3, prototype_hidden=512, prototype_lr=1e-3),
        # no crop-and-flip: a mirrored handwritten digit is often another digit (measured on 300 digits, the
        # augmentation cost 0.06-0.17 clean mAP and halved CgAT's robust gain; tests/defenses)
        "cgat": dict(_DEMO_COMMON, epochs=4, augment=False),
    },
}


class DefenseConfig(StrictModel):
    """One adversarial-training run. Unset fields take the defense's protocol value, then the preset's."""

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
    # inner attack (PGD, random start, sign steps, alpha = 1); protocol: train mode (``update`` + dropout on)
    eps: float = Field(default=8 / 255, ge=0, le=1)
    step: float = Field(default=2 / 255, gt=0, le=1)
    iterations: int = Field(default=7, ge=0)
    random_start: bool = True
    inner_bn: Literal["frozen", "batch", "update"] = "update"
    inner_dropout: bool = True
    # outer loss weights: lambda (adversarial term) and mu (quantisation of the adversarial codes)
    adv_weight: float = Field(default=1.0, ge=0)
    quant_weight: float = Field(default=1e-4, ge=0)
    refresh_bank: bool = True
    #: random crop (zero padding of size / 14 on each side, then a crop back to the same size: 16 px at 224,
    #: 2 px at 28) and horizontal flip of every training batch, before the inner attack (CgAT's protocol)
    augment: bool = False
    # ATRDH only: the continuous benign memory U_ben starts from zeros (its protocol value) or the sign codes
    memory_init: Literal["zeros", "sign"] = "sign"
    # ATRDH only: the online PrototypeNet (Wang et al., SIGIR 2021)
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
    """Integer MultiStepLR milestones: ``int(f * total)`` for each fraction, at least 1 (float milestones of the
    reference code were skipped unless integral)."""
    return [max(1, int(Fraction(f).limit_denominator(10**6) * total_iterations)) for f in fractions]


def lr_factor(step: int, milestones: list[int], gamma: float) -> float:
    """gamma ** (number of milestones <= step): the factor MultiStepLR applies at 0-based iteration ``step``."""
    return gamma ** sum(1 for m in milestones if step >= m)
