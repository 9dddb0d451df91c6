"""Every plug-in registry of hashguard in one place: what ``hashguard list`` shows and the contract tests walk.

Kinds, in the order a study uses them: ``sources`` (dataset sources), ``backbones``, ``methods`` (hashing
objectives), ``optimizers`` (perturbation optimizers), ``attacks`` (attack objectives with their budgets) and
``defenses``. Each is a :class:`hashguard.registry.Registry`; a new entry registers itself in its own file.
"""

from __future__ import annotations

from hashguard.errors import ConfigError
from hashguard.registry import Registry

KINDS = ("sources", "backbones", "methods", "optimizers", "attacks", "defenses")


def registries() -> dict[str, Registry]:
    """Kind -> registry, with every built-in plug-in imported (and so registered)."""
    from hashguard.attacks import ATTACKS, OPTIMIZERS
    from hashguard.data import SOURCES
    from hashguard.defenses import DEFENSES
    from hashguard.methods import METHODS
    from hashguard.models.backbones import BACKBONES

    found = {
        "sources": SOURCES,
        "backbones": BACKBONES,
        "methods": METHODS,
        "optimizers": OPTIMIZERS,
        "attacks": ATTACKS,
        "defenses": DEFENSES,
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
