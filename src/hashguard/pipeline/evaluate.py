"""Clean retrieval evaluation of a checkpoint (query split against database split), with a warning when the
codes look collapsed (:mod:`hashguard.retrieval.health`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hashguard.config import DataConfig
from hashguard.encoding import encode_dataset
from hashguard.pipeline.checkpoint import open_checkpoint
from hashguard.retrieval import evaluate_retrieval
from hashguard.retrieval.health import code_health, print_warnings

Warn = Callable[[list[str]], None]


def evaluate_codes(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None,
    warn: Warn | None = None,
) -> dict:
    """Every retrieval metric of ``hashguard.retrieval`` for one query set against one database.

    With ``warn`` (e.g. :func:`~hashguard.retrieval.health.print_warnings`) the database codes and the mAP are
    also checked for collapse (docs/metrics.md): the result gets a ``code_health`` entry and ``warn`` receives
    the warning line, if any.
    """
    if topk is not None:
        topk = min(topk, len(db_codes))
    metrics = evaluate_retrieval(query_codes, db_codes, query_labels, db_labels, topk=topk)
    if warn is not None:
        health = code_health(db_codes, db_labels, map_value=metrics["map"], query_labels=query_labels)
        metrics["code_health"] = health.to_dict()
        line = health.warning("the database codes")
        if line:
            warn([line])
    return metrics


def database_of(meta: dict[str, Any], checkpoint: str | Path) -> tuple[Any, Any] | None:
    """The stored database (int8 codes, labels) of a checkpoint whose ``model.json`` says the ADSH protocol
    (Jiang and Li, AAAI 2018: the training pool is the database and its codes are learned directly); None for
    every other checkpoint, whose database split is encoded by the network."""
    if (meta.get("adsh") or {}).get("protocol") != "adsh":
        return None
    from hashguard.methods.adsh import load_database_codes

    codes, labels = load_database_codes(checkpoint)
    return codes.to(torch.int8).numpy(), labels.numpy()


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: DataConfig | None = None,
    topk: int | None = 5000,
    device: str = "auto",
    progress: bool = True,
    queries: int | None = None,
    batch_size: int = 256,
    warn: Warn | None = print_warnings,
) -> dict[str, Any]:
    """Encode query and database with the checkpoint and compute mAP@k, tie-aware mAP, P@N and the PR curve
    (of the first ``queries`` queries only, when given; ``batch_size`` images per forward pass); collapsed codes
    give ``warn`` a warning line (see :func:`evaluate_codes`)."""
    opened = open_checkpoint(checkpoint, device=device, data=data)
    model, splits = opened.model, opened.require_splits()
    query = splits.query if queries is None else splits.query[:queries]
    query_codes, query_labels = encode_dataset(model, query, batch_size, progress=progress, description="query")
    database = database_of(opened.meta, checkpoint)
    if database is not None:  # ADSH protocol: the training pool is the database and its codes are the learned V
        db_codes, db_labels = database
    else:
        db_codes, db_labels = encode_dataset(
            model, splits.database, batch_size, progress=progress, description="database"
        )
    metrics = evaluate_codes(query_codes, db_codes, query_labels, db_labels, topk, warn=warn)
    adsh = database is not None
    metrics["database"] = "learned codes V of the training pool (ADSH protocol)" if adsh else "database split"
    metrics["checkpoint"] = str(checkpoint)
    metrics["dataset_fingerprint"] = splits.fingerprint()
    return metrics
