"""HashNet and HSWD: hand-computed loss values, the continuation schedule, seeded sliced-Wasserstein draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hashguard.errors import ConfigError
from hashguard.methods import build_method

U = np.array(
    [[0.9, -0.5, 0.2, -0.7], [0.8, -0.6, 0.1, 0.3], [-0.4, 0.7, -0.9, 0.5]],
    dtype=np.float64,
)
Y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float64)


def hashnet_reference(u: np.ndarray, y: np.ndarray, bank_u: np.ndarray, bank_y: np.ndarray, a: float) -> float:
    """Positive-pair mean + negative-pair mean of log(1 + e^theta) - s theta, by explicit loops."""
    positive, negative = [], []
    for i in range(len(u)):
        for j in range(len(bank_u)):
            theta = a * float(np.dot(u[i], bank_u[j]))
            similar = 1.0 if float(np.dot(y[i], bank_y[j])) > 0 else 0.0
            value = math.log(1.0 + math.exp(theta)) - similar * theta
            (positive if similar else negative).append(value)
    pos = sum(positive) / len(positive) if positive else 0.0
    neg = sum(negative) / len(negative) if negative else 0.0
    return pos + neg


def test_hashnet_batch_pairs_match_hand_computation() -> None:
    method = build_method("hashnet", bits=4, num_classes=3, num_train=10, pairs="batch")
    loss = method(torch.tensor(U, dtype=torch.float64), torch.tensor(Y), torch.arange(3))
    assert float(loss) == pytest.approx(hashnet_reference(U, Y, U, Y, a=10 / 4), rel=1e-10)


def test_hashnet_bank_pairs_match_hand_computation() -> None:
    method = build_method("hashnet", bits=4, num_classes=3, num_train=5).double()
    index = torch.tensor([4, 0, 2])
    loss = method(torch.tensor(U), torch.tensor(Y), index)
    bank_u = np.zeros((5, 4))
    bank_y = np.zeros((5, 3))
    bank_u[[4, 0, 2]] = U
    bank_y[[4, 0, 2]] = Y
    assert float(loss) == pytest.approx(hashnet_reference(U, Y, bank_u, bank_y, a=10 / 4), rel=1e-10)


def test_hashnet_custom_a_and_params() -> None:
    method = build_method("hashnet", bits=4, num_classes=3, num_train=3, a=0.1, pairs="batch")
    loss = method(torch.tensor(U), torch.tensor(Y), torch.arange(3))
    assert float(loss) == pytest.approx(hashnet_reference(U, Y, U, Y, a=0.1), rel=1e-10)
    assert method.params()["a"] == 0.1
    assert build_method("hashnet", bits=32, num_classes=3, num_train=3).params()["a"] == pytest.approx(10 / 32)


def test_hashnet_empty_positive_set_is_finite() -> None:
    y = np.eye(3)  # no two items share a label; self-pairs are the only positives in batch mode
    method = build_method("hashnet", bits=4, num_classes=3, num_train=3, pairs="batch")
    loss = method(torch.tensor(U), torch.zeros(3, 3, dtype=torch.float64), torch.arange(3))
    assert torch.isfinite(loss)
    assert float(loss) == pytest.approx(hashnet_reference(U, np.zeros((3, 3)), U, np.zeros((3, 3)), 2.5))
    loss = method(torch.tensor(U), torch.tensor(y), torch.arange(3))
    assert float(loss) == pytest.approx(hashnet_reference(U, y, U, y, 2.5))
    # all pairs similar: no negatives
    ones = np.ones((3, 3))
    loss = method(torch.tensor(U), torch.tensor(ones), torch.arange(3))
    assert float(loss) == pytest.approx(hashnet_reference(U, ones, U, ones, 2.5))


@pytest.mark.parametrize("name", ["hashnet", "hswd"])
def test_continuation_schedule_follows_formula(name: str) -> None:
    method = build_method(name, bits=8, num_classes=3, num_train=3)
    for step in [0, 1, 199, 200, 201, 399, 400, 1000, 1199, 15_700]:
        held = (step // 200) * 200
        assert method.alpha(step) == pytest.approx((1 + 0.005 * held) ** 0.5, rel=1e-12)
    assert method.alpha(199) == 1.0
    assert method.alpha(200) == pytest.approx(math.sqrt(2.0))
    custom = build_method(name, bits=8, num_classes=3, num_train=3, step_size=10, gamma=0.1, power=1.0)
    assert custom.alpha(25) == pytest.approx(1 + 0.1 * 20)
    with pytest.raises(ValueError):
        method.alpha(-1)


@pytest.mark.parametrize("name", ["hashnet", "hswd"])
def test_continuation_does_not_depend_on_forward_calls(name: str) -> None:
    method = build_method(name, bits=4, num_classes=3, num_train=3)
    before = [method.alpha(s) for s in (0, 250, 900)]
    for _ in range(450):
        method(torch.tensor(U, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32), torch.arange(3))
    method.eval()
    method.train()
    assert [method.alpha(s) for s in (0, 250, 900)] == before


def test_hashnet_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError):
        build_method("hashnet", bits=4, num_classes=3, num_train=3, step_size=0)
    with pytest.raises(ConfigError):
        build_method("hashnet", bits=4, num_classes=3, num_train=3, pairs="everything")
    with pytest.raises(ConfigError):
        build_method("hashnet", bits=4, num_classes=3, num_train=3, a=-1.0)
    with pytest.raises(ConfigError):
        build_method("hswd", bits=4, num_classes=3, num_train=3, swd_weight=-0.1)


def test_hswd_matches_hand_computation() -> None:
    method = build_method("hswd", bits=4, num_classes=3, num_train=3, seed=7, pairs="batch")
    reference = method.reference_signs(3, 0).numpy().astype(np.float64)
    assert set(np.unique(reference)) <= {-1.0, 1.0}
    loss = method(torch.tensor(U), torch.tensor(Y), torch.arange(3))
    swd = 0.0
    for k in range(4):
        swd += sum((r - v) ** 2 for r, v in zip(sorted(reference[:, k]), sorted(U[:, k]), strict=True))
    expected = hashnet_reference(U, Y, U, Y, 2.5) + 0.1 * swd / 3 / 4
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert int(method.calls) == 1


def test_hswd_draws_are_seeded_and_resume_with_the_state_dict() -> None:
    u, y, idx = torch.tensor(U, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32), torch.arange(3)
    first = build_method("hswd", bits=4, num_classes=3, num_train=3, seed=3, pairs="batch")
    losses = [float(first(u, y, idx)) for _ in range(6)]
    assert len(set(losses)) > 1  # R is redrawn at every call
    again = build_method("hswd", bits=4, num_classes=3, num_train=3, seed=3, pairs="batch")
    assert [float(again(u, y, idx)) for _ in range(6)] == losses
    # interrupt after 3 calls, restore the state into a fresh method: the next draws continue the sequence
    paused = build_method("hswd", bits=4, num_classes=3, num_train=3, seed=3, pairs="batch")
    for _ in range(3):
        paused(u, y, idx)
    resumed = build_method("hswd", bits=4, num_classes=3, num_train=3, seed=3, pairs="batch")
    resumed.load_state_dict(paused.state_dict())
    assert [float(resumed(u, y, idx)) for _ in range(3)] == losses[3:]
    other = build_method("hswd", bits=4, num_classes=3, num_train=3, seed=4, pairs="batch")
    assert [float(other(u, y, idx)) for _ in range(6)] != losses
