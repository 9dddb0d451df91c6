"""Hashing objectives, one file each, behind a registry."""

from hashguard.methods import csq, dph, dpn, dpsh, hashnet, hashvfl, hswd, orthohash  # noqa: F401  (register)

# isort: split
# methods whose training is not a per-batch loss, listed after the per-batch losses
from hashguard.methods import activation_codes, adsh, ddsh, nmlayer  # noqa: F401  (register)

# isort: split
# methods trained without labels
from hashguard.methods import barlow_twins  # noqa: F401  (register)
from hashguard.methods.base import HashingMethod, label_similarity
from hashguard.methods.memory_bank import MemoryBank
from hashguard.methods.registry import METHODS, build_method, method_class, register_method

__all__ = [
    "HashingMethod",
    "MemoryBank",
    "METHODS",
    "build_method",
    "method_class",
    "register_method",
    "label_similarity",
]
