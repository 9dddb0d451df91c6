"""Name -> hashing method, on the project's one plug-in registry (:mod:`hashguard.registry`).

Adding a method is one file with one ``@METHODS.register(...)`` decorator and one import line in
``hashguard/methods/__init__.py``. Its user parameters are read from the constructor signature (arguments
after ``bits, num_classes, num_train, seed``); ``uses_memory_bank`` and the paper reference are declared on
the class.
"""

from __future__ import annotations

from typing import Any

from hashguard.methods.base import HashingMethod
from hashguard.registry import Registry

#: every registered hashing method; the code length, class count, training-set size and seed are supplied
#: by the trainer, everything else is a user parameter
METHODS: Registry[HashingMethod] = Registry("hashing method", fixed=("bits", "num_classes", "num_train", "seed"))


def register_method(cls: type[HashingMethod]) -> type[HashingMethod]:
    """Class decorator: register ``cls`` under ``cls.name`` (``METHODS.register()`` with no declarations)."""
    METHODS.register(uses_memory_bank=cls.uses_memory_bank)(cls)
    return cls


def method_class(name: str) -> type[HashingMethod]:
    """The class registered as ``name`` (case-insensitive); unknown names raise ConfigError."""
    return METHODS.entry(name).target  # type: ignore[return-value]


def build_method(
    name: str, bits: int, num_classes: int, num_train: int, seed: int = 0, **params: Any
) -> HashingMethod:
    """Instantiate the method ``name``; unknown or invalid hyper-parameters raise :class:`ConfigError`."""
    return METHODS.build(name, bits=bits, num_classes=num_classes, num_train=num_train, seed=seed, **params)
