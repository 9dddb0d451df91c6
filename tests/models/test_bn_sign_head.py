"""The bn-sign code head (HashVFL, Qiu et al., IEEE TIFS 2024): BatchNorm without affine map on the code logits,
then sign with sign(0) = +1 forward and the identity backward."""

from __future__ import annotations

import pytest
import torch

from hashguard.config import ExperimentConfig
from hashguard.models import HashModel, ModelSpec, load_model, save_model
from hashguard.models.hash_model import straight_through_sign

GREY = dict(backbone="small_cnn", bits=16, in_channels=1, image_size=28, mean=[0.13], std=[0.31])


def test_straight_through_sign_forward_and_backward_by_hand():
    z = torch.tensor([[-2.0, -0.3, 0.0, 0.4, 3.0]], requires_grad=True)
    upstream = torch.tensor([[0.5, -1.0, 2.0, 3.0, -4.0]])
    b = straight_through_sign(z)
    assert b.tolist() == [[-1.0, -1.0, 1.0, 1.0, 1.0]]  # sign(0) = +1
    (grad,) = torch.autograd.grad((b * upstream).sum(), z)
    assert torch.equal(grad, upstream)  # identity backward, no clipping at |z| > 1


def test_bn_sign_model_codes_and_gradient_follow_the_rule():
    torch.manual_seed(0)
    model = HashModel(ModelSpec(**GREY, hash_norm="bn-sign"))
    assert isinstance(model.hash_norm, torch.nn.BatchNorm1d) and not model.hash_norm.affine
    model.eval()
    x = torch.rand(6, 1, 28, 28)
    z = model.logits(x)
    u = model(x, alpha=0.1)  # alpha is ignored by the sign head
    assert torch.equal(u, torch.where(z >= 0, 1.0, -1.0))
    assert torch.equal(model.encode(x), u.to(torch.int8))
    # d<u, w>/dx equals d<z, w>/dx: the sign passes the gradient through unchanged
    w = torch.randn(6, 16)
    xa = x.clone().requires_grad_(True)
    (via_codes,) = torch.autograd.grad((model(xa) * w).sum(), xa)
    xb = x.clone().requires_grad_(True)
    (via_logits,) = torch.autograd.grad((model.logits(xb) * w).sum(), xb)
    assert torch.allclose(via_codes, via_logits)


def test_batchnorm_centres_every_bit_of_a_training_batch():
    """In train mode each bit's normalised logit has batch mean 0 (the balance BatchNorm drives)."""
    torch.manual_seed(1)
    model = HashModel(ModelSpec(**GREY, hash_norm="bn-sign")).train()
    z = model.logits(torch.rand(32, 1, 28, 28))
    assert torch.allclose(z.mean(dim=0), torch.zeros(16), atol=1e-5)


def test_bn_sign_checkpoint_round_trip_and_config(tmp_path):
    torch.manual_seed(2)
    model = HashModel(ModelSpec(**GREY, hash_norm="bn-sign"))
    model.train()
    model(torch.rand(8, 1, 28, 28))  # move the running statistics off their start
    save_model(tmp_path / "c", model, method={"name": "hashvfl"})
    loaded, _ = load_model(tmp_path / "c")
    x = torch.rand(5, 1, 28, 28)
    assert loaded.straight_through and torch.equal(model.encode(x), loaded.encode(x))
    assert ExperimentConfig.model_validate({"model": {"hash_norm": "bn-sign"}}).model.hash_norm == "bn-sign"


@pytest.mark.parametrize("norm, expected", [("bn-sign", "bn-sign"), ("none", "batchnorm")])
def test_a_method_asking_for_batchnorm_keeps_the_bn_sign_head(tiny_splits, norm, expected):
    """OrthoHash asks for a BatchNorm head; bn-sign already is one and stays (it is not turned into tanh)."""
    from hashguard.pipeline.train import model_spec_for

    payload = {"model": {"hash_norm": norm, "bits": 16}, "method": {"name": "orthohash"}}
    config = ExperimentConfig.model_validate(payload)
    assert model_spec_for(config, tiny_splits).hash_norm == expected
