"""OrthoHash: codebook, model override, multi-label and single-label losses by hand, zero-label rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashguard.errors import ConfigError
from hashguard.methods import build_method, method_class
from hashguard.models.hash_model import HashModel, ModelSpec

U = np.array(
    [[0.9, -0.5, 0.2, -0.7], [0.8, -0.6, 0.1, 0.3], [-0.4, 0.7, -0.9, 0.5], [0.3, 0.3, -0.3, 0.6]],
    dtype=np.float64,
)
Y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float64)


def reference(u: np.ndarray, y: np.ndarray, codebook: np.ndarray, s: float = 8.0, m: float = 0.2) -> float:
    losses = []
    for i in range(len(u)):
        if y[i].sum() == 0:
            continue
        cos = [float(np.dot(u[i], w) / (np.linalg.norm(u[i]) * np.linalg.norm(w))) for w in codebook]
        logits = np.array([s * (c - m * y[i, j]) for j, c in enumerate(cos)])
        log_softmax = logits - np.log(np.exp(logits).sum())
        losses.append(-sum(y[i, j] / y[i].sum() * log_softmax[j] for j in range(len(cos))))
    return float(np.mean(losses))


def test_codebook_is_fixed_seeded_and_distinct() -> None:
    method = build_method("orthohash", bits=16, num_classes=10, num_train=1, seed=3)
    book = method.codebook
    assert set(book.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(r) for r in book.tolist()}) == 10
    assert not any(p.requires_grad for p in method.parameters())
    assert "codebook" in method.state_dict()
    assert torch.equal(book, build_method("orthohash", bits=16, num_classes=10, num_train=1, seed=3).codebook)
    assert not torch.equal(book, build_method("orthohash", bits=16, num_classes=10, num_train=1, seed=4).codebook)
    tight = build_method("orthohash", bits=3, num_classes=8, num_train=1)
    assert len({tuple(r) for r in tight.codebook.tolist()}) == 8
    with pytest.raises(ConfigError):
        build_method("orthohash", bits=3, num_classes=9, num_train=1)


def test_model_override_puts_batchnorm_inside_the_model() -> None:
    assert method_class("orthohash").model_overrides() == {"hash_norm": "batchnorm"}
    spec = ModelSpec(backbone="small_cnn", bits=8, in_channels=1, image_size=28, mean=[0.13], std=[0.31])
    for key, value in method_class("orthohash").model_overrides().items():
        setattr(spec, key, value)
    model = HashModel(spec)
    assert isinstance(model.hash_norm, torch.nn.BatchNorm1d)
    model.eval()
    x = torch.rand(5, 1, 28, 28)
    # retrieval codes are the signs of the representation the loss sees (u = tanh(BN(z)))
    assert torch.equal(model.encode(x), torch.where(model(x) >= 0, 1, -1).to(torch.int8))


def test_multilabel_loss_matches_hand_computation() -> None:
    method = build_method("orthohash", bits=4, num_classes=3, num_train=1, seed=1).double()
    loss = method(torch.tensor(U), torch.tensor(Y), torch.arange(4))
    assert float(loss) == pytest.approx(reference(U, Y, method.codebook.numpy()), rel=1e-10)


def test_single_label_branch_is_cross_entropy() -> None:
    y = np.eye(3)[[2, 0, 1, 0]]
    method = build_method("orthohash", bits=4, num_classes=3, num_train=1, seed=1).double()
    loss = method(torch.tensor(U), torch.tensor(y), torch.arange(4))
    assert float(loss) == pytest.approx(reference(U, y, method.codebook.numpy()), rel=1e-10)
    forced = build_method("orthohash", bits=4, num_classes=3, num_train=1, seed=1, multilabel=False).double()
    assert float(forced(torch.tensor(U), torch.tensor(y), torch.arange(4))) == pytest.approx(float(loss))
    # forced single-label on a multi-hot row: the argmax (first) class is the target
    two = np.array([[0, 1, 1]], dtype=np.float64)
    value = forced(torch.tensor(U[:1]), torch.tensor(two), torch.arange(1))
    assert float(value) == pytest.approx(reference(U[:1], np.array([[0.0, 1.0, 0.0]]), method.codebook.numpy()))
    # class-index labels of integer dtype work too (no scatter_ on floats, docs/methods.md)
    ints = torch.tensor(y, dtype=torch.long)
    assert float(method(torch.tensor(U), ints, torch.arange(4))) == pytest.approx(float(loss))


def test_quantisation_weight() -> None:
    method = build_method("orthohash", bits=4, num_classes=3, num_train=1, seed=1, quantization_weight=0.5)
    method = method.double()
    loss = method(torch.tensor(U), torch.tensor(Y), torch.arange(4))
    expected = reference(U, Y, method.codebook.numpy()) + 0.5 * ((np.abs(U) - 1) ** 2).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-10)
