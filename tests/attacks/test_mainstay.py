"""Mainstay codes (docs/attacks.md): optimality by enumeration, edge cases, chunking, CgAT variant."""

from __future__ import annotations

import itertools

import pytest
import torch

from hashguard.errors import ConfigError
from hashguard.mainstay_codes import center_codes, mainstay_codes, mainstay_scores


def _problem(seed: int, bits: int, n: int = 30, classes: int = 5, batch: int = 6):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2, (n, bits), generator=g).float() * 2 - 1
    train_labels = (torch.rand(n, classes, generator=g) < 0.3).float()
    train_labels[0] = 0  # a zero-label training item
    labels = (torch.rand(batch, classes, generator=g) < 0.4).float()
    labels[0] = 0  # a zero-label query
    labels[1] = torch.rand(classes, generator=g) + 0.1  # non-binary, still non-negative
    return labels, codes, train_labels


def _objective(h: torch.Tensor, y: torch.Tensor, codes: torch.Tensor, ylab: torch.Tensor, uniform: bool):
    """Brute-force sum w+ <h, B_j> - sum w- <h, B_j> straight from the definition, one query."""
    total = torch.tensor(0.0, dtype=torch.float64)
    cos = [float(y @ ylab[j]) / (float(y.norm() * ylab[j].norm()) + 1e-8) for j in range(len(codes))]
    pos = [j for j, c in enumerate(cos) if c > 0]
    neg = [j for j, c in enumerate(cos) if c == 0]
    pos_w = sum(1.0 if uniform else cos[j] for j in pos)
    for j in pos:
        total += (1.0 if uniform else cos[j]) / pos_w * float(h @ codes[j])
    for j in neg:
        total -= float(h @ codes[j]) / len(neg)
    return float(total)


@pytest.mark.parametrize("bits", [3, 5, 8])
@pytest.mark.parametrize("weighting", ["cosine", "uniform"])
def test_mainstay_code_is_optimal_by_enumeration(bits, weighting):
    labels, codes, train_labels = _problem(bits, bits)
    m = mainstay_codes(labels, codes, train_labels, weighting=weighting, tie_break="positive")
    candidates = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=bits)))
    for i in range(labels.shape[0]):
        values = [_objective(h, labels[i], codes, train_labels, weighting == "uniform") for h in candidates]
        best = max(values)
        mine = _objective(m[i], labels[i], codes, train_labels, weighting == "uniform")
        assert mine >= best - 1e-9


def test_zero_label_query_is_minus_mean_of_all_codes():
    labels, codes, train_labels = _problem(1, 8)
    m = mainstay_codes(labels[:1], codes, train_labels)
    assert torch.equal(m[0], torch.sign(-codes.mean(dim=0)))


def test_empty_sets_give_zero_weights_not_nan():
    codes = torch.tensor([[1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
    train_labels = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # every training item is a positive: no negatives, m = sign(weighted mean of positives)
    m = mainstay_codes(torch.tensor([[1.0, 0.0]]), codes, train_labels)
    assert torch.equal(m, torch.tensor([[1.0, 0.0, 0.0]]))
    # empty training set: all-zero scores, ties everywhere; resolved on request
    empty = mainstay_scores(torch.tensor([[1.0, 0.0]]), codes[:0], train_labels[:0])
    assert torch.equal(empty, torch.zeros(1, 3, dtype=torch.float64))
    resolved = mainstay_codes(torch.tensor([[1.0, 0.0]]), codes[:0], train_labels[:0], tie_break="negative")
    assert torch.equal(resolved, -torch.ones(1, 3))


def test_chunking_does_not_change_the_codes():
    labels, codes, train_labels = _problem(3, 16, n=101)
    whole = mainstay_scores(labels, codes, train_labels, chunk_size=1000)
    for chunk in (1, 7, 50):
        assert torch.allclose(mainstay_scores(labels, codes, train_labels, chunk_size=chunk), whole, atol=1e-12)


def test_tie_break_options():
    codes = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    train_labels = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0]])
    assert torch.equal(mainstay_codes(y, codes, train_labels), torch.tensor([[0.0, 1.0]]))
    assert torch.equal(mainstay_codes(y, codes, train_labels, tie_break="positive"), torch.tensor([[1.0, 1.0]]))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    r1 = mainstay_codes(y, codes, train_labels, tie_break="random", generator=g1)
    assert torch.equal(r1, mainstay_codes(y, codes, train_labels, tie_break="random", generator=g2))
    assert set(r1.flatten().tolist()) <= {-1.0, 1.0}
    with pytest.raises(ConfigError):
        mainstay_codes(y, codes, train_labels, tie_break="random")
    with pytest.raises(ConfigError):
        mainstay_codes(y, codes, train_labels, tie_break="coin")


def test_cgat_centre_code_is_unweighted():
    labels, codes, train_labels = _problem(4, 12, n=40)
    binary = (labels > 0).float()
    centre = center_codes(binary, codes, train_labels)
    for i in range(binary.shape[0]):
        pos = (binary[i] @ train_labels.t()) > 0
        mean_p = codes[pos].mean(dim=0) if pos.any() else torch.zeros(12)
        mean_n = codes[~pos].mean(dim=0) if (~pos).any() else torch.zeros(12)
        assert torch.equal(centre[i], torch.sign(mean_p - mean_n))


def test_bad_inputs_raise_config_errors():
    codes = torch.ones(3, 4)
    with pytest.raises(ConfigError):
        mainstay_codes(torch.ones(1, 2), codes, torch.ones(2, 2))
    with pytest.raises(ConfigError):
        mainstay_codes(torch.ones(1, 3), codes, torch.ones(3, 2))
    with pytest.raises(ConfigError):
        mainstay_codes(-torch.ones(1, 2), codes, torch.ones(3, 2))
