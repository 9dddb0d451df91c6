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

from pydantic import ConfigDict, Field, field_validator, model_validator

from hashguard.config import StrictModel, parse_fraction
from hashguard.defenses.registry import DEFENSES
from hashguard.errors import ConfigError

INNER_BN_MODES = ("frozen", "batch", "update")

#: What every defense's CPU demo preset shares, for the 28x28 demo digits (small CNN): a larger batch, the eps
#: / step the demo uses (digits need eps 16/255-32/255 before an attack hurts), and the inner attack in eval
#: mode. Each defense declares its own ``demo`` preset at registration (usually this plus fewer epochs).
DEMO_COMMON: dict[str, Any] = dict(
    batch_size=64, eps=32 / 255, step=8 / 255, iterations=7, inner_bn="frozen", inner_dropout=False
)


class DefenseConfig(StrictModel):
    """One adversarial-training run. Unset fields take the defense's ``paper`` preset (its protocol recipe),
    then the chosen preset's.

    The fields are the settings every defense shares; a defense's own settings (declared by its
    constructor, e.g. ATRDH's ``prototype_hidden``) are accepted beside them, validated against that
    declaration and available as attributes (``config.prototype_hidden``) and from :meth:`defense_params`.
    """

    model_config = ConfigDict(extra="allow")

    defense: str = "saat"
    preset: str = "paper"
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
    #: random crop (zero padding of size / 14 on each side, then a crop back to the same size: 16 px at 224,
    #: 2 px at 28) and horizontal flip of every training batch, before the inner attack (CgAT's protocol)
    augment: bool = False
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
        name = DEFENSES.key(str(values.get("defense", "saat")))
        entry = DEFENSES.entry(name)
        preset = str(values.get("preset", "paper"))
        if preset not in entry.presets:
            raise ConfigError(f"defense {name} has no preset {preset!r}; its presets: {', '.join(entry.presets)}")
        base = dict(entry.presets.get("paper", {}))
        if preset != "paper":
            base.update(entry.presets[preset])
        return {**base, **values, "defense": name, "preset": preset}

    @model_validator(mode="after")
    def _defense_settings(self) -> DefenseConfig:
        """Validate the defense's own settings against its constructor and fill their defaults."""
        if self.__pydantic_extra__ is None:
            self.__pydantic_extra__ = {}
        extra = self.__pydantic_extra__
        entry = DEFENSES.entry(self.defense)
        own = [p.name for p in entry.parameters()]
        unknown = sorted(set(extra) - set(own))
        if unknown:
            raise ConfigError(
                f"defense {self.defense}: unknown setting(s) {', '.join(unknown)}; its own settings: "
                f"{', '.join(own) or 'none'}; shared settings: {', '.join(SHARED_SETTINGS)}"
            )
        resolved = entry.resolve(extra)
        extra.clear()
        extra.update(resolved)
        return self

    def defense_params(self) -> dict[str, Any]:
        """The defense's own settings (the constructor keywords after ``config``), resolved."""
        return dict(self.__pydantic_extra__ or {})

    @field_validator("eps", "step", "lr", mode="before")
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
        """The fields that change the result (progress bar and checkpoint cadence do not). ``mainstay_from`` at its
        default (``network``, the behaviour before the setting existed) is left out, so runs and study stages
        identified before it was added still resume and stay cached."""
        identity = self.model_dump(exclude={"progress", "checkpoint_every", "num_workers"})
        if identity.get("mainstay_from") == "network":
            identity.pop("mainstay_from")
        return identity


#: the settings every defense shares (the fields of DefenseConfig besides the defense and preset names)
SHARED_SETTINGS = tuple(name for name in DefenseConfig.model_fields if name not in ("defense", "preset"))


def milestone_steps(total_iterations: int, fractions: list[float]) -> list[int]:
    """Integer MultiStepLR milestones: ``int(f * total)`` for each fraction, at least 1 (float milestones of the
    reference code were skipped unless integral)."""
    return [max(1, int(Fraction(f).limit_denominator(10**6) * total_iterations)) for f in fractions]


def lr_factor(step: int, milestones: list[int], gamma: float) -> float:
    """gamma ** (number of milestones <= step): the factor MultiStepLR applies at 0-based iteration ``step``."""
    return gamma ** sum(1 for m in milestones if step >= m)
