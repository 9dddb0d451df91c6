"""One entry point for every dataset source: ``open_dataset(source, root=..., image_size=..., seed=...)``.

Sources are plug-ins of :data:`SOURCES` (the project's registry, :mod:`hashguard.registry`): a source is one
file whose opener ``(root?, image_size, seed, **options) -> DatasetSplits`` is decorated with
``@SOURCES.register(name, summary=..., needs_root=...)``, plus one import line in ``hashguard/data/__init__.py``.
Its options are the opener's other keyword arguments (types, defaults and ranges read from the signature), so a
typo in an option is a clear error rather than a silent default. A source that lives in a directory may also
declare ``detect`` (``root -> anything``, raising :class:`DataError` when ``root`` does not hold it) and
``check`` (``root -> CheckReport``) for ``hashguard datasets check``.
"""

from __future__ import annotations

import inspect
import numbers
from pathlib import Path
from typing import Any

from hashguard.data.base import DatasetSplits
from hashguard.errors import ConfigError, DataError
from hashguard.registry import Registry

#: every registered dataset source; ``root``, ``image_size`` and ``seed`` are supplied by :func:`open_dataset`
SOURCES: Registry[DatasetSplits] = Registry("dataset source", fixed=("root", "image_size", "seed"))


def sources() -> Registry[DatasetSplits]:
    """The registered sources by name."""
    return SOURCES


def needs_root(source: str) -> bool:
    """Whether ``source`` reads a directory the caller must name."""
    return bool(SOURCES.entry(source).attributes.get("needs_root", False))


def _whole(value: Any) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def open_dataset(
    source: str,
    root: str | Path | None = None,
    image_size: int | None = None,
    seed: int = 0,
    **options: Any,
) -> DatasetSplits:
    """Open the train / query / database splits of ``source``.

    ``source`` is one of :func:`describe_sources`' names (``demo-mnist``, ``demo-mnist-multi``, ``listfile``,
    ``idx``, ``cifar10``, ...). ``root`` is the dataset directory (required for sources that declare
    ``needs_root``; ``idx`` searches its documented default locations when it is None). ``image_size`` is the
    side of the square images the splits yield (None: the source's native size; 224 for list files). ``seed``
    fixes every random split. Source-specific ``options`` are listed by :func:`describe_sources`.
    """
    try:
        entry = SOURCES.entry(source)
    except ConfigError:
        raise DataError(f"unknown dataset source {source!r}; choose one of: {', '.join(SOURCES)}") from None
    try:
        values = entry.resolve(options)
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    if not _whole(seed) or seed < 0:
        raise DataError(f"the data seed must be a non-negative integer, got {seed!r}")
    if image_size is not None and (not _whole(image_size) or image_size < 1):
        raise DataError(f"image_size must be a positive integer, got {image_size!r}")
    if entry.attributes.get("needs_root") and root is None:
        raise DataError(f"dataset source {source!r} needs a root directory")
    kwargs: dict[str, Any] = dict(values, seed=seed, image_size=image_size)
    if "root" in inspect.signature(entry.target).parameters:
        kwargs["root"] = root
    elif root is not None:
        raise DataError(f"dataset source {source!r} is built in and takes no root directory (got {root})")
    return entry.target(**kwargs)


def describe_sources() -> str:
    """A short help text listing every source, what it is and its options."""
    lines = []
    for entry in SOURCES.values():
        root = " (needs ROOT)" if entry.attributes.get("needs_root") else ""
        lines.append(f"{entry.name}{root}: {entry.summary}")
        options = [p.name for p in entry.parameters()]
        if options:
            lines.append(f"    options: {', '.join(options)}")
    return "\n".join(lines)
