"""``hashguard attack`` as a function: attack the query split of a checkpoint's data, write codes and a result.

Writes ``{out}/{attack}_codes.npz`` (adversarial query codes with the query labels; code file format of
:mod:`hashguard.retrieval.codes_io`), ``{out}/{attack}_result.json`` (the
:class:`~hashguard.attacks.evaluate.AttackResult` as a dict plus the exact configuration) and, for targeted
attacks, ``{out}/target_labels.json`` when no ``targets`` file is named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hashguard.attacks import (
    attack_spec,
    build_attack,
    build_context,
    load_or_create_target_labels,
    load_target_labels,
)
from hashguard.attacks.evaluate import evaluate_attack
from hashguard.attacks.registry import resolve_attack_params
from hashguard.config import DataConfig
from hashguard.errors import ConfigError
from hashguard.io_utils import atomic_write_json
from hashguard.pipeline.checkpoint import open_checkpoint
from hashguard.protocol import MAP_TOPK
from hashguard.retrieval.codes_io import save_codes

__all__ = ["run_attack"]


def run_attack(
    checkpoint: str | Path,
    attack: str,
    out: str | Path,
    *,
    params: dict[str, Any] | None = None,
    targets: str | Path | None = None,
    target_seed: int = 0,
    limit: int | None = None,
    topk: int | None = MAP_TOPK,
    batch_size: int = 128,
    device: str = "auto",
    data: DataConfig | None = None,
) -> dict[str, Any]:
    """Load a checkpoint and its data, attack the query split, write codes and result; returns the result.

    ``params`` are the attack's settings (eps, step, iterations, optimizer, seed, attack-specific ones);
    ``targets`` reuses a target-label file (targeted attacks), otherwise ``{out}/target_labels.json`` is read
    or created with ``target_seed``; ``limit`` attacks only the first queries; ``topk`` is the mAP cut-off
    (None: the whole ranking); ``data`` names other data than the checkpoint's own.
    """
    spec = attack_spec(attack)
    resolve_attack_params(spec.name, **(params or {}))  # every setting validated before the checkpoint is read
    if targets is not None and not Path(targets).is_file():
        raise ConfigError(f"{targets}: target-label file not found")
    opened = open_checkpoint(checkpoint, device=device, data=data)
    model, splits = opened.model, opened.require_splits()
    attack_obj = build_attack(spec.name, model, **(params or {}))
    objective = attack_obj.objective
    needs_train = "train" in objective.needs or objective.needs_train_images
    context = build_context(
        model,
        splits.train if needs_train else None,
        splits.database,
        batch_size=max(batch_size, 256),
        train_images=objective.needs_train_images,  # the split itself, read batch by batch (ProS-GAN)
    )
    attack_obj.set_context(context)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(splits.query) if limit is None else min(limit, len(splits.query))
    target_labels = None
    target_file = None
    if spec.targeted:
        query_labels = splits.query.labels
        if targets is not None:
            target_file = Path(targets)
            target_labels = load_target_labels(target_file, num_queries=len(query_labels), query_labels=query_labels)
        else:
            target_file = out / "target_labels.json"
            target_labels = load_or_create_target_labels(
                target_file, query_labels, splits.database.labels, seed=target_seed
            )
    run = evaluate_attack(
        attack_obj,
        splits.query,
        context.database_codes,
        context.database_labels,
        target_labels=target_labels,
        batch_size=batch_size,
        topk=topk,
        limit=n,
    )
    result = run.result.to_dict()
    result["checkpoint"] = str(checkpoint)
    result["data"] = None if opened.data is None else opened.data.model_dump()
    result["target_labels_file"] = None if target_file is None else str(target_file)
    codes_path = out / f"{spec.name}_codes.npz"
    save_codes(
        codes_path,
        run.adv_codes,
        run.labels,
        meta={"split": "query", "attack": spec.name, "checkpoint": str(checkpoint), "adversarial": True},
    )
    result["codes_file"] = str(codes_path)
    atomic_write_json(out / f"{spec.name}_result.json", result)
    return result
