"""Paired statistics for the claims a study checks: per-query differences, a seeded paired bootstrap
interval of their mean, and a verdict per claim.

Two methods measured on the *same* queries (two attacks on one model, or one attack on two models) give two
per-query score vectors a and b (AP or t-AP). The paired difference d_i = a_i - b_i removes the variation
between queries that both share, so a small but consistent gap is detectable where two separate means
would overlap.

* **Interval**: the percentile bootstrap of the mean of d (B. Efron, R. Tibshirani, "An Introduction to the
  Bootstrap", Chapman & Hall 1993, ch. 13): draw ``resamples`` samples of n queries with replacement, take
  the mean of each, and report the 2.5 % and 97.5 % quantiles (linear interpolation) of those means. The
  generator is ``numpy.random.default_rng(seed)``, so the interval is a pure function of (d, resamples,
  seed, level).
* **Verdict** of one comparison whose claim is "d is ``side`` of 0": ``reproduced`` when the whole interval
  lies strictly on the claimed side of 0, ``not reproduced`` when it lies strictly on the other side,
  ``inconclusive`` when it contains 0 (an end point equal to 0 counts as containing it).
* **Conjunction**: a claim made of several comparisons ("A is lowest among A, B, C" = A < B and A < C) is
  reproduced when every comparison is, not reproduced as soon as one is not, and inconclusive otherwise.

This module is pure NumPy: the study computes the claims (``hashguard.pipeline.claims``) and the report only
renders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from hashguard.errors import DataError

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)

#: Defaults of the study's claims: 2,000 resamples, seed 0, a 95 % interval.
RESAMPLES = 2000
SEED = 0
LEVEL = 0.95

Side = Literal["negative", "positive"]
_CHUNK = 1 << 22  # resampled indices per block (bounded memory for many queries)


def paired_differences(a: Any, b: Any) -> np.ndarray:
    """d_i = a_i - b_i of two per-query score vectors of the same queries (float64)."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise DataError(f"paired scores need the same queries: {x.shape[0]} against {y.shape[0]} values")
    if x.size == 0:
        raise DataError("paired scores: no queries")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataError("paired scores: non-finite values")
    return x - y


def bootstrap_means(diff: Any, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The means of ``resamples`` bootstrap samples of ``diff`` (n draws with replacement each).

    Resample r uses the indices ``rng.integers(0, n, size=n)`` drawn in order from
    ``numpy.random.default_rng(seed)`` (drawn block-wise as ``rng.integers(0, n, size=(rows, n))``, which
    yields the same stream), so the result is reproducible from (diff, resamples, seed).
    """
    d = np.asarray(diff, dtype=np.float64).reshape(-1)
    if d.size == 0:
        raise DataError("bootstrap: no values")
    if resamples < 1:
        raise DataError(f"bootstrap: resamples must be positive, not {resamples}")
    rng = np.random.default_rng(seed)
    n = d.size
    rows = max(1, _CHUNK // n)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows):
        count = min(rows, resamples - start)
        index = rng.integers(0, n, size=(count, n))
        means[start : start + count] = d[index].mean(axis=1)
    return means


def bootstrap_interval(
    diff: Any, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap interval (``level``, default 95 %) of the mean of ``diff``."""
    if not 0.0 < level < 1.0:
        raise DataError(f"bootstrap: level must be in (0, 1), not {level}")
    means = bootstrap_means(diff, resamples, seed)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def verdict(low: float, high: float, side: Side) -> str:
    """The verdict of one comparison whose claim is that the mean difference is on ``side`` of 0."""
    if side not in ("negative", "positive"):
        raise DataError(f"side must be 'negative' or 'positive', not {side!r}")
    if low > 0.0:
        return REPRODUCED if side == "positive" else NOT_REPRODUCED
    if high < 0.0:
        return REPRODUCED if side == "negative" else NOT_REPRODUCED
    return INCONCLUSIVE


def combine(verdicts: Iterable[str]) -> str:
    """The verdict of a conjunction of comparisons (see the module docstring)."""
    items = list(verdicts)
    if not items:
        raise DataError("a claim needs at least one comparison")
    for item in items:
        if item not in VERDICTS:
            raise DataError(f"unknown verdict {item!r}")
    if any(v == NOT_REPRODUCED for v in items):
        return NOT_REPRODUCED
    if all(v == REPRODUCED for v in items):
        return REPRODUCED
    return INCONCLUSIVE


def compare(
    a: Any,
    b: Any,
    side: Side,
    *,
    a_name: str = "a",
    b_name: str = "b",
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Any]:
    """One paired comparison of per-query scores ``a`` and ``b``, claimed: mean(a - b) is ``side`` of 0.

    Returns a JSON-able dict: ``a``, ``b`` (names), ``mean_a``, ``mean_b``, ``mean_diff``, ``ci_low``,
    ``ci_high``, ``level``, ``n``, ``side``, ``verdict``.
    """
    diff = paired_differences(a, b)
    low, high = bootstrap_interval(diff, resamples, seed, level)
    return {
        "a": a_name,
        "b": b_name,
        "mean_a": float(np.mean(np.asarray(a, dtype=np.float64))),
        "mean_b": float(np.mean(np.asarray(b, dtype=np.float64))),
        "mean_diff": float(diff.mean()),
        "ci_low": low,
        "ci_high": high,
        "level": level,
        "n": int(diff.size),
        "side": side,
        "verdict": verdict(low, high, side),
    }


def extreme_claim(
    scores: dict[str, Any],
    subject: str,
    lowest: bool,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Any]:
    """"``subject`` has the lowest (``lowest``) / highest mean score among ``scores``": one comparison of
    ``subject`` against each other entry (side negative for lowest, positive for highest) and their
    conjunction. Returns ``{"verdict", "comparisons"}``."""
    if subject not in scores:
        raise DataError(f"{subject!r} has no scores")
    others = [name for name in scores if name != subject]
    if not others:
        raise DataError(f"{subject!r} has nothing to be compared with")
    side: Side = "negative" if lowest else "positive"
    comparisons = [
        compare(scores[subject], scores[name], side, a_name=subject, b_name=name, resamples=resamples, seed=seed,
                level=level)
        for name in others
    ]
    return {"verdict": combine(c["verdict"] for c in comparisons), "comparisons": comparisons}


def direction(low: float, high: float, names: Sequence[str]) -> str:
    """For a comparison that is not a claim: which of the two names scores higher, or that it is unclear.

    ``names`` = (a, b) of the difference a - b.
    """
    if low > 0.0:
        return f"{names[0]} higher"
    if high < 0.0:
        return f"{names[1]} higher"
    return "no clear difference"
