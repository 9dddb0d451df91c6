"""Name -> adversarial-training defense, on the project's plug-in registry (:mod:`hashguard.registry`).

A defense is one file: a :class:`~hashguard.defenses.base.Defense` subclass decorated with
``@DEFENSES.register(presets={"paper": ..., "demo": ...})`` and one import line in
``hashguard/defenses/__init__.py``. Its own settings (ATRDH's PrototypeNet width, a code bank's refresh) are
the keyword arguments of its constructor after ``config``, with defaults, ranges and help read from the
signature; the settings every defense shares (epochs, optimizer, the inner attack) are the fields of
:class:`~hashguard.defenses.config.DefenseConfig`. ``presets`` maps a preset name to the values of either
kind that it sets: ``paper`` is the defense's protocol recipe, ``demo`` the CPU demo recipe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hashguard.registry import Registry

if TYPE_CHECKING:
    from hashguard.defenses.base import Defense

#: every registered defense; the constructor's first argument, the resolved DefenseConfig, is supplied
DEFENSES: Registry[Defense] = Registry("defense", fixed=("config",))
