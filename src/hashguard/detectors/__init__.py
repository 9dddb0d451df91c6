"""Detectors of adversarial or abnormal queries: they leave the model alone and reject queries
(docs/detection.md). ``build_detector(name, **params)`` builds a registered one; ``DETECTORS`` lists them."""

from hashguard.detectors.registry import DETECTORS, Detector, build_detector

# isort: split
from hashguard.detectors import hamming  # noqa: F401  (register)
from hashguard.detectors.reference import REFERENCE_KINDS, class_centre_codes, reference_codes

__all__ = ["DETECTORS", "Detector", "REFERENCE_KINDS", "build_detector", "class_centre_codes", "reference_codes"]
