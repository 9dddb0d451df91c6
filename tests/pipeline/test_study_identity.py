"""The study's cache identity: a model's downstream stages are keyed by its fingerprint, so a rerun pointing
``checkpoint:`` at a re-saved copy reuses every stage; aliased spellings of one attack configuration share a
cache entry; ``cache_identity: weights`` keys by the exact weights."""

from __future__ import annotations

import json
import re

import pytest

from hashguard.config import build_config
from hashguard.errors import ConfigError
from hashguard.models import load_model, save_model
from hashguard.models.checkpoint import CONFIG_FILE
from hashguard.pipeline.attack_stage import attack_settings
from hashguard.pipeline.study import dry_run, run_study
from hashguard.pipeline.study_config import StudyConfig

SMALL = {
    "name": "identity",
    "data": {"source": "demo-mnist", "seed": 0, "options": {"train_size": 80, "database_size": 120}},
    "model": {"backbone": "small_cnn", "bits": 8},
    "method": {"name": "dpsh"},
    "train": {"recipe": "fast", "epochs": 1, "val_fraction": 0.0, "progress": False},
    "evaluation": {"topk": 100},
    "attacks": {
        "override": {"eps": "32/255", "iterations": 3},
        "queries": 8,
        "suite": ["mainstay", {"name": "hag", "params": {"eps": "8/255"}}],
        "sweep": {"attacks": ["mainstay"], "eps": []},
    },
    "defenses": {"run": [{"name": "saat", "preset": "demo", "settings": {"epochs": 1, "train_items": 16,
                                                                          "iterations": 2}}],
                 "sweep": False},
    "report": {"grid_queries": 1, "grid_topk": 3},
    "detection": {"enabled": True},  # the detector-aware attack is one more stage per model, keyed by identity
}


class Log(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    def stages(self, state: str) -> list[str]:
        return [line for line in self if re.match(rf"\[\d+/\d+\] .+: {state}", line)]


def config(**changes) -> StudyConfig:
    payload = json.loads(json.dumps(SMALL))
    payload.update(changes)
    return StudyConfig.model_validate(payload)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("identity")
    log = Log()
    card = run_study(config(), out, log=log, report=False)
    return out, card, log


def _resave(source, target) -> None:
    """The same weights written again by ``save_model`` (new files, the model.json record carried over)."""
    model, meta = load_model(source)
    extra = {key: value for key, value in meta.items()
             if key not in ("format", "model", "method", "num_classes", "dataset", "versions")}
    save_model(target, model, method=meta["method"], num_classes=meta["num_classes"], dataset=meta["dataset"],
               extra=extra)


def test_the_identity_in_use_is_printed(first_run):
    _, _, log = first_run
    lines = [line for line in log if line.startswith("cache identity of")]
    assert lines[0].startswith("cache identity of the study's model: functional fingerprint ")
    assert lines[0].endswith("(cache_identity: functional)") and any("the saat model" in line for line in lines)


def test_a_resaved_copy_with_aliased_attack_spellings_reuses_every_stage(first_run, tmp_path):
    out, card, first_log = first_run
    assert first_log.stages("done in") and not first_log.stages("cached")
    _resave(out / "model", tmp_path / "copy")
    assert (tmp_path / "copy" / CONFIG_FILE).read_bytes() != b""
    payload = json.loads(json.dumps(SMALL))
    payload["checkpoint"] = str(tmp_path / "copy")
    # hag spelled otherwise: its own eps as a decimal, defaults given explicitly, the optimizer's name in capitals
    payload["attacks"]["suite"] = ["mainstay", {"name": "HAG", "params": {
        "eps": 0.0313725, "optimizer": "SGD", "momentum": 0.9, "alpha_schedule": True, "iterations": 3}}]
    log = Log()
    again = run_study(StudyConfig.model_validate(payload), out, log=log, report=False)
    assert not log.stages("done in"), log.stages("done in")
    cached = log.stages("cached")
    for stage in ("clean evaluation", "attack mainstay (undefended)", "attack hag (undefended)", "retrieval grid",
                  "defend saat", "clean evaluation (saat)", "attack hag (saat)",
                  "attack mainstay-adaptive (undefended)", "attack mainstay-adaptive (saat)"):
        assert any(line.split("] ")[1].startswith(stage) for line in cached), stage
    assert again["models"] == card["models"]


def test_weights_identity_keys_by_the_exact_bytes(first_run, tmp_path):
    """``cache_identity: weights``: a byte-identical re-saved copy reuses the stages (and the identity in use is
    printed)."""
    out, _, _ = first_run
    _resave(out / "model", tmp_path / "copy")
    attacks = {**SMALL["attacks"], "suite": ["mainstay"]}
    runs = []
    for checkpoint in (out / "model", tmp_path / "copy"):
        log = Log()
        run_study(config(defenses={"run": []}, report={"grid_queries": 0}, attacks=attacks,
                         checkpoint=str(checkpoint), cache_identity="weights"), tmp_path / "study", log=log,
                  report=False)
        runs.append(log)
    assert any("weights fingerprint" in line and "(cache_identity: weights)" in line for line in runs[0])
    assert runs[0].stages("done in") and not runs[1].stages("done in")


@pytest.mark.parametrize(
    ("name", "params", "alias_name", "alias_params"),
    [
        ("hag", {"eps": "8/255"}, "HAG", {"eps": 0.0313725}),
        ("hag", {}, "hag", {"optimizer": "sgd", "momentum": 0.9, "step": 100, "seed": 0}),  # defaults spelled out
        ("dhta", {}, "DHTA", {"optimizer": "I-FGSM"}),  # DHTA's own optimizer is BIM (I-FGSM)
        ("mainstay", {"optimizer": "pgd"}, "mainstay", {"optimizer": "PGD", "step": "1/255"}),
        ("mainstay-targeted", {"iterations": 7}, "mainstay_targeted", {"iterations": 7.0}),
    ],
)
def test_aliased_attack_spellings_share_one_key(name, params, alias_name, alias_params):
    assert attack_settings(name, params) == attack_settings(alias_name, alias_params)


@pytest.mark.parametrize(
    ("params", "other"),
    [
        ({"eps": "8/255"}, {"eps": "7/255"}),
        ({}, {"iterations": 1999}),
        ({}, {"optimizer": "adam"}),
        ({"eps": 0.0313725}, {"eps": 0.0313735}),  # differs in the 6th significant digit
        ({}, {"seed": 1}),
    ],
)
def test_other_attack_configurations_get_other_keys(params, other):
    assert attack_settings("hag", params) != attack_settings("hag", other)


def test_dry_run_names_the_identity_and_a_bad_one_is_refused():
    log = Log()
    dry_run(config(cache_identity="weights"), log=log)
    assert "cache identity: weights fingerprints key the stages downstream of each model" in log
    with pytest.raises(ConfigError, match="cache_identity"):
        build_config(StudyConfig, {**SMALL, "cache_identity": "bytes"}, "study.yaml")
