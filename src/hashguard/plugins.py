"""Every plug-in registry of hashguard in one place: what ``hashguard list`` shows and the contract tests walk.

Kinds, in the order a study uses them: ``sources`` (dataset sources), ``backbones``, ``heads`` (code heads, the
values of ``model.hash_norm``), ``methods`` (hashing objectives), ``optimizers`` (perturbation optimizers),
``attacks`` (attack objectives with their budgets), ``defenses`` and ``detectors`` (query detectors, which reject
queries and leave the model alone). Each is a :class:`hashguard.registry.Registry`; a new entry registers itself
in its own file.
"""

from __future__ import annotations

import importlib
import os
from importlib import metadata

from hashguard.errors import ConfigError
from hashguard.registry import Registry

#: entry-point group of installed third-party plug-in packages (``[project.entry-points."hashguard.plugins"]``)
ENTRY_POINT_GROUP = "hashguard.plugins"
#: environment variable naming plug-in modules to import, comma-separated (no packaging needed)
PLUGINS_VARIABLE = "HASHGUARD_PLUGINS"

KINDS = ("sources", "backbones", "heads", "methods", "optimizers", "attacks", "defenses", "detectors")


_loaded = False


def load_plugins() -> list[str]:
    """Import the third-party plug-ins: every module of the ``hashguard.plugins`` entry-point group and every
    module named in ``$HASHGUARD_PLUGINS``. A plug-in module registers its entries on import (a method with
    ``@METHODS.register``, an attack with ``@ATTACKS.register``, ...), exactly as a built-in one does. Runs once;
    returns the modules imported. A module that fails to import is one :class:`ConfigError` line."""
    global _loaded
    if _loaded:
        return []
    _loaded = True
    names = [entry.value.split(":")[0] for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    names += [name.strip() for name in os.environ.get(PLUGINS_VARIABLE, "").split(",") if name.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any error inside a third-party module is reported in one line
            raise ConfigError(f"plug-in {name!r} failed to import ({type(exc).__name__}: {exc})") from None
    return names


def registries() -> dict[str, Registry]:
    """Kind -> registry, with every built-in plug-in imported (and so registered) and the third-party plug-ins
    loaded (:func:`load_plugins`)."""
    from hashguard.attacks import ATTACKS, OPTIMIZERS
    from hashguard.data import SOURCES
    from hashguard.defenses import DEFENSES
    from hashguard.detectors import DETECTORS
    from hashguard.methods import METHODS
    from hashguard.models.backbones import BACKBONES
    from hashguard.models.heads import HEADS

    load_plugins()
    found = {
        "sources": SOURCES,
        "backbones": BACKBONES,
        "heads": HEADS,
        "methods": METHODS,
        "optimizers": OPTIMIZERS,
        "attacks": ATTACKS,
        "defenses": DEFENSES,
        "detectors": DETECTORS,
    }
    return {kind: found[kind] for kind in KINDS}


def registry(kind: str) -> Registry:
    """The registry of ``kind`` (plural or singular: ``method`` works as ``methods``)."""
    key = kind.lower().rstrip("s") + "s"
    everything = registries()
    if key not in everything:
        raise ConfigError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    return everything[key]


def display_names() -> dict[str, list[list[str]]]:
    """``{"attacks": [[name, display name], ...], "defenses": [...]}`` in registration order, as each plug-in
    declares it (``display=...``; the name itself otherwise). The study writes this into its results card so
    that the report, which imports no plug-in, shows the plug-ins' own names in their own order."""
    found = registries()
    return {
        kind: [[name, str(found[kind].entry(name).attributes.get("display", name))] for name in found[kind]]
        for kind in ("attacks", "defenses")
    }
