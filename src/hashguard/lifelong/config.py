"""Settings of a lifelong hashing session (docs/lifelong.md): DIHN's recipe (Wu et al., CVPR 2019) as the
``paper`` preset, a CPU-sized ``demo`` preset, and the optional SAAT term (Yuan et al., IEEE TIFS 2023)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hashguard.config import StrictModel, parse_fraction

#: DIHN's published recipe: gamma 200, mu 50, m = 2,000 sampled items, 50 outer iterations of 3 passes, Adam at
#: 1e-4 decayed by 0.91 per outer iteration
PAPER: dict[str, Any] = dict(
    epochs=50, inner_epochs=3, num_samples=2000, batch_size=64, lr=1e-4, lr_decay=0.91, gamma=200.0, mu=50.0,
)
#: the CPU demo on the 28 x 28 demo digits (small CNN): fewer, larger steps; the SAAT inner attack at the demo
#: radius of the project's defenses (digits need eps 16/255-32/255 before an attack hurts)
DEMO: dict[str, Any] = dict(
    epochs=6, inner_epochs=3, num_samples=300, batch_size=32, lr=1e-3, lr_decay=1.0, eps=32 / 255, step=8 / 255,
    iterations=5,
)
PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER, "demo": DEMO}


class LifelongConfig(StrictModel):
    """One lifelong session (or the base ADSH training of session 0). Unset fields take the preset's values."""

    preset: Literal["paper", "demo"] = "paper"
    seed: int = 0
    # outer iterations (epochs of the shared loop), each: sample Omega, T_in passes of Adam, one DCC sweep of B_new
    epochs: int = Field(default=50, gt=0)
    inner_epochs: int = Field(default=3, gt=0)
    num_samples: int = Field(default=2000, gt=0)
    #: where Omega is drawn from: the whole database, old items (images re-read from the data source) and new
    #: ones (DIHN, and DLCH's code: the sampled retrieval points), or the new items only
    sample_from: Literal["all", "new"] = "all"
    batch_size: int = Field(default=64, gt=1)
    lr: float = Field(default=1e-4, gt=0)
    lr_decay: float = Field(default=0.91, gt=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    gamma: float = Field(default=200.0, ge=0)
    mu: float = Field(default=50.0, ge=0)
    similarity: Literal["rebalanced", "plain"] = "rebalanced"
    balance: Literal["square", "linear"] = "square"
    #: at most this many new items (the first ones of the training split in order); None: all of them
    items: int | None = Field(default=None, gt=0)
    # the optional SAAT term: inner PGD away from the mainstay code of [B_old; B_new], outer
    # saat_weight * (-<u_adv, m>) + saat_quant * quantisation(u_adv)
    saat: bool = False
    saat_weight: float = Field(default=1.0, ge=0)
    saat_quant: float = Field(default=1e-4, ge=0)
    eps: float = Field(default=8 / 255, ge=0, le=1)
    step: float = Field(default=2 / 255, gt=0, le=1)
    iterations: int = Field(default=7, ge=0)
    # base training of session 0 (``hashguard lifelong`` without --from): the ADSH model's code length and net
    bits: int = Field(default=16, gt=0, le=4096)
    backbone: str = "small_cnn"
    hash_norm: Literal["none", "batchnorm"] = "batchnorm"
    checkpoint_every: int = Field(default=1, gt=0)
    progress: bool = False

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        preset = values.get("preset", "paper")
        return {**PRESETS.get(preset, {}), **values}

    @field_validator("eps", "step", "lr", mode="before")
    @classmethod
    def _fractions(cls, value: Any) -> Any:
        return parse_fraction(value)

    def lr_at(self, epoch: int) -> float:
        """lr * lr_decay^epoch (DIHN decays once per outer iteration)."""
        return self.lr * self.lr_decay**epoch

    def identity(self) -> dict[str, Any]:
        """The fields that change the result (a resumed session must match them)."""
        return self.model_dump(exclude={"progress", "checkpoint_every"})
