"""The study's claims (hashguard.pipeline.claims) from per-query AP files, and the per-query AP file each
attack stage writes (hashguard.pipeline.attack_stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hashguard.pipeline import attack_stage
from hashguard.pipeline.claims import study_claims
from hashguard.report.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

BASE = np.linspace(0.1, 0.9, 40)


def _write(run_dir: Path, model: str, attack: str, adv: np.ndarray) -> None:
    directory = run_dir / "models" / model / "attacks" / attack
    directory.mkdir(parents=True)
    np.savez(directory / attack_stage.PER_QUERY, clean_ap=np.ones_like(adv), adv_ap=adv, topk=np.array(100))


def _models(spec: dict[str, dict[str, bool]]) -> dict[str, Any]:
    return {key: {"attacks": {name: {"targeted": targeted} for name, targeted in attacks.items()}}
            for key, attacks in spec.items()}


def test_every_claim_from_per_query_files(tmp_path: Path) -> None:
    untargeted = {"mainstay": False, "hag": False, "sdha": False}
    models = _models({"undefended": {**untargeted, "mainstay-targeted": True, "p2p": True, "dhta": True},
                      "saat": untargeted, "atrdh": untargeted, "cgat": untargeted})
    scores = {
        ("undefended", "mainstay"): BASE - 0.05, ("undefended", "hag"): BASE, ("undefended", "sdha"): BASE - 0.08,
        ("undefended", "mainstay-targeted"): BASE + 0.1, ("undefended", "p2p"): BASE, ("undefended", "dhta"): BASE,
        ("saat", "mainstay"): BASE + 0.02, ("saat", "hag"): BASE + 0.02, ("saat", "sdha"): BASE + 0.02,
        ("atrdh", "mainstay"): BASE, ("atrdh", "hag"): BASE, ("atrdh", "sdha"): BASE,
        ("cgat", "mainstay"): BASE + 0.03, ("cgat", "hag"): BASE + 0.03, ("cgat", "sdha"): BASE + 0.01,
    }
    for (model, attack), adv in scores.items():
        _write(tmp_path, model, attack, adv)
    claims = {c["id"]: c for c in study_claims(models, tmp_path)}
    assert list(claims) == ["table1-nontargeted", "table1-targeted", "table2-saat-atrdh", "cgat-saat"]
    ranking = claims["table1-nontargeted"]
    assert [(c["a"], c["b"], c["verdict"]) for c in ranking["comparisons"]] == [
        ("mainstay", "hag", REPRODUCED), ("mainstay", "sdha", NOT_REPRODUCED)]
    assert ranking["verdict"] == NOT_REPRODUCED and ranking["source"] == "paper"
    assert ranking["comparisons"][0]["mean_diff"] == pytest.approx(-0.05)
    assert ranking["comparisons"][0]["n"] == 40
    targeted = claims["table1-targeted"]
    assert [c["b"] for c in targeted["comparisons"]] == ["p2p", "dhta"] and targeted["verdict"] == REPRODUCED
    table_two = claims["table2-saat-atrdh"]
    assert [c["attack"] for c in table_two["comparisons"]] == ["mainstay", "hag", "sdha"]
    assert table_two["verdict"] == REPRODUCED
    assert all(c["mean_diff"] == pytest.approx(0.02) for c in table_two["comparisons"])
    other = claims["cgat-saat"]
    assert other["source"] == "not a paper claim" and other["kind"] == "comparison"
    assert [c["finding"] for c in other["comparisons"]] == ["cgat higher", "cgat higher", "saat higher"]
    assert other["finding"] == "mixed"


def test_claims_without_their_attacks_or_models_are_skipped(tmp_path: Path) -> None:
    models = _models({"undefended": {"mainstay": False, "mainstay-targeted": True}, "saat": {"mainstay": False}})
    _write(tmp_path, "undefended", "mainstay", BASE)
    _write(tmp_path, "undefended", "mainstay-targeted", BASE)
    _write(tmp_path, "saat", "mainstay", BASE)
    assert study_claims(models, tmp_path) == []  # no rival attack, no ATRDH / CgAT model
    models["undefended"]["attacks"]["hag"] = {"targeted": False}  # listed, but its file is missing
    assert study_claims(models, tmp_path) == []
    _write(tmp_path, "undefended", "hag", BASE)
    claims = study_claims(models, tmp_path)
    assert [c["id"] for c in claims] == ["table1-nontargeted"]
    assert claims[0]["verdict"] == INCONCLUSIVE  # identical scores: the interval is [0, 0]


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory):
    """An (untrained) small CNN on a small demo split, attacked once non-targeted and once targeted."""
    import torch

    from hashguard.attacks import load_or_create_target_labels
    from hashguard.data import open_dataset
    from hashguard.models import HashModel, ModelSpec
    from hashguard.pipeline.study_config import AttackSuiteConfig

    torch.manual_seed(0)
    splits = open_dataset("demo-mnist", seed=0, train_size=100, database_size=300)
    model = HashModel(ModelSpec(backbone="small_cnn", bits=16, in_channels=1, image_size=28, mean=[0.5], std=[0.5]))
    model.eval()
    out = tmp_path_factory.mktemp("attacked")
    target = attack_stage.AttackedModel("undefended", model, splits, splits.train, "id", out / "models" / "undefended")
    suite = AttackSuiteConfig.model_validate({"queries": 12, "batch_size": 5})
    targets = load_or_create_target_labels(out / "targets.json", splits.query.labels, splits.database.labels, seed=0)
    results = {}
    for name in ("mainstay", "mainstay-targeted"):
        directory = target.directory / "attacks" / name
        directory.mkdir(parents=True)
        params = {"eps": 16 / 255, "iterations": 3}
        results[name] = attack_stage.run_one_attack(target, name, params, suite, targets, 50, directory)
    return target, targets, results


def test_every_attack_stage_saves_per_query_aps_matching_its_maps(attacked) -> None:
    target, _, results = attacked
    for name, result in results.items():
        data = attack_stage.load_per_query(target.directory / "attacks" / name / attack_stage.PER_QUERY)
        assert data is not None and data["adv_ap"].shape == data["clean_ap"].shape == (12,)
        assert ((data["adv_ap"] >= 0) & (data["adv_ap"] <= 1)).all()
        adv, clean = ("adv_tmap", "clean_tmap") if name.endswith("targeted") else ("adv_map", "clean_map")
        # the mean of the per-query APs is the stage's own (t-)mAP
        assert data["adv_ap"].mean() == pytest.approx(result[adv], abs=1e-12)
        assert data["clean_ap"].mean() == pytest.approx(result[clean], abs=1e-12)


def test_a_stage_cached_without_the_file_gets_it_recomputed_from_its_codes(attacked) -> None:
    target, targets, _ = attacked
    for name in ("mainstay", "mainstay-targeted"):
        path = target.directory / "attacks" / name / attack_stage.PER_QUERY
        saved = attack_stage.load_per_query(path)
        path.unlink()
        attack_stage._backfill_per_query(target, name, path.parent, targets, 50)
        again = attack_stage.load_per_query(path)
        assert again is not None and saved is not None
        np.testing.assert_allclose(again["adv_ap"], saved["adv_ap"], atol=1e-12)
        np.testing.assert_allclose(again["clean_ap"], saved["clean_ap"], atol=1e-12)
    assert attack_stage.load_per_query(target.directory / "nowhere.npz") is None
