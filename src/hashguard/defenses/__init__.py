"""Adversarial-training defenses on one trainer: SAAT (the paper's), ATRDH and CgAT (docs/defenses.md).

``defend(checkpoint_dir, "saat", out_dir)`` hardens a trained checkpoint; ``adversarial_train`` is the loop
(inner attack with frozen parameters, outer loss, the method's hashing loss, resumable checkpoints). See
``docs/defenses.md``.
"""

# isort: off
# the defenses register themselves in import order, which is the order they are listed and reported in
from hashguard.defenses.saat import SAAT, CodeBankDefense
from hashguard.defenses.atrdh import ATRDH
from hashguard.defenses.cgat import CgAT

# isort: on
from hashguard.defenses.api import build_defense, build_defense_config, defend, defense_name
from hashguard.defenses.base import Batch, Defense, OuterLoss
from hashguard.defenses.config import DEMO_COMMON, DefenseConfig, lr_factor, milestone_steps
from hashguard.defenses.registry import DEFENSES
from hashguard.defenses.trainer import DefenseResult, adversarial_train, inner_modes, run_inner_attack

__all__ = [
    "ATRDH",
    "Batch",
    "CgAT",
    "CodeBankDefense",
    "DEFENSES",
    "DEMO_COMMON",
    "Defense",
    "DefenseConfig",
    "DefenseResult",
    "OuterLoss",
    "SAAT",
    "adversarial_train",
    "build_defense",
    "build_defense_config",
    "defend",
    "defense_name",
    "inner_modes",
    "lr_factor",
    "milestone_steps",
    "run_inner_attack",
]
