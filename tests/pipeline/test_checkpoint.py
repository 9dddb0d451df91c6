"""``open_checkpoint``: a checkpoint re-opened with the data, training split and hashing method it records."""

from __future__ import annotations

import pytest
import torch

from hashguard.config import DataConfig
from hashguard.errors import CheckpointError, ConfigError, DataError
from hashguard.methods import build_method
from hashguard.models.checkpoint import save_model
from hashguard.pipeline.checkpoint import open_checkpoint
from hashguard.testing import save_demo_checkpoint, small_cnn_model

BITS = 16


@pytest.fixture(scope="module")
def model(demo_splits):
    return small_cnn_model(demo_splits, BITS, seed=0)


def _save(directory, model, *, val_fraction=0.0, seed=0, data=True, method=None):
    extra = {"training": {"seed": seed, "config": {"val_fraction": val_fraction}}}
    if data:
        extra["data"] = {"source": "demo-mnist", "seed": 0}
    return save_model(directory, model, method=method or {"name": "csq", "params": {}}, num_classes=10, extra=extra)


def test_reopens_the_recorded_data_and_weights(tmp_path, model, demo_splits):
    directory = save_demo_checkpoint(tmp_path / "ckpt", model, build_method("csq", BITS, 10, 100))
    opened = open_checkpoint(directory, device="cpu")
    assert opened.data == DataConfig(source="demo-mnist", seed=0)
    assert opened.require_splits().fingerprint() == demo_splits.fingerprint()
    for name, tensor in model.state_dict().items():
        assert torch.equal(opened.model.state_dict()[name], tensor), name
    # no validation items recorded: the model was fitted on the whole training split
    assert len(opened.training_split()) == len(demo_splits.train) == 2000


def test_training_split_holds_out_the_recorded_validation_items(tmp_path, model):
    opened = open_checkpoint(_save(tmp_path / "ckpt", model, val_fraction=0.1, seed=3), device="cpu")
    fit = opened.training_split()
    assert len(fit) == 1800  # 2,000 demo training digits minus round(0.1 * 2,000) validation items
    held_out = set(range(2000)) - set(int(i) for i in fit.indices)
    assert len(held_out) == 200
    # the held-out items depend on the recorded seed: another seed holds out other items
    other = open_checkpoint(_save(tmp_path / "other", model, val_fraction=0.1, seed=4), device="cpu")
    assert set(range(2000)) - set(int(i) for i in other.training_split().indices) != held_out


def test_hashing_method_is_rebuilt_with_the_training_seed(tmp_path, model):
    method = {"name": "csq", "params": {"centers": "random"}}  # seeded centres, unlike the Hadamard ones
    opened = open_checkpoint(_save(tmp_path / "ckpt", model, seed=5, method=method), device="cpu")
    rebuilt = opened.hashing_method(300)
    expected = build_method("csq", BITS, 10, 300, seed=5, centers="random")
    assert torch.equal(rebuilt.centers, expected.centers)
    assert not torch.equal(rebuilt.centers, build_method("csq", BITS, 10, 300, seed=0, centers="random").centers)
    nameless = open_checkpoint(_save(tmp_path / "nameless", model, method={"params": {}}), device="cpu")
    with pytest.raises(CheckpointError, match="names no hashing method"):
        nameless.hashing_method(300)


def test_refuses_missing_or_unfit_data(tmp_path, model):
    bare = _save(tmp_path / "bare", model, data=False)
    with pytest.raises(ConfigError, match="does not record its dataset"):
        open_checkpoint(bare, device="cpu")
    # named data is used instead; data whose images are 56 px do not fit a 28 px model
    assert open_checkpoint(bare, device="cpu", data=DataConfig(source="demo-mnist")).splits is not None
    with pytest.raises(DataError, match="model expects 1x28x28 images"):
        open_checkpoint(bare, device="cpu", data=DataConfig(source="demo-mnist-multi"))
    # without data: the model only, and a clear error for what needs the data
    model_only = open_checkpoint(bare, device="cpu", with_data=False)
    assert model_only.splits is None
    with pytest.raises(ConfigError, match="opened without data"):
        model_only.training_split()
    with pytest.raises(CheckpointError, match="model trained on 10 classes, the data has 7"):
        model_only.check_classes(7)
