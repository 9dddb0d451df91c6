"""The Hamming detector: reject a query whose code is far from every reference code (docs/detection.md).

After Qiu et al., "HashVFL: Defending Against Data Reconstruction Attacks in Vertical Federated Learning",
IEEE TIFS 19, 2024, where codes trained towards fixed per-class targets make an input whose code lies far from
every target suspicious. Score of a query with code b: s(b) = min_r d_H(b, r) over the reference codes r
(:mod:`hashguard.detectors.reference`); flagged when s(b) > t, with t chosen on clean queries at the
false-positive rate ``fpr`` (:func:`hashguard.retrieval.detection.clean_threshold`).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from hashguard.detectors.reference import REFERENCE_KINDS, reference_codes
from hashguard.detectors.registry import DETECTORS, Detector
from hashguard.errors import ConfigError
from hashguard.registry import Choices, Range
from hashguard.retrieval.detection import DEFAULT_FPR, nearest_hamming


@DETECTORS.register("hamming", aliases=("hamming-detector",), display="Hamming detector",
                    reference="Qiu et al., IEEE TIFS 2024")
class HammingDetector(Detector):
    """Score = Hamming distance of the query code to the nearest reference code (Qiu et al., IEEE TIFS 2024)."""

    name = "hamming"

    def __init__(
        self,
        reference: Annotated[
            str, Choices(*REFERENCE_KINDS),
            "reference codes: auto (class targets if the model has them, else class centres), centers, targets, "
            "train (every distinct training code)",
        ] = "auto",
        fpr: Annotated[float, Range(0, 1), "false-positive rate on clean queries the threshold is chosen at"] = (
            DEFAULT_FPR
        ),
    ) -> None:
        if reference not in REFERENCE_KINDS:
            raise ConfigError(f"reference must be one of {', '.join(REFERENCE_KINDS)}, got {reference!r}")
        self.reference = reference
        self.fpr = float(fpr)
        self.threshold = None
        self.codes: np.ndarray | None = None

    def fit(self, train_codes: Any, train_labels: Any, class_codes: Any | None = None) -> HammingDetector:
        """Build the reference codes from the model's training codes (and per-class targets, if any)."""
        self.codes = reference_codes(self.reference, train_codes, train_labels, class_codes)
        return self

    def score(self, codes: Any) -> np.ndarray:
        """min_r d_H(b, r) for each +-1 code b (Q, K); int64 (Q,)."""
        if self.codes is None:
            raise ConfigError("detector hamming: fit it on the training codes before scoring")
        return nearest_hamming(codes, self.codes)
