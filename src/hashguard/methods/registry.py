"""Name -> hashing-method class. Adding a method is one file and one ``@register_method`` line."""

from __future__ import annotations

import inspect
from typing import Any

from hashguard.errors import ConfigError
from hashguard.methods.base import HashingMethod

METHODS: dict[str, type[HashingMethod]] = {}


def register_method(cls: type[HashingMethod]) -> type[HashingMethod]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a non-empty 'name'")
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[HashingMethod]:
    """The class registered as ``name`` (case-insensitive)."""
    key = name.lower()
    if key not in METHODS:
        raise ConfigError(f"unknown hashing method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[key]


def build_method(
    name: str, bits: int, num_classes: int, num_train: int, seed: int = 0, **params: Any
) -> HashingMethod:
    """Instantiate the method ``name``; unknown or invalid hyper-parameters raise :class:`ConfigError`."""
    cls = method_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "bits", "num_classes", "num_train", "seed"}
    unknown = set(params) - accepted
    if unknown:
        raise ConfigError(
            f"method {cls.name} has no parameter(s) {', '.join(sorted(unknown))}; "
            f"it accepts {', '.join(sorted(accepted)) or 'none'}"
        )
    return cls(bits=bits, num_classes=num_classes, num_train=num_train, seed=seed, **params)
