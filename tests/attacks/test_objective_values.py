"""Attack objectives against values computed by hand or by plain loops written here from the papers' formulas.

Covered: SAAT's masked mainstay loss (Yuan et al., IEEE TIFS 2023), HAG's loss (Yang et al., IEEE TCYB 2018),
SDHA's surrogate (Lu et al., ICMR 2021), the DHTA / P2P anchor (Bai et al., ECCV 2020), THA's circle loss
(Wang et al., SIGIR 2021) and ProS-GAN's GAN losses (Wang et al., CVPR 2021).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hashguard.attacks import AttackContext, mainstay_loss
from hashguard.attacks.anchor import AnchorObjective, P2PObjective, anchor_codes
from hashguard.attacks.hag import hag_loss
from hashguard.attacks.prosgan import discriminator_loss, generator_loss
from hashguard.attacks.prototype import PrototypeNet, circle_loss, circle_prototype_loss
from hashguard.attacks.sdha import SDHAObjective, TargetedSDHAObjective
from hashguard.errors import ConfigError

# ------------------------------------------------------------------------------------------ masked mainstay loss

U = torch.tensor([[0.8, -0.6, 0.3], [-0.2, 0.9, -0.7]], dtype=torch.float64)
M = torch.tensor([[1.0, 1, -1], [1, -1, 0]], dtype=torch.float64)  # the 0 is a mainstay tie


def test_masked_mainstay_loss_by_hand():
    """s = u * m = [[0.8, -0.6, -0.3], [-0.2, -0.9, 0]].

    non-targeted: active s > -0.5: 0.8, -0.3, -0.2, 0 -> (s + 2) s = 2.24 - 0.51 - 0.36 + 0 = 1.37, / 4 = 0.3425;
    targeted: active s < 0.5: -0.6, -0.3, -0.2, -0.9, 0 -> -0.84 - 0.51 - 0.36 - 0.99 + 0 = -2.70, / 5 -> +0.54.
    """
    u = U.clone().requires_grad_(True)
    loss = mainstay_loss(u, M)
    assert loss.item() == pytest.approx(0.3425, rel=1e-12)
    (grad,) = torch.autograd.grad(loss, u)
    active = torch.tensor([[1.0, 0, 1], [1, 0, 1]], dtype=torch.float64)
    s = U * M
    assert torch.allclose(grad, active * (2 * s + 2) * M / 4, rtol=0, atol=1e-12)
    targeted = mainstay_loss(U, M, targeted=True)
    assert targeted.item() == pytest.approx(0.54, rel=1e-12)
    # the plain (SAAT inner) loss: mean(u * m) = (0.8 - 0.6 - 0.3 - 0.2 - 0.9 + 0) / 6
    assert mainstay_loss(U, M, kind="plain").item() == pytest.approx(-1.2 / 6, rel=1e-12)
    assert mainstay_loss(U, M, targeted=True, kind="plain").item() == pytest.approx(1.2 / 6, rel=1e-12)


def test_masked_mainstay_loss_without_active_bits_is_zero_with_a_zero_gradient():
    u = torch.tensor([[-0.9, 0.7]], requires_grad=True)
    m = torch.tensor([[1.0, -1.0]])  # s = -0.9, -0.7: nothing above -0.5
    loss = mainstay_loss(u, m)
    (grad,) = torch.autograd.grad(loss, u)
    assert loss.item() == 0.0 and torch.equal(grad, torch.zeros_like(u))
    assert mainstay_loss(-u.detach(), m, targeted=True).item() == 0.0  # s = 0.9, 0.7: nothing below 0.5


# ---------------------------------------------------------------------------------------------------- HAG loss


def hag_reference(u: torch.Tensor, h: torch.Tensor, beta: float) -> torch.Tensor:
    """HAG's loss as explicit loops; the mask is computed from detached values (a constant)."""
    batch, bits = u.shape
    first, second = 0.0, 0.0
    for i in range(batch):
        num, den, bal = 0.0, 0.0, 0.0
        for k in range(bits):
            sign_h = 1.0 if h[i, k] > 0 else (-1.0 if h[i, k] < 0 else 0.0)
            d = abs(float(u[i, k].detach()) - sign_h)
            mu = (math.copysign(1.0, 1.5 - d) if d != 1.5 else 0.0) * 0.5 + 0.5
            num = num + mu**2 * u[i, k] * h[i, k]
            den += mu
            bal = bal + mu * u[i, k]
        first = first + (num / (den + 1e-8) + 1) ** 2
        second = second + (bal / bits) ** 2
    return first / batch + beta * second / batch


