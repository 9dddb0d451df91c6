"""Target labels for targeted attacks (docs/attacks.md), seeded and saved so every targeted attack of a study reuses
them.

Candidates are the unique non-zero label rows of the **database**. For each query the target is drawn
uniformly
(over distinct label combinations, not images) from the candidates that share no label with the query
(<y_q, t> = 0); a zero-label query may receive any candidate. No candidate raises :class:`ConfigError`.
Unlike the reference code the draw is seeded and the file records its seed, the number of
queries and a fingerprint of the query and database labels, so a mismatched file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hashguard.errors import ConfigError, DataError
from hashguard.io_utils import atomic_write

FORMAT = "hashguard-target-labels"
VERSION = 1


def _as_array(labels: Any, name: str) -> np.ndarray:
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels, dtype=np.float32)
    if array.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D (N, C) label matrix, got shape {array.shape}")
    return array


def labels_fingerprint(labels: Any) -> str:
    """A short hash of a label matrix (to recognise the split a target file was made for)."""
    array = np.ascontiguousarray(_as_array(labels, "labels") > 0)
    return hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest()[:16]


def select_target_labels(query_labels: Any, database_labels: Any, seed: int = 0) -> np.ndarray:
    """One target label per query (Q x C float32), drawn with ``np.random.default_rng(seed)`` (docs/attacks.md)."""
    queries = _as_array(query_labels, "query labels")
    database = _as_array(database_labels, "database labels")
    if queries.shape[1] != database.shape[1]:
        raise ConfigError(
            f"query labels have {queries.shape[1]} classes, database labels {database.shape[1]}"
        )
    candidates = np.unique(database > 0, axis=0)
    candidates = candidates[candidates.any(axis=1)].astype(np.float32)
    if candidates.shape[0] == 0:
        raise ConfigError("no target candidates: every database label row is empty")
    overlap = (queries > 0).astype(np.float32) @ candidates.T  # Q x U
    rng = np.random.default_rng(seed)
    targets = np.empty((queries.shape[0], queries.shape[1]), dtype=np.float32)
    for i in range(queries.shape[0]):
        allowed = np.flatnonzero(overlap[i] == 0)
        if allowed.size == 0:
            present = np.flatnonzero(queries[i] > 0).tolist()
            raise ConfigError(
                f"query {i} (labels {present}) shares a label with every database label set: "
                "no target label exists for it"
            )
        targets[i] = candidates[allowed[rng.integers(allowed.size)]]
    return targets


def save_target_labels(
    path: str | os.PathLike[str],
    targets: Any,
    *,
    seed: int | None = None,
    query_labels: Any = None,
    database_labels: Any = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write target labels as JSON (atomically), with the seed and label fingerprints."""
    array = _as_array(targets, "target labels")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "seed": seed,
        "num_queries": int(array.shape[0]),
        "num_classes": int(array.shape[1]),
        "query_labels": None if query_labels is None else labels_fingerprint(query_labels),
        "database_labels": None if database_labels is None else labels_fingerprint(database_labels),
        "meta": meta or {},
        # one row per query: the indices of the classes present in its target
        "targets": [np.flatnonzero(row > 0).tolist() for row in array],
    }
    text = json.dumps(payload, indent=1, sort_keys=True)

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")

    atomic_write(path, _write)


def load_target_labels(
    path: str | os.PathLike[str], *, num_queries: int | None = None, query_labels: Any = None
) -> np.ndarray:
    """Read a target-label file; a missing, malformed or mismatched file raises :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: target-label file not found (create it with select/save_target_labels)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("format") != FORMAT:
            raise ValueError(f"format is {payload.get('format')!r}, expected {FORMAT!r}")
        classes = int(payload["num_classes"])
        rows = payload["targets"]
        targets = np.zeros((len(rows), classes), dtype=np.float32)
        for i, row in enumerate(rows):
            targets[i, [int(c) for c in row]] = 1.0
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise DataError(f"{path}: not a hashguard target-label file ({exc})") from None
    if num_queries is not None and targets.shape[0] != num_queries:
        raise DataError(f"{path}: holds {targets.shape[0]} target labels but there are {num_queries} queries")
    if query_labels is not None and payload.get("query_labels") not in (
        None,
        labels_fingerprint(query_labels),
    ):
        raise DataError(f"{path}: target labels were made for other query labels (fingerprint mismatch)")
    return targets


def load_or_create_target_labels(
    path: str | os.PathLike[str], query_labels: Any, database_labels: Any, seed: int = 0
) -> np.ndarray:
    """Load ``path`` when it exists (checked against the queries), otherwise select, save and return
    targets."""
    path = Path(path)
    queries = _as_array(query_labels, "query labels")
    if path.exists():
        return load_target_labels(path, num_queries=queries.shape[0], query_labels=queries)
    targets = select_target_labels(queries, database_labels, seed)
    save_target_labels(path, targets, seed=seed, query_labels=queries, database_labels=database_labels)
    return targets
