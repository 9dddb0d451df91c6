"""Hamming retrieval and its metrics: the single source of truth for every number hashguard reports.

Ranking rule: ascending (Hamming distance, database index). :class:`HammingIndex` searches saved codes
(exact, or FAISS flat / IVF / HNSW). Definitions of every metric: ``docs/metrics.md``
and :mod:`hashguard.retrieval.metrics`.
"""

from __future__ import annotations

from hashguard.retrieval.codes import (
    as_codes,
    hamming_distance,
    iter_hamming_distance,
    pack_codes,
    pack_labels,
    unpack_codes,
)
from hashguard.retrieval.codes_io import CodeSet, load_codes, save_codes
from hashguard.retrieval.index import BACKENDS, HammingIndex, load_index
from hashguard.retrieval.metrics import (
    DEFAULT_NS,
    TIE_RULE,
    RetrievalEvaluator,
    average_precisions,
    evaluate_retrieval,
    mean_average_precision,
    precision_at_n,
    precision_recall_curve,
    precision_recall_within_radius,
    sharded_average_precisions,
    sharded_mean_average_precision,
    targeted_mean_average_precision,
    tie_aware_mean_average_precision,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_NS",
    "TIE_RULE",
    "CodeSet",
    "HammingIndex",
    "RetrievalEvaluator",
    "as_codes",
    "average_precisions",
    "evaluate_retrieval",
    "hamming_distance",
    "iter_hamming_distance",
    "load_codes",
    "load_index",
    "mean_average_precision",
    "pack_codes",
    "pack_labels",
    "precision_at_n",
    "precision_recall_curve",
    "precision_recall_within_radius",
    "save_codes",
    "sharded_average_precisions",
    "sharded_mean_average_precision",
    "targeted_mean_average_precision",
    "tie_aware_mean_average_precision",
    "unpack_codes",
]
