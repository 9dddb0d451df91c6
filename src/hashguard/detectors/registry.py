"""Name -> query detector, on the project's plug-in registry (:mod:`hashguard.registry`).

A detector is one file: a :class:`Detector` subclass decorated with ``@DETECTORS.register(...)`` and one import
line in ``hashguard/detectors/__init__.py``. It is a kind of its own (``hashguard list detectors``) rather than a
defense: a defense trains a hardened model, a detector changes no weight and only decides, query by query,
whether to answer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from hashguard.registry import Registry, constructor_values
from hashguard.retrieval.detection import DEFAULT_FPR, clean_threshold


class Detector:
    """A query detector: :meth:`fit` on the model's training codes, :meth:`score` codes (larger = more
    suspicious), :meth:`calibrate` a threshold on clean scores at the false-positive rate ``fpr``, then
    :meth:`flag` the queries whose score is above it."""

    name: ClassVar[str] = ""
    fpr: float = DEFAULT_FPR
    threshold: float | None = None

    def fit(self, train_codes: Any, train_labels: Any, class_codes: Any | None = None) -> Detector:
        raise NotImplementedError

    def score(self, codes: Any) -> np.ndarray:
        raise NotImplementedError

    def calibrate(self, clean_scores: Any) -> float:
        """Set and return the threshold: the smallest clean score t with mean(clean > t) <= ``fpr``."""
        self.threshold = clean_threshold(clean_scores, self.fpr)
        return self.threshold

    def flag(self, codes: Any) -> np.ndarray:
        """Boolean array: True for a query to reject (score > threshold). Needs :meth:`calibrate` first."""
        if self.threshold is None:
            from hashguard.errors import ConfigError

            raise ConfigError(f"detector {self.name}: calibrate a threshold on clean scores before flagging")
        return self.score(codes) > self.threshold

    def params(self) -> dict[str, Any]:
        """The detector's settings: its constructor's keywords, read back from the attributes of the same names."""
        return constructor_values(self)


#: every registered detector
DETECTORS: Registry[Detector] = Registry("detector")


def build_detector(name: str, **params: Any) -> Detector:
    """Build the detector ``name``; unknown names or bad values are one :class:`ConfigError` line."""
    return DETECTORS.build(name, **params)
