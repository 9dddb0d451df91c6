"""A third-party plug-in in ONE file: a hashing method, a perturbation optimizer, an attack, a defense and a
dataset source, each registered with one decorator, exactly as a built-in one is. Loaded by
``HASHGUARD_PLUGINS=one_file_plugin`` (tests/core/test_one_file_plugin.py); nothing else is edited."""

from __future__ import annotations

from typing import Annotated, Any

import torch

from hashguard.attacks.base import Objective, PreparedObjective
from hashguard.attacks.optimizers import BIM, OPTIMIZERS
from hashguard.attacks.registry import ATTACKS, Budget
from hashguard.data import open_dataset
from hashguard.data.sources import SOURCES
from hashguard.defenses.config import DEMO_COMMON
from hashguard.defenses.registry import DEFENSES
from hashguard.defenses.saat import SAAT
from hashguard.methods.base import HashingMethod
from hashguard.methods.registry import METHODS
from hashguard.registry import Range


@METHODS.register(reference="Plug-in et al., 2026")
class CentreSquares(HashingMethod):
    """Toy method: L = w * mean((u - c_y)^2) towards fixed random +-1 class centres."""

    name = "toy-centres"

    def __init__(
        self, bits: int, num_classes: int, num_train: int, seed: int = 0,
        weight: Annotated[float, Range(0, exclusive_low=True), "loss weight"] = 1.0,
    ) -> None:
        super().__init__(bits, num_classes, num_train, seed)
        self.weight = float(weight)
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("centres", torch.randint(0, 2, (num_classes, bits), generator=generator) * 2.0 - 1)

    def params(self) -> dict[str, Any]:
        return {"weight": self.weight}

    def forward(self, u: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        targets = torch.sign(labels.float() @ self.centres + 1e-6)
        return self.weight * ((u - targets) ** 2).mean()


@OPTIMIZERS.register("toybim", reference="Plug-in et al., 2026", sign_steps=True)
class ToyBIM(BIM):
    """BIM under another name: a new optimizer needs no edit anywhere else."""

    name = "toybim"


@ATTACKS.register(
    "toy-away",
    display="Toy away",
    reference="Plug-in et al., 2026",
    budget=Budget(eps=8 / 255, iterations=3, optimizer="toybim", step=2 / 255),
)
class AwayObjective(Objective):
    """Toy non-targeted attack: push the code away from the clean sign code."""

    name = "toy-away"
    targeted = False
    needs = ()

    def __init__(self, scale: Annotated[float, Range(0, exclusive_low=True), "loss scale"] = 1.0) -> None:
        self.scale = float(scale)

    def params(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def prepare(self, model, images, labels, target_labels, context, generator) -> PreparedObjective:  # noqa: ANN001
        with torch.no_grad():
            clean = torch.sign(model(images))
        return PreparedObjective(loss=lambda u, x_adv: self.scale * (u * clean).mean(), theory_codes=-clean)


@DEFENSES.register(
    "toy-at", display="Toy AT", presets={"paper": {}, "demo": dict(DEMO_COMMON, epochs=1, iterations=2)}
)
class ToyAT(SAAT):
    """SAAT under another name, with a preset of its own."""

    name = "toy-at"


@SOURCES.register("toy-digits", summary="a few embedded digits")
def toy_digits(image_size: int | None = None, seed: int = 0,
               items: Annotated[int, Range(20), "training digits"] = 60) -> Any:
    return open_dataset("demo-mnist", image_size=image_size, seed=seed, query_size=20, train_size=items)