def test_hag_loss_by_hand():
    """Query 1: h = [0.5, -0.2, 0.8, -0.9], h' = [0.6, 0.3, -0.7, -0.5]: |h' - sign h| = [0.4, 1.3, 1.7, 0.5],
    mu = [1, 1, 0, 1]; sum mu^2 h' h = 0.30 - 0.06 + 0.45 = 0.69, / 3 = 0.23 -> (1.23)^2 = 1.5129;
    balance (0.6 + 0.3 - 0.5) / 4 = 0.1 -> 0.01.
    Query 2: h = [-0.4, 0.1, 0.2, -0.3], h' = [0.5, -0.25, 0.75, -0.75]: |h' - sign h| = [1.5, 1.25, 0.25, 0.25],
    mu = [0.5, 1, 1, 1] (exactly on the boundary: 0.5); sum mu^2 h' h = -0.05 - 0.025 + 0.15 + 0.225 = 0.3,
    / 3.5 = 3/35 -> (38/35)^2; balance (0.25 - 0.25 + 0.75 - 0.75) / 4 = 0.
    L = (1.5129 + (38/35)^2) / 2 + beta * (0.01 + 0) / 2.
    """
    h = torch.tensor([[0.5, -0.2, 0.8, -0.9], [-0.4, 0.1, 0.2, -0.3]], dtype=torch.float64)
    u = torch.tensor([[0.6, 0.3, -0.7, -0.5], [0.5, -0.25, 0.75, -0.75]], dtype=torch.float64)
    for beta in (1.0, 3.0):
        expected = (1.5129 + (38 / 35) ** 2) / 2 + beta * 0.01 / 2
        assert hag_loss(u, h, beta).item() == pytest.approx(expected, rel=1e-7)  # 1e-8 in the denominators
        assert hag_loss(u, h, beta).item() == pytest.approx(float(hag_reference(u, h, beta)), rel=1e-12)


def test_hag_loss_and_gradient_match_the_loop_reference():
    g = torch.Generator().manual_seed(0)
    h = torch.tanh(torch.randn(5, 8, generator=g, dtype=torch.float64))
    u = torch.tanh(2 * torch.randn(5, 8, generator=g, dtype=torch.float64)).requires_grad_(True)
    mine = hag_loss(u, h, 1.0)
    ref = hag_reference(u, h, 1.0)
    assert mine.item() == pytest.approx(ref.item(), rel=1e-12)
    (g_mine,) = torch.autograd.grad(mine, u)
    (g_ref,) = torch.autograd.grad(ref, u)
    assert torch.allclose(g_mine, g_ref, rtol=1e-10, atol=1e-12)
    masked = (u.detach() * h.sign() < -0.5).sum()
    assert 0 < masked < u.numel()  # the example exercises both mask values


# -------------------------------------------------------------------------------------------------------- SDHA

