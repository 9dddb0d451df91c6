"""Paired bootstrap intervals and verdicts (hashguard.report.claims) against hand-computed and brute-force values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hashguard.errors import DataError
from hashguard.report import claims
from hashguard.report.claims import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    bootstrap_interval,
    bootstrap_means,
    combine,
    compare,
    extreme_claim,
    paired_differences,
    verdict,
)


def test_paired_differences_are_elementwise_and_checked() -> None:
    assert paired_differences([0.5, 0.25, 1.0], [0.25, 0.5, 1.0]).tolist() == [0.25, -0.25, 0.0]
    with pytest.raises(DataError, match="same queries"):
        paired_differences([0.1, 0.2], [0.1])
    with pytest.raises(DataError, match="no queries"):
        paired_differences([], [])
    with pytest.raises(DataError, match="non-finite"):
        paired_differences([0.1, float("nan")], [0.1, 0.2])


@pytest.mark.parametrize("value", [-0.0625, 0.0, 0.125])
def test_constant_differences_give_a_degenerate_interval(value: float) -> None:
    # every resample of a constant sample has the same mean: the interval is the point itself
    low, high = bootstrap_interval(np.full(37, value))
    assert low == high == pytest.approx(value, abs=1e-15)


def test_verdict_rules_at_the_boundaries() -> None:
    assert verdict(-0.3, -0.1, "negative") == REPRODUCED
    assert verdict(-0.3, -0.1, "positive") == NOT_REPRODUCED
    assert verdict(0.1, 0.3, "positive") == REPRODUCED
    assert verdict(0.1, 0.3, "negative") == NOT_REPRODUCED
    for low, high in ((-0.1, 0.1), (0.0, 0.2), (-0.2, 0.0), (0.0, 0.0)):  # an end point at 0 contains 0
        assert verdict(low, high, "negative") == INCONCLUSIVE
        assert verdict(low, high, "positive") == INCONCLUSIVE
    with pytest.raises(DataError):
        verdict(0.1, 0.2, "sideways")  # type: ignore[arg-type]


def test_known_sign_sample_lies_on_its_side() -> None:
    # all differences positive: every bootstrap mean lies in [min, max] of the sample, so the interval does too
    d = np.array([0.01, 0.2, 0.05, 0.3, 0.07, 0.12, 0.02])
    low, high = bootstrap_interval(d)
    assert d.min() <= low <= d.mean() <= high <= d.max()
    assert verdict(low, high, "positive") == REPRODUCED
    low, high = bootstrap_interval(-d)
    assert verdict(low, high, "negative") == REPRODUCED and verdict(low, high, "positive") == NOT_REPRODUCED


def test_bootstrap_equals_a_numpy_reimplementation_with_the_same_seed() -> None:
    d = np.random.default_rng(5).normal(0.02, 0.1, size=50)
    rng = np.random.default_rng(3)
    index = rng.integers(0, d.size, size=(500, d.size))
    means = d[index].mean(axis=1)
    expected = np.quantile(means, [0.025, 0.975])
    assert bootstrap_interval(d, resamples=500, seed=3) == pytest.approx(tuple(expected), abs=0)
    # another seed draws other resamples
    assert bootstrap_interval(d, resamples=500, seed=4) != pytest.approx(tuple(expected), abs=0)


def test_block_wise_drawing_gives_the_same_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    d = np.linspace(-1.0, 2.0, 13)
    whole = bootstrap_means(d, resamples=101, seed=7)
    monkeypatch.setattr(claims, "_CHUNK", 13 * 4)  # 4 resamples per block, the last block shorter
    assert np.array_equal(bootstrap_means(d, resamples=101, seed=7), whole)


def test_bootstrap_matches_the_exact_enumeration_of_a_tiny_sample() -> None:
    # n = 4: the bootstrap distribution of the mean is exactly the 4^4 = 256 equally likely index tuples
    d = np.array([-0.4, 0.1, 0.3, 1.0])
    exact = np.sort([d[list(t)].mean() for t in itertools.product(range(4), repeat=4)])
    means = bootstrap_means(d, resamples=40_000, seed=0)
    # each possible mean value is drawn with its exact probability (+-0.01 at 40,000 draws: > 6 sigma)
    values, counts = np.unique(exact.round(12), return_counts=True)
    drawn = np.array([np.isclose(means, v).mean() for v in values])
    assert np.abs(drawn - counts / 256).max() < 0.01
    # so the percentile interval sits between the exact 1 % and 4 % (96 % and 99 %) quantiles
    low, high = bootstrap_interval(d, resamples=40_000, seed=0)
    assert np.quantile(exact, 0.01) <= low <= np.quantile(exact, 0.04)
    assert np.quantile(exact, 0.96) <= high <= np.quantile(exact, 0.99)


def test_pairing_detects_a_small_consistent_gap() -> None:
    # per-query scores that vary a lot between queries, and B always 0.02 above A: the paired interval is the
    # point -0.02 although the two means' spreads overlap widely
    base = np.random.default_rng(1).uniform(0.1, 0.9, size=40)
    result = compare(base, base + 0.02, "negative", a_name="mainstay", b_name="hag")
    assert result["mean_diff"] == pytest.approx(-0.02)
    assert result["ci_low"] == pytest.approx(-0.02) and result["ci_high"] == pytest.approx(-0.02)
    assert result["verdict"] == REPRODUCED and result["n"] == 40
    assert result["mean_a"] == pytest.approx(base.mean()) and result["mean_b"] == pytest.approx(base.mean() + 0.02)
    assert (result["a"], result["b"], result["side"]) == ("mainstay", "hag", "negative")


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([REPRODUCED], REPRODUCED),
        ([REPRODUCED, REPRODUCED, REPRODUCED], REPRODUCED),
        ([REPRODUCED, INCONCLUSIVE], INCONCLUSIVE),
        ([INCONCLUSIVE, INCONCLUSIVE], INCONCLUSIVE),
        ([REPRODUCED, NOT_REPRODUCED], NOT_REPRODUCED),
        ([INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED], NOT_REPRODUCED),
    ],
)
def test_conjunction_rule(items: list[str], expected: str) -> None:
    assert combine(items) == expected


def test_conjunction_rejects_nothing_and_unknown_verdicts() -> None:
    with pytest.raises(DataError):
        combine([])
    with pytest.raises(DataError):
        combine(["maybe"])


def test_lowest_among_three_is_the_conjunction_of_its_pairs() -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(0.2, 0.8, size=60)
    noise = rng.normal(0.0, 0.01, size=60)
    scores = {"mainstay": base, "hag": base + 0.05, "sdha": base + noise}  # beats HAG, ties SDHA
    result = extreme_claim(scores, "mainstay", lowest=True)
    pairs = {c["b"]: c["verdict"] for c in result["comparisons"]}
    assert pairs == {"hag": REPRODUCED, "sdha": INCONCLUSIVE} and result["verdict"] == INCONCLUSIVE
    scores["sdha"] = base - 0.03  # SDHA beats the mainstay attack
    result = extreme_claim(scores, "mainstay", lowest=True)
    assert {c["b"]: c["verdict"] for c in result["comparisons"]}["sdha"] == NOT_REPRODUCED
    assert result["verdict"] == NOT_REPRODUCED
    scores["sdha"] = base + 0.01
    assert extreme_claim(scores, "mainstay", lowest=True)["verdict"] == REPRODUCED
    # "highest" flips the claimed side
    assert extreme_claim(scores, "mainstay", lowest=False)["verdict"] == NOT_REPRODUCED
    with pytest.raises(DataError):
        extreme_claim({"mainstay": base}, "mainstay", lowest=True)
