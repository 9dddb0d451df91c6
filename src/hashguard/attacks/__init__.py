"""Attacks on deep hashing retrieval: perturbation optimizers x code-space objectives (docs/attacks.md).

``build_attack(name, model, context, **params)`` builds any registered attack (``ATTACKS``) with the defaults
of docs/attacks.md; ``attack(images, labels, target_labels=None)`` returns adversarial images, ``attack.run(...)`` also
the adversarial codes and the theory codes. See ``docs/attacks.md``.
"""

from hashguard.attacks.base import (
    AttackContext,
    AttackOutput,
    HashAttack,
    Objective,
    OptimizerAttack,
    PreparedObjective,
    build_context,
    code_tensors,
)
from hashguard.attacks.optimizers import OPTIMIZERS, PerturbationOptimizer, build_optimizer, get_alpha

# isort: off
# the attacks register themselves in import order, which is the order they are listed in
from hashguard.attacks.mainstay_attack import MainstayObjective, TargetedMainstayObjective, mainstay_loss
from hashguard.attacks.detector_aware import DetectorAwareMainstayObjective, nearest_reference_distance
from hashguard.attacks.hag import HAGObjective, hag_loss
from hashguard.attacks.sdha import SDHAObjective, TargetedSDHAObjective
from hashguard.attacks.anchor import AnchorObjective, P2PObjective, anchor_codes
from hashguard.attacks.tha import THAObjective, train_prototype_net
from hashguard.attacks.prosgan import (
    ProSDiscriminator,
    ProSGANAttack,
    ProSGANObjective,
    ProSGenerator,
    ProSPrototypeNet,
    train_prosgan,
    train_prosgan_prototype,
)

# isort: on
from hashguard.attacks.prototype import PrototypeNet
from hashguard.attacks.registry import ATTACKS, AttackSpec, Budget, attack_spec, build_attack, describe_attacks
from hashguard.attacks.targets import (
    load_or_create_target_labels,
    load_target_labels,
    save_target_labels,
    select_target_labels,
)
from hashguard.attacks.threat import check_eps, frozen_eval

__all__ = [
    "ATTACKS",
    "AnchorObjective",
    "AttackContext",
    "AttackOutput",
    "AttackSpec",
    "DetectorAwareMainstayObjective",
    "HAGObjective",
    "HashAttack",
    "MainstayObjective",
    "OPTIMIZERS",
    "Objective",
    "OptimizerAttack",
    "P2PObjective",
    "Budget",
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
    "check_eps",
    "code_tensors",
    "describe_attacks",
    "frozen_eval",
    "get_alpha",
    "hag_loss",
    "nearest_reference_distance",
    "load_or_create_target_labels",
    "load_target_labels",
    "mainstay_loss",
    "save_target_labels",
    "select_target_labels",
    "train_prosgan",
    "train_prosgan_prototype",
    "train_prototype_net",
]
