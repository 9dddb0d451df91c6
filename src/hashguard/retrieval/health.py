"""Collapsed codes: a model whose codes cannot rank anything, detected from the codes (and the mAP).

A hashing model that failed to learn often maps most images to the same few codes: retrieval then returns
distance 0 for almost everything and mAP sits at the level of a random ranking. The rules (docs/metrics.md,
"Collapsed codes"), on a set of codes with their labels:

* **one code for most items**: the most common code is shared by more than half of the items *and* by more
  items than the most frequent label has (so that not even one code per label explains it);
* **fewer codes than labels**: fewer distinct codes than labels present, so some labels share every code;
* **chance-level mAP** (when an mAP and the query labels are given): ``mAP - chance < 0.1 * (1 - chance)``,
  where ``chance`` is the mAP of a random ranking, the mean over queries of the fraction of the database
  relevant to the query (shares a label).

Codes are ±1 (or 0/1) arrays of shape (items, bits); labels one-hot or multi-hot of shape (items, classes).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "CHANCE_MARGIN",
    "DOMINANT_SHARE",
    "CodeHealth",
    "chance_map",
    "code_health",
    "print_warnings",
]

#: the most common code covering more than this fraction of the items is a collapse
DOMINANT_SHARE = 0.5
#: an mAP closer to the chance level than this fraction of the way from chance to 1 is a collapse
CHANCE_MARGIN = 0.1


def _labels_2d(labels: Any, n: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim == 1:  # class indices
        out = np.zeros((n, int(arr.max()) + 1 if n else 0), dtype=bool)
        out[np.arange(n), arr.astype(np.int64)] = True
        return out
    return arr.reshape(n, -1) > 0


def chance_map(query_labels: Any, db_labels: Any) -> float:
    """The mAP of a random ranking: mean over queries of (database items sharing a label) / (database size).

    Queries with no relevant item count as 0, as they do in :func:`~hashguard.retrieval.mean_average_precision`.
    """
    db = _labels_2d(db_labels, len(db_labels)).astype(np.float64)
    query = _labels_2d(query_labels, len(query_labels)).astype(np.float64)
    if db.shape[0] == 0 or query.shape[0] == 0:
        return 0.0
    width = max(db.shape[1], query.shape[1])
    db = np.pad(db, ((0, 0), (0, width - db.shape[1])))
    query = np.pad(query, ((0, 0), (0, width - query.shape[1])))
    relevant = (query @ db.T) > 0
    return float(relevant.mean(axis=1).mean())


@dataclass(frozen=True)
class CodeHealth:
    """What :func:`code_health` measured, and the problems found (empty when the codes look healthy)."""

    items: int
    distinct_codes: int
    dominant_share: float
    largest_label_share: float
    labels_present: int
    map_value: float | None = None
    chance: float | None = None

    @property
    def problems(self) -> list[str]:
        """One phrase per rule of the module docstring that the codes break."""
        found: list[str] = []
        if self.items and self.dominant_share > DOMINANT_SHARE and self.dominant_share > self.largest_label_share:
            found.append(
                f"one code is shared by {self.dominant_share:.0%} of the {self.items} items "
                f"(the most frequent label covers {self.largest_label_share:.0%})"
            )
        if self.items and self.labels_present > 1 and self.distinct_codes < self.labels_present:
            found.append(f"{self.distinct_codes} distinct codes for {self.labels_present} labels")
        if self.map_value is not None and self.chance is not None:
            if self.map_value - self.chance < CHANCE_MARGIN * (1.0 - self.chance):
                found.append(f"mAP {self.map_value:.4f} is at chance level ({self.chance:.4f} for a random ranking)")
        return found

    @property
    def collapsed(self) -> bool:
        return bool(self.problems)

    def warning(self, what: str) -> str | None:
        """``WARNING: <what> look collapsed: ...`` or None when healthy."""
        if not self.problems:
            return None
        return (
            f"WARNING: {what} look collapsed: " + "; ".join(self.problems)
            + " (the model has not learned to separate the labels; see docs/metrics.md, collapsed codes)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "collapsed": self.collapsed, "problems": self.problems}


def code_health(
    codes: Any,
    labels: Any,
    *,
    map_value: float | None = None,
    query_labels: Any = None,
    db_labels: Any = None,
) -> CodeHealth:
    """Measure ``codes`` (database-like, with their ``labels``) against the collapse rules.

    ``map_value`` with ``query_labels`` adds the chance-level rule; the chance level is computed against
    ``db_labels`` (default: ``labels``).
    """
    arr = np.asarray(codes)
    n = int(arr.shape[0]) if arr.ndim else 0
    label_arr = _labels_2d(labels, n)
    if n:
        _, counts = np.unique(arr.reshape(n, -1) > 0, axis=0, return_counts=True)
        distinct, dominant = int(counts.size), float(counts.max()) / n
        per_label = label_arr.sum(axis=0)
        present = int((per_label > 0).sum())
        largest = float(per_label.max()) / n if per_label.size else 0.0
    else:
        distinct, dominant, present, largest = 0, 0.0, 0, 0.0
    chance = None
    if map_value is not None and query_labels is not None:
        chance = chance_map(query_labels, labels if db_labels is None else db_labels)
    return CodeHealth(
        items=n,
        distinct_codes=distinct,
        dominant_share=dominant,
        largest_label_share=largest,
        labels_present=present,
        map_value=None if map_value is None else float(map_value),
        chance=chance,
    )


def print_warnings(lines: list[str]) -> None:
    """Print warning lines on stderr (stdout may carry JSON results)."""
    for line in lines:
        print(line, file=sys.stderr)
