"""Attacks on deep hashing retrieval: perturbation optimizers x code-space objectives (SPEC §6)."""

from hashguard.attacks.base import (
    AttackContext,
    AttackOutput,
    HashAttack,
    Objective,
    PreparedObjective,
    build_context,
    encode_dataset,
)
from hashguard.attacks.mainstay_attack import MainstayObjective, TargetedMainstayObjective, mainstay_loss
from hashguard.attacks.optimizers import (
    OPTIMIZERS,
    PerturbationOptimizer,
    build_optimizer,
    frozen_eval,
    get_alpha,
)

__all__ = [
    "AttackContext",
    "AttackOutput",
    "HashAttack",
    "MainstayObjective",
    "Objective",
    "OPTIMIZERS",
    "PerturbationOptimizer",
    "PreparedObjective",
    "TargetedMainstayObjective",
    "build_context",
    "build_optimizer",
    "encode_dataset",
    "frozen_eval",
    "get_alpha",
    "mainstay_loss",
]
