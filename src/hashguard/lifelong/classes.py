"""The classes of a lifelong session: parsing ``--classes`` / ``--classes-file``, refusing classes already seen,
selecting a session's items and the old-class / new-class query groups (docs/lifelong.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashguard.errors import ConfigError


def parse_classes(text: str) -> list[int]:
    """``"7,8,9"``, ``"0-6"`` or a mix (``"0-2,5"``) as a sorted list of distinct class indices."""
    classes: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                low, high = part.split("-", 1)
                first, last = int(low), int(high)
                if last < first:
                    raise ValueError
                classes.update(range(first, last + 1))
            else:
                classes.add(int(part))
        except ValueError:
            raise ConfigError(f"classes: {part!r} is not a class index or a range such as 0-6") from None
    if not classes:
        raise ConfigError("classes: name at least one class, e.g. 7,8,9 or 0-6")
    if min(classes) < 0:
        raise ConfigError(f"classes: indices are non-negative, got {min(classes)}")
    return sorted(classes)


def read_classes_file(path: str | Path) -> list[int]:
    """Class indices from a file: one index or range per line, or comma-separated; ``#`` starts a comment."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: classes file not found")
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return parse_classes(",".join(line for line in lines if line))


def check_classes(classes: list[int], num_classes: int, seen: list[int]) -> None:
    """One line when a class is out of range or already arrived."""
    outside = [c for c in classes if c >= num_classes]
    if outside:
        raise ConfigError(
            f"classes {outside} are out of range: the data has {num_classes} classes (0-{num_classes - 1})"
        )
    again = [c for c in classes if c in seen]
    if again:
        raise ConfigError(f"classes {again} were already seen (the store holds classes {seen}); a session brings "
                          "new classes only")


def items_of_classes(labels: np.ndarray, classes: list[int], exclude: np.ndarray | None = None,
                     limit: int | None = None) -> np.ndarray:
    """Rows carrying at least one of ``classes`` and not in ``exclude``, in order (the first ``limit``)."""
    rows = np.flatnonzero(np.asarray(labels)[:, classes].sum(axis=1) > 0)
    if exclude is not None and len(exclude):
        rows = rows[~np.isin(rows, exclude)]
    return rows if limit is None else rows[:limit]


def queries_of(labels: np.ndarray, inside: list[int], carrying: list[int] | None = None) -> np.ndarray:
    """Rows whose positive classes all lie in ``inside`` (and, with ``carrying``, include one of those)."""
    labels = np.asarray(labels) > 0
    outside = [c for c in range(labels.shape[1]) if c not in set(inside)]
    rows = labels.any(axis=1) & ~labels[:, outside].any(axis=1)
    if carrying is not None:
        rows &= labels[:, carrying].any(axis=1)
    return np.flatnonzero(rows)
