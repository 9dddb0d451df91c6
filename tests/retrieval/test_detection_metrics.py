"""Detection metrics: AUROC against a brute-force pairwise count, the ROC curve, the clean-chosen threshold and
the let-through mAP, on hand-made scores."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hashguard.errors import DataError
from hashguard.retrieval.detection import auroc, clean_threshold, detection_summary, nearest_hamming, roc_curve


def brute_auroc(clean, adv) -> float:
    pairs = list(itertools.product(adv, clean))
    return sum(1.0 if a > c else 0.5 if a == c else 0.0 for a, c in pairs) / len(pairs)


@pytest.mark.parametrize("seed", range(6))
def test_auroc_equals_the_pairwise_count_with_ties_as_half(seed):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 6, size=rng.integers(1, 40))  # few levels: many ties
    adv = rng.integers(1, 8, size=rng.integers(1, 40))
    assert auroc(clean, adv) == pytest.approx(brute_auroc(clean, adv), abs=1e-12)
    curve = roc_curve(clean, adv)
    fpr, tpr = curve["fpr"], curve["tpr"]
    area = sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(len(fpr) - 1))
    assert area == pytest.approx(brute_auroc(clean, adv), abs=1e-12)  # trapezoids count ties 1/2 as well


def test_roc_curve_by_hand():
    curve = roc_curve([0, 1, 1, 3], [1, 3, 4])
    assert curve["threshold"] == [None, 4.0, 3.0, 1.0, 0.0, None]
    assert curve["fpr"] == [0.0, 0.0, 0.0, 0.25, 0.75, 1.0]
    assert curve["tpr"] == [0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0]
    # adv 1: beats 0, ties 1 and 1 -> 2; adv 3: beats 0, 1, 1, ties 3 -> 3.5; adv 4: beats all -> 4
    assert auroc([0, 1, 1, 3], [1, 3, 4]) == pytest.approx(9.5 / 12)


def test_threshold_is_the_smallest_clean_score_within_the_false_positive_rate():
    clean = np.arange(20)  # 0..19
    assert clean_threshold(clean, 0.05) == 18  # exactly 1 of 20 above 18
    assert clean_threshold(clean, 0.0) == 19
    assert clean_threshold(clean, 1.0) == 0
    assert clean_threshold([2, 2, 2, 2, 5], 0.05) == 5  # ties: 20% above 2 > 5%, so the realised FPR is 0
    summary = detection_summary([2, 2, 2, 2, 5], [1, 5, 6, 7], adversarial_ap=[0.9, 0.8, 0.1, 0.0])
    assert summary["threshold"] == 5 and summary["fpr"] == 0.0 and summary["tpr"] == 0.5
    assert summary["let_through"] == 0.5 and summary["let_through_map"] == pytest.approx(0.85)
    assert summary["adversarial_map"] == pytest.approx(0.45)
    assert detection_summary([0, 0], [3, 4], adversarial_ap=[1.0, 1.0])["let_through_map"] is None


def test_nearest_hamming_by_brute_force():
    rng = np.random.default_rng(0)
    codes = np.where(rng.random((7, 12)) < 0.5, 1, -1)
    reference = np.where(rng.random((4, 12)) < 0.5, 1, -1)
    expected = [min(int((q != r).sum()) for r in reference) for q in codes]
    assert nearest_hamming(codes, reference).tolist() == expected


def test_bad_inputs_are_one_line():
    with pytest.raises(DataError, match="no clean scores"):
        auroc([], [1])
    with pytest.raises(DataError, match="bits"):
        nearest_hamming(np.ones((2, 4)), np.ones((1, 5)))
    with pytest.raises(DataError, match=r"\+-1"):
        nearest_hamming(np.zeros((2, 4)), np.ones((1, 4)))
