"""Properties every hashing method shares: registration, gradients, zero-label rows, seeding, params."""

from __future__ import annotations

import pytest
import torch

from hashguard.errors import ConfigError
from hashguard.methods import METHODS, build_method

#: every registered method: a new one is held to these properties without editing this file
ALL_METHODS = list(METHODS)


def batch(rows: int = 6, bits: int = 16, classes: int = 5, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, bits, generator=generator, requires_grad=True)
    labels = (torch.rand(rows, classes, generator=generator) < 0.4).float()
    labels[0] = 0.0
    labels[1] = torch.eye(classes)[1]
    return z, labels, torch.arange(rows)


def test_the_paper_methods_are_registered() -> None:
    assert {"dph", "dpsh", "hashnet", "csq", "dpn", "hswd", "orthohash"} <= set(METHODS)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_docstring_names_paper_and_formula(name: str) -> None:
    import importlib

    entry = METHODS.entry(name)
    doc = importlib.import_module(entry.target.__module__).__doc__ or ""
    year = entry.reference.split()[-1]  # "Li et al., IJCAI 2016" -> "2016", declared at registration
    assert year.isdigit() and year in doc and "L =" in doc


@pytest.mark.parametrize("name", ALL_METHODS)
def test_gradient_flows(name: str) -> None:
    method = build_method(name, bits=16, num_classes=5, num_train=6, seed=0)
    z, labels, index = batch()
    loss = method(torch.tanh(z), labels, index)
    loss.backward()
    assert torch.isfinite(loss)
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL_METHODS)
@pytest.mark.parametrize("pairs", ["bank", "batch"])
def test_zero_label_rows_give_no_nan(name: str, pairs: str) -> None:
    params = {"pairs": pairs} if "pairs" in METHODS.entry(name).defaults() else {}
    method = build_method(name, bits=16, num_classes=5, num_train=6, seed=0, **params)
    z, labels, index = batch()
    labels[:3] = 0.0
    loss = method(torch.tanh(z), labels, index)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    z.grad = None
    empty = method(torch.tanh(z), torch.zeros_like(labels), index)
    empty.backward()
    assert torch.isfinite(empty) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name", ALL_METHODS)
def test_saturated_codes_stay_finite(name: str) -> None:
    method = build_method(name, bits=16, num_classes=5, num_train=6, seed=0)
    z, labels, index = batch()
    u = torch.tanh(50 * z.detach()).requires_grad_(True)
    u.data[0] = 1.0
    loss = method(u, labels, index)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(u.grad).all()


@pytest.mark.parametrize("name", ALL_METHODS)
def test_seeded_and_params_round_trip(name: str) -> None:
    first = build_method(name, bits=48, num_classes=12, num_train=6, seed=9)
    params = first.params()
    rebuilt = build_method(name, bits=48, num_classes=12, num_train=6, seed=9, **params)
    assert rebuilt.params() == params
    for key, value in first.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[key])
    with pytest.raises(ConfigError):
        build_method(name, bits=16, num_classes=5, num_train=6, not_a_param=1)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_method_moves_with_to(name: str) -> None:
    method = build_method(name, bits=16, num_classes=5, num_train=6).to(torch.float64)
    z, labels, index = batch()
    loss = method(torch.tanh(z.double()), labels.double(), index)
    assert loss.dtype == torch.float64
