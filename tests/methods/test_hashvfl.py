"""HashVFL's consistency loss (Qiu et al., IEEE TIFS 2024): fixed per-class targets, the multi-label tie rule and
the loss against a hand computation; a short run with the bn-sign head learns on the demo digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashguard.errors import ConfigError
from hashguard.methods import build_method
from hashguard.methods.hashvfl import bit_balanced_codes, consistency_targets


def test_targets_sum_active_classes_and_ties_go_to_plus_one():
    codes = torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0], [-1.0, -1.0, -1.0, 1.0]])
    labels = torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0], [1.0, 1.0, 1.0], [0, 0, 1.0]])
    # row 1: (2, 0, 0, -2) -> (+, tie +, tie +, -); row 2: (1, -1, -1, -1); row 3: class 2 itself
    expected = [[1, 1, -1, -1], [1, 1, 1, -1], [1, -1, -1, -1], [-1, -1, -1, 1]]
    assert consistency_targets(labels, codes).tolist() == expected


def test_loss_is_the_negative_mean_agreement_over_labelled_rows():
    method = build_method("hashvfl", bits=4, num_classes=3, num_train=5, seed=0)
    method.class_codes.copy_(torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0], [-1.0, -1.0, -1.0, 1.0]]))
    u = torch.tensor([[0.5, -0.5, 0.25, 1.0], [1.0, 1.0, 1.0, 1.0], [0.9, 0.1, -0.3, 0.2]])
    labels = torch.tensor([[1.0, 0, 0], [0, 0, 0], [1.0, 1.0, 0]])  # row 1 has no label: left out
    # row 0 target (1, 1, -1, -1): 0.5 - 0.5 - 0.25 - 1.0 = -1.25; row 2 target (1, 1, 1, -1): 0.9+0.1-0.3-0.2 = 0.5
    hand = -((-1.25) + 0.5) / (2 * 4)
    assert float(method(u, labels, torch.arange(3))) == pytest.approx(hand)
    assert float(method(u, torch.zeros(3, 3), torch.arange(3))) == 0.0


@pytest.mark.parametrize("count, bits", [(10, 16), (21, 32), (80, 16), (3, 5)])
def test_class_codes_are_bit_balanced_distinct_and_seeded(count, bits):
    codes = bit_balanced_codes(count, bits, torch.Generator().manual_seed(3))
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert ((codes > 0).sum(dim=0) == (count + 1) // 2).all()  # every bit +1 for ceil(C/2) classes
    assert len({tuple(row.tolist()) for row in codes}) == count
    again = build_method("hashvfl", bits=bits, num_classes=count, num_train=1, seed=3).class_codes
    assert torch.equal(again, codes)


def test_unreachable_distance_is_one_line():
    with pytest.raises(ConfigError, match="cannot draw"):
        build_method("hashvfl", bits=4, num_classes=8, num_train=1, min_distance=4)


def test_bn_sign_hashvfl_learns_balanced_codes_on_demo_digits(demo_splits):
    """Three epochs of Adam on 800 digits, 16 bits, bn-sign head. Measured (seeds 0-4, one thread): per-bit
    |mean| of the training codes (eval mode) at most 0.08-0.33 (mean over bits 0.040-0.063); mAP over 200
    queries well above random codes' (seed 0: 0.77 on 60 queries; random codes score about 0.1)."""
    from hashguard.retrieval import mean_average_precision as numpy_map
    from hashguard.testing import small_cnn_model, stack_split, torch_threads

    splits, query, database = demo_splits("demo-mnist")
    with torch_threads(1):
        model = small_cnn_model(splits, 16, seed=0, hash_norm="bn-sign")
        x, y = stack_split(splits.train, 800)
        method = build_method("hashvfl", 16, splits.num_classes, 800, seed=0)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(3):
            order = torch.randperm(800, generator=generator)
            for start in range(0, 800, 64):
                batch = order[start : start + 64]
                loss = method(model(x[batch]), y[batch], batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        codes = model.encode(x).float()
        bit_means = codes.mean(dim=0).abs()
        assert bit_means.max() < 0.5 and bit_means.mean() < 0.15
        agreement = (codes == method.targets(y)).float().mean()
        assert agreement > 0.8  # the codes follow their class targets
        qx, qy = stack_split(query, 200)
        dx, dy = stack_split(database, 1000)
        learned = numpy_map(model.encode(qx).numpy(), model.encode(dx).numpy(), qy.numpy(), dy.numpy())
    rng = np.random.default_rng(1)
    random = numpy_map(np.where(rng.random((200, 16)) < 0.5, 1, -1), np.where(rng.random((1000, 16)) < 0.5, 1, -1),
                       qy.numpy(), dy.numpy())
    assert learned > random + 0.3
