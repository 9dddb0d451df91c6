"""Every study configuration shipped in configs/ is valid: fields, attacks with their parameters, defenses."""

from __future__ import annotations

from pathlib import Path

import pytest

from hashguard.config import STUDY_KEYS, read_yaml
from hashguard.defenses import build_defense_config
from hashguard.models import HashModel, ModelSpec
from hashguard.pipeline.study import _check_attacks
from hashguard.pipeline.study_config import load_study_config

#: every study configuration under configs/ (training configurations, e.g. configs/train-demo.yaml, are
#: tested in test_train_config.py)
CONFIGS = sorted(
    path for path in (Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml")
    if any(key in read_yaml(path) for key in STUDY_KEYS)
)


def test_the_paper_protocols_are_all_there():
    names = {path.stem for path in CONFIGS}
    for dataset in ("flickr25k", "nus-wide", "ms-coco"):
        for bits in (16, 32, 48, 64):
            assert f"{dataset}-{bits}" in names
    assert "demo" in names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates(path):
    config = load_study_config(path)
    stand_in = HashModel(ModelSpec(backbone="small_cnn", bits=config.model.bits, in_channels=1, image_size=28,
                                  mean=[0.5], std=[0.5]))
    _check_attacks(config, stand_in)
    for entry in config.defenses.run:
        build_defense_config(entry.name, entry.settings, preset=entry.preset)
    if config.data.source == "listfile":
        resolved = load_study_config(path, ["data_dir=/datasets", "weights_dir=/weights"]).experiment()
        assert resolved.data.root == str(Path("/datasets") / config.data.root)
        assert resolved.model.pretrained == str(Path("/weights") / config.model.pretrained)
        assert config.model.bits == int(path.stem.rsplit("-", 1)[1])


def test_override_step_is_a_pixel_step_for_sign_optimizers_only():
    from hashguard.pipeline.study_config import AttackSuiteConfig

    suite = AttackSuiteConfig.model_validate(
        {"override": {"eps": "32/255", "step": "4/255"},
         "suite": ["mainstay", "hag", {"name": "sdha", "params": {"step": 0.02}}]}
    )
    assert suite.params_for("mainstay")["step"] == pytest.approx(4 / 255)
    assert suite.params_for("dhta")["step"] == pytest.approx(4 / 255)
    assert suite.params_for("sdha")["step"] == 0.02  # its own learning rate, not the pixel step
    assert "step" not in suite.params_for("hag")  # HAG's SGD keeps its learning rate
    hag_over_pgd = {"name": "hag", "params": {"optimizer": "pgd"}}
    over_pgd = AttackSuiteConfig.model_validate({"override": {"step": "4/255"}, "suite": [hag_over_pgd]})
    assert over_pgd.params_for("hag")["step"] == pytest.approx(4 / 255)  # HAG's objective over PGD: sign steps
    assert suite.params_for("mainstay", eps=0.5)["eps"] == 0.5
    assert suite.params_for("dhta")["eps"] == pytest.approx(32 / 255)
    assert AttackSuiteConfig().params_for("dhta")["eps"] == 0.032  # no override: the attack's own radius


def test_defense_radius_follows_the_study_threat_model_unless_the_defense_sets_its_own():
    from hashguard.pipeline.study_config import StudyConfig, defense_settings

    def study(override: dict, settings: dict) -> StudyConfig:
        return StudyConfig.model_validate({
            "attacks": {"override": override, "suite": ["mainstay"]},
            "defenses": {"run": [{"name": "saat", "settings": settings}]},
        })

    raised = study({"eps": "16/255", "step": "4/255"}, {})
    settings, threat = defense_settings(raised, raised.defenses.run[0])
    assert (settings.eps, settings.step) == (16 / 255, 4 / 255)
    assert threat["eps_from"] == threat["step_from"] == "the study's threat model (attacks.override)"
    own = study({"eps": "16/255"}, {"eps": "4/255"})
    settings, threat = defense_settings(own, own.defenses.run[0])
    assert settings.eps == 4 / 255 and threat["eps_from"] == "the defense's settings"
    assert settings.step == 2 / 255 and threat["step_from"] == "the paper preset of saat"  # the protocol's step
    plain = study({}, {})
    settings, threat = defense_settings(plain, plain.defenses.run[0])
    assert settings.eps == 8 / 255 and threat["eps_from"] == "the paper preset of saat"


def test_report_sample_card_names_are_the_registries():
    from hashguard.plugins import display_names
    from hashguard.report.sample import sample_card

    assert sample_card()["names"] == display_names()


def test_the_demo_study_runs_query_detection_with_the_adaptive_attack():
    """``make demo`` (configs/demo.yaml) shows the report's query-detection section: the Hamming detector (after
    HashVFL, Qiu et al., IEEE TIFS 2024) against every attack, and the detector-aware attack's row."""
    from hashguard.pipeline.detection_stage import adaptive_params, check_detection

    config = load_study_config(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
    assert config.detection.enabled and config.detection.adaptive and config.detection.detector == "hamming"
    check_detection(config)  # the detector and the adaptive attack's settings build
    assert adaptive_params(config)["iterations"] == config.attacks.params_for("mainstay")["iterations"]