K_SDHA = 5
# 8 training codes with duplicates (rows 0 = 4 and 2 = 6 = 7) and labels over 3 classes
SDHA_CODES = torch.tensor(
    [
        [1, 1, -1, 1, -1],
        [-1, 1, 1, -1, 1],
        [1, -1, -1, -1, 1],
        [-1, -1, 1, 1, 1],
        [1, 1, -1, 1, -1],
        [1, 1, 1, 1, 1],
        [1, -1, -1, -1, 1],
        [1, -1, -1, -1, 1],
    ],
    dtype=torch.int8,
)
SDHA_LABELS = torch.tensor(
    [[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float32
)


class Fixed(nn.Module):
    """A stand-in model whose clean codes are given."""

    def __init__(self, codes: torch.Tensor) -> None:
        super().__init__()
        self.codes = codes

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return self.codes


def sdha_reference(u, clean, labels, images, x_adv, targeted, floor, weight=25.0, mse_weight=1.0):
    """SDHA's loss as loops over queries and every label-sharing training item (duplicates counted)."""
    bits = u.shape[1]
    codes = SDHA_CODES.double()
    terms = []
    for i in range(u.shape[0]):
        refs = [codes[j] for j in range(codes.shape[0]) if float(labels[i] @ SDHA_LABELS[j].double()) > 0]
        if not refs:
            if targeted:
                terms.append(torch.zeros((), dtype=torch.float64))  # documented guard: no surrogate term
                continue
            refs = [torch.where(clean[i] >= 0, 1.0, -1.0).double()]
        values = []
        for r in refs:
            q = u[i]
            d_h = 0.5 * (bits - float(torch.sign(q.detach()) @ r))
            if targeted:
                d = 0.5 * sum(abs(q[k] - r[k]) * torch.sigmoid(-10 * q[k] * r[k]) for k in range(bits))
                w = (d_h + 1e-8) ** 0.3
            else:
                d = 0.5 * sum(abs(q[k] - r[k]) * torch.sigmoid(5 * q[k] * r[k]) for k in range(bits)) + sum(
                    1 - torch.sigmoid(5 * q[k] * r[k]) for k in range(bits)
                )
                w = (d_h + 1e-8) ** -0.5 if floor is None else max(d_h, floor) ** -0.5
            values.append(d * w)
        terms.append(sum(values) / len(values))
    surrogate = sum(terms) / len(terms)
    surrogate = surrogate if targeted else -surrogate
    mse = ((x_adv - images) ** 2).mean()
    return mse_weight * mse + weight / bits * surrogate


def _sdha_case():
    # query 0 shares class 0 (items 0, 1, 2, 5, 6); query 1 class 1 (items 1, 3, 4, 7); query 2 classes 0 and 1
    # (all 8); query 3 class 2 (none: the empty reference set)
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float64)
    u = torch.tensor(
        [
            [0.7, 0.4, -0.6, 0.2, -0.9],  # sign = item 0's code: d_H = 0 for items 0 and 4
            [-0.3, -0.8, 0.5, 0.6, 0.1],  # sign = item 3's code
            [0.2, -0.1, -0.4, -0.7, 0.3],
            [0.5, -0.5, 0.25, -0.25, 0.9],
        ],
        dtype=torch.float64,
    )
    clean = torch.tensor(
        [
            [0.1, 0.2, 0.3, -0.4, 0.5],
            [0.2, -0.2, 0.2, -0.2, 0.2],
            [-0.1, -0.1, 0.1, 0.1, 0.1],
            [0.3, 0.3, -0.3, -0.3, 0.3],
        ],
        dtype=torch.float64,
    )
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 1, 3, 3, generator=g, dtype=torch.float64)
    x_adv = (images + 0.03 * torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    return labels, u, clean, images, x_adv


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("min_distance", [1e-8, 1.0])
def test_sdha_loss_matches_the_loop_reference(targeted, min_distance):
    """Both the reference weight (d_H + 1e-8)^-1/2 (min_distance 1e-8: weight 1e4 at d_H = 0) and the floor at
    d_H = 1 (weight 1); the unique-code grouping equals the plain mean over every label-sharing item."""
    labels, u, clean, images, x_adv = _sdha_case()
    cls = TargetedSDHAObjective if targeted else SDHAObjective
    objective = cls(weight=25.0, min_distance=min_distance, mse_weight=1.0)
    context = AttackContext(train_codes=SDHA_CODES, train_labels=SDHA_LABELS)
    generator = torch.Generator()
    objective.setup(Fixed(clean), context, generator)
    assert objective._unique is not None and objective._unique.shape[0] == 5  # 8 codes, 5 distinct
    reference_labels = labels.float()
    prepared = objective.prepare(
        Fixed(clean), images, None if targeted else reference_labels, reference_labels if targeted else None,
        context, generator,
    )
    assert prepared.info["empty_reference_sets"] == 1
    u_mine = u.clone().requires_grad_(True)
    mine = prepared.loss(u_mine, x_adv)
    u_ref = u.clone().requires_grad_(True)
    floor = None if min_distance < 1e-6 else min_distance
    ref = sdha_reference(u_ref, clean, labels, images, x_adv, targeted, floor)
    assert mine.item() == pytest.approx(ref.item(), rel=1e-6)
    (g_mine,) = torch.autograd.grad(mine, u_mine)
    (g_ref,) = torch.autograd.grad(ref, u_ref)
    assert torch.allclose(g_mine, g_ref, rtol=1e-6, atol=1e-9)


def test_sdha_reference_epsilon_and_floor_differ_where_a_code_is_hit():
    """Query 0's sign code equals two of its reference codes: weight 1e4 there with the reference epsilon, 1 with
    the floor, so the two losses differ by orders of magnitude (the test above would notice a swapped weight)."""
    labels, u, clean, images, x_adv = _sdha_case()
    values = {}
    for floor in (1e-8, 1.0):
        objective = SDHAObjective(min_distance=floor)
        context = AttackContext(train_codes=SDHA_CODES, train_labels=SDHA_LABELS)
        prepared = objective.prepare(Fixed(clean), images, labels.float(), None, context, torch.Generator())
        values[floor] = prepared.loss(u, images).item()  # x_adv = images: no MSE term
    assert values[1e-8] < -100 * abs(values[1.0])


# ------------------------------------------------------------------------------------------------ DHTA / P2P

TARGET = torch.tensor([[1.0, 0, 0]])
DB_LABELS = torch.tensor(
    [[1.0, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]
)  # items 0, 3, 5 carry exactly the target label; item 1 and 6 carry a superset of it
DB_CODES = torch.tensor(
    [
        [1, 1, -1, 1],
        [-1, -1, 1, -1],
        [-1, -1, 1, -1],
        [1, -1, -1, 1],
        [-1, -1, 1, -1],
        [-1, 1, -1, 1],
        [-1, -1, 1, -1],
        [-1, -1, 1, -1],
    ],
    dtype=torch.int8,
)
CANDIDATES = [DB_CODES[i].float() for i in (0, 3, 5)]


def test_dhta_anchor_is_the_sign_of_the_sum_of_the_exact_label_codes():
    """n = 9 with 3 candidates: all of them, sign([1, -1, -1, 1] + [1, 1, -1, 1] + [-1, 1, -1, 1]) = [1, 1, -1, 1];
    a superset label ([1, 1, 0]) is not an exact match (those items' codes would flip every bit)."""
    targets = TARGET.repeat(5, 1)
    anchors = anchor_codes(targets, DB_CODES, DB_LABELS, 9, torch.Generator().manual_seed(0), replacement=False)
    assert torch.equal(anchors, torch.tensor([[1.0, 1, -1, 1]]).repeat(5, 1))
    assert torch.equal(anchors[0], torch.sign(sum(CANDIDATES)))
    # with replacement (the protocol's draw): sign(n0 c0 + n1 c1 + n2 c2) for counts n0 + n1 + n2 = 9, every
    # composition enumerated
    possible = {
        tuple(torch.sign(n0 * CANDIDATES[0] + n1 * CANDIDATES[1] + (9 - n0 - n1) * CANDIDATES[2]).tolist())
        for n0 in range(10) for n1 in range(10 - n0)
    }
    drawn = anchor_codes(TARGET.repeat(40, 1), DB_CODES, DB_LABELS, 9, torch.Generator().manual_seed(0))
    assert {tuple(a.tolist()) for a in drawn} <= possible
    assert len({tuple(a.tolist()) for a in drawn}) > 1  # the counts vary between queries


def test_p2p_anchor_is_one_candidate_code_exactly():
    targets = TARGET.repeat(30, 1)
    anchors = anchor_codes(targets, DB_CODES, DB_LABELS, 1, torch.Generator().manual_seed(1))
    seen = set()
    for anchor in anchors:
        matches = [i for i, c in zip((0, 3, 5), CANDIDATES, strict=True) if torch.equal(anchor, c)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {0, 3, 5}  # 30 draws: each candidate appears (a miss has probability 3 (2/3)^30 ~ 1.6e-5)


def test_anchor_draws_without_replacement_and_keeps_ties():
    """Candidates [1, 1], [-1, -1], [1, -1], n = 2: a pair without replacement gives [0, 0], [1, 0] or [0, -1];
    a draw with replacement could also give a single code twice ([1, 1], [-1, -1] or [1, -1])."""
    codes = torch.tensor([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=torch.int8)
    labels = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1]])
    targets = torch.tensor([[1.0, 0]]).repeat(60, 1)
    anchors = anchor_codes(targets, codes, labels, 2, torch.Generator().manual_seed(2), replacement=False)
    pairs = {(0.0, 0.0), (1.0, 0.0), (0.0, -1.0)}
    assert {tuple(a.tolist()) for a in anchors} == pairs
    # with replacement (the protocol's draw) a single code twice, i.e. that code, also occurs: 60 draws of a
    # pair, each a repeat with probability 1/3 (missing all three singles has probability < 1e-9)
    anchors = anchor_codes(targets, codes, labels, 2, torch.Generator().manual_seed(2), replacement=True)
    singles = {(1.0, 1.0), (-1.0, -1.0), (1.0, -1.0)}
    assert {tuple(a.tolist()) for a in anchors} == pairs | singles


def test_anchor_with_one_candidate_is_that_code_for_any_n():
    """n = 9 draws with replacement from a single exact candidate: the anchor is its code."""
    codes = torch.tensor([[1, -1, 1], [-1, -1, -1]], dtype=torch.int8)
    labels = torch.tensor([[1.0, 0], [0, 1]])
    for replacement in (True, False):
        anchors = anchor_codes(torch.tensor([[1.0, 0]]), codes, labels, 9, torch.Generator().manual_seed(0),
                               replacement=replacement)
        assert anchors.tolist() == [[1.0, -1.0, 1.0]]


def test_anchor_objective_loss_and_theory_code():
    """Four exact candidates (rows 0, 3, 5 and an added [-1, -1, 1, -1]) sum to [0, -2, -2, 2]: bit 0 ties (sign 0),
    so it drops out of the loss -mean(u * a), and the theory code resolves it to +1."""
    codes = torch.cat([DB_CODES, torch.tensor([[-1, -1, 1, -1]], dtype=torch.int8)])
    labels = torch.cat([DB_LABELS, torch.tensor([[1.0, 0, 0]])])
    # sum of rows 0, 3, 5, 8: [1+1-1-1, 1-1+1-1, -1-1-1+1, 1+1+1-1] = [0, 0, -2, 2]
    context = AttackContext(database_codes=codes, database_labels=labels)
    images = torch.rand(2, 1, 2, 2)
    for cls, n in ((AnchorObjective, 9), (P2PObjective, 1)):
        assert cls().n_anchors == n and cls().replacement is True  # the protocol's draw
        objective = cls(replacement=False)
        prepared = objective.prepare(Fixed(torch.zeros(2, 4)), images, torch.zeros(2, 3), TARGET.repeat(2, 1),
                                     context, torch.Generator().manual_seed(0))
        u = torch.tensor([[0.5, -0.5, 0.25, 0.75], [-0.1, 0.2, -0.3, 0.4]])
        anchors = anchor_codes(TARGET.repeat(2, 1), codes, labels, n, torch.Generator().manual_seed(0),
                               replacement=False)
        assert prepared.loss(u, images).item() == pytest.approx(-float((u * anchors).sum()) / 8, rel=1e-6)
        if n == 9:
            assert torch.equal(anchors, torch.tensor([[0.0, 0, -1, 1]]).repeat(2, 1))
            assert prepared.info["anchor_ties"] == 4
            assert prepared.loss(u, images).item() == pytest.approx(-(-0.25 + 0.75 + 0.3 + 0.4) / 8, rel=1e-6)
            assert torch.equal(prepared.theory_codes, torch.tensor([[0.0, 0, -1, 1]]).repeat(2, 1))
    with pytest.raises(ConfigError, match="matches no database item"):
        anchor_codes(torch.tensor([[0.0, 0, 1]]), codes, labels, 9, torch.Generator())


# ---------------------------------------------------------------------------------------------- THA circle loss


def circle_reference(similarity: torch.Tensor, positive: torch.Tensor, gamma: float = 1.0, triu: bool = False):
    """softplus(logsumexp_n(a_n s_n gamma) + logsumexp_p(-a_p s_p gamma)) over all (or only j > i) pairs."""
    pos, neg = [], []
    for i in range(similarity.shape[0]):
        for j in range(similarity.shape[1]):
            if triu and j <= i:
                continue
            s = float(similarity[i, j])
            if positive[i, j]:
                pos.append(-max(0.0, 2 - s) * s * gamma)
            else:
                neg.append(max(0.0, s + 2) * s * gamma)

    def lse(values):
        top = max(values)
        return top + math.log(sum(math.exp(v - top) for v in values))

    return math.log1p(math.exp(lse(neg) + lse(pos)))


def test_circle_loss_by_hand():
    """s = [[0.5, -0.25]], pair 0 positive: a_p = 1.5, -a_p s_p = -0.75; a_n = 1.75, a_n s_n = -0.4375;
    L = softplus(-0.4375 - 0.75) = log(1 + exp(-1.1875))."""
    s = torch.tensor([[0.5, -0.25]], dtype=torch.float64)
    loss = circle_loss(s, torch.tensor([[True, False]]))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.1875)), rel=1e-12)


