"""Attacks on deep hashing retrieval: perturbation optimizers x code-space objectives (docs/attacks.md).

``build_attack(name, model, context, **params)`` builds any registered attack (``ATTACKS``) with the defaults
of
docs/attacks.md; ``attack(images, labels, target_labels=None)`` returns adversarial images, ``attack.run(...)`` also
the adversarial codes and the theory codes. See ``docs/attacks.md``.
"""

from hashguard.attacks.anchor import AnchorObjective, P2PObjective, anchor_codes
from hashguard.attacks.base import (
    AttackContext,
    AttackOutput,
    HashAttack,
    Objective,
    PreparedObjective,
    build_context,
    code_tensors,
)
from hashguard.attacks.hag import HAGObjective, hag_loss
from hashguard.attacks.mainstay_attack import MainstayObjective, TargetedMainstayObjective, mainstay_loss
from hashguard.attacks.optimizers import (
    OPTIMIZERS,
    PerturbationOptimizer,
    build_optimizer,
    frozen_eval,
    get_alpha,
)
from hashguard.attacks.prosgan import (
    ProSDiscriminator,
    ProSGANAttack,
    ProSGANObjective,
    ProSGenerator,
    ProSPrototypeNet,
    train_prosgan,
    train_prosgan_prototype,
)
from hashguard.attacks.registry import ATTACKS, AttackSpec, Param, attack_spec, build_attack, describe_attacks
from hashguard.attacks.sdha import SDHAObjective, TargetedSDHAObjective
from hashguard.attacks.targets import (
    load_or_create_target_labels,
    load_target_labels,
    save_target_labels,
    select_target_labels,
)
from hashguard.attacks.tha import PrototypeNet, THAObjective, train_prototype_net

__all__ = [
    "ATTACKS",
    "AnchorObjective",
    "AttackContext",
    "AttackOutput",
    "AttackSpec",
    "HAGObjective",
    "HashAttack",
    "MainstayObjective",
    "OPTIMIZERS",
    "Objective",
    "P2PObjective",
    "Param",
    "PerturbationOptimizer",
    "PreparedObjective",
    "ProSDiscriminator",
    "ProSGANAttack",
    "ProSGANObjective",
    "ProSGenerator",
    "ProSPrototypeNet",
    "PrototypeNet",
    "SDHAObjective",
    "THAObjective",
    "TargetedMainstayObjective",
    "TargetedSDHAObjective",
    "anchor_codes",
    "attack_spec",
    "build_attack",
    "build_context",
    "build_optimizer",
    "code_tensors",
    "describe_attacks",
    "frozen_eval",
    "get_alpha",
    "hag_loss",
    "load_or_create_target_labels",
    "load_target_labels",
    "mainstay_loss",
    "save_target_labels",
    "select_target_labels",
    "train_prosgan",
    "train_prosgan_prototype",
    "train_prototype_net",
]
