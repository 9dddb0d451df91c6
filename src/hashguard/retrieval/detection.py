"""Detection metrics for a detector of adversarial or abnormal queries (docs/detection.md).

Scores are "abnormality" scores: larger means more suspicious; a query is **flagged when its score is above the
threshold** (score > t). The adversarial queries are the positives, the clean queries the negatives.

* :func:`roc_curve`: one point (FPR, TPR) per threshold t in {+inf} U {distinct scores} U {-inf}, from (0, 0)
  to (1, 1) (the infinite thresholds are written as None, so the curve is plain JSON).
* :func:`auroc`: P(s_adv > s_clean) + 1/2 P(s_adv = s_clean) over all (adversarial, clean) pairs, ties counted
  1/2 (the Mann-Whitney statistic; equal to the trapezoidal area under :func:`roc_curve`).
* :func:`clean_threshold`: the threshold at a target FPR, chosen **on the clean scores only**: the smallest clean
  score t with mean(clean > t) <= fpr. With integer (Hamming) scores the realised FPR can be below the target,
  never above it.
* :func:`detection_summary`: AUROC, TPR at the threshold (default 5 % FPR), the realised FPR, and the mean AP
  of the adversarial queries the detector lets through (score <= t; None when it lets none through).

The Hamming scores themselves (distance to the nearest reference code) are :func:`nearest_hamming`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hashguard.errors import DataError

#: the false-positive rate the threshold is chosen at, unless told otherwise
DEFAULT_FPR = 0.05


def _scores(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise DataError(f"no {what} scores")
    if not np.isfinite(array).all():
        raise DataError(f"{what} scores must be finite")
    return array


def nearest_hamming(codes: Any, reference: Any) -> np.ndarray:
    """Hamming distance of each +-1 code (Q, K) to its nearest reference code (R, K), as an int64 array (Q,)."""
    q = np.asarray(codes, dtype=np.int64)
    r = np.asarray(reference, dtype=np.int64)
    if q.ndim != 2 or r.ndim != 2 or r.shape[0] == 0:
        raise DataError(f"need (Q, K) codes and a non-empty (R, K) reference, got {q.shape} and {r.shape}")
    if q.shape[1] != r.shape[1]:
        raise DataError(f"codes of {q.shape[1]} bits against reference codes of {r.shape[1]} bits")
    if not (np.isin(q, (-1, 1)).all() and np.isin(r, (-1, 1)).all()):
        raise DataError("codes and reference codes must be +-1")
    bits = q.shape[1]
    return ((bits - q @ r.T) // 2).min(axis=1)


def auroc(clean_scores: Any, adversarial_scores: Any) -> float:
    """Area under the ROC curve: P(adv > clean) + 1/2 P(adv = clean) over all pairs (mid-ranks for ties)."""
    clean = _scores(clean_scores, "clean")
    adv = _scores(adversarial_scores, "adversarial")
    both = np.concatenate([clean, adv])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(both.size, dtype=np.float64)
    sorted_values = both[order]
    # mid-ranks (1-based) of equal values
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], both.size]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    adv_rank_sum = ranks[clean.size:].sum()
    wins = adv_rank_sum - adv.size * (adv.size + 1) / 2.0
    return float(wins / (adv.size * clean.size))


def roc_curve(clean_scores: Any, adversarial_scores: Any) -> dict[str, list[Any]]:
    """``{"fpr", "tpr", "threshold"}``: flagging score > t for t = +inf, each distinct score (descending), -inf
    (the first and last thresholds are None)."""
    clean = _scores(clean_scores, "clean")
    adv = _scores(adversarial_scores, "adversarial")
    levels = np.unique(np.concatenate([clean, adv]))[::-1]
    thresholds = [math.inf, *levels.tolist(), -math.inf]
    fpr = [float((clean > t).mean()) for t in thresholds]
    tpr = [float((adv > t).mean()) for t in thresholds]
    shown = [None, *levels.tolist(), None]
    return {"fpr": fpr, "tpr": tpr, "threshold": shown}


def clean_threshold(clean_scores: Any, fpr: float = DEFAULT_FPR) -> float:
    """The smallest clean score t with mean(clean > t) <= ``fpr`` (flag when score > t)."""
    if not 0.0 <= fpr <= 1.0:
        raise DataError(f"target false-positive rate must be in [0, 1], got {fpr}")
    clean = np.sort(_scores(clean_scores, "clean"))
    for value in np.unique(clean):
        if (clean > value).mean() <= fpr:
            return float(value)
    return float(clean[-1])  # unreachable: the largest clean score flags none


def detection_summary(
    clean_scores: Any,
    adversarial_scores: Any,
    adversarial_ap: Any | None = None,
    fpr: float = DEFAULT_FPR,
) -> dict[str, Any]:
    """AUROC, the clean-chosen threshold at ``fpr``, TPR and realised FPR there, and, given the per-query AP of the
    adversarial queries, ``adversarial_map`` (their mean AP) and ``let_through_map``: their mean AP over the
    queries not flagged (None when all are flagged)."""
    clean = _scores(clean_scores, "clean")
    adv = _scores(adversarial_scores, "adversarial")
    threshold = clean_threshold(clean, fpr)
    passed = adv <= threshold
    summary: dict[str, Any] = {
        "auroc": auroc(clean, adv),
        "target_fpr": float(fpr),
        "threshold": threshold,
        "tpr": float((adv > threshold).mean()),
        "fpr": float((clean > threshold).mean()),
        "let_through": float(passed.mean()),
        "num_clean": int(clean.size),
        "num_adversarial": int(adv.size),
        "mean_clean_score": float(clean.mean()),
        "mean_adversarial_score": float(adv.mean()),
    }
    if adversarial_ap is not None:
        ap = np.asarray(adversarial_ap, dtype=np.float64).reshape(-1)
        if ap.size != adv.size:
            raise DataError(f"{ap.size} AP values for {adv.size} adversarial queries")
        summary["adversarial_map"] = float(ap.mean())
        summary["let_through_map"] = float(ap[passed].mean()) if passed.any() else None
    return summary