def test_circle_loss_uses_all_pairs_not_the_upper_triangle():
    g = torch.Generator().manual_seed(0)
    s = torch.tanh(torch.randn(4, 7, generator=g, dtype=torch.float64))
    positive = torch.rand(4, 7, generator=g) < 0.4
    positive[3, 0] = True  # a positive below the diagonal, which the triangular mask would drop
    s_req = s.clone().requires_grad_(True)
    loss = circle_loss(s_req, positive)
    assert loss.item() == pytest.approx(circle_reference(s, positive), rel=1e-12)
    assert abs(loss.item() - circle_reference(s, positive, triu=True)) > 1e-3
    # a_p and a_n are constants: d L / d s_p = -a_p * softmax weight * sigmoid(total), etc.
    (grad,) = torch.autograd.grad(loss, s_req)
    a = torch.where(positive, -(2 - s).clamp_min(0), (s + 2).clamp_min(0))
    logits = a * s
    total = torch.logsumexp(logits[~positive], 0) + torch.logsumexp(logits[positive], 0)
    weights = torch.zeros_like(s)
    weights[positive] = torch.softmax(logits[positive], 0)
    weights[~positive] = torch.softmax(logits[~positive], 0)
    assert torch.allclose(grad, torch.sigmoid(total) * weights * a, rtol=1e-10, atol=1e-12)


