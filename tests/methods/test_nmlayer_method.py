"""NMLayer as a hashing method (Fu et al., IJCAI 2019): one run of the shared training loop widens the hash layer,
merges neurons stage by stage and ends with a plain head of the target bit count whose codes equal the merged
model's; resume is exact; the method trains, is attacked and hardened from a study; it beats random codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hashguard.config import TrainConfig
from hashguard.errors import ConfigError
from hashguard.methods import build_method
from hashguard.models.checkpoint import load_model, load_state_file
from hashguard.models.hash_model import HashModel
from hashguard.models.nmlayer import MergedHashModel, NeuronPartition
from hashguard.models.nmlayer_compress import stage_schedule
from hashguard.testing import small_cnn_model
from hashguard.training import train_model
from hashguard.training.state import latest_checkpoint, read_checkpoint


def _train(splits, out: Path, *, epochs: int = 4, stop: int | None = None, resume: bool = False, items: int = 64,
           bits: int = 6, seed: int = 0, hash_norm: str = "batchnorm", **params):
    from hashguard.data import SubsetDataset
    from hashguard.seeding import seed_everything

    train = SubsetDataset(splits.train, np.arange(items))
    seed_everything(seed)
    model = small_cnn_model(splits, bits, seed=seed, hash_norm=hash_norm)
    params = {"start_bits": 10, "base_params": "pairs=batch", **params}
    method = build_method("nmlayer", bits, splits.num_classes, len(train), seed=seed, **params)
    config = TrainConfig(recipe="fast", epochs=epochs, batch_size=32, lr=1e-3, progress=False, val_fraction=0.0,
                         select="last")
    train_model(model, method, train, config, out, seed=seed, log=None, stop_after_epoch=stop, resume=resume)
    return model, train


@pytest.mark.parametrize("hash_norm", ["none", "batchnorm"])
def test_ends_with_a_plain_head_whose_codes_equal_the_merged_model(demo_splits, tmp_path: Path, hash_norm) -> None:
    splits, query, _ = demo_splits("demo-mnist")
    model, _ = _train(splits, tmp_path, hash_norm=hash_norm)  # 10 -> 7 -> 6 bits: warm-up 2 epochs, 2 stages
    assert stage_schedule(10, 6) == [7, 6]
    record = json.loads((tmp_path / "model.json").read_text())
    assert record["model"]["bits"] == 6 and record["model"]["hash_norm"] == hash_norm
    assert record["method"]["name"] == "nmlayer" and record["method"]["params"]["start_bits"] == 10
    assert [s["bits_out"] for s in record["nmlayer"]["stages"]] == [7, 6]
    assert record["nmlayer"]["stage_starts"] == [2, 3]
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["bits"] for h in history] == [10, 10, 7, 6]
    # no extra parameters: exactly those of a fresh 6-bit model of the same spec, and the caller's object too
    loaded, _ = load_model(tmp_path)
    fresh = small_cnn_model(splits, bits=6, seed=1, hash_norm=hash_norm)
    assert [p.shape for p in loaded.parameters()] == [p.shape for p in fresh.parameters()]
    assert [p.shape for p in model.parameters()] == [p.shape for p in fresh.parameters()] and model.bits == 6
    # the last checkpoint holds the wide model: behind the recorded partition it gives the same codes
    tensors, _ = read_checkpoint(latest_checkpoint(tmp_path))
    wide = HashModel(loaded.spec.__class__(**{**loaded.spec.to_dict(), "bits": 10, "hash_norm": hash_norm}))
    wide.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    groups = record["nmlayer"]["groups"]
    assert sorted(n for g in groups for n in g) == list(range(10)) and len(groups) == 6
    merged = MergedHashModel(wide, NeuronPartition.from_groups(groups, 10)).eval()
    images = torch.stack([query[i][0] for i in range(40)])
    with torch.no_grad():
        assert torch.allclose(loaded.eval().logits(images), merged.logits(images), atol=1e-5, rtol=0)
    assert torch.equal(loaded.encode(images), merged.encode(images))
    assert torch.equal(model.encode(images), loaded.encode(images))


def test_resume_after_a_merge_equals_the_uninterrupted_run(demo_splits, tmp_path: Path) -> None:
    splits, _, _ = demo_splits("demo-mnist")
    _train(splits, tmp_path / "whole")
    _train(splits, tmp_path / "paused", stop=3)  # after the first stage's epoch: partition 7 groups, wide layer
    _, meta = read_checkpoint(latest_checkpoint(tmp_path / "paused"))
    assert len(meta["nmlayer_groups"]) == 7
    _train(splits, tmp_path / "paused", resume=True)
    whole = load_state_file(tmp_path / "whole" / "model.safetensors")
    paused = load_state_file(tmp_path / "paused" / "model.safetensors")
    assert whole.keys() == paused.keys() and all(torch.equal(whole[k], paused[k]) for k in whole)
    groups = [json.loads((tmp_path / d / "model.json").read_text())["nmlayer"]["groups"] for d in ("whole", "paused")]
    assert groups[0] == groups[1]


def test_bad_settings_are_one_config_error(demo_splits, tmp_path: Path) -> None:
    splits, _, _ = demo_splits("demo-mnist")
    with pytest.raises(ConfigError, match="start_bits"):
        build_method("nmlayer", 16, 10, 10, start_bits=16)
    with pytest.raises(ConfigError, match="own training step"):
        build_method("nmlayer", 8, 10, 10, base="adsh")
    with pytest.raises(ConfigError, match="hashing method"):
        build_method("nmlayer", 8, 10, 10, base="no-such-method")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        build_method("nmlayer", 8, 10, 10, base_params="pairs")
    with pytest.raises(ConfigError, match="pairs"):
        build_method("nmlayer", 8, 10, 10, base_params="pairs=everything")
    with pytest.raises(ConfigError, match="warm-up epoch"):
        _train(splits, tmp_path / "short", epochs=2)  # two stages need three epochs at least


def test_defenses_harden_the_compressed_model(demo_splits, tmp_path: Path) -> None:
    from hashguard.defenses.api import defend

    splits, _, _ = demo_splits("demo-mnist")
    _, train = _train(splits, tmp_path / "base")
    for name in ("saat", "atrdh", "cgat"):
        defend(tmp_path / "base", name, tmp_path / name, {"epochs": 1, "train_items": 32}, preset="demo",
               train_set=train, device="cpu", log=None)
        hardened, payload = load_model(tmp_path / name)
        assert hardened.bits == 6 and payload["method"]["name"] == "nmlayer"
        before = load_state_file(tmp_path / "base" / "model.safetensors")
        after = load_state_file(tmp_path / name / "model.safetensors")
        assert any(not torch.equal(before[k], after[k]) for k in before)


def test_study_trains_attacks_and_hardens_nmlayer(tmp_path: Path) -> None:
    from hashguard.pipeline.study import run_study
    from hashguard.pipeline.study_config import StudyConfig

    config = {
        "name": "nmlayer",
        "data": {"source": "demo-mnist", "seed": 0, "options": {"train_size": 64, "database_size": 100}},
        "model": {"backbone": "small_cnn", "bits": 6, "hash_norm": "batchnorm"},
        "method": {"name": "nmlayer", "params": {"start_bits": 8, "base_params": "pairs=batch"}},
        "train": {"recipe": "fast", "epochs": 2, "val_fraction": 0.0, "progress": False},
        "evaluation": {"topk": 50},
        "attacks": {"override": {"iterations": 2}, "queries": 4, "suite": ["mainstay"]},
        "defenses": {"run": [{"name": "saat", "preset": "demo", "settings": {"epochs": 1, "train_items": 32}}],
                     "sweep": False},
        "report": {"grid_queries": 0},
    }
    card = run_study(StudyConfig.model_validate(config), tmp_path, log=lambda _line: None, report=False)
    assert load_model(tmp_path / "model")[0].bits == 6
    assert set(card["models"]) == {"undefended", "saat"}
    for entry in card["models"].values():
        assert entry["clean"]["map"] is not None


# Measured on x86-64, one torch thread (24 -> 16 bits, DPSH with in-batch pairs as the base loss, batch 32, Adam
# 5e-4, 200 queries against 1,000 database items; random codes of the same shapes), seeds 0-4, mAP minus random
# codes' mAP:
#   demo-mnist, 300 items, 4 epochs, redundancy map_drop:          0.338 - 0.387 (NMLayer 0.444 - 0.493)
#   demo-mnist-multi, 600 items, 5 epochs, redundancy correlation: 0.077 - 0.089 (NMLayer 0.429 - 0.441)
# The margins are about half of the smallest measured gap.
@pytest.mark.parametrize(
    ("source", "items", "epochs", "redundancy", "margin"),
    [("demo-mnist", 300, 4, "map_drop", 0.17), ("demo-mnist-multi", 600, 5, "correlation", 0.035)],
)
def test_beats_random_codes_on_the_demo_data(train_demo, source, items, epochs, redundancy, margin) -> None:
    outcome = train_demo("nmlayer", source, bits=16, epochs=epochs, items=items, lr=5e-4, start_bits=24,
                         base_params="pairs=batch", redundancy=redundancy)
    assert outcome.map > outcome.random_map + margin, (outcome.map, outcome.random_map)
