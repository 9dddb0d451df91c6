"""Query detection in the study: the detector against every attack of every model, plus the adaptive attack.

For each model of the study (undefended, each hardened one) the detector is fitted on that model's training
codes (and the method's per-class target codes when it has them, e.g. HashVFL), its threshold is chosen on the
clean codes of the attacked queries at the detector's false-positive rate, and each attack stage's saved
adversarial codes (``models/<key>/attacks/<name>/adversarial_query.npz``) and per-query AP (``per_query.npz``)
give the AUROC, the TPR there and the mAP (t-mAP for a targeted attack) of the queries let through. With
``detection.adaptive`` the detector-aware mainstay attack (``mainstay-adaptive``, which knows the detector's
reference codes) runs as one more cached stage per model, ``models/<key>/detection/mainstay-adaptive``.

A model's ``verdict`` says what the detector stops at its threshold (TPR >= :data:`STOPS`): ``non-adaptive
only`` when it stops some non-adaptive attack but not the adaptive one, ``adaptive too``, or ``none``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from hashguard.attacks.registry import resolve_attack_params
from hashguard.detectors import Detector, build_detector
from hashguard.encoding import encode_dataset
from hashguard.pipeline.attack_stage import PER_QUERY, AttackedModel, load_per_query, run_one_attack, stage_name
from hashguard.pipeline.progress import StagePlan
from hashguard.pipeline.stages import digest, run_stage
from hashguard.pipeline.study_config import StudyConfig
from hashguard.retrieval import load_codes
from hashguard.retrieval.detection import detection_summary, roc_curve

ADAPTIVE = "mainstay-adaptive"
#: the TPR at which a detector is said to stop an attack (the verdict)
STOPS = 0.5


def check_detection(config: StudyConfig) -> None:
    """Build the detector and the adaptive attack's settings once: bad names and values fail before any work."""
    if not config.detection.enabled:
        return
    build_detector(config.detection.detector, **config.detection.params)
    if config.detection.adaptive:
        resolve_attack_params(ADAPTIVE, **adaptive_params(config))


def adaptive_params(config: StudyConfig) -> dict[str, Any]:
    """The adaptive attack's settings: the suite's mainstay budget (override, entry params), then the detection
    section's ``adaptive_params``."""
    suite = config.attacks
    params = suite.params_for("mainstay") if "mainstay" in {e.key for e in suite.suite} else {"seed": suite.seed}
    return {**params, **config.detection.adaptive_params}


def _verdict(attacks: dict[str, dict[str, Any]]) -> str:
    plain = [a["tpr"] for a in attacks.values() if not a.get("adaptive")]
    adaptive = [a["tpr"] for a in attacks.values() if a.get("adaptive")]
    stops_plain = any(t >= STOPS for t in plain)
    if adaptive and adaptive[0] >= STOPS:
        return "adaptive too"
    if stops_plain:
        return "non-adaptive only" if adaptive else "non-adaptive (no adaptive attack run)"
    return "none"


def _summary(
    detector: Detector, clean_codes: np.ndarray, directory: Path, targeted: bool, adaptive: bool
) -> dict[str, Any] | None:
    codes_path = directory / "adversarial_query.npz"
    per_query = load_per_query(directory / PER_QUERY)
    if not codes_path.is_file() or per_query is None:
        return None
    adv_codes = load_codes(codes_path).codes
    clean = clean_codes[: len(adv_codes)]
    clean_scores, adv_scores = detector.score(clean), detector.score(adv_codes)
    summary = detection_summary(clean_scores, adv_scores, per_query["adv_ap"], fpr=detector.fpr)
    summary.update(targeted=targeted, adaptive=adaptive, roc=roc_curve(clean_scores, adv_scores))
    return summary


def detect_model(
    config: StudyConfig,
    target: AttackedModel,
    attacked: dict[str, Any],
    class_codes: np.ndarray | None,
    topk: int | None,
    plan: StagePlan,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Detection results of one model: every attack of ``attacked["attacks"]`` and, if asked, the adaptive one."""
    section = config.detection
    context = target.context()
    detector = build_detector(section.detector, **section.params)
    detector.fit(context.train_codes.cpu().numpy(), context.train_labels.cpu().numpy(), class_codes)
    reference = getattr(detector, "codes", None)
    queries = max([int(r.get("num_queries") or 0) for r in attacked["attacks"].values()] or [0])
    queries = queries or len(target.splits.query)
    clean_codes, _ = encode_dataset(target.model, Subset(target.splits.query, range(queries)))
    results: dict[str, Any] = {}
    for name, result in attacked["attacks"].items():
        summary = _summary(detector, clean_codes, target.directory / "attacks" / name, bool(result.get("targeted")),
                           False)
        if summary is not None:
            results[name] = summary
    if section.adaptive and reference is not None:
        params = adaptive_params(config)
        key = {"model": target.identity, "attack": ADAPTIVE, "params": resolve_attack_params(ADAPTIVE, **params),
               "queries": config.attacks.queries, "topk": topk, "reference": digest(np.asarray(reference).tolist())}

        def work(directory: Path) -> dict[str, Any]:
            context.reference_codes = torch.as_tensor(reference, dtype=torch.float32, device=target.model.device)
            try:
                return run_one_attack(target, ADAPTIVE, params, config.attacks, None, topk, directory, log)
            finally:
                context.reference_codes = None

        directory = target.directory / "detection" / ADAPTIVE
        outcome = run_stage(stage_name(target.key, ADAPTIVE), directory, key, work, log, plan)
        summary = _summary(detector, clean_codes, directory, False, True)
        if summary is not None:
            summary["clean_map"] = outcome.get("clean_map")
            results[ADAPTIVE] = summary
    return {
        "reference_codes": None if reference is None else int(len(reference)),
        "attacks": results,
        "verdict": _verdict(results),
    }


def detection_card(config: StudyConfig, per_model: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The card's ``detection`` record."""
    detector = build_detector(config.detection.detector, **config.detection.params)
    return {
        "detector": config.detection.detector,
        "params": detector.params(),
        "fpr": detector.fpr,
        "stops_at_tpr": STOPS,
        "adaptive": ADAPTIVE if config.detection.adaptive else None,
        "models": per_model,
    }


def adaptive_cost(config: StudyConfig, queries: int) -> float:
    """Forward+backward passes of the adaptive attack stage of one model (for the ETA)."""
    iterations = int(adaptive_params(config).get("iterations") or resolve_attack_params(ADAPTIVE)["iterations"])
    return 3.0 * queries * max(iterations, 1)
