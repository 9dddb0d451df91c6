"""Lifelong (incremental) hashing: new classes arrive in sessions, the codes already stored never change.

Wu et al., "Deep Incremental Hashing Network for Efficient Image Retrieval", CVPR 2019 (DIHN), and Xu et al.,
"Deep Lifelong Cross-modal Hashing", IEEE TCSVT 2024 (DLCH; image-only here), on top of ADSH (Jiang and Li,
AAAI 2018). See docs/lifelong.md.
"""

from hashguard.lifelong.classes import parse_classes
from hashguard.lifelong.config import LifelongConfig
from hashguard.lifelong.evaluate import evaluate_store
from hashguard.lifelong.objective import (
    cosine_similarity,
    incremental_objective,
    similarity_ratio,
    target_similarity,
    update_new_codes,
)
from hashguard.lifelong.session import open_base, run_session, train_base
from hashguard.lifelong.store import CodeStore, codes_digest

__all__ = [
    "CodeStore",
    "LifelongConfig",
    "codes_digest",
    "cosine_similarity",
    "evaluate_store",
    "incremental_objective",
    "open_base",
    "parse_classes",
    "run_session",
    "similarity_ratio",
    "target_similarity",
    "train_base",
    "update_new_codes",
]
