"""``hashguard detect`` as a function: score clean and attacked queries with a query detector (docs/detection.md).

Reads the attack results of ``hashguard attack --out DIR`` (``{attack}_codes.npz``, ``{attack}_result.json``),
builds the detector on the checkpoint's training codes, chooses its threshold on the clean codes of the same
queries at the detector's false-positive rate, and reports for each attack the detection AUROC, the TPR at the
threshold and the mAP (t-mAP for a targeted attack) of the adversarial queries the detector lets through.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Subset

from hashguard.config import DataConfig
from hashguard.detectors import Detector, build_detector
from hashguard.encoding import encode_dataset
from hashguard.errors import CheckpointError, ConfigError, DataError
from hashguard.pipeline.checkpoint import OpenedCheckpoint, open_checkpoint
from hashguard.pipeline.evaluate import database_of
from hashguard.protocol import MAP_TOPK
from hashguard.retrieval import average_precisions, load_codes
from hashguard.retrieval.detection import detection_summary, roc_curve

__all__ = ["model_class_codes", "fit_detector", "run_detection", "attack_results_in"]


def model_class_codes(opened: OpenedCheckpoint, num_train: int) -> np.ndarray | None:
    """The per-class target codes of the checkpoint's hashing method (HashVFL's ``class_codes``), or None when
    its method has none or cannot be rebuilt."""
    try:
        method = opened.hashing_method(num_train)
    except (CheckpointError, ConfigError):
        return None
    codes = getattr(method, "class_codes", None)
    return None if codes is None else codes.detach().cpu().numpy()


def fit_detector(
    name: str, params: dict[str, Any], train_codes: np.ndarray, train_labels: np.ndarray,
    class_codes: np.ndarray | None = None,
) -> Detector:
    """Build the detector ``name`` with ``params`` and fit it on the model's training codes."""
    detector = build_detector(name, **params)
    return detector.fit(train_codes, train_labels, class_codes)


def attack_results_in(directory: Path) -> list[str]:
    """The attacks with results in ``directory`` (``{attack}_codes.npz``), sorted."""
    return sorted(path.name[: -len("_codes.npz")] for path in directory.glob("*_codes.npz"))


def _relevance(directory: Path, attack: str, query_labels: np.ndarray, n: int) -> tuple[np.ndarray, bool]:
    """The labels the AP of ``attack``'s queries is judged against (target labels for a targeted one)."""
    result_path = directory / f"{attack}_result.json"
    try:
        result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        raise DataError(f"{result_path}: unreadable attack result") from None
    if not result.get("targeted"):
        return query_labels[:n], False
    from hashguard.attacks import load_target_labels

    file = result.get("target_labels_file")
    if not file or not Path(file).is_file():
        raise DataError(f"{result_path}: targeted attack without its target-label file")
    targets = load_target_labels(Path(file), num_queries=len(query_labels), query_labels=query_labels)
    return np.asarray(targets, dtype=np.float32)[:n], True


def run_detection(
    checkpoint: str | Path,
    attack_dir: str | Path,
    *,
    detector: str = "hamming",
    params: dict[str, Any] | None = None,
    attacks: list[str] | None = None,
    topk: int | None = MAP_TOPK,
    batch_size: int = 256,
    device: str = "auto",
    data: DataConfig | None = None,
) -> dict[str, Any]:
    """Detect the attacked queries of ``attack_dir`` against the clean ones; returns the per-attack summaries."""
    directory = Path(attack_dir)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such attack-result directory (hashguard attack --out DIR)")
    found = attack_results_in(directory)
    chosen = found if attacks is None else attacks
    missing = sorted(set(chosen) - set(found))
    if missing or not chosen:
        raise ConfigError(f"{directory}: no attack codes for {', '.join(missing) or 'any attack'} (found: "
                          f"{', '.join(found) or 'none'})")
    build_detector(detector, **(params or {}))  # every setting checked before the checkpoint is read
    opened = open_checkpoint(checkpoint, device=device, data=data)
    splits = opened.require_splits()
    train_codes, train_labels = encode_dataset(opened.model, splits.train, batch_size=batch_size)
    class_codes = model_class_codes(opened, len(splits.train))
    fitted = fit_detector(detector, dict(params or {}), train_codes, train_labels, class_codes)
    stored = database_of(opened.meta, checkpoint)
    if stored is None:
        db_codes, db_labels = encode_dataset(opened.model, splits.database, batch_size=batch_size)
    else:
        db_codes, db_labels = stored
    query_labels = np.asarray(splits.query.labels, dtype=np.float32)
    clean_cache: dict[int, np.ndarray] = {}
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "detector": detector,
        "params": fitted.params(),
        "reference_codes": int(len(fitted.codes)) if getattr(fitted, "codes", None) is not None else None,
        "topk": topk,
        "attacks": {},
    }
    for attack in chosen:
        saved = load_codes(directory / f"{attack}_codes.npz")
        n = int(saved.codes.shape[0])
        if n > len(splits.query):
            raise DataError(f"{attack}: {n} attacked queries but the query split has {len(splits.query)}")
        if n not in clean_cache:
            clean_cache[n], _ = encode_dataset(opened.model, Subset(splits.query, range(n)), batch_size=batch_size)
        relevance, targeted = _relevance(directory, attack, query_labels, n)
        k = None if topk is None else min(int(topk), len(db_codes))
        ap = average_precisions(saved.codes, db_codes, relevance, db_labels, k)
        clean_scores = fitted.score(clean_cache[n])
        adv_scores = fitted.score(saved.codes)
        summary = detection_summary(clean_scores, adv_scores, ap, fpr=fitted.fpr)
        summary["targeted"] = targeted
        summary["roc"] = roc_curve(clean_scores, adv_scores)
        report["attacks"][attack] = summary
    return report
