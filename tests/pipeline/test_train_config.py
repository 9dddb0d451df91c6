"""``hashguard train``'s configurations: the shipped training config and the default, the two kinds of
configuration file, and ``--resume`` with the run's own stored configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hashguard.cli import main
from hashguard.config import DEMO_TRAINING, load_experiment_config
from hashguard.pipeline.study_config import load_study_config
from hashguard.pipeline.train import run_training

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "data.options={train_size: 120, query_size: 20, database_size: 300}",
        "--set", "train.progress=false", "--set", "model.bits=16"]


def one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hashguard: error: "), err
    return err[0]


def test_the_default_is_the_shipped_demo_recipe():
    shipped = load_experiment_config(ROOT / "configs" / "train-demo.yaml")
    default = load_experiment_config(None, default=True)
    assert default == shipped
    # the from-scratch recipe of docs/methods.md: CSQ, small CNN, BatchNorm hash head, Adam 5e-4, fast recipe
    assert (default.method.name, default.model.backbone, default.model.hash_norm) == ("csq", "small_cnn", "batchnorm")
    assert (default.train.recipe, default.train.optimizer, default.train.lr) == ("fast", "adam", 5e-4)
    assert default.data.source == "demo-mnist" and DEMO_TRAINING["train"]["epochs"] == default.train.epochs
    # the library's bare defaults are unchanged (studies and paper configs build on them)
    assert load_experiment_config(None).method.name == "dpsh"


@pytest.mark.parametrize("name", ["demo.yaml", "demo-digits.yaml", "paper/nus-wide-32.yaml"])
def test_a_study_config_handed_to_train_names_both_kinds(capsys, tmp_path, name):
    path = str(ROOT / "configs" / name)
    line = one_line_error(capsys, ["train", "--config", path, "--out", str(tmp_path / "run")])
    assert "is a study configuration" in line and f"hashguard study {path}" in line
    assert "configs/train-demo.yaml" in line
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_training_config_handed_to_study_names_both_kinds(capsys, tmp_path):
    path = str(ROOT / "configs" / "train-demo.yaml")
    line = one_line_error(capsys, ["study", path, "--out", str(tmp_path / "run"), "--dry-run"])
    assert "is a training configuration" in line and f"hashguard train --config {path}" in line
    # every shipped study config is still read as a study
    for study in [ROOT / "configs" / "demo.yaml", *sorted((ROOT / "configs" / "paper").glob("*.yaml"))]:
        load_study_config(study)


def test_resume_continues_an_interrupted_run_with_its_stored_configuration(tmp_path, capsys):
    out = tmp_path / "run"
    overrides = [item for item in TINY if item != "--set"] + ["train.epochs=2"]
    config = load_experiment_config(ROOT / "configs" / "train-demo.yaml", overrides)
    run_training(config, out, stop_after_epoch=1, log=None)  # interrupted after epoch 1 of 2
    stored = (out / "config.yaml").read_text()
    assert not (out / "model.json").exists()
    # the README's line: no --config, no --set; progress may differ (it changes nothing computed)
    assert main(["train", "--out", str(out), "--resume", "--set", "train.progress=true"]) == 0
    printed = capsys.readouterr().out
    assert "resuming" in printed and "after epoch 1" in printed
    assert (out / "model.json").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"] == 2
    # another configuration is refused with the settings that differ, and the stored one is kept
    line = one_line_error(capsys, ["train", "--out", str(out), "--resume", "--set", "train.epochs=3"])
    assert "train.epochs 2 -> 3" in line and "--resume" in line
    line = one_line_error(capsys, ["train", "--config", str(ROOT / "configs" / "train-demo.yaml"),
                                   "--out", str(out), "--resume"])
    assert "train.epochs 2 -> 4" in line and "model.bits 16 -> 32" in line
    assert "data.options.train_size 120 -> (unset)" in line
    # without --resume the run is never overwritten, and its config.yaml is not touched either
    assert "--resume" in one_line_error(capsys, ["train", "--out", str(out), *TINY])
    assert (out / "config.yaml").read_text() == stored


@pytest.mark.parametrize("collapse", [True, False])
def test_training_warns_when_the_final_codes_collapse(tmp_path, monkeypatch, collapse):
    """The training path runs the collapse check on its final model: a stand-in for the training loop leaves
    the model as it is (random initial weights: many distinct codes) or zeroes the BatchNorm hash head (every
    code sign(0) = +1, one code for everything); no model is trained."""
    import torch

    import hashguard.pipeline.train as train_pipeline
    from hashguard.training import TrainResult

    def fake_train_model(model, method, fit_set, config, out, **kwargs):
        if collapse:
            with torch.no_grad():
                model.hash_norm.weight.zero_()
                model.hash_norm.bias.zero_()
        return TrainResult(Path(out), config.epochs, [{"loss": 0.0, "val_map": 0.9}], 1, 0.9)

    monkeypatch.setattr(train_pipeline, "train_model", fake_train_model)
    overrides = [item for item in TINY if item != "--set"] + ["train.epochs=1"]
    lines: list[str] = []
    run_training(load_experiment_config(None, overrides, default=True), tmp_path / "run", log=lines.append)
    warnings = [line for line in lines if line.startswith("WARNING: the trained codes look collapsed")]
    assert len(warnings) == (1 if collapse else 0), lines
    if collapse:
        assert "one code is shared by 100%" in warnings[0]
