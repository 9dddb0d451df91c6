"""The Hamming query detector (after HashVFL, Qiu et al., IEEE TIFS 2024): reference codes by hand, the registry,
``hashguard detect`` end to end, and the detector-aware mainstay attack."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hashguard.attacks import build_attack, nearest_reference_distance
from hashguard.cli import main
from hashguard.detectors import DETECTORS, build_detector, class_centre_codes, reference_codes
from hashguard.errors import ConfigError
from hashguard.models.checkpoint import save_model
from hashguard.plugins import registries
from hashguard.retrieval.detection import detection_summary


def test_class_centres_are_the_sign_of_the_mean_code_per_class():
    codes = np.array([[1, 1, -1], [1, -1, -1], [-1, -1, 1], [1, 1, 1]])
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0]])  # class 2 has no item: no centre
    # class 0: rows 0, 1, 3 -> sums (3, 1, -1); class 1: rows 1, 2 -> (0, -2, 0) -> ties to +1
    assert class_centre_codes(codes, labels).tolist() == [[1, 1, -1], [1, -1, 1]]
    assert reference_codes("train", codes, labels).shape == (4, 3)
    targets = np.array([[1.0, -1.0, 1.0]])
    assert reference_codes("auto", codes, labels, targets).tolist() == [[1, -1, 1]]
    assert reference_codes("auto", codes, labels).tolist() == [[1, 1, -1], [1, -1, 1]]
    with pytest.raises(ConfigError, match="hashvfl"):
        reference_codes("targets", codes, labels)


def test_detector_scores_flags_above_the_clean_threshold_and_is_listed():
    assert "hamming" in registries()["detectors"] and DETECTORS.entry("hamming").reference
    detector = build_detector("hamming", reference="centers", fpr=0.25)
    codes = np.array([[1, 1, 1, 1], [-1, -1, -1, -1]])
    detector.fit(codes, np.eye(2))
    queries = np.array([[1, 1, 1, -1], [1, 1, -1, -1], [-1, -1, -1, -1], [1, 1, 1, 1]])
    assert detector.score(queries).tolist() == [1, 2, 0, 0]
    with pytest.raises(ConfigError, match="calibrate"):
        detector.flag(queries)
    assert detector.calibrate([0, 0, 1, 2]) == 1  # 1 of 4 above 1 = 25 %
    assert detector.flag(queries).tolist() == [False, True, False, False]
    with pytest.raises(ConfigError, match="reference"):
        build_detector("hamming", reference="nowhere")


def test_relaxed_distance_term_equals_hamming_at_sign_codes():
    reference = torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, 1.0]])
    u = torch.tensor([[1.0, -1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0]])
    assert nearest_reference_distance(u, reference).tolist() == [1 / 4, 2 / 4]


def test_detect_command_end_to_end(tmp_path, attack_bench, capsys):
    ckpt = save_model(tmp_path / "ckpt", attack_bench.model, num_classes=10)
    out = tmp_path / "attacks"
    code = main(["attack", str(ckpt), "--attack", "mainstay-targeted", "--out", str(out), "--data", "demo-mnist",
                 "--queries", "12", "--iterations", "2", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    report_file = tmp_path / "detection.json"
    code = main(["detect", str(ckpt), "--attack-result", str(out), "--data", "demo-mnist", "--device", "cpu",
                 "--set", "reference=centers", "--out", str(report_file), "--json"])
    assert code == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(report_file.read_text())
    assert set(printed["attacks"]) == {"mainstay-targeted"} and "roc" not in printed["attacks"]["mainstay-targeted"]
    summary = saved["attacks"]["mainstay-targeted"]
    assert summary["num_clean"] == summary["num_adversarial"] == 12 and summary["targeted"]
    assert 0.0 <= summary["auroc"] <= 1.0 and summary["fpr"] <= 0.05
    assert summary["roc"]["fpr"][0] == 0.0 and summary["roc"]["tpr"][-1] == 1.0
    assert saved["reference_codes"] == 10  # one centre per digit
    assert main(["detect", str(ckpt), "--attack-result", str(tmp_path / "none")]) == 2
    assert "no such attack-result directory" in capsys.readouterr().err


def test_the_detector_aware_attack_lowers_detection(attack_bench):
    """On the attack bench's CSQ model (32 bits, its first 30 queries, eps 32/255, 20 PGD iterations), knowing the
    detector lowers its AUROC. Measured over models trained with seeds 0-4 (train_tiny_csq, one thread): plain
    mainstay AUROC 0.580-0.641, detector-aware (weight 4) 0.443-0.493, a drop of 0.123-0.152 (on 60 queries:
    0.647-0.672 against 0.517-0.547); the adaptive attack pays in attack strength (mAP 0.59-0.66 against
    0.46-0.56)."""
    context = attack_bench.context
    images, labels = attack_bench.query_images[:30], attack_bench.query_labels[:30]
    detector = build_detector("hamming", reference="centers")
    detector.fit(context.train_codes.numpy(), context.train_labels.numpy())
    clean = detector.score(attack_bench.model.encode(images).numpy())
    found = {}
    for name in ("mainstay", "mainstay-adaptive"):
        attack = build_attack(name, attack_bench.model, context, eps=32 / 255, iterations=20)
        codes = attack.run(images, labels).adv_codes.numpy()
        found[name] = detection_summary(clean, detector.score(codes))
    assert found["mainstay-adaptive"]["auroc"] < found["mainstay"]["auroc"] - 0.05
    assert found["mainstay-adaptive"]["mean_adversarial_score"] < found["mainstay"]["mean_adversarial_score"]


def test_a_hashvfl_checkpoint_gives_its_class_targets(tmp_path):
    """reference=auto uses the class target codes of a checkpoint trained with the hashvfl method (rebuilt from
    its recorded method and training seed); a CSQ checkpoint has none, so the detector falls back to centres."""
    from hashguard.methods import build_method
    from hashguard.models import HashModel, ModelSpec
    from hashguard.pipeline.checkpoint import open_checkpoint
    from hashguard.pipeline.detect import model_class_codes

    model = HashModel(ModelSpec(backbone="small_cnn", bits=16, in_channels=1, image_size=28, mean=[0.1], std=[0.3],
                                hash_norm="bn-sign"))
    for name, expected in (("hashvfl", True), ("csq", False)):
        directory = save_model(tmp_path / name, model, method={"name": name, "params": {}}, num_classes=10,
                               extra={"training": {"seed": 3}})
        codes = model_class_codes(open_checkpoint(directory, device="cpu", with_data=False), num_train=100)
        if expected:
            reference = build_method("hashvfl", bits=16, num_classes=10, num_train=100, seed=3).class_codes
            assert np.array_equal(codes, reference.numpy())
        else:
            assert codes is None


def test_defend_with_a_detector_name_points_to_detect(tmp_path, capsys):
    """``hashguard defend --defense hamming-detector`` trains nothing: one line naming ``hashguard detect``; the
    alias is the detector's own name there as well."""
    assert build_detector("hamming-detector").name == "hamming"
    for name in ("hamming-detector", "Hamming"):
        code = main(["defend", str(tmp_path / "no-checkpoint"), "--defense", name, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert "query detector, not a defense" in err and "hashguard detect" in err and "--detector hamming" in err
    assert not (tmp_path / "out").exists()
    assert main(["defend", str(tmp_path / "x"), "--defense", "nope", "--out", str(tmp_path / "out")]) == 2
    assert "unknown defense 'nope'" in capsys.readouterr().err
