"""Clean retrieval evaluation of a checkpoint (query split against database split)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hashguard.config import DataConfig
from hashguard.encoding import encode_dataset
from hashguard.pipeline.checkpoint import open_checkpoint
from hashguard.retrieval import evaluate_retrieval


def evaluate_codes(query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, topk: int | None) -> dict:
    """Every retrieval metric of ``hashguard.retrieval`` for one query set against one database."""
    if topk is not None:
        topk = min(topk, len(db_codes))
    return evaluate_retrieval(query_codes, db_codes, query_labels, db_labels, topk=topk)


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: DataConfig | None = None,
    topk: int | None = 5000,
    device: str = "auto",
    progress: bool = True,
    queries: int | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Encode query and database with the checkpoint and compute mAP@k, tie-aware mAP, P@N and the PR curve
    (of the first ``queries`` queries only, when given; ``batch_size`` images per forward pass)."""
    opened = open_checkpoint(checkpoint, device=device, data=data)
    model, splits = opened.model, opened.require_splits()
    query = splits.query if queries is None else splits.query[:queries]
    query_codes, query_labels = encode_dataset(model, query, batch_size, progress=progress, description="query")
    db_codes, db_labels = encode_dataset(model, splits.database, batch_size, progress=progress, description="database")
    metrics = evaluate_codes(query_codes, db_codes, query_labels, db_labels, topk)
    metrics["checkpoint"] = str(checkpoint)
    metrics["dataset_fingerprint"] = splits.fingerprint()
    return metrics
