"""A tiny robustness study end to end on CPU: stages, caching, resume, report files, dry run, bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from hashguard.cli import main as cli_main
from hashguard.errors import ConfigError
from hashguard.pipeline import attack_stage
from hashguard.pipeline.study import dry_run, run_study
from hashguard.pipeline.study_config import StudyConfig
from hashguard.retrieval import load_codes, mean_average_precision

TINY = {
    "name": "tiny",
    "data": {"source": "demo-mnist", "seed": 0, "options": {"train_size": 200, "database_size": 400}},
    "model": {"backbone": "small_cnn", "bits": 16},
    "method": {"name": "csq"},
    "train": {"recipe": "fast", "epochs": 3, "val_fraction": 0.0, "progress": False},
    "evaluation": {"topk": 300},
    "attacks": {
        "override": {"eps": "32/255", "iterations": 10},
        "queries": 24,
        "suite": ["mainstay", "hag", "mainstay-targeted"],
        "sweep": {"attacks": ["mainstay"], "eps": [0, "8/255", "32/255"]},
    },
    "defenses": {"run": [{"name": "saat", "preset": "demo", "settings": {"epochs": 1, "train_items": 64}}]},
    "report": {"grid_queries": 2, "grid_topk": 5},
    "detection": {"enabled": True},
}


def tiny_config(**changes) -> StudyConfig:
    payload = json.loads(json.dumps(TINY))
    payload.update(changes)
    return StudyConfig.model_validate(payload)


class Log(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    def stage_lines(self) -> list[str]:
        return [line for line in self if re.match(r"\[\d+/\d+\] .+: (cached|done in)", line)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    log = Log()
    card = run_study(tiny_config(), out, log=log)
    return out, card, log


def test_study_writes_every_stage_and_a_consistent_card(study):
    out, card, log = study
    saved = json.loads((out / "results.json").read_text())
    assert saved["models"] == json.loads(json.dumps(card["models"]))
    assert list(card["models"]) == ["undefended", "saat"]
    undefended, saat = card["models"]["undefended"], card["models"]["saat"]
    assert set(undefended["attacks"]) == {"mainstay", "hag", "mainstay-targeted"}
    assert set(saat["attacks"]) == {"mainstay", "hag"}  # defenses are attacked with the non-targeted suite
    assert card["threat_model"]["eps_label"] == "32/255" and card["threat_model"]["queries"] == 24
    # the clean mAP of the card is the mAP of the saved codes (independent numpy-free recomputation)
    query, database = load_codes(out / "clean" / "query.npz"), load_codes(out / "clean" / "database.npz")
    expected = mean_average_precision(query.codes, database.codes, query.labels, database.labels, 300)
    assert undefended["clean"]["map"] == pytest.approx(expected)
    # the non-targeted attacks lower mAP below the clean mAP of the same 24 queries and stay in the ball
    for name in ("mainstay", "hag"):
        result = undefended["attacks"][name]
        assert result["adv_map"] < result["clean_map"], name
        assert result["perceptibility"]["linf"] <= 32 / 255 + 1e-6
        assert result["curves"]["map"] == pytest.approx(result["adv_map"])
    targeted = undefended["attacks"]["mainstay-targeted"]
    assert targeted["adv_tmap"] > targeted["clean_tmap"]
    # sweep: eps 0 leaves the queries unchanged, so it reproduces the clean mAP; eps 32/255 is the suite's run
    points = undefended["eps_sweep"]["mainstay"]
    assert [p["eps"] for p in points] == pytest.approx([0.0, 8 / 255, 32 / 255])
    at_zero, at_8, at_32 = (p["adv_map"] for p in points)
    assert at_zero == pytest.approx(undefended["attacks"]["mainstay"]["clean_map"])
    assert at_32 == undefended["attacks"]["mainstay"]["adv_map"]
    assert at_32 <= at_8 + 0.05
    # the hardened model: provenance and its own clean evaluation
    assert saat["defense"]["name"] == "saat" and saat["defense"]["config"]["epochs"] == 1
    hardened = json.loads((out / "defenses" / "saat" / "model.json").read_text())
    assert hardened["defense"]["name"] == "saat"
    assert 0.0 < saat["clean"]["map"] <= 1.0
    # one target-label file, shared by every targeted attack
    targets = json.loads((out / "targets" / "target_labels.json").read_text())
    assert targets["num_queries"] == len(query.codes) and targets["seed"] == 0
    for row, target in enumerate(targets["targets"][:24]):
        assert not set(target) & set(np.flatnonzero(query.labels[row]).tolist())  # shares no label with the query
    # every planned stage reported once, with elapsed time and ETA
    lines = log.stage_lines()
    assert len(lines) == len(card["stages"]) and all("ETA" in line for line in lines)


def test_retrieval_grid_marks_relevance_from_the_labels(study, demo_splits_small):
    out, card, _ = study
    grid = np.load(out / card["retrieval_grid"]["file"])
    splits = demo_splits_small
    assert grid["query_images"].shape == (2, 1, 28, 28) and grid["clean_topk_images"].shape == (2, 5, 1, 28, 28)
    assert np.abs(grid["adv_images"] - grid["query_images"]).max() <= 32 / 255 + 1e-6
    for row, query in enumerate(grid["query_index"]):
        labels = splits.query.labels[query]
        for kind in ("clean", "adv"):
            indices = grid[f"{kind}_topk_index"][row]
            expected = splits.database.labels[indices] @ labels > 0
            assert np.array_equal(grid[f"{kind}_topk_relevant"][row], expected)
            image = splits.database.load_image(int(indices[0])).numpy()
            assert np.allclose(grid[f"{kind}_topk_images"][row, 0], image)


@pytest.fixture(scope="module")
def demo_splits_small():
    from hashguard.data import open_dataset

    return open_dataset("demo-mnist", seed=0, **TINY["data"]["options"])


def test_query_detection_covers_every_model_and_attack(study):
    """detection.enabled: the Hamming detector against every attack of every model, plus the detector-aware
    attack as a cached stage per model; the report holds the section with each AUROC."""
    out, card, _ = study
    detection = card["detection"]
    assert detection["detector"] == "hamming" and detection["adaptive"] == "mainstay-adaptive"
    assert set(detection["models"]) == {"undefended", "saat"}
    expected = {"undefended": {"mainstay", "hag", "mainstay-targeted"}, "saat": {"mainstay", "hag"}}
    markdown = (out / "report.md").read_text()
    assert "## Query detection" in markdown and (out / "figures" / "detection-roc.png").is_file()
    for key, model in detection["models"].items():
        assert set(model["attacks"]) == expected[key] | {"mainstay-adaptive"}
        assert (out / "models" / key / "detection" / "mainstay-adaptive" / "adversarial_query.npz").is_file()
        assert model["verdict"] in ("non-adaptive only", "adaptive too", "none")
        assert model["reference_codes"] == 10  # the class centres of the ten digits
        for name, summary in model["attacks"].items():
            assert summary["num_clean"] == summary["num_adversarial"] == 24 and summary["fpr"] <= 0.05
            fpr, tpr = summary["roc"]["fpr"], summary["roc"]["tpr"]
            area = sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(len(fpr) - 1))
            assert area == pytest.approx(summary["auroc"])  # the curve and the pairwise AUROC agree
            assert summary["adaptive"] == (name == "mainstay-adaptive")
            assert f"{summary['auroc']:.3f}" in markdown


def test_report_files_hold_the_numbers_of_results_json(study):
    out, card, _ = study
    markdown = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for model in card["models"].values():
        for value in (model["clean"]["map"], model["attacks"]["mainstay"]["adv_map"]):
            assert f"{100 * value:.2f}" in markdown
            assert f"{100 * value:.2f}" in html


def test_rerun_skips_every_stage(study):
    out, card, _ = study
    log = Log()
    again = run_study(tiny_config(), out, log=log)
    lines = log.stage_lines()
    assert lines and all(": cached" in line for line in lines), [line for line in lines if "cached" not in line]
    assert again["models"] == card["models"]


def test_changed_setting_reruns_only_what_depends_on_it(study, tmp_path):
    out, card, _ = study
    log = Log()
    payload = json.loads(json.dumps(TINY))
    payload["attacks"]["suite"] = ["mainstay", {"name": "hag", "params": {"iterations": 2}}, "mainstay-targeted"]
    run_study(StudyConfig.model_validate(payload), out, log=log)
    ran = [line for line in log.stage_lines() if "done in" in line]
    assert any("attack hag (undefended)" in line for line in ran)
    unaffected = ("train", "clean evaluation", "attack mainstay (undefended)")
    assert not any(line.split("] ")[1].startswith(unaffected) for line in ran)
    assert list(out.glob("models/undefended/attacks/hag.old-*")), "the previous result is kept, not deleted"


def test_interrupted_study_resumes_where_it_stopped(tmp_path, monkeypatch):
    config = tiny_config(defenses={"run": []}, report={"grid_queries": 0})
    original = attack_stage.run_one_attack
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(attack_stage, "run_one_attack", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_study(config, tmp_path, log=Log())
    assert not (tmp_path / "results.json").exists()
    monkeypatch.setattr(attack_stage, "run_one_attack", original)
    log = Log()
    card = run_study(config, tmp_path, log=log)
    cached = [line for line in log.stage_lines() if ": cached" in line]
    ran = [line for line in log.stage_lines() if "done in" in line]
    assert any("train" in line for line in cached) and any("attack mainstay (undefended)" in line for line in cached)
    assert any("attack hag (undefended)" in line for line in ran)
    assert set(card["models"]["undefended"]["attacks"]) == {"mainstay", "hag", "mainstay-targeted"}


def test_dry_run_validates_and_trains_nothing(tmp_path, monkeypatch):
    log = Log()
    plan = dry_run(tiny_config(), log=log)
    assert "train" in plan.costs and "defend saat" in plan.costs
    assert any("nothing was trained" in line for line in log)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(TINY))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["study", str(path), "--dry-run"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]  # no run directory was written


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("attacks.override.eps=2", "attacks.override.eps"),
        ("attacks.eps=8/255", "attacks.override.eps"),
        ("attacks.suite=[nosuchattack]", "unknown attack"),
        ("defenses.run=[{name: saat, settings: {nosuchfield: 1}}]", "nosuchfield"),
        ("attacks.sweep.eps=[1.5]", "outside"),
        ("report.grid_attack=dhta", "non-targeted"),
    ],
)
def test_bad_study_config_is_one_clear_line(tmp_path, capsys, change, message):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(TINY))
    code = cli_main(["study", str(path), "--dry-run", "--set", change])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("hashguard: error:") and message in err[0], err


def test_config_rejects_unknown_keys():
    with pytest.raises(Exception, match="nosuch"):
        StudyConfig.model_validate({**TINY, "attacks": {**TINY["attacks"], "nosuch": 1}})
    with pytest.raises(ConfigError):
        from hashguard.defenses import build_defense_config

        build_defense_config("saat", {"eps": 3})


def test_missing_dataset_is_one_clear_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(TINY))
    monkeypatch.chdir(tmp_path)
    args = ["study", str(path), "--set", "data.source=listfile", "--set", "data.options={}",
            "--set", "data_dir=datasets", "--set", "data.root=NUS-WIDE"]
    for extra in (["--dry-run"], ["--out", "run"]):
        assert cli_main(args + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("hashguard: error:") and "NUS-WIDE" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]
