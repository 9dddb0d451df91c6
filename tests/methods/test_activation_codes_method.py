"""Activation codes as a method name (He et al., arXiv 2101.05490): ``method.name: activation-codes`` trains the
network with its base loss exactly as that loss alone would, then writes the network's activation code; a defense
hardens the embedded network and reads the code again with the same settings; a study trains, attacks and hardens
it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hashguard.activation_codes import ActivationCodeModel, fit_activation_codes
from hashguard.config import TrainConfig
from hashguard.errors import ConfigError
from hashguard.methods import build_method
from hashguard.models.checkpoint import load_model, load_state_file
from hashguard.testing import small_cnn_model
from hashguard.training import train_model

BITS = 8


def _train(splits, out: Path, method_name: str, *, items: int = 64, seed: int = 0, **params):
    from hashguard.data import SubsetDataset
    from hashguard.seeding import seed_everything

    train = SubsetDataset(splits.train, np.arange(items))
    seed_everything(seed)
    model = small_cnn_model(splits, BITS, seed=seed, hash_norm="batchnorm")
    method = build_method(method_name, BITS, splits.num_classes, len(train), seed=seed, **params)
    config = TrainConfig(recipe="fast", epochs=2, batch_size=32, lr=1e-3, progress=False, val_fraction=0.0,
                         select="last")
    train_model(model, method, train, config, out, seed=seed, log=None)
    return train


def _same_state(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> bool:
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_training_is_the_base_loss_then_the_code_of_the_trained_network(demo_splits, tmp_path: Path) -> None:
    splits, query, _ = demo_splits("demo-mnist")
    train = _train(splits, tmp_path / "ac", "activation-codes", base="csq", layers="fc.2", variant="balanced")
    _train(splits, tmp_path / "csq", "csq")
    code_model, record = load_model(tmp_path / "ac")
    assert isinstance(code_model, ActivationCodeModel) and code_model.bits == BITS
    # the embedded network is bit for bit what `method.name: csq` trains with the same seed and recipe
    network = {k[len("base_model."):]: v for k, v in load_state_file(tmp_path / "ac" / "model.safetensors").items()
               if k.startswith("base_model.")}
    assert _same_state(network, load_state_file(tmp_path / "csq" / "model.safetensors"))
    described = record["activation_codes"]
    assert described["base"]["method"]["name"] == "csq"
    assert record["trained_as"]["name"] == "activation-codes" and record["method"] == {}
    assert described["code"]["sites"] == [["fc.2", 256]]
    # the code is the one fitted afresh on the same network and fitting split
    refit = fit_activation_codes(code_model.base_model, train, BITS, variant="balanced", layers=["fc.2"], seed=0)
    images = torch.stack([query[i][0] for i in range(40)])
    assert torch.equal(refit.units, code_model.units)
    assert torch.equal(refit.encode(images), code_model.encode(images))


def test_defense_hardens_the_network_and_reads_the_code_again(demo_splits, tmp_path: Path) -> None:
    from hashguard.activation_codes.harden import NETWORK, NETWORK_BASE
    from hashguard.defenses.api import defend

    splits, _, _ = demo_splits("demo-mnist")
    train = _train(splits, tmp_path / "ac", "activation-codes", layers="fc.2", variant="random")
    defend(tmp_path / "ac", "saat", tmp_path / "saat", {"epochs": 1, "progress": False, "train_items": 32},
           preset="demo", train_set=train, device="cpu", log=None)
    before, _ = load_model(tmp_path / "ac")
    after, record = load_model(tmp_path / "saat")
    assert isinstance(after, ActivationCodeModel)
    assert after.code.to_dict() | {"fit_items": 0, "candidates": 0} == before.code.to_dict() | {
        "fit_items": 0, "candidates": 0}  # same bits, variant, sites, seed and weight
    assert record["defense"]["name"] == "saat" and record["activation_codes"]["base"]["method"]["name"] == "csq"
    embedded = {k[len("base_model."):]: v for k, v in load_state_file(tmp_path / "saat" / "model.safetensors").items()
                if k.startswith("base_model.")}
    assert _same_state(embedded, load_state_file(tmp_path / "saat" / NETWORK / "model.safetensors"))
    original = load_state_file(tmp_path / "saat" / NETWORK_BASE / "model.safetensors")
    assert _same_state(original, before.base_model.state_dict())
    assert not _same_state(embedded, original)  # the network moved
    hardened_network, _ = load_model(tmp_path / "saat" / NETWORK)
    refit = fit_activation_codes(hardened_network, train, BITS, variant="random", layers=["fc.2"], seed=0)
    assert torch.equal(refit.units, after.units)


def test_study_trains_attacks_and_hardens_activation_codes(tmp_path: Path) -> None:
    from hashguard.pipeline.study import run_study
    from hashguard.pipeline.study_config import StudyConfig

    config = {
        "name": "activation-codes",
        "data": {"source": "demo-mnist", "seed": 0, "options": {"train_size": 64, "database_size": 100}},
        "model": {"backbone": "small_cnn", "bits": 6, "hash_norm": "batchnorm"},
        "method": {"name": "activation-codes", "params": {"layers": "fc.2"}},
        "train": {"recipe": "fast", "epochs": 1, "val_fraction": 0.0, "progress": False},
        "evaluation": {"topk": 50},
        "attacks": {"override": {"iterations": 2}, "queries": 4, "suite": ["mainstay"]},
        "defenses": {"run": [{"name": "saat", "preset": "demo", "settings": {"epochs": 1, "train_items": 32}}],
                     "sweep": False},
        "report": {"grid_queries": 0},
    }
    card = run_study(StudyConfig.model_validate(config), tmp_path, log=lambda _line: None, report=False)
    assert isinstance(load_model(tmp_path / "model")[0], ActivationCodeModel)
    assert isinstance(load_model(tmp_path / "defenses" / "saat")[0], ActivationCodeModel)
    assert set(card["models"]) == {"undefended", "saat"}
    for entry in card["models"].values():
        result = entry["attacks"]["mainstay"]
        assert entry["clean"]["map"] is not None and 0 <= result["adv_map"] <= 1  # 4 queries, 2 steps: no ordering
        assert result["perceptibility"]["linf"] <= 8 / 255 + 1e-6


def test_bad_settings_are_one_config_error() -> None:
    with pytest.raises(ConfigError, match="itself"):
        build_method("activation-codes", 8, 10, 10, base="activation-codes")
    with pytest.raises(ConfigError, match="own training step"):
        build_method("activation-codes", 8, 10, 10, base="adsh")
    with pytest.raises(ConfigError, match="hashing method"):
        build_method("activation-codes", 8, 10, 10, base="no-such-method")
    with pytest.raises(ConfigError, match="variant"):
        build_method("activation-codes", 8, 10, 10, variant="everything")


def test_the_shipped_study_config_validates() -> None:
    from hashguard.pipeline.study_config import load_study_config

    config = load_study_config(Path(__file__).parents[2] / "configs" / "methods" / "activation-codes.yaml")
    assert config.method.name == "activation-codes" and config.method.params["layers"] == "fc.2"
    assert json.loads(json.dumps(config.model_dump(mode="json")))["defenses"]["run"]
