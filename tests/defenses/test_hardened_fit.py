"""A hardened checkpoint has no training record of its own: its base model's seed and validation fraction (kept in
``defense.base``) stand in, so that its hashing loss is rebuilt with the base's seed (HashVFL's class targets, say)
and the split it is attacked and evaluated with is the base's fitted split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hashguard.config import load_experiment_config

RUN = [
    "data.options.train_size=120", "data.options.query_size=20", "data.options.database_size=200",
    "model.bits=8", "model.hash_norm=bn-sign", "method.name=hashvfl", "train.epochs=1", "train.progress=false",
    "train.val_fraction=0.25", "device=cpu", "seed=3",
]


def test_a_hardened_checkpoint_keeps_the_base_seed_and_fitted_split(tmp_path: Path) -> None:
    from hashguard.defenses.api import defend
    from hashguard.pipeline.checkpoint import open_checkpoint
    from hashguard.pipeline.train import run_training

    run_training(load_experiment_config(None, RUN, default=True), tmp_path / "base", log=lambda _line: None)
    defend(tmp_path / "base", "saat", tmp_path / "saat", {"epochs": 1, "progress": False, "train_items": 16},
           preset="demo", device="cpu", log=None)
    base = open_checkpoint(tmp_path / "base", device="cpu")
    hardened = open_checkpoint(tmp_path / "saat", device="cpu")
    assert hardened.meta.get("training") is None  # what the fallback is for
    assert hardened.training_seed == base.training_seed == 3
    assert hardened.val_fraction == base.val_fraction == 0.25
    fitted, again = base.training_split(), hardened.training_split()
    assert len(fitted) == 90 and np.array_equal(again.indices, fitted.indices)
    targets = base.hashing_method(len(fitted)).class_codes
    assert torch.equal(hardened.hashing_method(len(fitted)).class_codes, targets)
    seed_zero = open_checkpoint(tmp_path / "base", device="cpu")
    seed_zero.meta["training"]["seed"] = 0  # a rebuild with another seed draws other targets: the check can fail
    assert not torch.equal(seed_zero.hashing_method(len(fitted)).class_codes, targets)
