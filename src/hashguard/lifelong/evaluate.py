"""Evaluation of a lifelong session: old-class and new-class queries against the whole store, clean and under
the mainstay attack (Yuan et al., IEEE TIFS 2023) with its mainstay codes computed from the stored codes."""

from __future__ import annotations

from typing import Any

import numpy as np

from hashguard.data.base import HashingDataset
from hashguard.encoding import encode_dataset
from hashguard.lifelong.classes import queries_of
from hashguard.lifelong.store import CodeStore
from hashguard.models.hash_model import HashModel


def evaluate_store(
    model: HashModel,
    store: CodeStore,
    queries: HashingDataset,
    *,
    topk: int | None = None,
    limit: int | None = None,
    attack: dict[str, Any] | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """mAP@``topk`` of the old-class queries (every class from the sessions before the store's last) and of the
    new-class queries (carrying a class of the last session) against the whole store; queries of classes not yet
    seen are left out; ``limit`` keeps the first queries of each group. ``attack`` (parameters of the mainstay
    attack, Yuan et al., IEEE TIFS 2023, with its mainstay codes computed from the store's codes) adds the
    adversarial mAP of each group."""
    seen = store.seen_classes()
    last = store.session_classes[-1]
    groups = {"new": queries_of(queries.labels, seen, last)}
    if store.number > 0:
        groups["old"] = queries_of(queries.labels, [c for c in seen if c not in set(last)])
    db_codes, db_labels = store.codes.numpy(), store.labels.numpy()
    result: dict[str, Any] = {"topk": topk, "database_items": len(store)}
    for name, rows in sorted(groups.items()):
        rows = rows if limit is None else rows[:limit]
        entry: dict[str, Any] = {"queries": int(len(rows))}
        if len(rows):
            subset = queries.subset(rows)
            entry.update(clean_and_attacked(model, subset, db_codes, db_labels, store, topk, attack, batch_size))
        result[name] = entry
    return result


def clean_and_attacked(model: HashModel, queries: HashingDataset, db_codes: np.ndarray, db_labels: np.ndarray,
                       store: CodeStore, topk: int | None, attack: dict[str, Any] | None,
                       batch_size: int) -> dict[str, Any]:
    from hashguard.retrieval import mean_average_precision

    codes, labels = encode_dataset(model, queries, batch_size)
    entry: dict[str, Any] = {"map": float(mean_average_precision(codes, db_codes, labels, db_labels, topk))}
    if attack is not None:
        from hashguard.attacks import AttackContext
        from hashguard.attacks.evaluate import evaluate_attack
        from hashguard.attacks.registry import build_attack

        device = model.device
        context = AttackContext(learned_codes=store.codes.float().to(device),
                                learned_labels=store.labels.float().to(device))
        attacker = build_attack("mainstay", model, context=context, **{"mainstay_from": "database", **attack})
        run = evaluate_attack(attacker, queries, db_codes, db_labels, batch_size=min(batch_size, 128), topk=topk,
                              progress=False)
        entry["adv_map"] = float(run.result.adv_map)
    return entry
