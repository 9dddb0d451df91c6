import json

import pytest
import torch

from hashguard.config import TrainConfig, load_experiment_config
from hashguard.errors import CheckpointError, HashguardError
from hashguard.methods import build_method
from hashguard.models import HashModel, ModelSpec, load_model
from hashguard.models.checkpoint import load_state_file
from hashguard.training import train_model

MODEL_SPEC = dict(backbone="small_cnn", bits=16, in_channels=1, image_size=28, mean=[0.13], std=[0.31])


def _train(tiny_splits, out, *, resume=False, stop_after=None, method="dph", epochs=3, **train):
    torch.manual_seed(123)  # model initialisation
    model = HashModel(ModelSpec(**MODEL_SPEC))
    loss = build_method(method, bits=16, num_classes=10, num_train=len(tiny_splits.train), seed=0)
    config = TrainConfig(recipe="fast", epochs=epochs, batch_size=50, progress=False, val_fraction=0, **train)
    result = train_model(
        model, loss, tiny_splits.train, config, out, seed=7, resume=resume, stop_after_epoch=stop_after, log=None
    )
    return model, result


def test_paper_schedule_divides_lr_by_ten_every_third_of_training():
    config = TrainConfig()  # docs/methods.md: 100 epochs, SGD 0.01
    assert config.optimizer == "sgd" and config.epochs == 100 and config.batch_size == 32
    rates = [config.lr_at_epoch(e) for e in range(100)]
    assert rates[0] == rates[33] == pytest.approx(1e-2)
    assert rates[34] == rates[66] == pytest.approx(1e-3)
    assert rates[67] == rates[99] == pytest.approx(1e-4)


def test_resumed_training_equals_uninterrupted_training(tiny_splits, tmp_path):
    # the memory bank (method state) and SGD momentum must both survive the interruption
    straight, _ = _train(tiny_splits, tmp_path / "straight", optimizer="sgd", lr=0.01, momentum=0.9)
    _train(tiny_splits, tmp_path / "paused", stop_after=1, optimizer="sgd", lr=0.01, momentum=0.9)
    assert not (tmp_path / "paused" / "model.safetensors").exists()  # paused runs are not final
    resumed, result = _train(tiny_splits, tmp_path / "paused", resume=True, optimizer="sgd", lr=0.01, momentum=0.9)
    assert result.epochs_done == 3
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert load_state_file(tmp_path / "paused" / "model.safetensors").keys() == straight.state_dict().keys()


def test_different_seeds_give_different_weights(tiny_splits, tmp_path):
    a, _ = _train(tiny_splits, tmp_path / "a", epochs=1)
    torch.manual_seed(123)
    model = HashModel(ModelSpec(**MODEL_SPEC))
    loss = build_method("dph", bits=16, num_classes=10, num_train=len(tiny_splits.train))
    config = TrainConfig(recipe="fast", epochs=1, batch_size=50, progress=False, val_fraction=0)
    train_model(model, loss, tiny_splits.train, config, tmp_path / "b", seed=8, log=None)
    assert not torch.equal(a.backbone.hash_layer.weight, model.backbone.hash_layer.weight)


def test_existing_run_is_not_overwritten_without_resume(tiny_splits, tmp_path):
    _train(tiny_splits, tmp_path / "run", epochs=1)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(HashguardError, match="--resume"):
        _train(tiny_splits, tmp_path / "run", epochs=1)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def test_resume_with_another_configuration_is_refused(tiny_splits, tmp_path):
    _train(tiny_splits, tmp_path / "run", stop_after=1)
    with pytest.raises(CheckpointError, match="another configuration"):
        _train(tiny_splits, tmp_path / "run", resume=True, lr=0.5)


def test_checkpoint_records_provenance(tiny_splits, tmp_path):
    _train(tiny_splits, tmp_path / "run", epochs=1)
    model, meta = load_model(tmp_path / "run")
    assert meta["method"]["name"] == "dph"
    assert meta["model"]["bits"] == 16 and meta["model"]["image_size"] == 28
    assert meta["model"]["mean"] == [0.13]
    assert {"torch", "hashguard", "numpy", "python"} <= set(meta["versions"])
    assert meta["training"]["epochs"] == 1
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 1 and history[0]["loss"] > 0


def test_divergence_is_reported_in_one_line(tiny_splits, tmp_path):
    with pytest.raises(HashguardError, match="diverged"):
        _train(tiny_splits, tmp_path / "run", epochs=1, lr=1e30, optimizer="sgd")


def test_config_errors_name_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: -3\n")
    with pytest.raises(HashguardError, match=r"c.yaml: train.epochs"):
        load_experiment_config(path)
    path.write_text("train: [unclosed\n")
    with pytest.raises(HashguardError, match="malformed YAML"):
        load_experiment_config(path)
    with pytest.raises(HashguardError, match="Extra inputs"):
        load_experiment_config(None, ["model.bitz=3"])
    with pytest.raises(HashguardError, match="not found"):
        load_experiment_config(tmp_path / "missing.yaml")
