"""``hashguard attack`` as a function: attack the query split of a checkpoint's data, write codes and a result.

Writes ``{out}/{attack}_codes.npz`` (adversarial query codes with the query labels; code file format of
:mod:`hashguard.retrieval.codes_io`), ``{out}/{attack}_result.json`` (the
:class:`~hashguard.attacks.evaluate.AttackResult` as a dict plus the exact configuration) and, for targeted
attacks, ``{out}/target_labels.json`` when no ``targets`` file is named (created on the first targeted attack
into ``out`` and reused by the next ones, so every targeted attack of one directory aims at the same targets).

Results are named by the attack, so runs of different attacks share a directory; a second run of the same
attack into the same directory is refused before any work unless ``overwrite=True`` (``--overwrite``).
Before the attack it prints one line of what is about to run (:func:`~hashguard.attacks.evaluate.describe_run`)
and, when the iterations cannot reach the edge of the eps ball, one warning line
(:func:`~hashguard.attacks.reach.reach_warning`); progress bars with an ETA follow ``progress``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hashguard.attacks import (
    attack_spec,
    build_attack,
    build_context,
    load_or_create_target_labels,
    load_target_labels,
)
from hashguard.attacks.evaluate import describe_run, evaluate_attack
from hashguard.attacks.pseudo_labelled import use_pseudo_labels
from hashguard.attacks.reach import reach_warning
from hashguard.attacks.registry import resolve_attack_params
from hashguard.config import DataConfig
from hashguard.errors import ConfigError
from hashguard.io_utils import atomic_write_json
from hashguard.pipeline.checkpoint import open_checkpoint
from hashguard.pipeline.evaluate import database_of
from hashguard.progress_bar import progress_scope
from hashguard.protocol import MAP_TOPK
from hashguard.pseudo_labels import pseudo_label_spec_of
from hashguard.retrieval.codes_io import save_codes

__all__ = ["result_paths", "run_attack"]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def result_paths(out: str | Path, attack: str) -> tuple[Path, Path]:
    """``({out}/{attack}_codes.npz, {out}/{attack}_result.json)`` for the registered name of ``attack``."""
    name = attack_spec(attack).name
    return Path(out) / f"{name}_codes.npz", Path(out) / f"{name}_result.json"


def check_free(out: str | Path, attack: str, overwrite: bool = False) -> None:
    """Refuse (one line) when ``out`` is a file, or when ``attack`` already wrote its results there and
    ``overwrite`` is False."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory (--out names the directory for the results)")
    if overwrite:
        return
    for path in result_paths(out, attack):
        if path.exists():
            raise ConfigError(
                f"{path} exists (an earlier {attack_spec(attack).name} run): pass --overwrite to replace it "
                "or choose another --out"
            )


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
    overwrite: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Load a checkpoint and its data, attack the query split, write codes and result; returns the result.

    ``params`` are the attack's settings (eps, step, iterations, optimizer, seed, attack-specific ones);
    ``targets`` reuses a target-label file (targeted attacks), otherwise ``{out}/target_labels.json`` is read
    or created with ``target_seed``; ``limit`` attacks only the first queries; ``topk`` is the mAP cut-off
    (None: the whole ranking); ``data`` names other data than the checkpoint's own. ``overwrite`` replaces
    this attack's results in ``out`` (otherwise they are refused before any work). ``progress``: bars with an
    ETA on stderr over the query batches and the attack's one-off training (True always, False never - the
    start line too -, None when stderr is a terminal). ``log`` receives the start line and the eps warning
    (default: stderr).
    """
    log = log or _stderr
    spec = attack_spec(attack)
    # every setting validated before the checkpoint is read
    resolved = resolve_attack_params(spec.name, **(params or {}))
    if targets is not None and not Path(targets).is_file():
        raise ConfigError(f"{targets}: target-label file not found")
    check_free(out, spec.name, overwrite)
    warning = reach_warning(resolved, spec.name)
    if warning is not None:
        log(f"warning: {warning}")
    opened = open_checkpoint(checkpoint, device=device, data=data)
    model, splits = opened.model, opened.require_splits()
    learned = None
    if resolved.get("mainstay_from") == "database":  # mainstay codes from an ADSH checkpoint's learned codes V
        from hashguard.methods.adsh import learned_codes_of

        learned = learned_codes_of(opened.meta, checkpoint)
    attack_obj = build_attack(spec.name, model, **(params or {}))
    n = len(splits.query) if limit is None else min(limit, len(splits.query))
    if progress is not False:
        log(describe_run(attack_obj, n, batch_size))
    objective = attack_obj.objective
    needs_train = "train" in objective.needs or objective.needs_train_images
    stored = database_of(opened.meta, checkpoint)  # ADSH protocol: the database is the learned codes V
    with progress_scope(progress):
        context = build_context(
            model,
            splits.train if needs_train else None,
            splits.database if stored is None else None,
            batch_size=max(batch_size, 256),
            train_images=objective.needs_train_images,  # the split itself, read batch by batch (ProS-GAN)
        )
    if stored is not None:
        context.database_codes = torch.as_tensor(stored[0]).to(model.device)  # int8, as build_context gives
        context.database_labels = torch.as_tensor(stored[1]).float().to(model.device)
    if learned is not None:
        context.learned_codes, context.learned_labels = (t.to(model.device) for t in learned)
    database_labels = splits.database.labels if stored is None else stored[1]
    attack_obj.set_context(context)
    use_pseudo_labels(attack_obj, pseudo_label_spec_of(opened.meta))  # a model trained without labels
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target_labels = None
    target_file = None
    if spec.targeted:
        query_labels = splits.query.labels
        if targets is not None:
            target_file = Path(targets)
            target_labels = load_target_labels(target_file, num_queries=len(query_labels), query_labels=query_labels)
        else:
            target_file = out / "target_labels.json"
            reused = target_file.exists()
            target_labels = load_or_create_target_labels(
                target_file, query_labels, database_labels, seed=target_seed
            )
            if progress is not False:
                log(f"{'reusing' if reused else 'created'} target labels {target_file}")
    run = evaluate_attack(
        attack_obj,
        splits.query,
        context.database_codes,
        context.database_labels,
        target_labels=target_labels,
        batch_size=batch_size,
        topk=topk,
        limit=n,
        progress=progress,
    )
    result = run.result.to_dict()
    result["checkpoint"] = str(checkpoint)
    result["data"] = None if opened.data is None else opened.data.model_dump()
    result["target_labels_file"] = None if target_file is None else str(target_file)
    codes_path, result_path = result_paths(out, spec.name)
    save_codes(
        codes_path,
        run.adv_codes,
        run.labels,
        meta={"split": "query", "attack": spec.name, "checkpoint": str(checkpoint), "adversarial": True},
    )
    result["codes_file"] = str(codes_path)
    atomic_write_json(result_path, result)
    return result