def test_circle_loss_without_positives_or_negatives_is_zero():
    s = torch.rand(2, 3, requires_grad=True)
    for mask in (torch.zeros(2, 3, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)):
        loss = circle_loss(s, mask)
        (grad,) = torch.autograd.grad(loss, s)
        assert loss.item() == 0.0 and torch.equal(grad, torch.zeros_like(s))


def test_prototype_loss_is_circle_over_batch_plus_quantisation():
    torch.manual_seed(0)
    net = PrototypeNet(3, 6, hidden=8)
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 2, (9, 6), generator=g).float() * 2 - 1
    labels = (torch.rand(9, 3, generator=g) < 0.5).float()
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]])
    with torch.no_grad():
        h = net(targets).double()
    sim = h @ codes.double().t() / 6
    positive = (targets @ labels.t()) > 0
    quant = float(((torch.sign(h) - h) ** 2).sum()) / (1e4 * 5)
    expected = circle_reference(sim, positive) / 5 + quant
    assert circle_prototype_loss(net, targets, codes, labels).item() == pytest.approx(expected, rel=1e-6)
    assert quant > 0


# --------------------------------------------------------------------------------------------- ProS-GAN losses


class LinearDisc(nn.Module):
    """D(x) = flatten(x) @ A: a stub discriminator with C + 1 = 3 outputs."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.a


class TanhHash(nn.Module):
    """H(x) = tanh(flatten(x) @ P): a stub hashing model (K = 4) that records the images it is fed."""

    def __init__(self, p: torch.Tensor) -> None:
        super().__init__()
        self.p = p
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        self.seen.append(x.detach())
        return torch.tanh(alpha * x.flatten(1) @ self.p)


def _gan_case():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 2, 2, generator=g, dtype=torch.float64) * 2 - 1
    x_adv = (x + 0.2 * torch.randn(3, 1, 2, 2, generator=g, dtype=torch.float64)).clamp(-1, 1)
    y = torch.tensor([[1.0, 0], [0, 1], [1, 1]], dtype=torch.float64)
    t = torch.tensor([[0.0, 1], [1, 0], [1, 0]], dtype=torch.float64)
    disc = LinearDisc(torch.randn(4, 3, generator=g, dtype=torch.float64))
    hasher = TanhHash(torch.randn(4, 4, generator=g, dtype=torch.float64))
    prototypes = torch.tensor([[1.0, -1, 1, -1], [-1, -1, 1, 1], [1, 1, 1, -1]], dtype=torch.float64)
    return x, x_adv, y, t, disc, hasher, prototypes


def _mse(outputs: np.ndarray, targets: np.ndarray) -> float:
    total = 0.0
    for i in range(outputs.shape[0]):
        for j in range(outputs.shape[1]):
            total += (outputs[i, j] - targets[i, j]) ** 2
    return total / outputs.size


def test_prosgan_discriminator_loss_lsgan_targets():
    """L_D = 1/2 [MSE(D(x~), [y, 0]) + MSE(D(x~_adv), [t, 1])]; no gradient reaches x~_adv."""
    x, x_adv, y, t, disc, _, _ = _gan_case()
    a = disc.a.detach().numpy()
    real_out = x.reshape(3, 4).numpy() @ a
    fake_out = x_adv.reshape(3, 4).numpy() @ a
    real_target = np.concatenate([y.numpy(), np.zeros((3, 1))], axis=1)
    fake_target = np.concatenate([t.numpy(), np.ones((3, 1))], axis=1)
    expected = 0.5 * (_mse(real_out, real_target) + _mse(fake_out, fake_target))
    x_adv = x_adv.clone().requires_grad_(True)
    loss = discriminator_loss(disc, x, x_adv, y, t)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    grads = torch.autograd.grad(loss, [x_adv, disc.a], allow_unused=True)
    assert grads[0] is None and grads[1] is not None


@pytest.mark.parametrize("rec_weight, hash_weight", [(50.0, 5.0), (100.0, 2.0)])
def test_prosgan_generator_loss(rec_weight, hash_weight):
    """L_G = w_rec MSE(x~_adv, x~) + w_hash (1 - mean(H((x~_adv + 1)/2) * p)) + MSE(D(x~_adv), [t, 0])."""
    x, x_adv, _, t, disc, hasher, prototypes = _gan_case()
    xa = x_adv.reshape(3, 4).numpy()
    rec = _mse(xa, x.reshape(3, 4).numpy())
    codes = np.tanh(((xa + 1) / 2) @ hasher.p.numpy())
    agreement = sum(codes[i, k] * prototypes[i, k].item() for i in range(3) for k in range(4)) / 12
    adv_target = np.concatenate([t.numpy(), np.zeros((3, 1))], axis=1)
    expected = rec_weight * rec + hash_weight * (1 - agreement) + _mse(xa @ disc.a.detach().numpy(), adv_target)
    loss = generator_loss(hasher, disc, x, x_adv, t, prototypes, rec_weight, hash_weight)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert torch.allclose(hasher.seen[0], (x_adv + 1) / 2)  # the hashing model is fed [0, 1] images
    assert 0 <= float(hasher.seen[0].min()) and float(hasher.seen[0].max()) <= 1
